package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// postWith posts body to the test edge with extra header lines (a key may
// repeat: each pair is one header line).
func postWith(t *testing.T, te *testEdge, path, body string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest("POST", te.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := te.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, b}
}

// prefixesSunk flushes the edge's spool and returns the client prefix of
// every event delivered, in order.
func prefixesSunk(t *testing.T, e *Edge, sink *memSink) []string {
	t.Helper()
	flushStats(t, e)
	var out []string
	for _, ev := range sunkEvents(t, sink) {
		out = append(out, ev.ClientPrefix.String())
	}
	return out
}

// Finding 6 / part C of issue 15: X-Forwarded-For is believed only from a
// trusted proxy, and then only its rightmost address that is not a trusted
// proxy; everything a client writes itself is ignored. Each event carries
// its client's network to the origin.
func TestClientAddressForwardedFor(t *testing.T) {
	type send struct {
		header []string
		want   string
	}
	cases := []struct {
		name    string
		trusted string
		sends   []send
	}{
		{"no trusted proxy: the peer, whatever the header says", "", []send{
			{nil, "127.0.0.0/24"},
			{[]string{"X-Forwarded-For", "203.0.113.9"}, "127.0.0.0/24"},
		}},
		{"untrusted peer: XFF ignored", "10.0.0.0/8", []send{
			{[]string{"X-Forwarded-For", "203.0.113.9"}, "127.0.0.0/24"},
		}},
		{"trusted peer", "127.0.0.1,10.0.0.0/8", []send{
			{nil, "127.0.0.0/24"},
			{[]string{"X-Forwarded-For", "203.0.113.9"}, "203.0.113.0/24"},
			// The client forged the left part; the proxy appended the peer.
			{[]string{"X-Forwarded-For", "198.51.100.1, 203.0.113.9"}, "203.0.113.0/24"},
			// A chain of trusted proxies is walked.
			{[]string{"X-Forwarded-For", "198.51.100.1, 203.0.113.9, 10.1.2.3"}, "203.0.113.0/24"},
			// A forged header line, then the proxy's own line (HAProxy).
			{[]string{"X-Forwarded-For", "198.51.100.1", "X-Forwarded-For", "203.0.113.9"}, "203.0.113.0/24"},
			// Ports and brackets, IPv6 (a /48).
			{[]string{"X-Forwarded-For", "[2001:db8:aa:bb::1]:4711"}, "2001:db8:aa::/48"},
			{[]string{"X-Forwarded-For", "203.0.113.9:4711"}, "203.0.113.0/24"},
			// Garbage where the proxy's address should be: the last trusted hop.
			{[]string{"X-Forwarded-For", "203.0.113.9, not-an-address"}, "127.0.0.0/24"},
			{[]string{"X-Forwarded-For", "203.0.113.9, 10.9.9.9, junk"}, "127.0.0.0/24"},
			{[]string{"X-Forwarded-For", "junk, 10.9.9.9"}, "10.9.9.0/24"},
			// Only trusted hops: the leftmost.
			{[]string{"X-Forwarded-For", "10.0.0.5, 10.1.1.1"}, "10.0.0.0/24"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sink := &memSink{}
			e := statsEdge(t, sink, func(cfg *config.Edge) {
				if c.trusted != "" {
					p, err := config.ParsePrefixes(c.trusted)
					if err != nil {
						t.Fatal(err)
					}
					cfg.TrustedProxies = p
				}
			})
			te := serveEdge(t, e)
			var want []string
			for _, s := range c.sends {
				if a := postWith(t, te, "/stats", statsBody, s.header...); a.status != 200 || string(a.body) != `{"status":"ok"}` {
					t.Fatalf("POST /stats %v: HTTP %d %s", s.header, a.status, a.body)
				}
				want = append(want, s.want)
			}
			if got := prefixesSunk(t, e, sink); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Fatalf("client networks of the events\n got %v\nwant %v", got, want)
			}
		})
	}
}

