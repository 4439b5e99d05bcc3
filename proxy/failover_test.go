package proxy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/updraft-cdn/updraft/cache"
	"github.com/updraft-cdn/updraft/config"
)

func TestParseUpstreamList(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		err  string
	}{
		{in: "http://origin:8090", want: []string{"http://origin:8090"}},
		{in: "http://a:1/, https://b:2//", want: []string{"http://a:1", "https://b:2"}},
		{in: " http://a:1 ,,http://b:2,", want: []string{"http://a:1", "http://b:2"}},
		{in: "", err: "no URL"},
		{in: " , ", err: "no URL"},
		{in: "http://a:1,origin:8090", err: `"origin:8090"`},
		{in: "ftp://a", err: "absolute URL"},
		{in: "http://a:1,http://a:1/", err: "listed twice"},
	} {
		got, err := ParseUpstreamList(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: err %v, want one containing %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%q: %q %v, want %q", c.in, got, err, c.want)
		}
	}
}

// The selector's decisions, without a network: which upstreams a request
// tries, in which order, what it returns, and which one is current after.
func TestUpstreamsSelector(t *testing.T) {
	down := errors.New("connection refused")
	status502 := errors.New("HTTP 502")
	urls := []string{"http://a", "http://b", "http://c"}
	for _, c := range []struct {
		name      string
		urls      int
		cur       int
		answers   map[string]error // by URL; absent: success
		tries     string
		want      error // errors.Is; nil: success
		wantText  string
		cur2      int
		failovers uint64
	}{
		{name: "current answers", urls: 3, tries: "a", cur2: 0},
		{name: "current down, next answers", urls: 3, answers: map[string]error{"http://a": down}, tries: "a b", cur2: 1, failovers: 1},
		{name: "5xx fails over too", urls: 3, answers: map[string]error{"http://a": status502, "http://b": down}, tries: "a b c", cur2: 2, failovers: 1},
		{name: "from the middle, wrapping to the primary", urls: 3, cur: 1, answers: map[string]error{"http://b": down, "http://c": down}, tries: "b c a", cur2: 0, failovers: 1},
		{name: "sticks to a healthy secondary", urls: 3, cur: 1, tries: "b", cur2: 1},
		{name: "a blob's 404 is final", urls: 3, answers: map[string]error{"http://a": cache.ErrNotFound}, tries: "a", want: cache.ErrNotFound},
		{name: "404 from the next after a failure", urls: 3, answers: map[string]error{"http://a": down, "http://b": cache.ErrNotFound}, tries: "a b", want: cache.ErrNotFound, cur2: 1, failovers: 1},
		{name: "refused snapshot is final", urls: 3, answers: map[string]error{"http://a": &refusal{reason: "bad_signature", err: errors.New("x")}}, tries: "a", want: nil, wantText: "x"},
		{name: "corrupt segment is final", urls: 3, answers: map[string]error{"http://a": &PermanentError{errors.New("corrupt")}}, tries: "a", wantText: "corrupt"},
		{name: "channel refusal is final", urls: 3, answers: map[string]error{"http://a": &DeviceChannelRefusal{Code: "cannot_override", Message: "no"}}, tries: "a", wantText: "cannot_override: no"},
		{name: "channel rate limit is final", urls: 3, answers: map[string]error{"http://a": ErrDeviceChannelsBusy}, tries: "a", want: ErrDeviceChannelsBusy},
		{name: "all down: each tried once, current kept", urls: 3, cur: 1, answers: map[string]error{"http://a": down, "http://b": down, "http://c": status502}, tries: "b c a",
			want: down, wantText: "every upstream failed: connection refused; HTTP 502; connection refused", cur2: 1},
		{name: "one upstream: its error as is", urls: 1, answers: map[string]error{"http://a": down}, tries: "a", want: down, wantText: "connection refused"},
		{name: "a long-poll ended by a switch does not switch", urls: 3, answers: map[string]error{"http://a": down, "http://b": errSwitched}, tries: "a b", want: errSwitched},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := NewUpstreams("upstream", urls[:c.urls], "k", quiet)
			u.cur = c.cur
			var tries []string
			err := u.do(context.Background(), "", func(ctx context.Context, base string) error {
				tries = append(tries, strings.TrimPrefix(base, "http://"))
				return c.answers[base]
			})
			if got := strings.Join(tries, " "); got != c.tries {
				t.Errorf("tried %q, want %q", got, c.tries)
			}
			if c.want != nil && !errors.Is(err, c.want) || c.want == nil && c.wantText == "" && err != nil {
				t.Errorf("err %v, want %v", err, c.want)
			}
			if c.wantText != "" && (err == nil || err.Error() != c.wantText) {
				t.Errorf("err %q, want %q", err, c.wantText)
			}
			if u.cur != c.cur2 || u.failovers.Load() != c.failovers {
				t.Errorf("current %d, failovers %d; want %d, %d", u.cur, u.failovers.Load(), c.cur2, c.failovers)
			}
		})
	}
}

