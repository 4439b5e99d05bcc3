package proxy

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
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

	"github.com/updraft-cdn/updraft/origin/blob"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// Replica keeps an edge's snapshot in step with its upstream (the origin or a
// parent edge): it long-polls GET /v1/snapshot, verifies each snapshot's
// signature with the origin's public keys, accepts only newer snapshots
// (revision and issued time), swaps them in, and persists the last good one
// (and the latest heartbeat vouching for it) so that the edge starts and
// serves while the upstream is down.
//
// Every refusal and every error is followed by a capped exponential backoff
// with jitter, so a snapshot the edge cannot accept (wrong key, tampering,
// an unfetchable shard) is fetched a few times a minute, not in a loop. Only
// changes of state (following, refusing with a reason, upstream error) are
// logged; /readyz and updraft_edge_replica_state say why the edge is not
// following.
//
// With several upstreams (Upstreams) a poll that fails with an upstream
// error (connection, timeout, 5xx) is tried at once on the next upstreams,
// each once and without waiting (wait=0), and the first that answers
// becomes current; the backoff applies only when every upstream failed, or
// to a refusal (which stays on the upstream that sent the snapshot). A
// long-poll on an upstream that stops being current (another request
// failed over, or the primary is back) ends at once and the next poll goes
// to the new one.
type Replica struct {
	edge   *Edge
	ups    *Upstreams
	key    string
	keys   []ed25519.PublicKey // trusted signing keys (several during a rotation)
	path   string
	hbPath string
	client *http.Client
	wait   time.Duration // long-poll wait asked of the upstream

	// refetch (Run only): the upstream vouches for a later issue of the
	// current revision; the next poll asks for it (after = rev-1).
	refetch bool

	// shards are the decoded override shards of the current snapshot, kept
	// so that the next snapshot fetches and decodes only the changed ones.
	shardsMu sync.Mutex
	shards   snapshot.MapShards
}

// Backoff bounds between failed polls or refused snapshots: the n-th
// consecutive failure waits a random time in [b/2, 3b/2) with b =
// minBackoff·2ⁿ⁻¹, capped at maxBackoff.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
	pollWait   = 30 * time.Second
)

// NewReplica returns a replica feeding e from upstream, trusting snapshots
// signed by any of keys. The snapshot is persisted in e's data folder.
func NewReplica(e *Edge, upstream, key string, keys ...ed25519.PublicKey) *Replica {
	return NewReplicaFrom(e, NewUpstreams("upstream", []string{upstream}, key, e.log), keys...)
}

// NewReplicaFrom returns a replica feeding e from the upstream list ups
// (failing over between them), with ups's edge key, trusting snapshots
// signed by any of keys. It adds ups's metrics to e (AddUpstreams).
func NewReplicaFrom(e *Edge, ups *Upstreams, keys ...ed25519.PublicKey) *Replica {
	wait := pollWait
	if maxAge := e.cfg.MaxSnapshotAge; maxAge > 0 {
		// Heartbeats come with every answer: poll often enough that the
		// freshness never lapses while the upstream is fine, also through a
		// parent edge (which relays its own latest heartbeat).
		wait = min(pollWait, max(time.Second, (maxAge/4).Truncate(time.Second)))
	}
	e.follow.mu.Lock()
	e.follow.hasReplica, e.follow.state, e.follow.since = true, stateStarting, time.Now()
	e.follow.mu.Unlock()
	e.registerFollowMetrics()
	e.AddUpstreams(ups)
	e.SetPreviewKeys(keys...) // preview tokens are signed with the snapshot signing key
	return &Replica{
		edge: e, ups: ups, key: ups.key, keys: keys,
		path:   filepath.Join(e.cfg.DataDir, "snapshot.bin"),
		hbPath: filepath.Join(e.cfg.DataDir, "snapshot.heartbeat"),
		client: &http.Client{Timeout: wait + 15*time.Second, Transport: upstreamTransport()},
		wait:   wait,
	}
}

// LoadPersisted loads the last good snapshot from disk, if there is one, and
// the heartbeat persisted with it. It is loaded whatever its age (it is the
// edge's own state, not a replay): past --max-snapshot-age the edge says it
// is stale until the upstream vouches for it or sends a newer one.
func (r *Replica) LoadPersisted() error {
	b, err := os.ReadFile(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("replica: read %s: %w", r.path, err)
	}
	if err := r.accept(b, nil, false); err != nil {
		return fmt.Errorf("replica: persisted snapshot %s: %w", r.path, err)
	}
	if hb, err := os.ReadFile(r.hbPath); err == nil {
		if h, err := r.verifyHeartbeat(base64.StdEncoding.EncodeToString(hb)); err == nil {
			r.edge.follow.vouch(r.edge.Snapshot(), h.hb, h.b64)
		}
	}
	r.edge.log.Info("replica: serving persisted snapshot", "rev", r.edge.Snapshot().Rev, "path", r.path)
	return nil
}

