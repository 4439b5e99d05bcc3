package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	brrr "github.com/molecule-man/go-brrr"
	"github.com/quic-go/quic-go/http3"
	"github.com/valyala/fasthttp"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// manifestSnapshot is testSnapshot whose production bundle 1.1.0 has a
// manifest of n files, named and hashed after salt (a different salt: a
// different answer), and a 64 MiB zip: the device profile keeps the
// manifest in every answer (manifestchoice.go).
func manifestSnapshot(t testing.TB, rev int64, n int, salt string) *snapshot.Snapshot {
	t.Helper()
	s := testSnapshot(t, rev, fakeSHA("bundle"))
	b := s.Apps[0].Bundles[1]
	b.Size = 64 << 20
	for i := range n {
		b.Manifest = append(b.Manifest, snapshot.ManifestEntry{Name: fmt.Sprintf("assets/chunk-%s-%d.js.br", salt, i),
			Hash: fakeSHA(salt + "h" + strconv.Itoa(i)), Blob: fakeSHA(salt + "b" + strconv.Itoa(i)), Size: int64(1000 + i)})
	}
	s2 := &snapshot.Snapshot{Format: s.Format, Rev: rev, Apps: s.Apps}
	if err := s2.Index(nil); err != nil {
		t.Fatal(err)
	}
	return s2
}

// freshAnswer encodes the plain answer a plugin 8 device on 1.0.0 gets
// under s, without the cache.
func freshAnswer(s *snapshot.Snapshot, base string) []byte {
	b := s.App(testAppID).Bundle("1.1.0")
	return appendAnswer(nil, &answerKey{bundle: b, base: base, manifest: len(b.Manifest) > 0})
}

// decode returns an answer's body without its content coding.
func decode(t testing.TB, encoding string, body []byte) []byte {
	t.Helper()
	switch encoding {
	case "":
		return body
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		return b
	case "br":
		b, err := brrr.Decompress(body)
		if err != nil {
			t.Fatalf("br: %v", err)
		}
		return b
	}
	t.Fatalf("unexpected Content-Encoding %q", encoding)
	return nil
}

// settle lets the answer cache compress without waiting for its duty
// cycle, as if the edge had been idle.
func settle(e *Edge) { e.answers.next.Store(0) }

// warm requests the answer until both compressed variants exist.
func warm(t testing.TB, te *testEdge) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		settle(te.edge)
		a := te.do(t, http.MethodPost, "/updates", []byte(pluginBody), "Accept-Encoding", "br")
		if a.header.Get("Content-Encoding") == "br" {
			return
		}
	}
	t.Fatal("the answer was never compressed with brotli")
}

