package proxy

import (
	"sync"
	"time"
)

// keyLimiter is a set of token buckets keyed by 16 bytes: device ids (the
// per-device limit of update checks) or client networks (the per-network
// limits of /updates and /stats). A misbehaving app in a loop, or one
// client posting for many made-up devices, cannot monopolise an edge, and
// the plugin honours the Retry-After of the 429 it gets. Memory is
// bounded: each of the shards forgets everything when it grows past
// maxPerShard.
type keyLimiter struct {
	perSecond   float64
	burst       float64
	maxPerShard int
	shards      [64]limiterShard
}

// deviceLimiter bounds update checks per device id.
type deviceLimiter = keyLimiter

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
	return newKeyLimiter(float64(perMinute)/60, max(5, float64(perMinute)/2), maxPerShard)
}

// newKeyLimiter allows perSecond tokens per key on average, burst at once;
// at most 64 × maxPerShard keys are remembered.
func newKeyLimiter(perSecond, burst float64, maxPerShard int) *keyLimiter {
	l := &keyLimiter{perSecond: perSecond, burst: max(1, burst), maxPerShard: maxPerShard}
	for i := range l.shards {
		l.shards[i].buckets = map[[16]byte]bucket{}
	}
	return l
}

// allow takes a token for the key; when none is left it reports how long
// until one is.
func (l *keyLimiter) allow(key [16]byte, now time.Time) (bool, time.Duration) {
	return l.allowN(key, now, 1)
}

// allowN takes n tokens (at most a burst's worth) for the key, or none and
// reports how long until there are enough.
func (l *keyLimiter) allowN(key [16]byte, now time.Time, n float64) (bool, time.Duration) {
	n = min(n, l.burst)
	// FNV-1a over the key: device ids are random, network keys are not.
	h := uint32(2166136261)
	for _, b := range key {
		h = (h ^ uint32(b)) * 16777619
	}
	sh := &l.shards[h&63]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b, ok := sh.buckets[key]
	t := now.UnixNano()
	if !ok {
		if len(sh.buckets) >= l.maxPerShard {
			clear(sh.buckets)
		}
		b = bucket{tokens: l.burst, last: t}
	}
	b.tokens = min(l.burst, b.tokens+float64(t-b.last)/1e9*l.perSecond)
	b.last = t
	if b.tokens < n {
		sh.buckets[key] = b
		return false, time.Duration((n - b.tokens) / l.perSecond * float64(time.Second))
	}
	b.tokens -= n
	sh.buckets[key] = b
	return true, 0
}
