package proxy

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// logBuffer is a goroutine-safe log sink whose lines tests count.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// lines returns the log lines containing every one of subs.
func (l *logBuffer) lines(subs ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.buf.String(), "\n") {
		ok := line != ""
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// upstream serves GET /v1/snapshot with whatever bytes (and heartbeat) the
// test gives it, as the origin or a parent edge would, and counts requests.
// It holds no Updraft logic: it serves bytes signed by the real encoder.
type upstream struct {
	srv   *httptest.Server
	polls atomic.Int64
	mu    sync.Mutex
	wire  []byte // served to polls with after < its revision; else 304
	hb    []byte // X-Updraft-Heartbeat, nil: none
}

// newer returns the wire to serve to a poll with this after, or nil.
func (u *upstream) newer(after string) []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	n, _ := strconv.ParseInt(after, 10, 64)
	// The revision is at bytes 12..20 of the wire header.
	if len(u.wire) >= 20 && int64(binary.BigEndian.Uint64(u.wire[12:])) > n {
		return u.wire
	}
	return nil
}

func startUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/snapshot" {
			http.NotFound(w, r)
			return
		}
		u.polls.Add(1)
		wire := u.newer(r.URL.Query().Get("after"))
		if wire == nil {
			// Nothing newer: hold the long-poll as the origin does.
			wait, _ := strconv.Atoi(r.URL.Query().Get("wait"))
			select {
			case <-time.After(time.Duration(wait) * time.Second):
			case <-r.Context().Done():
				return
			}
		}
		wire = u.newer(r.URL.Query().Get("after"))
		u.mu.Lock()
		hb := u.hb
		u.mu.Unlock()
		if hb != nil {
			w.Header().Set("X-Updraft-Heartbeat", base64.StdEncoding.EncodeToString(hb))
		}
		if wire == nil {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Write(wire)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) serve(wire, hb []byte) {
	u.mu.Lock()
	u.wire, u.hb = wire, hb
	u.mu.Unlock()
}

// replicaEdge is an edge (no cache, no listener) with a replica of u.
func replicaEdge(t *testing.T, u *upstream, mod func(*config.Edge), keys ...ed25519.PublicKey) (*Edge, *Replica, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	cfg := config.NewEdge(t.TempDir())
	if mod != nil {
		mod(&cfg)
	}
	e := New(cfg, nil, slog.New(slog.NewTextHandler(logs, nil)))
	return e, NewReplica(e, u.srv.URL, "edge-key", keys...), logs
}

func runReplica(t *testing.T, r *Replica) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// readyz reads the edge's /readyz answer.
func readyz(t *testing.T, e *Edge) (int, map[string]any) {
	t.Helper()
	var out reply
	e.readyz(&out)
	var m map[string]any
	if err := json.Unmarshal(out.body, &m); err != nil {
		t.Fatalf("readyz body %q: %v", out.body, err)
	}
	if more, ok := m["moreInfo"].(map[string]any); ok {
		for k, v := range more {
			m[k] = v
		}
	}
	return out.status, m
}