// The caller giving up is not the upstream failing: no other upstream is
// tried and nothing is counted.
func TestUpstreamsCallerCancel(t *testing.T) {
	u := NewUpstreams("upstream", []string{"http://a", "http://b"}, "k", quiet)
	ctx, cancel := context.WithCancel(context.Background())
	tries := 0
	err := u.do(ctx, "", func(ctx context.Context, base string) error {
		tries++
		cancel()
		return ctx.Err()
	})
	if tries != 1 || !errors.Is(err, context.Canceled) || u.cur != 0 || u.errs[0].Load() != 0 {
		t.Fatalf("tries %d, err %v, current %d, errors %d", tries, err, u.cur, u.errs[0].Load())
	}
}

// Concurrent requests that find the current upstream down switch once,
// with one log line.
func TestUpstreamsSwitchOnce(t *testing.T) {
	logs := &logBuffer{}
	u := NewUpstreams("upstream", []string{"http://a", "http://b"}, "k", slog.New(slog.NewTextHandler(logs, nil)))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			u.do(context.Background(), "", func(ctx context.Context, base string) error {
				if base == "http://a" {
					return errors.New("connection refused")
				}
				return nil
			})
		}()
	}
	close(start)
	wg.Wait()
	if u.Current() != "http://b" || u.failovers.Load() != 1 || len(logs.lines("failed over", "from=http://a", "to=http://b")) != 1 {
		t.Fatalf("current %s, failovers %d, log %q", u.Current(), u.failovers.Load(), logs.lines("upstream:"))
	}
}

