package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/valyala/fasthttp"
)

// serveH1 serves e over HTTP/1.1 on a 127.0.0.1 listener until the test
// ends: through the device front, or (noFront) with fasthttp alone.
func serveH1(t testing.TB, e *Edge, noFront bool) (string, *HTTP1) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := NewHTTP1(e)
	h.noFront = noFront
	h.srv.Logger = discardLogger{}
	served := make(chan error, 1)
	go func() { served <- h.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testenv.Patience(10*time.Second))
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-ctx.Done():
			t.Errorf("Serve still running after Shutdown")
		}
	})
	return ln.Addr().String(), h
}

// frontIdle counts the front's connections: those waiting for a request
// with nothing read, and all.
func frontIdle(h *HTTP1) (idle, all int) {
	h.front.mu.Lock()
	defer h.front.mu.Unlock()
	for fc := range h.front.m {
		if fc.idle.Load() {
			idle++
		}
	}
	return idle, len(h.front.m)
}

// rawAnswer is one answer read off a connection.
type rawAnswer struct {
	status int
	header http.Header
	body   string
}

// rawExchange writes raw on a new connection to addr, in pieces of at most
// chunk bytes (0: at once), and reads up to n answers (fewer if the
// connection ends first).
func rawExchange(t testing.TB, addr, raw string, chunk, n int) []rawAnswer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testenv.Patience(20 * time.Second)))
	go func() {
		for p := raw; p != ""; {
			k := len(p)
			if chunk > 0 {
				k = min(k, chunk)
			}
			if _, err := io.WriteString(c, p[:k]); err != nil {
				return
			}
			p = p[k:]
		}
	}()
	return readAnswers(t, bufio.NewReader(c), n)
}

func readAnswers(t testing.TB, br *bufio.Reader, n int) []rawAnswer {
	t.Helper()
	var out []rawAnswer
	for range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("answer body: %v", err)
		}
		resp.Header.Del("Date")
		if resp.Close {
			resp.Header.Set("Connection", "close") // net/http takes it out of the header
		}
		out = append(out, rawAnswer{resp.StatusCode, resp.Header, string(b)})
	}
	return out
}

// brief describes answers for a failure message.
func brief(as []rawAnswer) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d answers:", len(as))
	for _, a := range as {
		fmt.Fprintf(&b, " [HTTP %d Connection=%q %.60q]", a.status, a.header.Get("Connection"), a.body)
	}
	return b.String()
}

func post(path, body string, header ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: edge.example.com\r\nContent-Type: application/json\r\n", path)
	for i := 0; i+1 < len(header); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", header[i], header[i+1])
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b.String()
}