// Finding 2: an upstream serving a snapshot the edge refuses (signed with
// another key) is polled with backoff, not in a loop; the refusal is logged
// once, counted per attempt, and /readyz and the state metric say why the
// edge is not following. When the upstream is fixed the edge follows again
// (one more log line).
func TestReplicaBacksOffOnRefusals(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, wrong, _ := ed25519.GenerateKey(rand.Reader)
	u := startUpstream(t)
	u.serve(signed(t, 2, wrong), nil)
	e, r, logs := replicaEdge(t, u, nil, pub)
	if err := r.Accept(signed(t, 1, priv), false); err != nil {
		t.Fatal(err)
	}
	logged := len(logs.lines("replica:"))
	start := time.Now()
	runReplica(t, r)
	// Watch the first 3 s. Backoff waits at least 50, 100, 200, 400, 800,
	// 1600 ms after refusals 1..6: at most 7 polls fit in 3 s (no backoff:
	// thousands). 10 leaves room for a slow machine.
	window := 3 * time.Second
	time.Sleep(window - time.Since(start))
	polls := u.polls.Load()
	refused := testutil.ToFloat64(e.metrics.refusals.WithLabelValues("bad_signature"))
	if polls > 10 || polls < 2 {
		t.Fatalf("%d polls of a refused snapshot in %v, want 2..10 (capped exponential backoff)", polls, window)
	}
	if refused < float64(polls)-1 {
		t.Fatalf("refusals{bad_signature} = %v after %d polls: attempts must be counted", refused, polls)
	}
	if n := len(logs.lines("replica:")) - logged; n != 1 {
		t.Fatalf("%d replica log lines for one state change, want 1:\n%s", n, strings.Join(logs.lines("replica:"), "\n"))
	}
	if len(logs.lines("refusing", "reason=bad_signature")) != 1 {
		t.Fatalf("no refusing line: %q", logs.lines("replica:"))
	}
	code, m := readyz(t, e)
	if code != 200 || m["rev"] != 1.0 || m["following"] != false || m["reason"] != "bad_signature" || m["since"] == nil {
		t.Fatalf("readyz while refusing: %d %v", code, m)
	}
	if testutil.ToFloat64(e.follow.stateGauge.WithLabelValues(stateRefusing)) != 1 ||
		testutil.ToFloat64(e.follow.stateGauge.WithLabelValues(stateFollowing)) != 0 ||
		testutil.ToFloat64(e.follow.reasonGauge.WithLabelValues("bad_signature")) != 1 {
		t.Fatal("updraft_edge_replica_state / _reason do not say refusing(bad_signature)")
	}

	// The upstream serves a good snapshot again: followed at the next
	// attempt (backoff by then ≤ 3.2 s · 1.5).
	u.serve(signed(t, 2, priv), nil)
	waitFor(t, 15*time.Second, "rev 2", func() bool { return e.Snapshot().Rev == 2 })
	waitFor(t, 15*time.Second, "following", func() bool {
		_, m := readyz(t, e)
		return m["following"] == true
	})
	if code, m := readyz(t, e); code != 200 || m["rev"] != 2.0 || m["reason"] != nil {
		t.Fatalf("readyz after recovery: %d %v", code, m)
	}
	if len(logs.lines("following upstream again", "was=refusing")) != 1 || len(logs.lines("refusing upstream snapshots")) != 1 {
		t.Fatalf("state change lines: %q", logs.lines("replica:"))
	}
	if testutil.ToFloat64(e.follow.stateGauge.WithLabelValues(stateFollowing)) != 1 ||
		testutil.ToFloat64(e.follow.reasonGauge.WithLabelValues("bad_signature")) != 0 {
		t.Fatal("state metric not back to following")
	}
}

// Upstream errors back off the same way, and a fresh edge's /readyz keeps
// its 503 not_ready with the reason.
func TestReplicaBacksOffOnUpstreamErrors(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	var polls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		polls.Add(1)
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer srv.Close()
	e, r, logs := replicaEdge(t, &upstream{srv: srv}, nil, pub)
	start := time.Now()
	runReplica(t, r)
	time.Sleep(3*time.Second - time.Since(start))
	if n := polls.Load(); n > 10 || n < 2 {
		t.Fatalf("%d polls of a failing upstream in 3s, want 2..10", n)
	}
	if n := len(logs.lines("replica:")); n != 1 {
		t.Fatalf("%d replica log lines, want 1: %q", n, logs.lines("replica:"))
	}
	code, m := readyz(t, e)
	if code != 503 || m["error"] != "not_ready" || m["following"] != false || m["reason"] != stateUpstreamError {
		t.Fatalf("readyz of a fresh edge with its upstream down: %d %v", code, m)
	}
}