// A request that routes without a transport (no client address) carries
// no client prefix.
func TestClientAddressUnknown(t *testing.T) {
	sink := &memSink{}
	e := statsEdge(t, sink, nil)
	if out := routeReq(e, "POST", "/stats", []byte(statsBody), nil); out.status != 200 {
		t.Fatalf("HTTP %d %s", out.status, out.body)
	}
	flushStats(t, e)
	if evs := sunkEvents(t, sink); len(evs) != 1 || evs[0].ClientPrefix.IsValid() {
		t.Fatalf("events %+v, want one without a client prefix", evs)
	}
}

func TestParsePrefixes(t *testing.T) {
	p, err := config.ParsePrefixes(" 10.0.0.0/8, 192.168.1.5 ,fd00::/8,::ffff:172.16.0.1,2001:db8::1/64")
	if err != nil {
		t.Fatal(err)
	}
	want := "10.0.0.0/8 192.168.1.5/32 fd00::/8 172.16.0.1/32 2001:db8::/64"
	if got := fmt.Sprint(p); got != "["+want+"]" {
		t.Fatalf("ParsePrefixes = %v, want [%s]", got, want)
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "1.2.3"} {
		if _, err := config.ParsePrefixes(bad); err == nil {
			t.Errorf("ParsePrefixes(%q) accepted", bad)
		}
	}
}

// Finding 6 of issue 15: per-client-network limits on /updates and /stats,
// on by default, answer 429 too_many_requests with Retry-After; another
// network is not affected, nor are private and loopback clients.
func TestClientRateLimits(t *testing.T) {
	if d := config.NewEdge(""); d.UpdatesPerPrefixSecond != 100 || d.StatsPerPrefixSecond != 200 {
		t.Fatalf("default limits %v, %v: want on (100, 200)", d.UpdatesPerPrefixSecond, d.StatsPerPrefixSecond)
	}
	sink := &memSink{}
	e := statsEdge(t, sink, func(c *config.Edge) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		c.UpdatesPerPrefixSecond = 0.5 // bursts of 5
		c.StatsPerPrefixSecond = 1     // bursts of 10 events
	})
	var clock atomic.Int64 // the limiters' time: tokens refill only when the test says
	clock.Store(time.Now().UnixNano())
	e.clients.now = func() time.Time { return time.Unix(0, clock.Load()) }
	te := serveEdge(t, e)
	from := func(addr string) []string { return []string{"X-Forwarded-For", addr} }
	checkLimited := func(a answer, what string) {
		t.Helper()
		if a.status != 429 {
			t.Fatalf("%s: HTTP %d %s, want 429", what, a.status, a.body)
		}
		secs, err := strconv.Atoi(a.header.Get("Retry-After"))
		if err != nil || secs < 1 || secs > 20 {
			t.Fatalf("%s: Retry-After %q, want 1..20 seconds", what, a.header.Get("Retry-After"))
		}
		var body struct {
			Error    string `json:"error"`
			MoreInfo struct {
				RetryAfterSeconds int `json:"retryAfterSeconds"`
			} `json:"moreInfo"`
		}
		if err := json.Unmarshal(a.body, &body); err != nil || body.Error != "too_many_requests" || body.MoreInfo.RetryAfterSeconds != secs {
			t.Fatalf("%s: body %s, want too_many_requests with retryAfterSeconds %d", what, a.body, secs)
		}
	}
	// /updates: 5 checks from one /24 (different hosts, different devices),
	// then 429.
	for i := 0; i < 5; i++ {
		dev := fmt.Sprintf("%08x-eefe-490a-9c60-8e965132ae51", i)
		if a := postWith(t, te, "/updates", string(body(t, map[string]any{"device_id": dev})), from(fmt.Sprintf("203.0.113.%d", i))...); a.status != 200 {
			t.Fatalf("update check %d: HTTP %d %s", i, a.status, a.body)
		}
	}
	checkLimited(postWith(t, te, "/updates", pluginBody, from("203.0.113.200")...), "6th update check from 203.0.113.0/24")
	if a := postWith(t, te, "/updates", pluginBody, from("203.0.114.1")...); a.status != 200 {
		t.Fatalf("another /24: HTTP %d %s", a.status, a.body)
	}
	for i := 0; i < 20; i++ { // loopback and private clients are not limited
		for _, h := range [][]string{nil, from("10.1.2.3"), from("192.168.0.9"), from("fd00::1")} {
			if a := postWith(t, te, "/updates", pluginBody, h...); a.status != 200 {
				t.Fatalf("private client %v: HTTP %d %s", h, a.status, a.body)
			}
		}
	}
	// /stats counts events: a batch of 10 passes, the next event does not.
	evs := make([]string, 10)
	for i := range evs {
		evs[i] = statsEv(t, map[string]any{"device_id": fmt.Sprintf("%08x-eefe-490a-9c60-8e965132ae51", i)})
	}
	if a := postWith(t, te, "/stats", batch(evs...), from("198.51.100.7")...); a.status != 200 {
		t.Fatalf("batch of 10: HTTP %d %s", a.status, a.body)
	}
	checkLimited(postWith(t, te, "/stats", statsBody, from("198.51.100.8")...), "11th event from 198.51.100.0/24")
	if a := postWith(t, te, "/stats", statsBody, from("2001:db8:1::1")...); a.status != 200 {
		t.Fatalf("an IPv6 network: HTTP %d %s", a.status, a.body)
	}
	checkLimited(postWith(t, te, "/stats", batch(evs...), from("2001:db8:1:ffff::2")...), "the same /48")
	if n := testutil.ToFloat64(e.clients.rateLimited.WithLabelValues("updates")); n != 1 {
		t.Fatalf("updraft_edge_rate_limited_total{endpoint=updates} = %v, want 1", n)
	}
	if n := testutil.ToFloat64(e.clients.rateLimited.WithLabelValues("stats")); n != 2 {
		t.Fatalf("updraft_edge_rate_limited_total{endpoint=stats} = %v, want 2", n)
	}
	// The refused events were not kept.
	flushStats(t, e)
	if n := len(sunkEvents(t, sink)); n != 11 {
		t.Fatalf("%d events delivered, want 11", n)
	}
	// Tokens come back: a bucket refills at its rate (1 event a second).
	clock.Add(int64(900 * time.Millisecond))
	checkLimited(postWith(t, te, "/stats", statsBody, from("198.51.100.9")...), "0.9 s later")
	clock.Add(int64(100 * time.Millisecond))
	if a := postWith(t, te, "/stats", statsBody, from("198.51.100.9")...); a.status != 200 {
		t.Fatalf("1 s later: HTTP %d %s", a.status, a.body)
	}
	if n := testutil.ToFloat64(e.clients.rateLimited.WithLabelValues("stats")); n != 3 {
		t.Fatalf("updraft_edge_rate_limited_total{endpoint=stats} = %v, want 3", n)
	}
}