// The front answers exactly what fasthttp answers, for what it serves and
// for what it hands over: status, every header but Date, and body.
func TestDeviceFrontMatchesFasthttp(t *testing.T) {
	e := newCoreEdge(t, manifestSnapshot(t, 1, 60, "a"))
	front, h := serveH1(t, e, false)
	plain, _ := serveH1(t, e, true)
	// Both compressed variants in the answer cache first (they are made on
	// the second ask), so both servers answer the same variant.
	for range 3 {
		settle(e)
		for _, ae := range []string{"gzip", "br"} {
			rawExchange(t, front, post("/updates", pluginBody, "Accept-Encoding", ae), 0, 1)
		}
	}
	long := strings.Repeat("a", int(e.maxBody())+1)
	cases := []struct {
		name, raw string
		served    bool // by the front (else handed over)
	}{
		{"update check", post("/updates", pluginBody), true},
		{"gzip", post("/updates", pluginBody, "Accept-Encoding", "gzip"), true},
		{"br", post("/updates", pluginBody, "Accept-Encoding", "gzip, deflate, br"), true},
		{"bad json", post("/updates", `{"app_id":`), true},
		{"unknown app", post("/updates", strings.Replace(pluginBody, "com.example.app", "com.nope", 1)), true},
		{"stats", post("/stats", statsBody), true},
		{"channel_self get", "PUT" + strings.TrimPrefix(post("/channel_self", pluginBody), "POST"), true},
		{"channel_self set", post("/channel_self", strings.Replace(pluginBody, `"platform"`, `"channel":"beta","platform"`, 1)), true},
		{"connection close", post("/updates", pluginBody, "Connection", "close"), true},
		{"spelled loosely", "POST /updates HTTP/1.1\r\nhost:edge.example.com\r\nCONTENT-LENGTH:   " +
			strconv.Itoa(len(pluginBody)) + " \t\r\nconnection: Keep-Alive\r\n\r\n" + pluginBody, true},
		{"forwarded from an untrusted peer", post("/updates", pluginBody, "X-Forwarded-For", "203.0.113.9"), true},
		{"healthz", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"query", strings.Replace(post("/updates", pluginBody), "/updates", "/updates?x=1", 1), false},
		{"HTTP/1.0", strings.Replace(post("/updates", pluginBody), "HTTP/1.1", "HTTP/1.0", 1), false},
		{"chunked", "POST /updates HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
			strconv.FormatInt(int64(len(pluginBody)), 16) + "\r\n" + pluginBody + "\r\n0\r\n\r\n", false},
		{"length and chunked", "POST /updates HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false},
		{"two lengths", "POST /updates HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", false},
		{"no length", "POST /updates HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"no host", "POST /updates HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", false},
		{"expect", post("/updates", pluginBody, "Expect", "100-continue"), false},
		{"bare LF", "POST /updates HTTP/1.1\r\nHost: x\nContent-Length: 2\r\n\r\n{}", false},
		{"space before colon", "POST /updates HTTP/1.1\r\nHost : x\r\nContent-Length: 2\r\n\r\n{}", false},
		{"folded", "POST /updates HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\nContent-Length: 2\r\n\r\n{}", false},
		{"body too large", post("/updates", long), false},
	}
	for _, c := range cases {
		before := testutil.ToFloat64(e.metrics.h1HandOffs)
		got := rawExchange(t, front, c.raw, 0, 1)
		handed := testutil.ToFloat64(e.metrics.h1HandOffs) - before
		want := rawExchange(t, plain, c.raw, 0, 1)
		if len(want) != 1 {
			t.Fatalf("%s: %d answers from fasthttp", c.name, len(want))
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d answers from the front, %d from fasthttp", c.name, len(got), len(want))
		}
		for i := range got {
			if got[i].status != want[i].status || got[i].body != want[i].body {
				t.Errorf("%s: front HTTP %d %.80q, fasthttp HTTP %d %.80q", c.name, got[i].status, got[i].body, want[i].status, want[i].body)
			}
			keys := func(h http.Header) []string {
				return slices.Sorted(func(y func(string) bool) {
					for k := range h {
						y(k)
					}
				})
			}
			for _, k := range keys(want[i].header) {
				if !slices.Equal(got[i].header[k], want[i].header[k]) {
					t.Errorf("%s: %s: front %q, fasthttp %q", c.name, k, got[i].header[k], want[i].header[k])
				}
			}
			if !slices.Equal(keys(got[i].header), keys(want[i].header)) {
				t.Errorf("%s: front headers %q, fasthttp %q", c.name, keys(got[i].header), keys(want[i].header))
			}
		}
		if c.served != (handed == 0) {
			t.Errorf("%s: served by the front %v, want %v", c.name, handed == 0, c.served)
		}
	}
	if h.noFront {
		t.Fatal("the front is off")
	}
}

// One keep-alive connection: update checks served by the front, then a
// request it hands to fasthttp with what it has read, and fasthttp serves
// the rest of the connection. Pipelined and trickled requests are served
// in order.
func TestDeviceFrontConnection(t *testing.T) {
	e := newCoreEdge(t, manifestSnapshot(t, 1, 60, "a"))
	addr, _ := serveH1(t, e, false)
	check := post("/updates", pluginBody)
	healthz := "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
	isUpdate := func(a rawAnswer) bool { return a.status == 200 && strings.HasPrefix(a.body, `{"version":"1.1.0"`) }

	before := testutil.ToFloat64(e.metrics.h1HandOffs)
	got := rawExchange(t, addr, check+check+healthz+check+healthz, 0, 5)
	if len(got) != 5 || !isUpdate(got[0]) || !isUpdate(got[1]) || got[2].body != `{"status":"ok"}` || !isUpdate(got[3]) || got[4].status != 200 {
		t.Fatalf("pipelined on one connection: %s", brief(got))
	}
	if n := testutil.ToFloat64(e.metrics.h1HandOffs) - before; n != 1 {
		t.Errorf("%v hand-overs, want 1 (at the first request the front does not serve)", n)
	}
	// A byte at a time.
	if got := rawExchange(t, addr, check+check, 1, 2); len(got) != 2 || !isUpdate(got[0]) || !isUpdate(got[1]) {
		t.Fatalf("trickled: %s", brief(got))
	}
	// Connection: close ends the connection after its answer.
	got = rawExchange(t, addr, post("/updates", pluginBody, "Connection", "close")+check, 0, 2)
	if len(got) != 1 || got[0].header.Get("Connection") != "close" || !isUpdate(got[0]) {
		t.Fatalf("Connection: close: %s", brief(got))
	}
	// A request line the front does not serve is handed over without
	// waiting for the rest of its header.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHo")
	waitFor(t, testenv.Patience(20*time.Second), "the hand-over of a partial request", func() bool { return testutil.ToFloat64(e.metrics.h1HandOffs)-before == 2 })
	io.WriteString(c, "st: x\r\n\r\n")
	if got := readAnswers(t, bufio.NewReader(c), 1); len(got) != 1 || got[0].status != 200 {
		t.Fatalf("partial healthz: %s", brief(got))
	}
}

// The front's coarse timeouts: a request whose header and body do not
// arrive within ReadTimeout of its first byte is cut, on a new connection
// and between keep-alive requests; a connection with no request waits the
// idle timeout, not the read timeout.
func TestDeviceFrontTimeouts(t *testing.T) {
	te := startEdge(t, func(c *config.Edge) { c.ReadTimeout = 300 * time.Millisecond })
	addr := strings.TrimPrefix(te.base, "http://")
	for _, keepAlive := range []bool{false, true} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if keepAlive {
			io.WriteString(c, post("/updates", `{}`))
			if got := readAnswers(t, br, 1); len(got) != 1 || got[0].status != 400 {
				t.Fatalf("first request: %s", brief(got))
			}
		}
		start := time.Now()
		io.WriteString(c, "POST /updates HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
		if _, err := br.ReadByte(); err == nil {
			t.Fatalf("keep-alive %v: an answer to a request missing its body", keepAlive)
		}
		if el := time.Since(start); el < 250*time.Millisecond {
			t.Errorf("keep-alive %v: cut after %v, before the read timeout", keepAlive, el)
		}
	}
	// Idle between requests: the connection then waits the idle timeout,
	// not the read timeout (its deadline, read off the front once idle).
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	io.WriteString(c, post("/updates", `{}`))
	readAnswers(t, br, 1)
	var left time.Duration
	waitFor(t, testenv.Patience(20*time.Second), "the connection idle", func() bool {
		te.h1.front.mu.Lock()
		defer te.h1.front.mu.Unlock()
		for fc := range te.h1.front.m {
			if fc.idle.Load() {
				left = time.Duration(fc.deadline.Load() - te.h1.clock.Load())
				return true
			}
		}
		return false
	})
	if left <= 300*time.Millisecond {
		t.Fatalf("an idle connection is given %v, no more than the read timeout", left)
	}
	io.WriteString(c, post("/updates", `{}`))
	if got := readAnswers(t, br, 1); len(got) != 1 || got[0].status != 400 {
		t.Fatalf("after idling: %s", brief(got))
	}
}

// Shutdown closes idle connections at once, lets a request being read
// finish, and returns once every connection is done.
func TestDeviceFrontShutdown(t *testing.T) {
	e := newCoreEdge(t, manifestSnapshot(t, 1, 60, "a"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := NewHTTP1(e)
	served := make(chan error, 1)
	go func() { served <- h.Serve(ln) }()
	addr := ln.Addr().String()
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	check := post("/updates", pluginBody)
	busyReader := bufio.NewReader(busy)
	io.WriteString(idle, check)
	readAnswers(t, bufio.NewReader(idle), 1)
	io.WriteString(busy, check)
	readAnswers(t, busyReader, 1)
	// Both answered and waiting; then one starts a request: it alone can
	// leave the idle state (a connection just accepted, or just answered,
	// is not yet idle, so it could be taken for the busy one).
	waitFor(t, testenv.Patience(20*time.Second), "both connections idle", func() bool {
		idle, all := frontIdle(h)
		return all == 2 && idle == 2
	})
	io.WriteString(busy, check[:len(check)-5])
	waitFor(t, testenv.Patience(20*time.Second), "the request begun", func() bool {
		idle, all := frontIdle(h)
		return all == 2 && idle == 1
	})
	done := make(chan error, 1)
	go func() { done <- h.Shutdown(context.Background()) }()
	if _, err := idle.Read(make([]byte, 1)); err == nil {
		t.Fatal("the idle connection got bytes at shutdown")
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) with a request being read", err)
	default:
	}
	io.WriteString(busy, check[len(check)-5:])
	got := readAnswers(t, busyReader, 2)
	if len(got) != 1 || got[0].status != 200 || got[0].header.Get("Connection") != "close" {
		t.Fatalf("the request finished during shutdown: %s", brief(got))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still accepting after shutdown")
	}
}

// Over TLS, the front serves update checks, and a connection it hands
// over stays TLS for fasthttp (https download URLs).
func TestDeviceFrontTLS(t *testing.T) {
	e := newCoreEdge(t, manifestSnapshot(t, 1, 60, "a"))
	addr, roots, _ := startTLSServer(t, e)
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testenv.Patience(20 * time.Second)))
	check := post("/updates", pluginBody)
	io.WriteString(c, check+"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"+check)
	got := readAnswers(t, bufio.NewReader(c), 3)
	if len(got) != 3 {
		t.Fatalf("%d answers", len(got))
	}
	for _, i := range []int{0, 2} {
		if got[i].status != 200 || !strings.Contains(got[i].body, `"url":"https://edge.example.com/`) {
			t.Errorf("answer %d: HTTP %d %.200s", i, got[i].status, got[i].body)
		}
	}
	if n := testutil.ToFloat64(e.metrics.h1HandOffs); n != 1 {
		t.Errorf("%v hand-overs, want 1", n)
	}
}

// BenchmarkDeviceFrontParse is the front's parse of a device's update
// check.
func BenchmarkDeviceFrontParse(b *testing.B) {
	raw := []byte(post("/updates", pluginBody, "Accept-Encoding", "gzip", "User-Agent", "okhttp/4.12.0"))
	var r fastRequest
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if st, _ := r.parse(raw, 1<<20); st != parseDone {
			b.Fatal(st)
		}
	}
	if !bytes.Equal([]byte(r.get("accept-encoding")), []byte("gzip")) {
		b.Fatal(r.get("accept-encoding"))
	}
}