// gathered returns the value of the metric name with all of labels, from
// reg (-1: absent).
func gathered(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

// (a) in proxy: the first upstream is a closed port; the edge follows the
// second without backing off first, logs the switch once and says which
// upstream is current.
func TestReplicaUpstreamDeadFirst(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	u := startUpstream(t)
	u.serve(signed(t, 1, priv), nil)
	logs := &logBuffer{}
	cfg := config.NewEdge(t.TempDir())
	cfg.MaxSnapshotAge = 20 * time.Second // 5 s long-polls: the test upstream wakes only at their end
	e := New(cfg, nil, slog.New(slog.NewTextHandler(logs, nil)))
	ups := NewUpstreams("upstream", []string{dead, u.srv.URL}, "edge-key", e.log)
	r := NewReplicaFrom(e, ups, pub)
	runReplica(t, r)
	waitFor(t, 15*time.Second, "rev 1 through the second upstream", func() bool { return e.Snapshot() != nil && e.Snapshot().Rev == 1 })
	waitFor(t, 15*time.Second, "the second upstream current", func() bool { return ups.Current() == u.srv.URL })
	if n := len(logs.lines("upstream: failed over", "from="+dead, "to="+u.srv.URL)); n != 1 {
		t.Fatalf("%d failover lines, want 1: %q", n, logs.lines("upstream:"))
	}
	reg := e.Registry()
	if gathered(t, reg, "updraft_edge_upstream_current", map[string]string{"role": "upstream", "upstream": u.srv.URL}) != 1 ||
		gathered(t, reg, "updraft_edge_upstream_current", map[string]string{"upstream": dead}) != 0 ||
		gathered(t, reg, "updraft_edge_upstream_failovers_total", nil) != 1 ||
		gathered(t, reg, "updraft_edge_upstream_errors_total", map[string]string{"upstream": dead}) != 1 {
		t.Fatal("upstream metrics do not say: current is the second, one failover, one error of the first")
	}
	// The failover was not a failure of the replica: it never left
	// "starting" for "upstream_error".
	if len(logs.lines("replica: upstream unavailable")) != 0 || len(logs.lines("replica: following upstream")) != 1 {
		t.Fatalf("replica lines: %q", logs.lines("replica:"))
	}
	u.serve(signed(t, 2, priv), nil)
	waitFor(t, 15*time.Second, "rev 2", func() bool { return e.Snapshot().Rev == 2 })
}

// Every upstream down: each round tries each once, then backs off as with
// one upstream (no hot loop), and the replica reports upstream_error.
func TestReplicaAllUpstreamsDownBacksOff(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	var polls [2]atomic.Int64
	var srvs [2]*httptest.Server
	for i := range srvs {
		srvs[i] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			polls[i].Add(1)
			http.Error(w, "down", http.StatusBadGateway)
		}))
		defer srvs[i].Close()
	}
	logs := &logBuffer{}
	e := New(config.NewEdge(t.TempDir()), nil, slog.New(slog.NewTextHandler(logs, nil)))
	r := NewReplicaFrom(e, NewUpstreams("upstream", []string{srvs[0].URL, srvs[1].URL}, "k", e.log), pub)
	start := time.Now()
	runReplica(t, r)
	// Backoff waits at least 50, 100, 200, 400, 800, 1600 ms after rounds
	// 1..6: at most 7 rounds fit in 3 s (no backoff: thousands).
	time.Sleep(3*time.Second - time.Since(start))
	for i := range polls {
		if n := polls[i].Load(); n > 10 || n < 2 {
			t.Fatalf("upstream %d polled %d times in 3s, want 2..10", i, n)
		}
	}
	code, m := readyz(t, e)
	if code != 503 || m["reason"] != stateUpstreamError || len(logs.lines("replica: upstream unavailable")) != 1 ||
		!strings.Contains(logs.lines("replica: upstream unavailable")[0], "every upstream failed") {
		t.Fatalf("readyz %d %v, logs %q", code, m, logs.lines("replica:"))
	}
	// Both answer errors: no switch (nothing answered).
	if r.ups.failovers.Load() != 0 || r.ups.Current() != srvs[0].URL {
		t.Fatalf("failovers %d, current %s", r.ups.failovers.Load(), r.ups.Current())
	}
}

// parentEdge is a real edge, served over HTTP/1.1 on a fixed loopback
// address, following a snapshot upstream; its listener and its replica can
// be stopped and started again (a killed and restarted parent edge).
type parentEdge struct {
	e       *Edge
	r       *Replica
	addr    string
	h       *HTTP1
	served  chan error
	stopRep func()
}