// Finding 7: an edge that persisted a newer snapshot refuses a replay of an
// older one, by revision and by issued time, also after a restart.
func TestReplicaRefusesReplayAfterRestart(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	now := time.Now()
	old4 := signedAt(t, 4, now.Add(-2*time.Hour), priv)
	// Signed before the origin was restored to an older revision: a higher
	// revision, an earlier issued time.
	preRestore9 := signedAt(t, 9, now.Add(-time.Hour), priv)
	e := New(config.NewEdge(dir), nil, quiet)
	if err := NewReplica(e, "http://127.0.0.1:1", "k", pub).Accept(signedAt(t, 5, now, priv), true); err != nil {
		t.Fatal(err)
	}
	e2 := New(config.NewEdge(dir), nil, quiet)
	r2 := NewReplica(e2, "http://127.0.0.1:1", "k", pub)
	if err := r2.LoadPersisted(); err != nil || e2.Snapshot().Rev != 5 {
		t.Fatalf("persisted: %v", err)
	}
	for name, wire := range map[string][]byte{"older rev": old4, "newer rev issued earlier": preRestore9} {
		if err := r2.Accept(wire, true); err == nil || e2.Snapshot().Rev != 5 {
			t.Fatalf("%s: replay accepted (%v)", name, err)
		}
	}
	if got := testutil.ToFloat64(e2.metrics.refusals.WithLabelValues("older_rev")); got != 2 {
		t.Fatalf("refusals{older_rev} = %v, want 2", got)
	}
	// The same revision re-issued later (a rotation, an origin restart)
	// replaces it.
	if err := r2.Accept(signedAt(t, 5, now.Add(time.Second), priv), true); err != nil {
		t.Fatalf("re-issue of the current revision: %v", err)
	}
}

// Finding 7: with --max-snapshot-age, a fresh edge refuses a replayed
// snapshot issued longer ago than that, unless a signed heartbeat from the
// origin vouches that it is still the current one.
func TestFreshEdgeRefusesOldSnapshot(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	u := startUpstream(t)
	issued := time.Now().Add(-2 * time.Hour)
	replayed := signedAt(t, 7, issued, priv)
	u.serve(replayed, nil)
	e, r, _ := replicaEdge(t, u, func(c *config.Edge) { c.MaxSnapshotAge = time.Minute }, pub)
	runReplica(t, r)
	waitFor(t, 5*time.Second, "a stale refusal", func() bool {
		return testutil.ToFloat64(e.metrics.refusals.WithLabelValues("stale")) >= 1
	})
	if e.Snapshot() != nil {
		t.Fatal("replayed old snapshot accepted")
	}
	code, m := readyz(t, e)
	if code != 503 || m["error"] != "not_ready" || m["reason"] != "stale" {
		t.Fatalf("readyz: %d %v", code, m)
	}
	// A heartbeat for another snapshot (an old revision, or the same
	// revision issued at another time) vouches for nothing.
	u.serve(replayed, snapshot.SignHeartbeat(7, issued.UnixMilli()+1, time.Now(), priv))
	before := testutil.ToFloat64(e.metrics.refusals.WithLabelValues("stale"))
	waitFor(t, 15*time.Second, "two more stale refusals", func() bool {
		return testutil.ToFloat64(e.metrics.refusals.WithLabelValues("stale")) > before+1
	})
	if e.Snapshot() != nil {
		t.Fatal("accepted with a heartbeat for another snapshot")
	}
	// The origin's current heartbeat for this very snapshot makes it fresh.
	u.serve(replayed, snapshot.SignHeartbeat(7, issued.UnixMilli(), time.Now(), priv))
	waitFor(t, 15*time.Second, "the vouched snapshot", func() bool { return e.Snapshot() != nil })
	if code, m := readyz(t, e); code != 200 || m["rev"] != 7.0 || m["age_seconds"].(float64) > 30 {
		t.Fatalf("readyz: %d %v", code, m)
	}
}

