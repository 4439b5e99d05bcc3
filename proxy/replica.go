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
	"time"

	"github.com/updraft-cdn/updraft/config"
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
	s, err := snapshot.Decode(wire, r.pub)
	if err != nil {
		reason := "malformed"
		switch {
		case errors.Is(err, snapshot.ErrBadSignature):
			reason = "bad_signature"
		case errors.Is(err, snapshot.ErrFormat):
			reason = "format"
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
	r.edge.metrics.snapshotDecode.Observe(time.Since(start).Seconds())
	r.edge.log.Info("replica: snapshot accepted", "rev", s.Rev, "bytes", len(wire), "decode", time.Since(start).Round(time.Microsecond))
	if persist {
		if err := writeFileSync(r.path, wire); err != nil {
			r.edge.log.Error("replica: persist snapshot", "err", err)
		}
	}
	return nil
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

// writeFileSync replaces path with data crash-safely: temp file, fsync,
// rename, fsync of the folder.
func writeFileSync(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".snapshot-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