func TestPickEncoding(t *testing.T) {
	for _, c := range []struct {
		ae       string
		br, gzip bool
		want     string
	}{
		{"", true, true, encIdentity},
		{"gzip", true, true, encGzip},
		{"gzip", false, false, encIdentity}, // not compressed (yet)
		{"gzip, deflate", true, true, encGzip},
		{"br;q=1.0, gzip;q=0.9, deflate;q=0.8", true, true, encBrotli}, // Alamofire (iOS)
		{"br;q=1.0, gzip;q=0.9, deflate;q=0.8", false, true, encGzip},  // brotli not built yet
		{"gzip, deflate, br", true, true, encBrotli},                   // URLSession: a tie goes to the smaller
		{"gzip, br;q=0", true, true, encGzip},
		{"br;q=0.5, gzip;q=0.8", true, true, encGzip},
		{"gzip; q=0.5 , br ; q=0.4", true, true, encGzip},
		{"GZIP", true, true, encGzip},
		{"x-gzip", false, true, encGzip},
		{"Br", true, false, encBrotli},
		{"deflate", true, true, encIdentity},
		{"identity", true, true, encIdentity},
		{"gzip;q=0", true, true, encIdentity},
		{"gzip;q=0.000", true, true, encIdentity},
		{"gzip;q=0.001", true, true, encGzip}, // identity, not listed, is the least preferred
		{"gzip;q=0.5, identity;q=0.6", true, true, encIdentity},
		{"gzip;q=0.6, identity;q=0.6", true, true, encGzip},
		{"*", true, true, encBrotli},
		{"*", false, true, encGzip},
		{"*;q=0, identity", true, true, encIdentity},
		{"*;q=0.5, identity;q=0.9", true, true, encIdentity},
		{"identity;q=0, gzip", true, true, encGzip},
		{"identity;q=0", true, true, encIdentity}, // nothing acceptable: plain rather than 406
		{"*;q=0", true, true, encIdentity},
		{"gzip;q=1.5", true, true, encIdentity}, // malformed weights: ignored elements
		{"gzip;q=abc", true, true, encIdentity},
		{"gzip;q=0.0001", true, true, encIdentity},
		{"gzip;q=", true, true, encIdentity},
		{"gzip;q=1.", true, true, encGzip},
		{"gzip;Q=0.7;foo=bar", true, true, encGzip},
		{"gzip;level=9", true, true, encGzip},
		{",,gzip,,", true, true, encGzip},
		{" \t", true, true, encIdentity},
		{"gzipx, xbr", true, true, encIdentity},
	} {
		if got := pickEncoding(c.ae, c.br, c.gzip); got != c.want {
			t.Errorf("pickEncoding(%q, br %v, gzip %v) = %s, want %s", c.ae, c.br, c.gzip, got, c.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { pickEncoding("br;q=1.0, gzip;q=0.9, deflate;q=0.8", true, true) }); n != 0 {
		t.Errorf("pickEncoding allocates %v times", n)
	}
}

// TestAnswersMatchFresh: over HTTP/1.1, whatever the coding, the answer
// decodes to exactly what encoding it afresh under the current snapshot
// gives, before and after swaps that change the answer and swaps that do
// not (whose compressed variants are carried over).
func TestAnswersMatchFresh(t *testing.T) {
	te := startEdge(t, nil)
	host := strings.TrimPrefix(te.base, "http://")
	base := "http://" + host
	check := func(s *snapshot.Snapshot, what string) {
		t.Helper()
		want := freshAnswer(s, base)
		if len(want) < compressMin {
			t.Fatalf("%s: answer of %d bytes, want a large one", what, len(want))
		}
		for _, ae := range []string{"", "identity", "gzip", "br", "br;q=1.0, gzip;q=0.9, deflate;q=0.8", "deflate"} {
			a := te.do(t, http.MethodPost, "/updates", []byte(pluginBody), "Accept-Encoding", ae)
			enc := a.header.Get("Content-Encoding")
			if a.status != 200 {
				t.Fatalf("%s, %q: HTTP %d %s", what, ae, a.status, a.body)
			}
			if got := decode(t, enc, a.body); !bytes.Equal(got, want) {
				t.Fatalf("%s, Accept-Encoding %q (%s): answer differs from a fresh encoding\n got %.200s\nwant %.200s", what, ae, enc, got, want)
			}
			if a.header.Get("Vary") != "Accept-Encoding" {
				t.Errorf("%s, %q: Vary %q", what, ae, a.header.Get("Vary"))
			}
			if cl := a.header.Get("Content-Length"); cl != strconv.Itoa(len(a.body)) {
				t.Errorf("%s, %q: Content-Length %s for %d bytes", what, ae, cl, len(a.body))
			}
			if a.header.Get("Content-Type") != contentTypeJSON {
				t.Errorf("%s, %q: Content-Type %q", what, ae, a.header.Get("Content-Type"))
			}
			wantEnc := map[string]string{"gzip": "gzip", "br": "br", "br;q=1.0, gzip;q=0.9, deflate;q=0.8": "br"}[ae]
			if enc != wantEnc {
				t.Errorf("%s, Accept-Encoding %q: Content-Encoding %q, want %q", what, ae, enc, wantEnc)
			}
		}
	}
	s1 := manifestSnapshot(t, 1, 60, "a")
	te.edge.SetSnapshot(s1)
	warm(t, te)
	check(s1, "rev 1")

	// A publication that changes the manifest: new bytes, compressed anew.
	s2 := manifestSnapshot(t, 2, 61, "b")
	te.edge.SetSnapshot(s2)
	a := te.do(t, http.MethodPost, "/updates", []byte(pluginBody), "Accept-Encoding", "gzip")
	if got := decode(t, a.header.Get("Content-Encoding"), a.body); !bytes.Equal(got, freshAnswer(s2, base)) {
		t.Fatalf("first answer after a swap is stale: %.200s", got)
	}
	warm(t, te)
	check(s2, "rev 2")

	// A publication that leaves the answer as it was: the variants are
	// carried over, so the very first request gets them.
	before := counter(t, te.edge, "updraft_edge_update_answer_compressions_total")
	s3 := manifestSnapshot(t, 3, 61, "b")
	te.edge.SetSnapshot(s3)
	a = te.do(t, http.MethodPost, "/updates", []byte(pluginBody), "Accept-Encoding", "br")
	if a.header.Get("Content-Encoding") != "br" {
		t.Errorf("unchanged answer after a swap: Content-Encoding %q, want br carried over", a.header.Get("Content-Encoding"))
	}
	check(s3, "rev 3")
	if after := counter(t, te.edge, "updraft_edge_update_answer_compressions_total"); after != before {
		t.Errorf("an unchanged answer was compressed again (%v → %v)", before, after)
	}
	// The plugin without manifest support gets the small answer, plain.
	a = te.do(t, http.MethodPost, "/updates", body(t, map[string]any{"plugin_version": "5.9.0"}), "Accept-Encoding", "gzip")
	want := appendAnswer(nil, &answerKey{bundle: s3.App(testAppID).Bundle("1.1.0"), base: base})
	if a.status != 200 || !bytes.Equal(a.body, want) || a.header.Get("Content-Encoding") != "" || a.header.Get("Vary") != "" {
		t.Errorf("plugin 5.9.0: HTTP %d %s (Content-Encoding %q, Vary %q), want plain %s", a.status, a.body,
			a.header.Get("Content-Encoding"), a.header.Get("Vary"), want)
	}
}

// counter sums a metric's samples from the edge's registry.
func counter(t testing.TB, e *Edge, name string) float64 {
	t.Helper()
	mfs, err := e.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				sum += g.GetValue()
			}
		}
	}
	return sum
}

