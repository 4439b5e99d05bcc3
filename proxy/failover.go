package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/updraft-cdn/updraft/cache"
	"github.com/updraft-cdn/updraft/config"
)

// Upstreams is the ordered list of upstreams an edge follows snapshots
// from, fills blobs from and delivers device events and legacy channel
// changes to (origins, behind a load balancer or listed one by one, or
// parent edges), and the one currently in use. All of them must lead to the
// same origin state (one store and bucket, one signing key): whichever
// answers, a snapshot is verified exactly as from a single upstream and a
// segment is deduplicated by the origin on (edge id, seq, SHA-256).
//
// Failover. Each request goes to the current upstream. On a connection
// error, a timeout, a 5xx or any other answer outside the protocol (a 401
// from a parent edge holding another key, say), the same request (same
// edge id and sequence number for an event segment) is tried on the next
// upstreams in list order, each once; the first that answers becomes the
// current one for every later request (one log line per switch,
// updraft_edge_upstream_failovers_total). When every upstream fails, the
// request fails as it does with one upstream, and its caller backs off as
// before (the replica, the spool). Answers that are the protocol's own are
// final and not retried elsewhere: a blob's 404 (origins share one bucket,
// and a parent edge answers 404 only when its own upstream did), a refused
// snapshot (backed off on the same upstream), a corrupt segment, a channel
// refusal or rate limit.
//
// Stickiness. The edge stays on an upstream while it answers. While the
// current one is not the first (the primary), the primary is probed at
// most every probe interval (30 s by default) and the edge returns to it
// once it answers GET /v1/snapshot?after=REV&wait=0 with 200, or with 304
// at a revision no older than the edge's (a parent edge that is up but has
// no snapshot, or an older one, does not pass).
type Upstreams struct {
	role string // metrics label and log attribute: "upstream" or "stats"
	urls []string
	key  string
	log  *slog.Logger

	probeClient *http.Client

	mu         sync.Mutex
	cur        int
	changed    chan struct{} // closed and replaced at every switch
	lastProbe  time.Time
	probing    bool
	probeEvery time.Duration
	rev        func() int64 // the edge's revision (probes); nil: -1
	registered bool

	failovers atomic.Uint64
	returns   atomic.Uint64
	probesOK  atomic.Uint64
	probesBad atomic.Uint64
	errs      []atomic.Uint64 // failed requests, per upstream
}

const (
	// DefaultProbeInterval is how often an edge that failed over probes its
	// primary upstream.
	DefaultProbeInterval = 30 * time.Second
	probeTimeout         = 10 * time.Second
	// dialTimeout bounds a connection attempt to an upstream, so that a
	// black-holed address fails over in seconds (not the kernel's minutes).
	dialTimeout = 5 * time.Second
)

// upstreamDialer dials upstreams with dialTimeout.
var upstreamDialer = &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}

// upstreamTransport is the transport of an upstream client that has no
// particular needs.
func upstreamTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = upstreamDialer.DialContext
	return t
}

// ParseUpstreamList reads --upstream or --stats-url: one absolute http(s)
// URL or several separated by commas, in order of preference. Trailing
// slashes are dropped; duplicates are refused.
func ParseUpstreamList(list string) ([]string, error) {
	var urls []string
	seen := map[string]bool{}
	for _, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%q: want an absolute URL like http://origin:8090 (several separated by commas)", raw)
		}
		s := config.TrimURL(raw)
		if seen[s] {
			return nil, fmt.Errorf("%q is listed twice", raw)
		}
		seen[s] = true
		urls = append(urls, s)
	}
	if len(urls) == 0 {
		return nil, errors.New("no URL given")
	}
	return urls, nil
}

// NewUpstreams returns the list urls (in order of preference, at least
// one), authenticated with the edge key. role names it in metrics and logs
// ("upstream"; "stats" for a separate --stats-url list).
func NewUpstreams(role string, urls []string, key string, log *slog.Logger) *Upstreams {
	if len(urls) == 0 {
		panic("proxy: NewUpstreams without a URL")
	}
	if log == nil {
		log = slog.Default()
	}
	u := &Upstreams{role: role, key: key, log: log, changed: make(chan struct{}), probeEvery: DefaultProbeInterval,
		probeClient: &http.Client{Timeout: probeTimeout, Transport: upstreamTransport()},
		errs:        make([]atomic.Uint64, len(urls))}
	for _, s := range urls {
		u.urls = append(u.urls, config.TrimURL(s))
	}
	return u
}

// SetProbeInterval sets how often the primary is probed while another
// upstream is current (≤ 0: DefaultProbeInterval). Call it before use.
func (u *Upstreams) SetProbeInterval(d time.Duration) {
	if d <= 0 {
		d = DefaultProbeInterval
	}
	u.mu.Lock()
	u.probeEvery = d
	u.mu.Unlock()
}

// URLs returns the list, primary first.
func (u *Upstreams) URLs() []string { return append([]string(nil), u.urls...) }