// refusal is a snapshot or heartbeat the replica did not accept, with the
// reason it is counted and reported under.
type refusal struct {
	reason string
	err    error
}

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// errOlderRev refuses a snapshot that does not move the revision forward.
var errOlderRev = errors.New("snapshot: revision not newer than the current one")

// errStale refuses a snapshot older than --max-snapshot-age.
var errStale = errors.New("snapshot: older than --max-snapshot-age")

// Accept verifies a signed snapshot and swaps it in when it is newer;
// refusals are counted by reason and the current snapshot stays. persist:
// the snapshot came from the upstream (it is persisted, and held to
// --max-snapshot-age).
func (r *Replica) Accept(wire []byte, persist bool) error { return r.accept(wire, nil, persist) }

// refuse counts a refusal and returns it.
func (r *Replica) refuse(reason string, err error) error {
	r.edge.metrics.refusals.WithLabelValues(reason).Inc()
	return &refusal{reason: reason, err: err}
}

func (r *Replica) accept(wire []byte, hb *signedHeartbeat, fromUpstream bool) error {
	start := time.Now()
	r.shardsMu.Lock()
	defer r.shardsMu.Unlock()
	s, err := snapshot.DecodeDocument(wire, r.keys...)
	if err != nil {
		reason := "malformed"
		switch {
		case errors.Is(err, snapshot.ErrBadSignature):
			reason = "bad_signature"
		case errors.Is(err, snapshot.ErrFormat):
			reason = "format"
		}
		return r.refuse(reason, err)
	}
	if cur := r.edge.Snapshot(); cur != nil && !newerSnapshot(s, cur) {
		return r.refuse("older_rev", fmt.Errorf("%w: got rev %d issued %s, have rev %d issued %s",
			errOlderRev, s.Rev, issuedText(s.Issued), cur.Rev, issuedText(cur.Issued)))
	}
	fresh := s.Issued
	if hb != nil && hb.hb.Vouches(s) {
		fresh = max(fresh, hb.hb.At)
	}
	if maxAge := r.edge.cfg.MaxSnapshotAge; fromUpstream && maxAge > 0 && (fresh == 0 || time.Since(time.UnixMilli(fresh)) > maxAge) {
		return r.refuse("stale", fmt.Errorf("%w: rev %d, newest signed time %s", errStale, s.Rev, issuedText(fresh)))
	}
	loader := &shardLoader{r: r, next: snapshot.MapShards{}}
	loader.prefetch(s)
	if err := s.Index(loader); err != nil {
		reason := "malformed"
		if loader.err != nil {
			reason = "shard_unavailable"
		}
		return r.refuse(reason, fmt.Errorf("snapshot rev %d: %w", s.Rev, err))
	}
	if hb != nil {
		r.edge.follow.pending.Store(hb)
	}
	swapped := r.edge.setSnapshot(s, wire)
	r.edge.follow.pending.Store(nil)
	if !swapped {
		cur := r.edge.Snapshot()
		return r.refuse("older_rev", fmt.Errorf("%w: got %d, have %d", errOlderRev, s.Rev, cur.Rev))
	}
	r.shards = loader.next
	r.edge.metrics.snapshotDecode.Observe(time.Since(start).Seconds())
	r.edge.log.Info("replica: snapshot accepted", "rev", s.Rev, "issued", issuedText(s.Issued), "bytes", len(wire), "new_shards", loader.fetched,
		"decode", time.Since(start).Round(time.Microsecond))
	if hb != nil {
		r.edge.follow.vouch(s, hb.hb, hb.b64)
	}
	if fromUpstream {
		if err := blob.WriteFileAtomic(r.path, wire, 0o644); err != nil {
			r.edge.log.Error("replica: persist snapshot", "err", err)
		}
		if hb != nil && hb.hb.Vouches(s) {
			r.persistHeartbeat(hb)
		}
	}
	return nil
}

func issuedText(ms int64) string {
	if ms == 0 {
		return "unknown"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}

// signedHeartbeat is a verified heartbeat and its base64 form (relayed).
type signedHeartbeat struct {
	hb  snapshot.Heartbeat
	raw []byte
	b64 string
}

// verifyHeartbeat checks an X-Updraft-Heartbeat value.
func (r *Replica) verifyHeartbeat(b64 string) (*signedHeartbeat, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, r.refuse("malformed", fmt.Errorf("heartbeat: %w", err))
	}
	hb, err := snapshot.VerifyHeartbeat(raw, r.keys...)
	if err != nil {
		reason := "malformed"
		if errors.Is(err, snapshot.ErrBadSignature) {
			reason = "bad_signature"
		}
		return nil, r.refuse(reason, fmt.Errorf("heartbeat: %w", err))
	}
	return &signedHeartbeat{hb: hb, raw: raw, b64: b64}, nil
}