// The limiters' memory is bounded: however many keys, no shard holds more
// than its maximum, and a key over its rate is refused until it refills.
func TestKeyLimiterBounded(t *testing.T) {
	const perShard = 32
	l := newKeyLimiter(1, 2, perShard)
	now := time.Unix(1_700_000_000, 0)
	for i := 0; i < 64*perShard*8; i++ {
		k := networkKey(netip.AddrFrom4([4]byte{byte(i >> 16), byte(i >> 8), byte(i), 1}))
		if ok, _ := l.allowN(k, now, 1); !ok {
			t.Fatalf("key %d refused on its first token", i)
		}
	}
	total := 0
	for i := range l.shards {
		n := len(l.shards[i].buckets)
		if n > perShard {
			t.Fatalf("shard %d holds %d keys, over %d", i, n, perShard)
		}
		total += n
	}
	if total < 64*perShard/2 {
		t.Fatalf("keys spread badly: %d in all", total)
	}
	k := networkKey(netip.MustParseAddr("203.0.113.1"))
	if ok, _ := l.allowN(k, now, 2); !ok {
		t.Fatal("a burst of 2 refused")
	}
	ok, wait := l.allowN(k, now, 1)
	if ok || wait != time.Second {
		t.Fatalf("over the burst: %v, wait %v; want refused for 1s", ok, wait)
	}
	if ok, _ := l.allowN(k, now.Add(time.Second), 1); !ok {
		t.Fatal("refused after refilling")
	}
	// A cost over the burst takes the whole burst (a batch larger than
	// the burst is not refused forever).
	if ok, _ := l.allowN(networkKey(netip.MustParseAddr("198.51.100.1")), now, 200); !ok {
		t.Fatal("a cost over the burst refused on a full bucket")
	}
}

