package proxy

import (
	"sync"
	"time"
)

// deviceLimiter bounds update checks per device (token bucket per device
// id): a misbehaving app in a loop cannot monopolise an edge, and the
// plugin honours the Retry-After of the 429 it gets. Memory is bounded:
// each of the shards forgets everything when it grows past maxPerShard.
type deviceLimiter struct {
	perSecond float64
	burst     float64
	shards    [64]limiterShard
}

type limiterShard struct {
	mu      sync.Mutex
	buckets map[[16]byte]bucket
}

type bucket struct {
	tokens float64
	last   int64 // unix nanoseconds
}

const maxPerShard = 1 << 16

// newDeviceLimiter allows perMinute checks per device per minute on
// average, with bursts of up to perMinute/2 (at least 5). perMinute <= 0:
// no limit (nil limiter).
func newDeviceLimiter(perMinute int) *deviceLimiter {
	if perMinute <= 0 {
		return nil
	}
	l := &deviceLimiter{perSecond: float64(perMinute) / 60, burst: max(5, float64(perMinute)/2)}
	for i := range l.shards {
		l.shards[i].buckets = map[[16]byte]bucket{}
	}
	return l
}

// allow takes a token for the device; when none is left it reports how
// long until one is.
func (l *deviceLimiter) allow(dev [16]byte, now time.Time) (bool, time.Duration) {
	sh := &l.shards[dev[0]&63]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b, ok := sh.buckets[dev]
	t := now.UnixNano()
	if !ok {
		if len(sh.buckets) >= maxPerShard {
			clear(sh.buckets)
		}
		b = bucket{tokens: l.burst, last: t}
	}
	b.tokens = min(l.burst, b.tokens+float64(t-b.last)/1e9*l.perSecond)
	b.last = t
	if b.tokens < 1 {
		sh.buckets[dev] = b
		return false, time.Duration((1 - b.tokens) / l.perSecond * float64(time.Second))
	}
	b.tokens--
	sh.buckets[dev] = b
	return true, 0
}
