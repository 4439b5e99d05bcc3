package origin

// Blob garbage collection: deletes blobs that nothing references any more —
// no bundle row (zip, canonical archive), delta row, manifest row, and no
// override shard the origin holds (current, or retired and still within
// shardGrace, which shards.go deletes itself) — once their mtime is older
// than a grace period.
//
// Safety rests on mtimes and one lock:
//   - A blob's mtime is its last commit: the blob store (files: the mtime;
//     S3: Last-Modified, refreshed by a metadata self-copy) refreshes it
//     when content already stored is committed again (dedupe). Every new
//     reference to a blob (upload, delta build, shard) is written after
//     committing the blob, so a blob about to be referenced is young, and
//     the store's Delete re-checks the mtime under the lock its commits
//     take (within one process: with several origins on one bucket, one
//     collects at a time under a lease, and a re-upload racing that check
//     on another origin is the remaining window). An upload in
//     flight (blob committed, bundle row not yet written) therefore keeps
//     its blob as long as that gap is shorter than the grace period.
//   - Deleting a bundle touches its blobs (deleteBundles) under a read lock
//     that a collection holds for writing while it reads the references and
//     deletes: a collection sees either the bundle or its touched blobs. So
//     a deleted bundle's blobs stay for a grace period after the deletion,
//     for edges still following the snapshot before it.
//   - A download already under way keeps its open file (unlinking does not
//     truncate); on S3 it fails (the blob was unreferenced past its grace).
// Grace 0 (on demand only) gives up the first two: use it when nothing is
// being uploaded.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/updraft-cdn/updraft/origin/store"
)

type blobGC struct {
	s *Server
	// run admits one collection at a time (the periodic one, on-demand ones).
	run sync.Mutex
	// deletions: bundle deletions (with the touching of their blobs) hold
	// it for reading; a collection holds it for writing from reading the
	// references until its last deletion.
	deletions sync.RWMutex

	bundlesDeleted             *prometheus.CounterVec
	blobsDeleted, bytesDeleted prometheus.Counter
	runs                       *prometheus.CounterVec
}

func newBlobGC(s *Server) *blobGC {
	g := &blobGC{s: s}
	g.bundlesDeleted, g.blobsDeleted, g.bytesDeleted, g.runs = newLifecycleMetrics(s.metrics.reg)
	return g
}

// start runs a collection every cfg.GCInterval (none when it is 0), the
// first one interval after start-up: shards retired before a restart are
// not tracked any more, and an interval is well past their shardGrace.
func (g *blobGC) start(ctx context.Context) {
	interval := g.s.cfg.GCInterval
	if interval <= 0 {
		return
	}
	g.s.bgDone.Add(1)
	go func() {
		defer g.s.bgDone.Done()
		// One origin of several collects (cluster.go): they share the bucket.
		g.s.exclusive(ctx, "blob-gc", func(ctx context.Context) {
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				g.collect(ctx, g.s.cfg.GCGrace) // logs its outcome
			}
		})
	}()
}

// collect deletes the unreferenced blobs whose mtime is at least grace old.
func (g *blobGC) collect(ctx context.Context, grace time.Duration) (GCResult, error) {
	g.run.Lock()
	defer g.run.Unlock()
	start := time.Now()
	cutoff := start.Add(-grace)
	var res GCResult
	fail := func(err error) (GCResult, error) {
		g.runs.WithLabelValues("error").Inc()
		if ctx.Err() == nil {
			g.s.log.Error("origin: blob gc", "err", err, "deleted", res.Deleted, "bytes", res.Bytes)
		}
		if res.Deleted > 0 {
			g.s.log.Info("origin: blob gc stopped early", "deleted", res.Deleted, "bytes", res.Bytes)
		}
		return res, err
	}
	// 1. Candidates: blobs old enough. Blobs committed from now on are young.
	var old []string
	err := g.s.blobs.Walk(func(sha string, size int64, mtime time.Time) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if mtime.After(cutoff) {
			res.Kept++
		} else {
			old = append(old, sha)
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	// 2. References, read after the walk, with bundle deletions held off.
	g.deletions.Lock()
	defer g.deletions.Unlock()
	refs, err := g.s.store.ReferencedBlobs(ctx)
	if err != nil {
		return fail(err)
	}
	g.s.shards.referenced(refs)
	// 3. Delete the unreferenced candidates that are still old (a commit
	// since the walk refreshed the mtime of a blob referenced again).
	for _, sha := range old {
		if refs[sha] {
			res.Kept++
			continue
		}
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		size, deleted, err := g.s.blobs.Delete(sha, cutoff)
		if err != nil {
			return fail(err)
		}
		if !deleted {
			res.Kept++
			continue
		}
		res.Deleted++
		res.Bytes += size
		g.blobsDeleted.Inc()
		g.bytesDeleted.Add(float64(size))
		g.s.log.Debug("origin: blob gc deleted", "sha256", sha, "bytes", size)
	}
	g.runs.WithLabelValues("ok").Inc()
	level := g.s.log.Debug
	if res.Deleted > 0 {
		level = g.s.log.Info
	}
	level("origin: blob gc", "deleted", res.Deleted, "bytes", res.Bytes, "kept", res.Kept, "grace", grace,
		"took", time.Since(start).Round(time.Millisecond))
	return res, nil
}

// referenced adds every shard the origin may still serve to refs: the
// current shards and the retired ones within their grace period.
func (o *overrideShards) referenced(refs map[string]bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for h := range o.byHash {
		refs[h] = true
	}
	for _, as := range o.apps {
		for _, h := range as.hashes {
			if h != "" {
				refs[h] = true
			}
		}
	}
	for _, r := range o.retired {
		refs[r.hash] = true
	}
}

// postGC is POST /api/v1/gc[?grace=DURATION]: one collection now (after a
// running one), with the configured grace period unless one is given.
func (s *Server) postGC(w http.ResponseWriter, r *http.Request) error {
	grace := s.cfg.GCGrace
	if v := r.URL.Query().Get("grace"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return errf(http.StatusBadRequest, "invalid_grace", "grace %q: want a duration like 1h, 10m or 0s", v)
		}
		grace = d
	}
	res, err := s.gc.collect(r.Context(), grace)
	if err != nil {
		return fmt.Errorf("blob gc: %w", err)
	}
	if res.Deleted > 0 {
		// Blobs are files, not rows: the record follows their deletion (a
		// crash in between loses the record, never a deletion's cause).
		a := ActorFrom(r.Context())
		after, _ := json.Marshal(struct {
			Deleted int   `json:"deleted"`
			Bytes   int64 `json:"bytes"`
		}{res.Deleted, res.Bytes})
		if _, err := s.store.AppendAudit(context.WithoutCancel(r.Context()), store.AuditRecord{Actor: a.Key, Addr: a.Addr, Action: "gc.run", After: after}); err != nil {
			return fmt.Errorf("blob gc: audit record: %w", err)
		}
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