// Update checks are reported to the origin as check-in records (one per
// device and app per interval), through the stats spool.
func TestCheckInsReported(t *testing.T) {
	saved := checkInInterval
	checkInInterval = time.Hour // only FlushStats reports: one window
	t.Cleanup(func() { checkInInterval = saved })
	sink := &memSink{}
	e := statsEdge(t, sink, nil)
	devs := []string{"00009a6b-eefe-490a-9c60-8e965132ae51", "11119a6b-eefe-490a-9c60-8e965132ae51"}
	for range 3 {
		for _, d := range devs {
			if out := routeReq(e, "POST", "/updates", body(t, map[string]any{"device_id": strings.ToUpper(d)}), nil); out.status != 200 {
				t.Fatalf("HTTP %d %s", out.status, out.body)
			}
		}
	}
	// Unknown apps and invalid ids are not reported.
	routeReq(e, "POST", "/updates", body(t, map[string]any{"app_id": "com.example.unknown"}), nil)
	flushStats(t, e)
	var got []string
	for _, d := range sink.acked() {
		if err := events.Decode(d.segment, events.Visitor{CheckIns: func(c *events.CheckIns) error {
			if c.AppID != testAppID || c.At == 0 || len(c.Details) != len(c.Devices) {
				t.Errorf("check-ins %+v", c)
			}
			// What the device sent and how the edge resolved it.
			for _, d := range c.Details {
				if d.At == 0 || d.Platform != "android" || d.VersionName != "1.0.0" || d.VersionBuild != "1.0.0" || d.PluginVersion != "8.51.14" || d.CustomID != "user-42" ||
					d.Channel != "production" || d.Segment != "default" || d.Outcome != "update" || d.Bundle == "" {
					t.Errorf("check-in detail %+v", d)
				}
			}
			for _, dev := range c.Devices {
				got = append(got, fmt.Sprintf("%x", dev))
			}
			return nil
		}}); err != nil {
			t.Fatal(err)
		}
	}
	var want []string
	for _, d := range devs {
		id, _ := snapshot.ParseDeviceID(d)
		want = append(want, fmt.Sprintf("%x", id))
	}
	if strings.Join(sorted(got), " ") != strings.Join(want, " ") {
		t.Fatalf("check-ins reported %v, want %v (each once)", got, want)
	}
	if n := testutil.ToFloat64(e.clients.checkInsSent); n != 2 {
		t.Fatalf("updraft_edge_checkins_total = %v, want 2", n)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// The check-in set is bounded: past its maximum, devices are dropped and
// counted.
func TestCheckInSetBounded(t *testing.T) {
	s := newCheckInSet(10)
	var r snapshot.Request
	var d snapshot.Decision
	for i := 0; i < 25; i++ {
		s.add("a.b", [16]byte{byte(i)}, &r, &d, 1)
	}
	if s.n.Load() != 10 || s.dropped.Load() != 15 {
		t.Fatalf("held %d, dropped %d; want 10 and 15", s.n.Load(), s.dropped.Load())
	}
	if got := s.drain(); len(got["a.b"].devs) != 10 || s.n.Load() != 0 {
		t.Fatalf("drained %d, %d left", len(got["a.b"].devs), s.n.Load())
	}
	// The request strings are held in a bounded arena: past it, check-ins
	// are reported without them.
	r = snapshot.Request{VersionBuild: strings.Repeat("1", 100), VersionName: "1.0.0", CustomID: "user-7"}
	s = newCheckInSet(1 << 20)
	for i := 0; i < 2*maxCheckInArena/(maxCheckInString+11); i++ {
		s.add("a.b", [16]byte{0, byte(i), byte(i >> 8), byte(i >> 16)}, &r, &d, 1)
	}
	if n := len(s.shards[0].arena); n > maxCheckInArena {
		t.Fatalf("arena %d bytes, over %d", n, maxCheckInArena)
	}
	full, cut := 0, 0
	for _, det := range s.drain()["a.b"].details {
		switch {
		case det.VersionBuild == strings.Repeat("1", maxCheckInString) && det.VersionName == "1.0.0" && det.CustomID == "user-7":
			full++
		case det.VersionBuild == "" && det.CustomID == "":
			cut++
		default:
			t.Fatalf("detail %+v", det)
		}
	}
	if full == 0 || cut == 0 {
		t.Fatalf("%d check-ins with strings, %d without; want both", full, cut)
	}
}

// --proxy-protocol: the PROXY header's source is the client; without
// trusted proxies every connection must send one; with, only they may.
func TestProxyProtocol(t *testing.T) {
	start := func(t *testing.T, trusted string) (*Edge, *memSink, string) {
		sink := &memSink{}
		var cfg config.Edge
		e := statsEdge(t, sink, func(c *config.Edge) {
			c.ProxyProtocol = true
			if trusted != "" {
				c.TrustedProxies, _ = config.ParsePrefixes(trusted)
			}
			cfg = *c
		})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		h := NewHTTP1(e)
		h.srv.Logger = discardLogger{}
		done := make(chan error, 1)
		go func() { done <- h.Serve(ProxyProtocolListener(ln, cfg)) }()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			h.Shutdown(ctx)
			<-done
		})
		return e, sink, ln.Addr().String()
	}
	// exchange sends raw bytes (an optional PROXY header, then one POST
	// /stats) and returns the status line, or "" if the edge hung up.
	exchange := func(t *testing.T, addr, header string) string {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "%sPOST /stats HTTP/1.1\r\nHost: edge.test\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			header, len(statsBody), statsBody)
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line)
	}
	t.Run("required", func(t *testing.T) {
		e, sink, addr := start(t, "")
		if got := exchange(t, addr, "PROXY TCP4 203.0.113.50 127.0.0.1 5000 80\r\n"); got != "HTTP/1.1 200 OK" {
			t.Fatalf("with a v1 header: %q", got)
		}
		v2 := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c")
		v2 = append(v2, 198, 51, 100, 23, 127, 0, 0, 1, 0x13, 0x88, 0, 80)
		if got := exchange(t, addr, string(v2)); got != "HTTP/1.1 200 OK" {
			t.Fatalf("with a v2 header: %q", got)
		}
		if got := exchange(t, addr, ""); strings.Contains(got, "200") {
			t.Fatalf("without a header: %q, want the connection refused", got)
		}
		if got := prefixesSunk(t, e, sink); strings.Join(got, " ") != "203.0.113.0/24 198.51.100.0/24" {
			t.Fatalf("client networks %v", got)
		}
	})
	t.Run("only from trusted proxies", func(t *testing.T) {
		e, sink, addr := start(t, "10.0.0.0/8")
		if got := exchange(t, addr, "PROXY TCP4 203.0.113.50 127.0.0.1 5000 80\r\n"); strings.Contains(got, "200") {
			t.Fatalf("a header from an untrusted peer: %q, want refused", got)
		}
		if got := exchange(t, addr, ""); got != "HTTP/1.1 200 OK" {
			t.Fatalf("an untrusted peer without a header: %q", got)
		}
		if got := prefixesSunk(t, e, sink); strings.Join(got, " ") != "127.0.0.0/24" {
			t.Fatalf("client networks %v", got)
		}
	})
}