// TestAnswersNotCompressed: refusals, errors, HEAD and small answers are
// sent as they are, without Vary, whatever the client accepts.
func TestAnswersNotCompressed(t *testing.T) {
	te := startEdge(t, nil)
	te.edge.SetSnapshot(manifestSnapshot(t, 1, 60, "a"))
	warm(t, te)
	for _, c := range []struct {
		name, method string
		body         []byte
		status       int
	}{
		{"up to date", "POST", body(t, map[string]any{"version_name": "1.1.0"}), 200},
		{"invalid body", "POST", []byte(`{"app_id":`), 400},
		{"unknown app", "POST", body(t, map[string]any{"app_id": "com.example.other"}), 200},
		{"old plugin, small answer", "POST", body(t, map[string]any{"plugin_version": "5.9.0"}), 200},
		{"health check", "GET", nil, 200},
		{"HEAD", "HEAD", nil, 200},
	} {
		a := te.do(t, c.method, "/updates", c.body, "Accept-Encoding", "gzip, br")
		if a.status != c.status || a.header.Get("Content-Encoding") != "" || a.header.Get("Vary") != "" {
			t.Errorf("%s: HTTP %d (want %d), Content-Encoding %q, Vary %q: %s", c.name, a.status, c.status,
				a.header.Get("Content-Encoding"), a.header.Get("Vary"), a.body)
		}
		if c.method != "HEAD" && !json.Valid(a.body) {
			t.Errorf("%s: not JSON: %q", c.name, a.body)
		}
	}
}