// Current returns the upstream in use.
func (u *Upstreams) Current() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.urls[u.cur]
}

// Blobs returns a cache upstream that fills blobs through the list.
func (u *Upstreams) Blobs() *HTTPUpstream {
	h := NewHTTPUpstream(u.urls[0], u.key)
	h.Upstreams = u
	return h
}

// EventSink returns an event sink that delivers segments through the list.
func (u *Upstreams) EventSink() *HTTPEventSink {
	s := NewHTTPEventSink(u.urls[0], u.key)
	s.Upstreams = u
	return s
}

// DeviceChannels returns a DeviceChannels that stores legacy plugins'
// channel choices through the list.
func (u *Upstreams) DeviceChannels() *HTTPDeviceChannels {
	d := NewHTTPDeviceChannels(u.urls[0], u.key)
	d.Upstreams = u
	return d
}

// errSwitched ends a snapshot long-poll on an upstream that stopped being
// the current one (another request failed over, or the primary is back):
// the replica polls the new current one at once.
var errSwitched = errors.New("upstream: switched to another upstream")

// finalAnswer reports whether err is an answer of the protocol itself
// (or success), which another upstream would not change.
func finalAnswer(err error) bool {
	var ref *refusal
	var perm *PermanentError
	var dcr *DeviceChannelRefusal
	return err == nil || errors.Is(err, errSwitched) || errors.As(err, &ref) || errors.Is(err, cache.ErrNotFound) ||
		errors.As(err, &perm) || errors.As(err, &dcr) || errors.Is(err, ErrDeviceChannelsBusy)
}

// do runs fn against the current upstream and, while it fails with
// anything but a final answer, against the next ones in list order, each
// once; the first to answer becomes current. A nil u runs fn against
// single only (an HTTPUpstream, HTTPEventSink or HTTPDeviceChannels built
// for one URL).
func (u *Upstreams) do(ctx context.Context, single string, fn func(ctx context.Context, base string) error) error {
	if u == nil {
		return fn(ctx, single)
	}
	u.maybeProbe()
	u.mu.Lock()
	start := u.cur
	u.mu.Unlock()
	n := len(u.urls)
	var failed []string
	var firstErr error
	for k := 0; k < n; k++ {
		i := (start + k) % n
		err := fn(ctx, u.urls[i])
		if ctx.Err() != nil {
			return err // the caller gave up: nothing learned about this upstream
		}
		if finalAnswer(err) {
			if k > 0 && !errors.Is(err, errSwitched) {
				u.switchTo(start, i, false, firstErr)
			}
			return err
		}
		u.errs[i].Add(1)
		if n == 1 {
			return err
		}
		if firstErr == nil {
			firstErr = err
		}
		if k == n-1 {
			return fmt.Errorf("every upstream failed: %s; %w", strings.Join(failed, "; "), err)
		}
		failed = append(failed, err.Error())
	}
	panic("unreachable")
}

// switchTo makes upstream to current if from still is (concurrent requests
// that failed on the same upstream switch once). probe: the primary passed
// a probe (else: a failover after cause).
func (u *Upstreams) switchTo(from, to int, probe bool, cause error) {
	u.mu.Lock()
	if u.cur != from || from == to {
		u.mu.Unlock()
		return
	}
	u.cur = to
	close(u.changed)
	u.changed = make(chan struct{})
	u.lastProbe = time.Now()
	u.mu.Unlock()
	if probe {
		u.returns.Add(1)
		u.log.Info("upstream: back to the primary upstream", "role", u.role, "from", u.urls[from], "to", u.urls[to])
		return
	}
	u.failovers.Add(1)
	u.log.Warn("upstream: failed over (logged once per switch)", "role", u.role, "from", u.urls[from], "to", u.urls[to], "err", cause)
}

// maybeProbe starts a probe of the primary when another upstream is
// current and the last probe (or switch) is older than the probe interval.
func (u *Upstreams) maybeProbe() {
	u.mu.Lock()
	if u.cur == 0 || u.probing || time.Since(u.lastProbe) < u.probeEvery {
		u.mu.Unlock()
		return
	}
	from := u.cur
	u.probing, u.lastProbe = true, time.Now()
	u.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		err := u.probe(ctx, u.urls[0])
		u.mu.Lock()
		u.probing = false
		u.mu.Unlock()
		if err != nil {
			u.probesBad.Add(1)
			u.log.Debug("upstream: primary still unavailable", "role", u.role, "primary", u.urls[0], "err", err)
			return
		}
		u.probesOK.Add(1)
		u.switchTo(from, 0, true, nil)
	}()
}