// FuzzDeviceFrontParse: whatever the front accepts as a whole request,
// net/http and fasthttp read the same way (method, path, Host, length and
// body, where it ends, and every header value); it never panics, and a
// request cut short is never taken for a whole one.
func FuzzDeviceFrontParse(f *testing.F) {
	for _, s := range []string{
		post("/updates", pluginBody),
		post("/updates", pluginBody, "Accept-Encoding", "gzip", "Connection", "close"),
		post("/stats", statsBody) + post("/updates", "{}"),
		"PUT" + strings.TrimPrefix(post("/channel_self", "{}"), "POST"),
		"POST /updates HTTP/1.1\r\nhost:x\r\ncontent-length:  2 \r\nX-Forwarded-For: 1.2.3.4\r\n\r\n{}",
		"POST /updates HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST /updates HTTP/1.1\r\nHost: x\nContent-Length: 2\r\n\r\n{}",
		"POST /updates HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\n{}",
		"POST /updates HTTP/1.1\r\nHost: x\r\nX: \x80\xff\t\r\nContent-Length: 0\r\n\r\n",
		"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r fastRequest
		st, end := r.parse(b, 1<<16)
		if st != parseDone {
			return
		}
		if end > len(b) || end < r.length {
			t.Fatalf("end %d of %d bytes", end, len(b))
		}
		for cut := range end {
			var r2 fastRequest
			if st, _ := r2.parse(b[:cut], 1<<16); st == parseDone {
				t.Fatalf("%d of %d bytes taken for a whole request", cut, end)
			}
		}
		body := string(b[end-r.length : end])

		src := bytes.NewReader(b)
		br := bufio.NewReader(src)
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("net/http refuses what the front accepts: %v\n%q", err, b[:end])
		}
		got, err := io.ReadAll(req.Body)
		if err != nil || string(got) != body || req.ContentLength != int64(r.length) {
			t.Fatalf("net/http body %q (%v, length %d), front %q", got, err, req.ContentLength, body)
		}
		if rest := br.Buffered() + src.Len(); rest != len(b)-end {
			t.Fatalf("net/http leaves %d bytes, the front %d", rest, len(b)-end)
		}
		if req.Method != r.route.method || req.URL.Path != r.route.path || req.RequestURI != r.route.path || req.Host != r.host {
			t.Fatalf("net/http %s %s host %q; front %s %s host %q", req.Method, req.RequestURI, req.Host, r.route.method, r.route.path, r.host)
		}
		if req.Close != r.close {
			t.Fatalf("net/http close %v, front %v", req.Close, r.close)
		}
		for i := 0; i < r.n; i++ {
			name := r.kv[i][0]
			if equalFoldASCII(name, "Host") {
				continue // net/http moves it to req.Host
			}
			if v := req.Header.Values(name); !slices.Contains(v, r.kv[i][1]) {
				t.Fatalf("%s: net/http %q, front %q", name, v, r.kv[i][1])
			}
			if first := r.get(name); len(req.Header.Values(name)) == 0 || req.Header.Values(name)[0] != first {
				t.Fatalf("%s: net/http first %q, front %q", name, req.Header.Values(name), first)
			}
		}

		var fr fasthttp.Request
		if err := fr.Read(bufio.NewReader(bytes.NewReader(b[:end]))); err != nil {
			t.Fatalf("fasthttp refuses what the front accepts: %v\n%q", err, b[:end])
		}
		if string(fr.Header.Method()) != r.route.method || string(fr.Header.RequestURI()) != r.route.path ||
			string(fr.Host()) != r.host || string(fr.Body()) != body {
			t.Fatalf("fasthttp %s %s host %q body %q; front %s %s host %q body %q", fr.Header.Method(), fr.Header.RequestURI(),
				fr.Host(), fr.Body(), r.route.method, r.route.path, r.host, body)
		}
	})
}