// TestAnswersManyHosts: without --public-url the base URL comes from Host;
// a client sending a new Host with every request neither grows the cache
// past its bounds nor makes the edge compress anything, and every answer
// names its own host.
func TestAnswersManyHosts(t *testing.T) {
	te := startEdge(t, nil)
	s := manifestSnapshot(t, 1, 1500, "a") // ≈ 250 KB answers: the byte budget binds
	te.edge.SetSnapshot(s)
	one := len(freshAnswer(s, "http://h0.example"))
	if one*answerMaxEntries < 2*answerBudget {
		t.Fatalf("answers of %d bytes would not reach the byte budget", one)
	}
	send := func(host string) answer {
		req, err := http.NewRequest(http.MethodPost, te.base+"/updates", strings.NewReader(pluginBody))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := te.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, resp.Header, b}
	}
	n := 2 * answerBudget / one
	for i := range n {
		host := fmt.Sprintf("h%d.example", i)
		a := send(host)
		if a.status != 200 || !bytes.Equal(decode(t, a.header.Get("Content-Encoding"), a.body), freshAnswer(s, "http://"+host)) {
			t.Fatalf("host %s: HTTP %d, answer not its own: %.120s", host, a.status, a.body)
		}
		if entries, size := te.edge.answers.stats(); size > answerBudget || entries > answerMaxEntries {
			t.Fatalf("after %d hosts: %d answers, %d bytes: over the bounds (%d, %d)", i+1, entries, size, answerMaxEntries, answerBudget)
		}
	}
	if c := counter(t, te.edge, "updraft_edge_update_answer_compressions_total"); c != 0 {
		t.Errorf("%v compressions for hosts seen once", c)
	}
	entries, size := te.edge.answers.stats()
	t.Logf("%d hosts seen once: %d answers held, %d bytes", n, entries, size)
	// A host in use is compressed and kept while the others churn.
	settle(te.edge)
	send("cdn.example")
	if a := send("cdn.example"); a.header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("second request of a host: Content-Encoding %q, want gzip", a.header.Get("Content-Encoding"))
	}
	for i := range 50 {
		send(fmt.Sprintf("x%d.example", i))
		if a := send("cdn.example"); a.header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("the host in use lost its compressed answer after %d other hosts", i+1)
		}
	}
}

// TestAnswersConcurrentSwaps: requests racing snapshot swaps always get
// an answer that is one snapshot's fresh encoding, in any coding.
func TestAnswersConcurrentSwaps(t *testing.T) {
	e := newCoreEdge(t, nil)
	const base = "https://edge.example.com"
	snaps := []*snapshot.Snapshot{manifestSnapshot(t, 1, 40, "a"), manifestSnapshot(t, 2, 50, "b")}
	valid := map[string]bool{}
	for _, s := range snaps {
		valid[string(freshAnswer(s, base))] = true
	}
	e.SetSnapshot(snaps[0])
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ae := []string{"", "gzip", "br", "gzip, br"}[g]
			out := &reply{}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				out.reset()
				e.updates([]byte(pluginBody), []byte(base), ae, out)
				got := answerBody(out)
				switch out.contentEncoding {
				case "gzip":
					zr, err := gzip.NewReader(bytes.NewReader(got))
					if err == nil {
						got, err = io.ReadAll(zr)
					}
					if err != nil {
						errs <- "gzip: " + err.Error()
						return
					}
				case "br":
					var err error
					if got, err = brrr.Decompress(got); err != nil {
						errs <- "br: " + err.Error()
						return
					}
				}
				if !valid[string(got)] {
					errs <- fmt.Sprintf("answer %q (%s) is no snapshot's", got[:min(len(got), 120)], out.contentEncoding)
					return
				}
			}
		}()
	}
	next := make([]*snapshot.Snapshot, 0, 60) // built before: Index writes to the apps it indexes
	for rev := int64(3); rev < 60; rev++ {
		next = append(next, manifestSnapshot(t, rev, 40+10*int(rev%2), string(rune('a'+rev%2))))
	}
	for _, s := range next {
		e.SetSnapshot(s)
		settle(e)
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestAnswersPublicURL: with --public-url every Host gets the same cached
// answer.
func TestAnswersPublicURL(t *testing.T) {
	te := startEdge(t, func(c *config.Edge) { c.PublicURL = "https://cdn.example.com/" })
	s := manifestSnapshot(t, 1, 30, "a")
	te.edge.SetSnapshot(s)
	warm(t, te)
	a := te.do(t, http.MethodPost, "/updates", []byte(pluginBody), "Accept-Encoding", "gzip")
	if got := decode(t, a.header.Get("Content-Encoding"), a.body); !bytes.Equal(got, freshAnswer(s, "https://cdn.example.com")) {
		t.Fatalf("answer %.200s", got)
	}
	if n, _ := te.edge.answers.stats(); n != 1 {
		t.Errorf("%d answers held, want 1", n)
	}
}

// TestAnswersHTTP3: HTTP/3 negotiates and sends the same bytes.
func TestAnswersHTTP3(t *testing.T) {
	te := startEdge(t, nil)
	s := manifestSnapshot(t, 1, 60, "a")
	te.edge.SetSnapshot(s)
	addr, client := serveHTTP3(t, te.edge)
	url := "https://" + addr + "/updates"
	post := func(ae string) answer {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(pluginBody))
		if ae != "" {
			req.Header.Set("Accept-Encoding", ae)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 3 {
			t.Fatalf("answered over %s", resp.Proto)
		}
		return answer{resp.StatusCode, resp.Header, b}
	}
	want := freshAnswer(s, "https://"+addr)
	for i := 0; ; i++ {
		settle(te.edge)
		if a := post("br"); a.header.Get("Content-Encoding") == "br" {
			break
		}
		if i == 100 {
			t.Fatal("never compressed")
		}
	}
	for _, c := range []struct{ ae, enc string }{{"", ""}, {"gzip", "gzip"}, {"br", "br"}, {"identity", ""}} {
		a := post(c.ae)
		enc := a.header.Get("Content-Encoding")
		if a.status != 200 || enc != c.enc || a.header.Get("Vary") != "Accept-Encoding" ||
			a.header.Get("Content-Length") != strconv.Itoa(len(a.body)) || !bytes.Equal(decode(t, enc, a.body), want) {
			t.Errorf("h3 %q: HTTP %d, Content-Encoding %q (want %q), Vary %q, Content-Length %s for %d bytes",
				c.ae, a.status, enc, c.enc, a.header.Get("Vary"), a.header.Get("Content-Length"), len(a.body))
		}
	}
}

// BenchmarkUpdatesManifest is an update check whose answer carries a
// manifest (60 files, 12 KB plain), from the answer cache, per coding:
// parse, validate, resolve, look up; nothing is encoded or copied.
func BenchmarkUpdatesManifest(b *testing.B) {
	e := newCoreEdge(b, manifestSnapshot(b, 1, 60, "a"))
	body, base := []byte(pluginBody), []byte("https://edge.example.com")
	for _, ae := range []string{"identity", "gzip", "br"} {
		b.Run(ae, func(b *testing.B) {
			out := &reply{body: make([]byte, 0, 512)}
			for range 3 {
				settle(e)
				out.reset()
				e.updates(body, base, ae, out)
			}
			if want := strings.TrimPrefix(ae, "identity"); out.contentEncoding != want {
				b.Fatalf("Content-Encoding %q, want %q", out.contentEncoding, want)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(out.data)))
			for b.Loop() {
				out.reset()
				e.updates(body, base, ae, out)
			}
		})
	}
}