// Finding 7: heartbeats keep an unchanged snapshot fresh; without them the
// edge answers update checks and /readyz 503 snapshot_stale, and serves
// again as soon as a heartbeat comes back. Child edges get the heartbeat
// relayed.
func TestHeartbeatKeepsSnapshotFresh(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	u := startUpstream(t)
	issued := time.Now()
	wire := signedAt(t, 3, issued, priv)
	u.serve(wire, snapshot.SignHeartbeat(3, issued.UnixMilli(), time.Now(), priv))
	maxAge := 3 * time.Second // polls wait 1s: heartbeats are at most ~1s old
	e, r, _ := replicaEdge(t, u, func(c *config.Edge) { c.MaxSnapshotAge = maxAge; c.EdgeKey = "edge-key" }, pub)
	runReplica(t, r)
	waitFor(t, 5*time.Second, "rev 3", func() bool { return e.Snapshot() != nil })

	// The upstream answers 304 with a fresh heartbeat at every poll.
	var beating atomic.Bool
	beating.Store(true)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if beating.Load() {
				u.serve(nil, snapshot.SignHeartbeat(3, issued.UnixMilli(), time.Now(), priv))
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	waitFor(t, 10*time.Second, "twice the max age to pass", func() bool { return time.Since(issued) > 2*maxAge })
	if code, m := readyz(t, e); code != 200 || e.stale(time.Now()) {
		t.Fatalf("heartbeats did not keep the snapshot fresh: %d %v", code, m)
	}
	var out reply
	if e.refuseStale(&out) {
		t.Fatal("update check refused while fresh")
	}
	// Children get the heartbeat with the snapshot and with a 304.
	var child reply
	e.childSnapshot(context.Background(), "-1", "0", &child)
	if child.status != 200 || child.heartbeat == "" {
		t.Fatalf("child answer: %d heartbeat %q", child.status, child.heartbeat)
	}

	// The upstream stops vouching (an attacker replaying the last answer):
	// stale after the max age.
	beating.Store(false)
	u.serve(nil, nil)
	waitFor(t, 10*time.Second, "stale", func() bool { return e.stale(time.Now()) })
	out = reply{}
	if !e.refuseStale(&out) || out.status != 503 || !bytes.Contains(out.body, []byte(`"error":"snapshot_stale"`)) {
		t.Fatalf("stale update check: %d %s", out.status, out.body)
	}
	if code, m := readyz(t, e); code != 503 || m["error"] != codeStale || m["rev"] != 3.0 {
		t.Fatalf("readyz while stale: %d %v", code, m)
	}
	// Heartbeats again: fresh again, without a new snapshot.
	beating.Store(true)
	waitFor(t, 10*time.Second, "fresh again", func() bool { return !e.stale(time.Now()) })
	if code, _ := readyz(t, e); code != 200 {
		t.Fatalf("readyz after heartbeats resumed: %d", code)
	}
}

// Keys in rotation: snapshots and heartbeats signed by any trusted key are
// accepted, and the persisted heartbeat is reloaded at restart.
func TestReplicaTrustsKeyList(t *testing.T) {
	oldPub, oldPriv, _ := ed25519.GenerateKey(rand.Reader)
	newPub, newPriv, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	e := New(config.NewEdge(dir), nil, quiet)
	r := NewReplica(e, "http://127.0.0.1:1", "k", oldPub, newPub)
	if err := r.Accept(signed(t, 1, oldPriv), true); err != nil {
		t.Fatal(err)
	}
	issued := time.Now()
	hb, err := r.verifyHeartbeat(base64.StdEncoding.EncodeToString(snapshot.SignHeartbeat(2, issued.UnixMilli(), issued.Add(time.Minute), newPriv)))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.accept(signedAt(t, 2, issued, newPriv), hb, true); err != nil {
		t.Fatal(err)
	}
	if got := e.follow.fresh.Load(); got != issued.Add(time.Minute).UnixMilli() {
		t.Fatalf("fresh %d, want the heartbeat's time", got)
	}
	e2 := New(config.NewEdge(dir), nil, quiet)
	if err := NewReplica(e2, "http://127.0.0.1:1", "k", newPub).LoadPersisted(); err != nil || e2.Snapshot().Rev != 2 {
		t.Fatalf("reload: %v", err)
	}
	if got := e2.follow.fresh.Load(); got != issued.Add(time.Minute).UnixMilli() {
		t.Fatalf("persisted heartbeat not reloaded: fresh %d", got)
	}
	// Only the old key trusted: the new key's snapshots are refused.
	e3 := New(config.NewEdge(t.TempDir()), nil, quiet)
	if err := NewReplica(e3, "http://127.0.0.1:1", "k", oldPub).Accept(signed(t, 3, newPriv), true); err == nil {
		t.Fatal("snapshot signed by an untrusted key accepted")
	}
}

// The freshness check on the update path allocates nothing, on or off.
func TestRefuseStaleAllocs(t *testing.T) {
	for _, maxAge := range []time.Duration{0, time.Hour} {
		cfg := config.NewEdge(t.TempDir())
		cfg.MaxSnapshotAge = maxAge
		e := New(cfg, nil, quiet)
		e.SetSnapshot(&snapshot.Snapshot{Rev: 1, Issued: time.Now().UnixMilli()})
		var out reply
		if n := testing.AllocsPerRun(100, func() {
			if e.refuseStale(&out) {
				t.Fatal("fresh snapshot refused")
			}
		}); n != 0 {
			t.Fatalf("max age %v: %v allocs per check", maxAge, n)
		}
	}
}

// During an edge key rotation a parent edge accepts its children's
// previous key too (--previous-edge-key-file), and nothing else.
func TestChildPreviousEdgeKey(t *testing.T) {
	te := startEdge(t, func(c *config.Edge) { c.EdgeKey, c.PreviousEdgeKey = "new-edge-key", "old-edge-key" })
	te.edge.SetSnapshot(testSnapshot(t, 1, fakeSHA("x")))
	for key, want := range map[string]int{"new-edge-key": 304, "old-edge-key": 304, "other-key": 401, "": 401} {
		if a := te.do(t, "GET", "/v1/snapshot?after=5&wait=0", nil, "Authorization", "Bearer "+key); a.status != want {
			t.Errorf("child key %q: HTTP %d, want %d", key, a.status, want)
		}
	}
}

// An upstream that announces a re-issue of the edge's revision (a genuine
// heartbeat, replayed) but serves the old snapshot is fetched with backoff
// too, and the edge stays refusing rather than flapping.
func TestReplicaReissueLoopBacksOff(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	issued := time.Now()
	wire := signedAt(t, 3, issued, priv)
	u := startUpstream(t)
	u.serve(wire, snapshot.SignHeartbeat(3, issued.UnixMilli()+1000, time.Now(), priv))
	e, r, logs := replicaEdge(t, u, nil, pub)
	if err := r.Accept(wire, false); err != nil {
		t.Fatal(err)
	}
	logged := len(logs.lines("replica:"))
	start := time.Now()
	runReplica(t, r)
	time.Sleep(3*time.Second - time.Since(start))
	// Two polls (304 with the announcement, then the refetch) per backoff
	// step: at most 2·7 in 3 s.
	if n := u.polls.Load(); n > 16 {
		t.Fatalf("%d polls in 3s, want ≤ 16", n)
	}
	if n := len(logs.lines("replica:")) - logged; n > 2 {
		t.Fatalf("%d replica log lines: %q", n, logs.lines("replica:"))
	}
	if _, m := readyz(t, e); m["following"] != false || m["reason"] != "older_rev" {
		t.Fatalf("readyz: %v", m)
	}
}