// BenchmarkDeviceFrontUpdates is an update check with a manifest answer
// through the front on a loopback TCP connection, keep-alive: parse,
// handler, answer write, and the kernel's loopback both ways.
func BenchmarkDeviceFrontUpdates(b *testing.B) {
	for _, x := range []struct {
		name, ae string
		files    int
	}{
		{"identity", "identity", 60},
		{"gzip", "gzip", 60},
		{"sendfile", "identity", 1200}, // an answer of sendfileMin and more
	} {
		ae := x.ae
		b.Run(x.name, func(b *testing.B) {
			e := newCoreEdge(b, manifestSnapshot(b, 1, x.files, "a"))
			addr, _ := serveH1(b, e, false)
			raw := []byte(post("/updates", pluginBody, "Accept-Encoding", ae))
			for range 3 {
				settle(e)
				rawExchange(b, addr, string(raw), 0, 1)
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			// One answer's length, header included, then the same bytes each time.
			c.Write(raw)
			buf := make([]byte, 1<<20)
			n, err := c.Read(buf)
			if err != nil || !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 200 OK\r\n")) {
				b.Fatalf("first answer: %v %q", err, buf[:min(n, 80)])
			}
			hdr := bytes.Index(buf[:n], []byte("\r\n\r\n")) + 4
			cl := bytes.Index(buf[:hdr], []byte("Content-Length: ")) + len("Content-Length: ")
			length, _ := strconv.Atoi(string(buf[cl : cl+bytes.IndexByte(buf[cl:], '\r')]))
			size := hdr + length
			if _, err := io.ReadFull(c, buf[n:size]); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := c.Write(raw); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf[:size]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Answers of sendfileMin and more go out of an answer file by sendfile on
// plain TCP: the same bytes as fasthttp sends, under concurrent requests,
// identity and gzip; the files are unnamed ones in the data directory
// (nothing left in it); a variant replaced since gets a new file.
func TestDeviceFrontSendfile(t *testing.T) {
	e := newCoreEdge(t, manifestSnapshot(t, 1, 1200, "a"))
	front, _ := serveH1(t, e, false)
	plain, _ := serveH1(t, e, true)
	before, beforeTmp := answerFilesMade.Load(), answerFilesTmp.Load()
	for range 3 {
		settle(e)
		rawExchange(t, front, post("/updates", pluginBody, "Accept-Encoding", "gzip"), 0, 1)
	}
	for _, ae := range []string{"identity", "gzip"} {
		raw := post("/updates", pluginBody, "Accept-Encoding", ae)
		want := rawExchange(t, plain, raw, 0, 1)
		if len(want) != 1 || len(want[0].body) < sendfileMin {
			t.Fatalf("%s: fasthttp answer %s, want one of %d bytes or more", ae, brief(want), sendfileMin)
		}
		errs := make(chan error, 8)
		for range 8 {
			go func() {
				got := rawExchange(t, front, strings.Repeat(raw, 20), 0, 20)
				for i, a := range got {
					if a.status != 200 || a.body != want[0].body || a.header.Get("Content-Encoding") != want[0].header.Get("Content-Encoding") {
						errs <- fmt.Errorf("%s: answer %d differs from fasthttp's: %s", ae, i, brief(got[i:i+1]))
						return
					}
				}
				if len(got) != 20 {
					errs <- fmt.Errorf("%s: %d answers of 20", ae, len(got))
					return
				}
				errs <- nil
			}()
		}
		for range 8 {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	}
	if runtime.GOOS != "linux" {
		return
	}
	if made := answerFilesMade.Load() - before; made != 2 {
		t.Errorf("%d answer files made, want 2 (identity and gzip)", made)
	}
	if tmp := answerFilesTmp.Load() - beforeTmp; tmp != 2 {
		t.Errorf("%d of the answer files are unnamed files in %s, want 2", tmp, e.cfg.DataDir)
	}
	if left, _ := filepath.Glob(filepath.Join(e.cfg.DataDir, "*")); slices.ContainsFunc(left, func(p string) bool {
		fi, err := os.Stat(p)
		return err == nil && !fi.IsDir() && fi.Size() >= sendfileMin
	}) {
		t.Errorf("an answer-sized file was left in the data directory: %q", left)
	}

	a := &encodedAnswer{plain: bytes.Repeat([]byte("x"), sendfileMin)}
	f := a.file(0, a.plain, e.cfg.DataDir)
	if f == nil || a.file(0, a.plain, e.cfg.DataDir) != f {
		t.Fatal("the answer file of a variant is not kept")
	}
	other := bytes.Clone(a.plain)
	if g := a.file(0, other, e.cfg.DataDir); g == nil || g == f || unsafe.SliceData(g.src) != unsafe.SliceData(other) {
		t.Fatal("a replaced variant kept the old answer file")
	}
}

// Requests racing to send one large answer first make one answer file.
func TestDeviceFrontAnswerFileOnce(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("sendfile from answer files is Linux only")
	}
	dir := t.TempDir()
	for range 20 {
		a := &encodedAnswer{plain: make([]byte, 4<<20)}
		before := answerFilesMade.Load()
		files := make(chan *answerFile, 8)
		start := make(chan struct{})
		for range 8 {
			go func() { <-start; files <- a.file(0, a.plain, dir) }()
		}
		close(start)
		first := <-files
		for range 7 {
			if f := <-files; f != first {
				t.Fatal("racing requests got different answer files")
			}
		}
		if made := answerFilesMade.Load() - before; made < 1 || a.files[0].Load() != first {
			t.Fatalf("%d made, the kept one differs", made)
		}
	}
}

// Shutdown keeps timing requests out: a request whose header never ends
// is cut at the read timeout, and Shutdown returns then, not at its own
// deadline.
func TestDeviceFrontShutdownKeepsTimeouts(t *testing.T) {
	e := newCoreEdge(t, manifestSnapshot(t, 1, 60, "a"))
	e.cfg.ReadTimeout = 100 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := NewHTTP1(e)
	go h.Serve(ln)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /updates HTTP/1.1\r\nHost: x\r\n") // never finished
	waitFor(t, testenv.Patience(10*time.Second), "a connection reading a request", func() bool {
		idle, all := frontIdle(h)
		return all > idle
	})
	// A grace far beyond the read timeout: the cut must come from the timeout.
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Patience(time.Minute))
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v (the read timeout did not end the request)", err)
	}
}

// holdConn buffers writes while hold is set, to put several TLS records
// in one TCP segment.
type holdConn struct {
	net.Conn
	hold bool
	buf  []byte
}

func (c *holdConn) Write(p []byte) (int, error) {
	if c.hold {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// A TLS 1.2 client sending its request and close_notify in one segment
// (tls.Conn.Read returns the request with io.EOF) is answered, by the
// front as by fasthttp.
func TestDeviceFrontRequestWithCloseNotify(t *testing.T) {
	for _, front := range []bool{true, false} {
		e := newCoreEdge(t, manifestSnapshot(t, 1, 60, "a"))
		e.cfg.DeviceFront = front
		addr, roots, _ := startTLSServer(t, e)
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		hc := &holdConn{Conn: raw}
		c := tls.Client(hc, &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}, MaxVersion: tls.VersionTLS12})
		c.SetDeadline(time.Now().Add(testenv.Patience(20 * time.Second)))
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		hc.hold = true
		io.WriteString(c, post("/updates", pluginBody))
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		hc.hold = false
		raw.SetWriteDeadline(time.Time{}) // CloseWrite leaves it expired
		if _, err := raw.Write(hc.buf); err != nil {
			t.Fatal(err)
		}
		if got := readAnswers(t, bufio.NewReader(c), 1); len(got) != 1 || got[0].status != 200 {
			t.Errorf("front %v: %s", front, brief(got))
		}
	}
}

// BenchmarkDeviceFrontParsePartial: an unfinished header of 40 bytes and
// of 8 KB; what a read of a trickled header costs.
func BenchmarkDeviceFrontParsePartial(b *testing.B) {
	for _, n := range []int{40, 8000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			var sb strings.Builder
			sb.WriteString("POST /updates HTTP/1.1\r\nHost: x\r\n")
			for sb.Len() < n-170 {
				sb.WriteString("X-Aaaaaaaaaa: " + strings.Repeat("b", 150) + "\r\n")
			}
			raw := []byte(sb.String())
			var r fastRequest
			b.ReportAllocs()
			for b.Loop() {
				if st, _ := r.parse(raw, 1<<20); st != parseMore {
					b.Fatal(st)
				}
			}
		})
	}
}

