package proxy

import (
	"context"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// Prefetch: when a snapshot makes a bundle current (a channel's bundle, a
// rollout target, an A/B arm), the edge fills it before devices ask. Work is
// bounded (a small queue, dropped when full, and prefetchWorkers fills at a
// time) and runs at the lowest priority: it only ever uses the same
// coalesced fill as device requests, so a device asking for a blob being
// prefetched waits for that fill instead of starting another.
const (
	prefetchWorkers = 2
	prefetchQueue   = 256
)

func (e *Edge) startPrefetch() {
	e.prefetchQ = make(chan string, prefetchQueue)
	ctx, cancel := context.WithCancel(context.Background())
	e.stopPrefetch = cancel
	for i := 0; i < prefetchWorkers; i++ {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case sha := <-e.prefetchQ:
					fctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
					if err := e.cache.Prefetch(fctx, sha); err != nil && ctx.Err() == nil {
						e.log.Warn("prefetch failed", "sha256", sha, "err", err)
					}
					cancel()
				}
			}
		}()
	}
}

// prefetchCurrent queues the bundles s makes current that the cache lacks
// (for an Expo update, its manifest files).
func (e *Edge) prefetchCurrent(s *snapshot.Snapshot) {
	if e.cache == nil || e.prefetchQ == nil {
		return
	}
	seen := map[string]bool{}
	fill := func(sha string) {
		if seen[sha] || e.cache.Has(sha) {
			return
		}
		seen[sha] = true
		select {
		case e.prefetchQ <- sha:
		default: // queue full: devices' own requests will fill it
		}
	}
	queue := func(b *snapshot.Bundle) {
		switch {
		case b == nil:
		case b.Expo != nil:
			// Expo clients download the files their manifest lists, never
			// the zip.
			for _, f := range b.Manifest {
				fill(f.Blob)
			}
		default:
			fill(b.SHA256)
		}
	}
	for _, a := range s.Apps {
		for _, c := range a.Channels {
			queue(a.Bundle(c.Bundle))
			if c.Rollout != nil {
				queue(a.Bundle(c.Rollout.Bundle))
			}
			if c.AB != nil {
				for _, arm := range c.AB.Arms {
					queue(a.Bundle(arm.Bundle))
				}
			}
		}
	}
}

// Close stops background work (prefetch).
func (e *Edge) Close() {
	if e.stopPrefetch != nil {
		e.stopPrefetch()
	}
	if e.spool != nil {
		e.spool.Close()
	}
}