// BenchmarkUpdatesManifestHTTP1 is the same over fasthttp (in-memory
// listener), identity and gzip.
func BenchmarkUpdatesManifestHTTP1(b *testing.B) {
	e := newCoreEdge(b, manifestSnapshot(b, 1, 60, "a"))
	client := inMemoryHTTP1(b, e)
	for _, ae := range []string{"identity", "gzip"} {
		b.Run(ae, func(b *testing.B) {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://edge.example.com/updates")
			req.Header.SetMethod(fasthttp.MethodPost)
			req.Header.SetContentType("application/json")
			req.Header.Set("Accept-Encoding", ae)
			req.SetBodyString(pluginBody)
			for range 3 {
				settle(e)
				if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
					b.Fatalf("POST /updates: %v: HTTP %d", err, resp.StatusCode())
				}
			}
			if enc := string(resp.Header.ContentEncoding()); ae == "gzip" && enc != "gzip" {
				b.Fatalf("Content-Encoding %q", enc)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(resp.Body())))
			for b.Loop() {
				if err := client.Do(req, resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// serveHTTP3 serves e over HTTP/3 on a loopback UDP port with a
// self-signed certificate until the test ends, and returns the address and
// a client trusting that certificate (no transparent decompression: tests
// see the bytes on the wire).
func serveHTTP3(t testing.TB, e *Edge) (addr string, client *http.Client) {
	t.Helper()
	certs, err := LoadCertificates(TLSSelfSigned, "", "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h3 := NewHTTP3(e, certs)
	go h3.Serve(pc)
	leaf, err := x509.ParseCertificate(certs.Leaf())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	tr := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}, DisableCompression: true}
	t.Cleanup(func() {
		tr.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h3.Shutdown(ctx)
		pc.Close()
	})
	return pc.LocalAddr().String(), &http.Client{Transport: tr, Timeout: 10 * time.Second}
}
