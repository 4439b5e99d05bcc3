package proxy

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/blob"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// Replica keeps an edge's snapshot in step with its upstream (the origin or a
// parent edge): it long-polls GET /v1/snapshot, verifies each snapshot's
// signature with the origin's public key, accepts only newer revisions, swaps
// them in, and persists the last good one so that the edge starts and serves
// while the upstream is down.
type Replica struct {
	edge     *Edge
	upstream string
	key      string
	pub      ed25519.PublicKey
	path     string
	client   *http.Client

	// shards are the decoded override shards of the current snapshot, kept
	// so that the next snapshot fetches and decodes only the changed ones.
	shardsMu sync.Mutex
	shards   snapshot.MapShards
}

// Backoff bounds between failed polls (with full jitter).
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
	pollWait   = 30 * time.Second
)

// NewReplica returns a replica feeding e from upstream. The snapshot is
// persisted in e's data folder.
func NewReplica(e *Edge, upstream, key string, pub ed25519.PublicKey) *Replica {
	return &Replica{
		edge: e, upstream: config.TrimURL(upstream), key: key, pub: pub,
		path:   filepath.Join(e.cfg.DataDir, "snapshot.bin"),
		client: &http.Client{Timeout: pollWait + 15*time.Second},
	}
}

// LoadPersisted loads the last good snapshot from disk, if there is one.
func (r *Replica) LoadPersisted() error {
	b, err := os.ReadFile(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("replica: read %s: %w", r.path, err)
	}
	if err := r.Accept(b, false); err != nil {
		return fmt.Errorf("replica: persisted snapshot %s: %w", r.path, err)
	}
	r.edge.log.Info("replica: serving persisted snapshot", "rev", r.edge.Snapshot().Rev, "path", r.path)
	return nil
}

// errOlderRev refuses a snapshot that does not move the revision forward.
var errOlderRev = errors.New("snapshot: revision not newer than the current one")

// Accept verifies a signed snapshot and swaps it in when it is newer;
// refusals are counted by reason and the current snapshot stays.
func (r *Replica) Accept(wire []byte, persist bool) error {
	start := time.Now()
	r.shardsMu.Lock()
	defer r.shardsMu.Unlock()
	loader := &shardLoader{r: r, next: snapshot.MapShards{}}
	s, err := snapshot.DecodeDocument(wire, r.pub)
	if err == nil {
		loader.prefetch(s)
		if err = s.Index(loader); err != nil {
			err = fmt.Errorf("snapshot rev %d: %w", s.Rev, err)
		}
	}
	if err != nil {
		reason := "malformed"
		switch {
		case errors.Is(err, snapshot.ErrBadSignature):
			reason = "bad_signature"
		case errors.Is(err, snapshot.ErrFormat):
			reason = "format"
		case loader.err != nil:
			reason = "shard_unavailable"
		}
		r.edge.metrics.refusals.WithLabelValues(reason).Inc()
		r.edge.log.Error("replica: snapshot refused", "reason", reason, "err", err)
		return err
	}
	if !r.edge.setSnapshot(s, wire) {
		r.edge.metrics.refusals.WithLabelValues("older_rev").Inc()
		cur := r.edge.Snapshot()
		r.edge.log.Warn("replica: snapshot refused", "reason", "older_rev", "rev", s.Rev, "current", cur.Rev)
		return fmt.Errorf("%w: got %d, have %d", errOlderRev, s.Rev, cur.Rev)
	}
	r.shards = loader.next
	r.edge.metrics.snapshotDecode.Observe(time.Since(start).Seconds())
	r.edge.log.Info("replica: snapshot accepted", "rev", s.Rev, "bytes", len(wire), "new_shards", loader.fetched,
		"decode", time.Since(start).Round(time.Microsecond))
	if persist {
		if err := blob.WriteFileAtomic(r.path, wire, 0o644); err != nil {
			r.edge.log.Error("replica: persist snapshot", "err", err)
		}
	}
	return nil
}