// An idle keep-alive connection on plain TCP holds no read or write buffer:
// after one answer each, 40 connections wait for their next request
// holding none, and each still answers a second request on the same
// connection.
func TestDeviceFrontIdleBuffers(t *testing.T) {
	for _, overTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "tcp", true: "tls"}[overTLS], func(t *testing.T) { testFrontIdleBuffers(t, overTLS) })
	}
}

func testFrontIdleBuffers(t *testing.T, overTLS bool) {
	var held atomic.Int64
	fastBufsHeld = func(d int) { held.Add(int64(d)) }
	t.Cleanup(func() { fastBufsHeld = nil }) // after the front's shutdown (cleanups run last first)
	e := newCoreEdge(t, manifestSnapshot(t, 1, 60, "a"))
	var addr string
	var h *HTTP1
	var dial func() (net.Conn, error)
	if overTLS {
		var roots *x509.CertPool
		var ts *TLSServer
		addr, roots, ts = startTLSServer(t, e)
		h = ts.h1
		dial = func() (net.Conn, error) {
			return tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
		}
	} else {
		addr, h = serveH1(t, e, false)
		dial = func() (net.Conn, error) { return net.Dial("tcp", addr) }
	}
	raw := post("/updates", pluginBody)
	const n = 40
	conns := make([]net.Conn, n)
	readers := make([]*bufio.Reader, n)
	exchange := func(i int) {
		t.Helper()
		// Twice back to back, then the two answers: the second request
		// waits in the socket (or in crypto/tls's buffer) behind the first.
		if _, err := io.WriteString(conns[i], raw+raw); err != nil {
			t.Fatal(err)
		}
		as := readAnswers(t, readers[i], 2)
		for _, a := range as {
			if a.status != 200 || !strings.Contains(a.body, `"manifest"`) {
				t.Fatalf("connection %d: %s", i, brief(as))
			}
		}
		if len(as) != 2 {
			t.Fatalf("connection %d: %s", i, brief(as))
		}
	}
	for i := range conns {
		c, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(testenv.Patience(30 * time.Second)))
		conns[i], readers[i] = c, bufio.NewReader(c)
		exchange(i)
	}
	waitFor(t, testenv.Patience(20*time.Second), "every connection idle, holding no buffer", func() bool {
		idle, all := frontIdle(h)
		return all == n && idle == n && held.Load() == 0
	})
	for i := range conns {
		exchange(i)
	}
}

