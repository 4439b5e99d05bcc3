package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// clients is what the edge knows and limits per client: the client's
// address (the TCP or UDP peer, or what a trusted proxy says it is), the
// per-network rate limits of POST /updates and POST /stats, and the
// compact report of update check-ins that lets the origin tell devices
// established before a rollout from device ids made up after it
// (docs/design-notes.md, "Guard robustness and client limits").
type clients struct {
	trusted []netip.Prefix
	log     *slog.Logger
	// warnedForwarded: an X-Forwarded-For from a peer that is not trusted
	// was logged (once per process).
	warnedForwarded atomic.Bool

	updates *keyLimiter // per client network; nil: no limit
	stats   *keyLimiter // per client network, in events; nil: no limit
	now     func() time.Time

	checkIns atomic.Pointer[checkInSet] // nil until stats collection starts

	rateLimited     *prometheus.CounterVec
	checkInsSent    prometheus.Counter
	checkInsDropped *prometheus.CounterVec
}

// Bursts of the per-network limits: this many seconds' worth.
const clientBurstSeconds = 10

// maxNetworksPerShard bounds the per-network limiters: 64 shards of at
// most this many networks (about 10 MiB in all); a full shard starts over.
const maxNetworksPerShard = 4096

func newClients(cfg config.Edge, log *slog.Logger, reg *prometheus.Registry) *clients {
	c := &clients{trusted: cfg.TrustedProxies, log: log, now: time.Now,
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "updraft_edge_rate_limited_total", Help: "Requests refused with 429 by the per-client-network limits (--updates-per-prefix-second, --stats-per-prefix-second), by endpoint.",
		}, []string{"endpoint"}),
		checkInsSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "updraft_edge_checkins_total", Help: "Device update check-ins reported to the origin (one per device and app per second at most).",
		}),
		checkInsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "updraft_edge_checkins_dropped_total", Help: "Device update check-ins not reported, by reason (full: too many devices in one second; spool: the stats spool refused them).",
		}, []string{"reason"}),
	}
	c.rateLimited.WithLabelValues("updates")
	c.rateLimited.WithLabelValues("stats")
	reg.MustRegister(c.rateLimited, c.checkInsSent, c.checkInsDropped)
	if r := cfg.UpdatesPerPrefixSecond; r > 0 {
		c.updates = newKeyLimiter(r, r*clientBurstSeconds, maxNetworksPerShard)
	}
	if r := cfg.StatsPerPrefixSecond; r > 0 {
		c.stats = newKeyLimiter(r, r*clientBurstSeconds, maxNetworksPerShard)
	}
	return c
}