func TestForwardedScan(t *testing.T) {
	c := &clients{trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	for _, tc := range []struct {
		lines []string
		want  string
	}{
		{[]string{"1.2.3.4"}, "1.2.3.4"},
		{[]string{"1.2.3.4,5.6.7.8"}, "5.6.7.8"},
		{[]string{" 1.2.3.4 , 10.0.0.1 ,, "}, "1.2.3.4"},
		{[]string{"1.2.3.4", "10.0.0.2"}, "1.2.3.4"},
		{[]string{"::ffff:1.2.3.4"}, "1.2.3.4"},
		{[]string{"fe80::1%eth0"}, "fe80::1"},
		{[]string{""}, "10.9.9.9"},
		{nil, "10.9.9.9"},
	} {
		s := forwardedScan{c: c, client: netip.MustParseAddr("10.9.9.9")}
		for i := len(tc.lines) - 1; i >= 0 && !s.done; i-- {
			s.line(tc.lines[i])
		}
		if s.client.String() != tc.want {
			t.Errorf("%q: client %s, want %s", tc.lines, s.client, tc.want)
		}
	}
}

// BenchmarkUpdatesClientLimits is an update check from a public client
// address: the per-network limit and the check-in report are on the hot
// path, and allocate nothing.
func BenchmarkUpdatesClientLimits(b *testing.B) {
	e := statsEdge(b, sinkFunc(func(context.Context, string, uint64, []byte) error { return nil }), func(c *config.Edge) {
		c.UpdatesPerPrefixSecond = 1e12
	})
	body := []byte(pluginBody)
	out := &reply{body: make([]byte, 0, 512)}
	r := request{ctx: context.Background(), method: "POST", path: "/updates", host: "edge.test", proto: "h1", body: body,
		header: httpHeaders{http.Header{}}, query: urlQuery{}, client: netip.MustParseAddr("203.0.113.9")}
	e.route(&r, out)
	if out.status != 200 || !bytes.HasPrefix(answerBody(out), []byte(`{"version"`)) {
		b.Fatalf("HTTP %d %s", out.status, answerBody(out))
	}
	b.ReportAllocs()
	for b.Loop() {
		out.reset()
		e.route(&r, out)
	}
}

// BenchmarkClientAddrForwarded reads the client address from a trusted
// proxy's X-Forwarded-For (two header lines) as the HTTP/1.1 transport does.
func BenchmarkClientAddrForwarded(b *testing.B) {
	e := newCoreEdge(b, nil)
	e.clients.trusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}
	h := NewHTTP1(e)
	var req fasthttp.Request
	req.Header.Add("X-Forwarded-For", "198.51.100.1, 203.0.113.9")
	req.Header.Add("X-Forwarded-For", "10.1.2.3")
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}, nil)
	if got := h.client(&ctx); got.String() != "203.0.113.9" {
		b.Fatalf("client %s", got)
	}
	b.ReportAllocs()
	for b.Loop() {
		h.client(&ctx)
	}
}