// heartbeat applies a heartbeat that came without a snapshot.
func (r *Replica) heartbeat(h *signedHeartbeat) {
	cur := r.edge.Snapshot()
	switch {
	case cur == nil:
	case h.hb.Vouches(cur):
		if r.edge.follow.vouch(cur, h.hb, h.b64) {
			r.persistHeartbeat(h)
		}
	case h.hb.Rev == cur.Rev && h.hb.SnapIssued > cur.Issued:
		// The upstream re-issued this revision (signing key rotation,
		// origin restart or upgrade): fetch the re-issue.
		r.refetch = true
	}
}

func (r *Replica) persistHeartbeat(h *signedHeartbeat) {
	if err := blob.WriteFileAtomic(r.hbPath, h.raw, 0o644); err != nil {
		r.edge.log.Error("replica: persist heartbeat", "err", err)
	}
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
	var b backoff
	for ctx.Err() == nil {
		err := r.pollRound(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errSwitched) {
			// The current upstream changed during a long-poll: poll the new
			// one now (a switch follows a failure or a probe, never a loop).
			continue
		}
		if err == nil && r.refetch {
			// Only a heartbeat announcing a re-issue of our revision: fetch
			// it now, without counting this as recovered (an upstream that
			// announces a re-issue it does not serve stays backed off).
			continue
		}
		if err == nil {
			b.reset()
			r.edge.setReplicaState(stateFollowing, "", nil)
			continue
		}
		var ref *refusal
		if errors.As(err, &ref) {
			r.edge.setReplicaState(stateRefusing, ref.reason, err)
		} else {
			r.edge.setReplicaState(stateUpstreamError, stateUpstreamError, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(b.next()):
		}
	}
}

// pollRound polls the current upstream and, on an upstream error, the
// next ones (Upstreams.do); every failed poll is counted.
func (r *Replica) pollRound(ctx context.Context) error {
	return r.ups.do(ctx, "", func(ctx context.Context, base string) error {
		pctx, stop := r.ups.cancelOnSwitch(ctx)
		defer stop()
		err := r.pollOnce(pctx, base)
		if err == nil || finalAnswer(err) {
			return err
		}
		if ctx.Err() == nil && errors.Is(context.Cause(pctx), errSwitched) {
			return errSwitched
		}
		r.edge.metrics.pollErrors.Inc()
		return err
	})
}

// pollOnce asks base for a newer snapshot and applies the answer. While
// not following, or when trying another upstream than the current one
// (failing over), it asks without waiting, so that a recovery is noticed
// (and reported) at once.
func (r *Replica) pollOnce(ctx context.Context, base string) error {
	var after int64 = -1
	refetch := r.refetch
	if s := r.edge.Snapshot(); s != nil {
		after = s.Rev
		if refetch {
			after = s.Rev - 1
		}
	}
	r.refetch = false
	wait := r.wait
	if _, state, _, _ := r.edge.replicaStatus(); state != stateFollowing || base != r.ups.Current() {
		wait = 0
	}
	wire, hbText, err := r.poll(ctx, base, after, wait)
	if err != nil {
		r.refetch = refetch // not asked yet: ask the next upstream
		return err
	}
	var hb *signedHeartbeat
	if hbText != "" {
		if hb, err = r.verifyHeartbeat(hbText); err != nil {
			return err
		}
	}
	if wire != nil {
		return r.accept(wire, hb, true)
	}
	if hb != nil {
		r.heartbeat(hb)
	}
	return nil
}

// backoff is a capped exponential backoff with jitter.
type backoff struct{ cur time.Duration }

func (b *backoff) reset() { b.cur = 0 }

// next returns the wait before the next attempt: random in [cur/2, 3cur/2),
// then doubles cur up to maxBackoff.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = minBackoff
	}
	d := b.cur/2 + rand.N(b.cur)
	b.cur = min(2*b.cur, maxBackoff)
	return d
}

// poll asks for a snapshot newer than after; nil bytes mean none came. The
// upstream's heartbeat header, if any, is returned as is.
func (r *Replica) poll(ctx context.Context, base string, after int64, wait time.Duration) ([]byte, string, error) {
	url := base + "/v1/snapshot?after=" + strconv.FormatInt(after, 10) + "&wait=" + strconv.Itoa(int(wait/time.Second))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Authorization", "Bearer "+r.key)
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	hb := resp.Header.Get("X-Updraft-Heartbeat")
	switch resp.StatusCode {
	case http.StatusOK:
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
		if err != nil {
			return nil, "", err
		}
		return b, hb, nil
	case http.StatusNotModified:
		return nil, hb, nil
	default:
		return nil, "", fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
}