// trustedPeer reports whether a direct peer is a listed proxy, whose
// X-Forwarded-For is believed.
func (c *clients) trustedPeer(a netip.Addr) bool {
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// addrOf converts a transport's peer address (nil, or any length) to a
// netip.Addr without allocating; IPv4-mapped addresses become IPv4.
func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// forwardedScan finds the client address in X-Forwarded-For values, given
// to line() from the last header line to the first: walking right to left,
// every address a trusted proxy added is skipped; the first one that is not
// a trusted proxy is the client. Whatever stands left of it was sent by the
// client and is ignored.
type forwardedScan struct {
	c      *clients
	client netip.Addr // the peer, then each trusted hop walked
	done   bool
}

func (s *forwardedScan) line(v string) {
	for !s.done && v != "" {
		entry := v
		if i := strings.LastIndexByte(v, ','); i >= 0 {
			entry, v = v[i+1:], v[:i]
		} else {
			v = ""
		}
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		a, ok := parseForwardedAddr(entry)
		if !ok {
			// A trusted proxy writes addresses: what is not one is not
			// believed. Keep the last trusted hop.
			s.done = true
			return
		}
		s.client = a
		if !s.c.trustedPeer(a) {
			s.done = true
		}
	}
}

// parseForwardedAddr reads one X-Forwarded-For entry: an address, possibly
// with a port ("203.0.113.7:4711", "[2001:db8::1]:443").
func parseForwardedAddr(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

// noteForwarded logs, once, that requests carry X-Forwarded-For from a
// peer that is not a trusted proxy: most likely the edge runs behind a
// proxy that --trusted-proxies does not list, so every client looks like
// the proxy (one network for the rate limits and the rollout guard).
func (c *clients) noteForwarded(peer netip.Addr, xff string) {
	if xff == "" || c.warnedForwarded.Swap(true) {
		return
	}
	c.log.Warn("edge: requests carry X-Forwarded-For from a peer that is not a trusted proxy; it is ignored, and clients are counted by the peer's address. Behind a load balancer, list it with --trusted-proxies (or use --proxy-protocol)",
		"peer", peer.String(), "x_forwarded_for", xff)
}

// forwardedHeader reads a request's X-Forwarded-For for clientOf: its
// first line, and the client behind a trusted peer (a forwardedScan fed
// every line from the last to the first).
type forwardedHeader interface {
	first() string
	behind(c *clients, peer netip.Addr) netip.Addr
}

// clientOf is the client address of a request from peer (the TCP peer, or
// the PROXY protocol's source): the peer itself, or, when the peer is a
// trusted proxy, what X-Forwarded-For says. Both HTTP/1.1 servers call it.
func (c *clients) clientOf(peer netip.Addr, xff forwardedHeader) netip.Addr {
	if !c.trustedPeer(peer) {
		if !c.warnedForwarded.Load() && !limited(peer) {
			c.noteForwarded(peer, xff.first())
		}
		return peer
	}
	return xff.behind(c, peer)
}

// limited reports whether per-network limits apply to a client: public
// addresses only. Loopback, private (RFC 1918, ULA) and link-local peers
// are the operator's own network or its proxies (an untrusted proxy would
// otherwise put every device behind one limit).
func limited(a netip.Addr) bool {
	return a.IsValid() && a.IsGlobalUnicast() && !a.IsPrivate()
}

// networkKey is the limiter key of a client's network (/24, /48).
func networkKey(a netip.Addr) [16]byte {
	return events.PrefixOf(a).Addr().As16()
}

// allow takes cost tokens from the client's network bucket of l; when it
// is empty it answers 429 too_many_requests with Retry-After (the plugin
// holds back its requests until then) and reports false.
func (c *clients) allow(l *keyLimiter, endpoint string, client netip.Addr, cost int, out *reply) bool {
	if l == nil || !limited(client) {
		return true
	}
	ok, wait := l.allowN(networkKey(client), c.now(), float64(cost))
	if ok {
		return true
	}
	c.rateLimited.WithLabelValues(endpoint).Inc()
	tooManyRequests(out, wait)
	return false
}

// tooManyRequests writes Capgo's rate-limit answer: 429 too_many_requests
// with Retry-After and moreInfo.retryAfterSeconds.
func tooManyRequests(out *reply, wait time.Duration) {
	secs := int((wait + time.Second - 1) / time.Second)
	secs = max(secs, 1)
	out.status, out.contentType, out.retryAfter = 429, contentTypeJSON, secs
	out.body = append(out.body[:0], `{"error":"too_many_requests","message":"Too many requests","moreInfo":{"retryAfterSeconds":`...)
	out.body = strconv.AppendInt(out.body, int64(secs), 10)
	out.body = append(out.body, "}}"...)
}

// ProxyProtocolListener returns ln reading a PROXY protocol (v1 or v2)
// header at the start of each connection when cfg.ProxyProtocol is set
// (ln unchanged otherwise): the header's source address is the client.
// With cfg.TrustedProxies, only listed peers may send one (others are
// served with their own address, and refused if they send a header);
// without, every connection must start with one (the listener is meant to
// be reachable only through the load balancer).
func ProxyProtocolListener(ln net.Listener, cfg config.Edge) net.Listener {
	if !cfg.ProxyProtocol {
		return ln
	}
	trusted := cfg.TrustedProxies
	return &proxyproto.Listener{
		Listener:          ln,
		ReadHeaderTimeout: 10 * time.Second,
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			if len(trusted) == 0 {
				return proxyproto.REQUIRE, nil
			}
			var a netip.Addr
			if tcp, ok := o.Upstream.(*net.TCPAddr); ok {
				a = addrOf(tcp.IP)
			}
			for _, p := range trusted {
				if p.Contains(a) {
					return proxyproto.REQUIRE, nil
				}
			}
			return proxyproto.REJECT, nil
		},
	}
}

// checkInSet collects, between two reports, the devices that checked for
// updates (app, device id) and what each sent and was served (the latest
// check of the second): at most maxCheckIns devices a second, in memory.
type checkInSet struct {
	shards  [16]checkInShard
	n       atomic.Int64
	max     int64
	dropped atomic.Int64
}

type checkInShard struct {
	mu sync.Mutex
	m  map[checkInKey]checkInVal
	// arena holds the request strings of the shard's check-ins (the
	// request's bytes are reused): appended to, emptied by drain, so that
	// after warm-up recording a check-in allocates nothing. At most
	// maxCheckInArena bytes; past it a check-in is reported without them.
	arena []byte
}

type checkInKey struct {
	app string // the snapshot's app id (not a request's bytes)
	dev [16]byte
}

// checkInVal is a check-in's detail: strings the snapshot or the resolver
// owns (never a request's bytes), and the request's own strings as
// lengths in the shard's arena from off (version_build, version_name,
// plugin_version, custom_id, each cut at maxCheckInString bytes). Kept
// under 128 bytes so that the map holds it inline.
type checkInVal struct {
	at                                                  int64
	channel, rule, segment, arm, outcome, bundle, platf string
	off                                                 uint32
	lens                                                [4]uint8
}

// maxCheckIns bounds the devices held between two reports (about 200
// bytes each with their detail); a second with more drops the rest
// (counted): the devices are reported when they check in again.
const maxCheckIns = 100_000

// maxCheckInArena bounds one shard's request strings (16 shards: 16 MiB).
const maxCheckInArena = 1 << 20

// maxCheckInString cuts each request string of a check-in's detail.
const maxCheckInString = 64

// maxCheckInsRecordBytes bounds one check-in record with details (about
// 100 bytes a device), under maxRecordBytes: a segment stays small enough
// for a parent edge to relay.
const maxCheckInsRecordBytes = 192 << 10

// checkInsThatFit returns how many of details (from the first) fit one
// record.
func checkInsThatFit(details []events.CheckInDetail) int {
	size := 0
	for i := range details {
		d := &details[i]
		size += 16 + 10 + 11 + len(d.Platform) + len(d.VersionBuild) + len(d.VersionName) + len(d.PluginVersion) +
			len(d.CustomID) + len(d.Channel) + len(d.Segment) + len(d.Arm) + len(d.Outcome) + len(d.Bundle)
		if i == events.MaxCheckIns || i > 0 && size > maxCheckInsRecordBytes {
			return i
		}
	}
	return len(details)
}

// checkInInterval is how often check-ins are appended to the stats spool.
var checkInInterval = time.Second

func newCheckInSet(max int64) *checkInSet {
	s := &checkInSet{max: max}
	for i := range s.shards {
		s.shards[i].m = map[checkInKey]checkInVal{}
	}
	return s
}

// add records a device's check-in: r is the request, d its resolution.
func (s *checkInSet) add(app string, dev [16]byte, r *snapshot.Request, d *snapshot.Decision, now int64) {
	if s.n.Load() >= s.max {
		s.dropped.Add(1)
		return
	}
	sh := &s.shards[dev[0]&15]
	k := checkInKey{app, dev}
	v := checkInVal{at: now, rule: d.Rule, segment: d.Segment, arm: d.Arm, outcome: d.Code}
	switch r.Platform { // a constant, not the request's bytes
	case snapshot.PlatformIOS:
		v.platf = snapshot.PlatformIOS
	case snapshot.PlatformAndroid:
		v.platf = snapshot.PlatformAndroid
	case snapshot.PlatformElectron:
		v.platf = snapshot.PlatformElectron
	default:
		v.platf = "other"
	}
	if ch := d.Channel; ch != nil {
		v.channel = ch.Name
		switch d.Variant {
		case snapshot.VariantRollout, snapshot.VariantRolloutKept:
			v.arm = "rollout"
		case snapshot.VariantChannel:
			if ch.Rollout != nil {
				v.arm = "base"
			}
		}
	}
	if d.OK() && d.Bundle != nil {
		v.outcome = "update"
		if d.Bundle.Builtin() {
			v.outcome = "revert_to_builtin"
		}
	}
	if d.Bundle != nil {
		v.bundle = d.Bundle.Version
	} else {
		v.bundle = d.Version // the bundle a blocked answer names (snapshot-owned)
	}
	strs := [4]string{r.VersionBuild, r.VersionName, r.PluginVersion, r.CustomID}
	sh.mu.Lock()
	old, ok := sh.m[k]
	if ok && sameStrings(sh.arena, &old, &strs) {
		v.off, v.lens = old.off, old.lens
	} else if size := detailSize(&strs); len(sh.arena)+size <= maxCheckInArena {
		v.off = uint32(len(sh.arena))
		for i, str := range strs {
			str = str[:min(len(str), maxCheckInString)]
			v.lens[i] = uint8(len(str))
			sh.arena = append(sh.arena, str...)
		}
	}
	sh.m[k] = v
	if !ok {
		s.n.Add(1)
	}
	sh.mu.Unlock()
}

func detailSize(strs *[4]string) int {
	n := 0
	for _, s := range strs {
		n += min(len(s), maxCheckInString)
	}
	return n
}

// sameStrings reports whether v's arena strings are strs (as cut).
func sameStrings(arena []byte, v *checkInVal, strs *[4]string) bool {
	off := int(v.off)
	for i, s := range strs {
		s = s[:min(len(s), maxCheckInString)]
		n := int(v.lens[i])
		if n != len(s) || string(arena[off:off+n]) != s {
			return false
		}
		off += n
	}
	return true
}

// checkInBatch is one app's check-ins, drained.
type checkInBatch struct {
	devs    [][16]byte
	details []events.CheckInDetail
}

// drain returns the devices collected, by app, and empties the set.
func (s *checkInSet) drain() map[string]*checkInBatch {
	out := map[string]*checkInBatch{}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, v := range sh.m {
			b := out[k.app]
			if b == nil {
				b = &checkInBatch{}
				out[k.app] = b
			}
			d := events.CheckInDetail{At: v.at, Platform: v.platf, Channel: v.channel, Segment: v.rule,
				Arm: v.arm, Outcome: v.outcome, Bundle: v.bundle}
			if v.rule == snapshot.RuleSegment {
				d.Segment = "segment:" + v.segment
			}
			off := int(v.off)
			for j, p := range [...]*string{&d.VersionBuild, &d.VersionName, &d.PluginVersion, &d.CustomID} {
				n := int(v.lens[j])
				*p = string(sh.arena[off : off+n])
				off += n
			}
			b.devs = append(b.devs, k.dev)
			b.details = append(b.details, d)
		}
		s.n.Add(-int64(len(sh.m)))
		clear(sh.m)
		sh.arena = sh.arena[:0]
		sh.mu.Unlock()
	}
	return out
}