// An edge upgraded from format 1 recovers the segment its previous version
// left open (format 1 magic and records) as it is, delivers it, and writes
// format 2 from then on; countEvents reads both.
func TestSpoolRecoversFormat1Segment(t *testing.T) {
	dir := t.TempDir()
	v1 := append([]byte(events.MagicV1), events.AppendRecordV1(nil, testEvents(1, 3))...)
	torn := append(bytes.Clone(v1), events.AppendRecordV1(nil, testEvents(2, 1))[:7]...)
	if err := os.WriteFile(filepath.Join(dir, segName(3, openSuffix)), torn, 0o644); err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	sp := openTestSpool(t, dir, sink, nil)
	flushSpool(t, sp)
	appendOK(t, sp, testRecord(5, 2))
	appendOK(t, sp, events.AppendCheckIns(nil, &events.CheckIns{AppID: testAppID, Devices: [][16]byte{{1}}}))
	flushSpool(t, sp)
	acked := sink.acked()
	if len(acked) < 2 || !bytes.Equal(acked[0].segment, v1) || countEvents(acked[0].segment) != 3 {
		t.Fatalf("recovered format 1 segment not delivered as it was: %d deliveries", len(acked))
	}
	if len(segmentEvents(t, acked[0].segment)) != 3 {
		t.Fatal("format 1 segment does not decode")
	}
	n := 0
	for _, d := range acked[1:] {
		if events.Version(d.segment) != 2 {
			t.Fatalf("new segment of format %d", events.Version(d.segment))
		}
		n += countEvents(d.segment)
	}
	if n != 2 {
		t.Fatalf("countEvents of the new segments = %d, want 2 (check-ins are not events)", n)
	}
}