// probe asks base for a snapshot newer than the edge's without waiting:
// 200 (it has a newer one) or 304 at a revision no older than the edge's
// passes.
func (u *Upstreams) probe(ctx context.Context, base string) error {
	var rev int64 = -1
	u.mu.Lock()
	revFn := u.rev
	u.mu.Unlock()
	if revFn != nil {
		rev = revFn()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/snapshot?after="+strconv.FormatInt(rev, 10)+"&wait=0", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+u.key)
	resp, err := u.probeClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close() // a 200's snapshot is not needed: the replica fetches it
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusNotModified:
		h := resp.Header.Get("X-Updraft-Rev")
		if have, err := strconv.ParseInt(h, 10, 64); rev < 0 || err == nil && have >= rev {
			return nil
		}
		return fmt.Errorf("snapshot probe: upstream at rev %q, behind this edge's %d", h, rev)
	default:
		return fmt.Errorf("snapshot probe: HTTP %d", resp.StatusCode)
	}
}

// nextProbe returns how long until the primary is due for a probe; ok
// false while the primary is current.
func (u *Upstreams) nextProbe() (d time.Duration, ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.cur == 0 {
		return 0, false
	}
	return max(time.Until(u.lastProbe.Add(u.probeEvery)), time.Millisecond), true
}

// cancelOnSwitch returns a context cancelled (cause errSwitched) at the
// next switch of the current upstream, for a long-poll; stop releases it.
// While it runs it also probes the primary on time (requests start probes
// too, but a long-poll holds the replica's next one for up to 30 s).
func (u *Upstreams) cancelOnSwitch(ctx context.Context) (context.Context, func()) {
	u.mu.Lock()
	ch := u.changed
	u.mu.Unlock()
	cctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		for {
			var due <-chan time.Time
			timer := (*time.Timer)(nil)
			if d, ok := u.nextProbe(); ok {
				timer = time.NewTimer(d)
				due = timer.C
			}
			select {
			case <-ch:
				cancel(errSwitched)
			case <-done:
			case <-due:
				u.maybeProbe()
				continue
			}
			if timer != nil {
				timer.Stop()
			}
			return
		}
	}()
	return cctx, func() { close(done); cancel(nil) }
}

// AddUpstreams exports u's metrics on the edge's registry (once per role)
// and lets its primary probes compare revisions with the edge's snapshot.
// NewReplicaFrom calls it for the replica's list; call it for a separate
// stats list.
func (e *Edge) AddUpstreams(u *Upstreams) {
	u.mu.Lock()
	u.rev = func() int64 {
		if s := e.Snapshot(); s != nil {
			return s.Rev
		}
		return -1
	}
	done := u.registered
	u.registered = true
	u.mu.Unlock()
	if done {
		return
	}
	if err := e.metrics.reg.Register(newUpstreamsCollector(u)); err != nil {
		e.log.Debug("edge: upstream metrics not registered (another list has this role)", "role", u.role, "err", err)
	}
}

// upstreamsCollector exports an upstream list's state at scrape time.
type upstreamsCollector struct {
	u                                           *Upstreams
	current, failovers, returns, errors, probes *prometheus.Desc
}

func newUpstreamsCollector(u *Upstreams) upstreamsCollector {
	role := prometheus.Labels{"role": u.role}
	return upstreamsCollector{u: u,
		current: prometheus.NewDesc("updraft_edge_upstream_current",
			"1 for the upstream in use (of --upstream, or --stats-url for role stats), 0 for the others.", []string{"upstream"}, role),
		failovers: prometheus.NewDesc("updraft_edge_upstream_failovers_total",
			"Switches to another upstream after the current one failed (connection error, timeout, 5xx).", nil, role),
		returns: prometheus.NewDesc("updraft_edge_upstream_primary_returns_total",
			"Returns to the primary (first) upstream after a successful probe.", nil, role),
		errors: prometheus.NewDesc("updraft_edge_upstream_errors_total",
			"Requests an upstream failed (each tried on the next upstream, if any).", []string{"upstream"}, role),
		probes: prometheus.NewDesc("updraft_edge_upstream_primary_probes_total",
			"Probes of the primary upstream while another is current, by result (ok, failed).", []string{"result"}, role),
	}
}

func (c upstreamsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.current, c.failovers, c.returns, c.errors, c.probes} {
		ch <- d
	}
}

func (c upstreamsCollector) Collect(ch chan<- prometheus.Metric) {
	u := c.u
	u.mu.Lock()
	cur := u.cur
	u.mu.Unlock()
	for i, s := range u.urls {
		label := s
		if p, err := url.Parse(s); err == nil {
			label = p.Redacted()
		}
		v := 0.0
		if i == cur {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.current, prometheus.GaugeValue, v, label)
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(u.errs[i].Load()), label)
	}
	ch <- prometheus.MustNewConstMetric(c.failovers, prometheus.CounterValue, float64(u.failovers.Load()))
	ch <- prometheus.MustNewConstMetric(c.returns, prometheus.CounterValue, float64(u.returns.Load()))
	ch <- prometheus.MustNewConstMetric(c.probes, prometheus.CounterValue, float64(u.probesOK.Load()), "ok")
	ch <- prometheus.MustNewConstMetric(c.probes, prometheus.CounterValue, float64(u.probesBad.Load()), "failed")
}