// maxShardBytes bounds one override shard (a million overrides per shard
// would be 18 MB).
const maxShardBytes = 64 << 20

// shardLoader gives Decode the override shards a snapshot lists: the ones
// the previous snapshot had, else from the blob cache (filled from upstream
// and verified against the hash the signed snapshot lists).
type shardLoader struct {
	r       *Replica
	next    snapshot.MapShards
	fetched int
	err     error
}

// shardFetchers bounds concurrent shard fetches for one snapshot.
const shardFetchers = 8

// prefetch loads, concurrently, the shards the snapshot lists that the
// previous snapshot did not have; failures are left for OverrideShard to
// report.
func (l *shardLoader) prefetch(s *snapshot.Snapshot) {
	var missing []string
	for _, a := range s.Apps {
		for _, h := range a.OverrideShards {
			if h != "" && l.r.shards[h] == nil {
				missing = append(missing, h)
			}
		}
	}
	if len(missing) == 0 || l.r.edge.cache == nil {
		return
	}
	var mu sync.Mutex
	work := make(chan string)
	var wg sync.WaitGroup
	for i := 0; i < min(shardFetchers, len(missing)); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for h := range work {
				if sh, err := l.fetch(h); err == nil {
					mu.Lock()
					l.next[h] = sh
					l.fetched++
					mu.Unlock()
				}
			}
		}()
	}
	for _, h := range missing {
		work <- h
	}
	close(work)
	wg.Wait()
}

func (l *shardLoader) OverrideShard(sha string) (*snapshot.OverrideShard, error) {
	if sh := l.next[sha]; sh != nil {
		return sh, nil
	}
	if sh := l.r.shards[sha]; sh != nil {
		l.next[sha] = sh
		return sh, nil
	}
	sh, err := l.fetch(sha)
	if err != nil {
		l.err = err
		return nil, err
	}
	l.next[sha] = sh
	l.fetched++
	return sh, nil
}

// fetch reads and decodes one shard from the blob cache.
func (l *shardLoader) fetch(sha string) (*snapshot.OverrideShard, error) {
	if l.r.edge.cache == nil {
		return nil, errors.New("no blob cache to fetch override shards from")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := l.r.edge.cache.Get(ctx, sha)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	if b.Size > maxShardBytes {
		return nil, fmt.Errorf("override shard %s: %d bytes", sha, b.Size)
	}
	raw := b.Data
	if raw == nil {
		if raw, err = io.ReadAll(b.File); err != nil {
			return nil, err
		}
	}
	return snapshot.DecodeOverrideShard(raw)
}

// Run polls until ctx ends.
func (r *Replica) Run(ctx context.Context) {
	backoff := minBackoff
	for ctx.Err() == nil {
		var after int64 = -1
		if s := r.edge.Snapshot(); s != nil {
			after = s.Rev
		}
		wire, err := r.poll(ctx, after)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.edge.metrics.pollErrors.Inc()
			r.edge.log.Warn("replica: poll failed", "upstream", r.upstream, "err", err, "retry_in", backoff)
			sleep := time.Duration(rand.Int64N(int64(backoff))) + backoff/2
			select {
			case <-ctx.Done():
				return
			case <-time.After(sleep):
			}
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		backoff = minBackoff
		if wire != nil {
			r.Accept(wire, true)
		}
	}
}

// poll asks for a snapshot newer than after; nil bytes mean none came.
func (r *Replica) poll(ctx context.Context, after int64) ([]byte, error) {
	url := r.upstream + "/v1/snapshot?after=" + strconv.FormatInt(after, 10) + "&wait=" + strconv.Itoa(int(pollWait/time.Second))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+r.key)
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
		if err != nil {
			return nil, err
		}
		return b, nil
	case http.StatusNotModified:
		return nil, nil
	default:
		return nil, fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
}