// BenchmarkDeviceFrontIdleConns: what an idle keep-alive connection costs
// the edge's Go memory. Each op opens a connection, sends one update check
// (gzip answer) and keeps it open; after the last, the heap and stack in
// use per connection are reported (both ends are in this process: the
// client's share is its socket's small structures). At most 4,000
// connections (two descriptors each). Run with -benchtime 3000x.
func BenchmarkDeviceFrontIdleConns(b *testing.B) {
	e := newCoreEdge(b, manifestSnapshot(b, 1, 60, "a"))
	addr, h := serveH1(b, e, false)
	raw := post("/updates", pluginBody, "Accept-Encoding", "gzip")
	n := min(b.N, 4000)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m0)
	b.ReportAllocs()
	b.ResetTimer()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		io.WriteString(c, raw)
		if as := readAnswers(b, bufio.NewReader(c), 1); len(as) != 1 || as[0].status != 200 {
			b.Fatal(brief(as))
		}
	}
	b.StopTimer()
	waitFor(b, testenv.Patience(20*time.Second), "every connection idle", func() bool {
		idle, _ := frontIdle(h)
		return idle == n
	})
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(int64(m1.HeapInuse)-int64(m0.HeapInuse))/float64(n), "heap-B/conn")
	b.ReportMetric(float64(int64(m1.StackInuse)-int64(m0.StackInuse))/float64(n), "stack-B/conn")
}