// recordCheckIn notes that a device checked for updates (POST /updates
// with a valid device id, for an app the snapshot has) and how it was
// resolved (d), at r.Now.
func (e *Edge) recordCheckIn(snap *snapshot.Snapshot, r *snapshot.Request, d *snapshot.Decision) {
	set := e.clients.checkIns.Load()
	if set == nil {
		return
	}
	app := snap.App(r.AppID)
	if app == nil {
		return
	}
	if dev, ok := r.Device(); ok {
		set.add(app.ID, dev, r, d, r.Now.UnixMilli()) // the check's own time: the clock is read once per check
	}
}

// startCheckIns makes /updates report check-ins through the stats spool
// (called by StartStats); they stop with the spool.
func (e *Edge) startCheckIns() {
	e.clients.checkIns.Store(newCheckInSet(maxCheckIns))
	interval := checkInInterval
	e.spool.background(func(ctx context.Context) {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				e.flushCheckIns()
			case <-ctx.Done():
				return
			}
		}
	})
}

// flushCheckIns appends the check-ins collected so far to the spool, one
// record per app (split at events.MaxCheckIns devices).
func (e *Edge) flushCheckIns() {
	c := e.clients
	set := c.checkIns.Load()
	if set == nil || e.spool == nil {
		return
	}
	if n := set.dropped.Swap(0); n > 0 {
		c.checkInsDropped.WithLabelValues("full").Add(float64(n))
	}
	byApp := set.drain()
	if len(byApp) == 0 {
		return
	}
	now := time.Now().UnixMilli()
	var rec []byte
	for app, b := range byApp {
		// One append per record (checkInsThatFit).
		devs, details := b.devs, b.details
		for len(devs) > 0 {
			n := checkInsThatFit(details)
			rec = events.AppendCheckIns(rec[:0], &events.CheckIns{AppID: app, At: now, Devices: devs[:n], Details: details[:n]})
			devs, details = devs[n:], details[n:]
			if err := e.spool.append(rec); err != nil {
				if !errors.Is(err, errSpoolClosed) {
					c.checkInsDropped.WithLabelValues("spool").Add(float64(n))
				}
				continue
			}
			c.checkInsSent.Add(float64(n))
		}
	}
}