func startParentEdge(t *testing.T, upstreamURL string, pub ed25519.PublicKey) *parentEdge {
	t.Helper()
	cfg := config.NewEdge(t.TempDir())
	cfg.EdgeKey = "edge-key"
	// Long-polls of the test upstream (which wakes only at the end of the
	// wait) last 5 s instead of 30.
	cfg.MaxSnapshotAge = 20 * time.Second
	e := New(cfg, nil, quiet)
	t.Cleanup(e.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &parentEdge{e: e, r: NewReplica(e, upstreamURL, "edge-key", pub), addr: ln.Addr().String()}
	p.serve(t, ln)
	p.follow()
	t.Cleanup(func() { p.stop(); p.stopReplica() })
	return p
}

func (p *parentEdge) url() string { return "http://" + p.addr }

func (p *parentEdge) serve(t *testing.T, ln net.Listener) {
	t.Helper()
	if ln == nil {
		var err error
		deadline := time.Now().Add(10 * time.Second)
		for ln, err = net.Listen("tcp", p.addr); err != nil; ln, err = net.Listen("tcp", p.addr) {
			if time.Now().After(deadline) {
				t.Fatalf("listen again on %s: %v", p.addr, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	p.h = NewHTTP1(p.e)
	p.h.srv.Logger = discardLogger{}
	p.served = make(chan error, 1)
	go func() { p.served <- p.h.Serve(ln) }()
	waitFor(t, 10*time.Second, "parent edge serving", func() bool {
		resp, err := http.Get(p.url() + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
}

// stop shuts the listener (held long-polls end with 503 shutting_down).
func (p *parentEdge) stop() {
	if p.h == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.h.Shutdown(ctx)
	<-p.served
	p.h = nil
}

func (p *parentEdge) follow() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.r.Run(ctx) }()
	p.stopRep = func() { cancel(); <-done }
}

func (p *parentEdge) stopReplica() {
	if p.stopRep != nil {
		p.stopRep()
		p.stopRep = nil
	}
}

// (b) in proxy, through real parent edges: the edge follows the primary
// parent, fails over to the other when the primary is stopped and keeps
// converging through it; it does not return to a restarted primary that is
// behind (its probe answers an older revision), and returns once the
// primary has caught up.
func TestReplicaFailsOverBetweenParentEdges(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	u := startUpstream(t)
	u.serve(signed(t, 1, priv), nil)
	p1, p2 := startParentEdge(t, u.srv.URL, pub), startParentEdge(t, u.srv.URL, pub)
	for _, p := range []*parentEdge{p1, p2} {
		waitFor(t, 15*time.Second, "parents at rev 1", func() bool { return p.e.Snapshot() != nil && p.e.Snapshot().Rev == 1 })
	}

	logs := &logBuffer{}
	e := New(config.NewEdge(t.TempDir()), nil, slog.New(slog.NewTextHandler(logs, nil)))
	ups := NewUpstreams("upstream", []string{p1.url(), p2.url()}, "edge-key", e.log)
	ups.SetProbeInterval(200 * time.Millisecond)
	runReplica(t, NewReplicaFrom(e, ups, pub))
	waitFor(t, 15*time.Second, "rev 1", func() bool { return e.Snapshot() != nil && e.Snapshot().Rev == 1 })
	if ups.Current() != p1.url() {
		t.Fatalf("current %s, want the primary %s", ups.Current(), p1.url())
	}

	// The primary goes away (its listener and its replica): the edge
	// converges to new revisions through the other parent.
	p1.stop()
	p1.stopReplica()
	for rev := int64(2); rev <= 3; rev++ {
		u.serve(signed(t, rev, priv), nil)
		waitFor(t, 20*time.Second, fmt.Sprintf("rev %d through the second parent", rev), func() bool { return e.Snapshot().Rev == rev })
	}
	waitFor(t, 15*time.Second, "the second parent current", func() bool { return ups.Current() == p2.url() })
	if ups.failovers.Load() != 1 || len(logs.lines("upstream: failed over")) != 1 {
		t.Fatalf("current %s, failovers %d, log %q", ups.Current(), ups.failovers.Load(), logs.lines("upstream:"))
	}

	// The primary is back but behind (rev 1, its replica not running): the
	// probes fail and the edge stays on the second parent.
	p1.serve(t, nil)
	waitFor(t, 15*time.Second, "two failed probes of the primary", func() bool { return ups.probesBad.Load() >= 2 })
	if ups.Current() != p2.url() || ups.returns.Load() != 0 {
		t.Fatalf("returned to a primary that is behind: current %s", ups.Current())
	}

	// The primary catches up (with rev 4, which the edge gets through the
	// second parent meanwhile): the edge returns to it (one log line) and
	// follows through it.
	u.serve(signed(t, 4, priv), nil)
	waitFor(t, 20*time.Second, "rev 4 through the second parent", func() bool { return e.Snapshot().Rev == 4 })
	p1.follow()
	waitFor(t, 20*time.Second, "back on the primary", func() bool { return ups.Current() == p1.url() })
	if ups.returns.Load() != 1 || len(logs.lines("upstream: back to the primary upstream", "to="+p1.url())) != 1 {
		t.Fatalf("returns %d, log %q", ups.returns.Load(), logs.lines("upstream:"))
	}
	p2.stop() // the edge must now be long-polling the primary, not the second parent
	u.serve(signed(t, 5, priv), nil)
	waitFor(t, 20*time.Second, "rev 5 through the primary", func() bool { return e.Snapshot().Rev == 5 })
	if ups.failovers.Load() != 1 {
		t.Fatalf("failovers %d after the primary returned, want still 1", ups.failovers.Load())
	}
}
