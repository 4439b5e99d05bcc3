package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin/client"
)

// chromiumPath finds Debian's Chromium. Without it the test is skipped,
// unless UPDRAFT_REQUIRE_CHROMIUM is set (CI installs Chromium and sets it,
// so there a missing browser is a failure).
func chromiumPath(t *testing.T) string {
	for _, p := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("UPDRAFT_REQUIRE_CHROMIUM") != "" {
		t.Fatal("chromium not found and UPDRAFT_REQUIRE_CHROMIUM is set")
	}
	t.Skip("chromium not installed (Debian: apt-get install chromium)")
	return ""
}

// TestChromiumDictionaryTransport drives headless Chromium against the edge:
// a page fetches bundle v1's canonical archive (which Chromium keeps as a
// dictionary), then v2's; the edge must answer v2 with dcb or dcz, and the
// bytes the page received must hash to v2's canonical SHA-256.
func TestChromiumDictionaryTransport(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	browser := chromiumPath(t)
	data := t.TempDir()
	r := startTestServe(t, data)
	cli(t, r, data, "app", "create", "com.example.app")
	cli(t, r, data, "bundle", "upload", fixture(t, "swagger-ui-5.34.0.zip"), "--app", "com.example.app", "--version", "1.0.1")
	cli(t, r, data, "bundle", "upload", fixture(t, "swagger-ui-5.34.1.zip"), "--app", "com.example.app", "--version", "1.0.2", "--channel", "production")
	c := client.New("http://"+r.OriginAddr, readKey(t, data))
	var v1, v2 string
	for deadline := time.Now().Add(testenv.Patience(60 * time.Second)); ; {
		bs, _ := c.ListBundles(context.Background(), "com.example.app")
		if len(bs) == 2 && len(bs[0].Deltas) == 2 {
			v2, v1 = bs[0].Canonical, bs[1].Canonical
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("deltas not built")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Wait until the edge's snapshot lists the deltas.
	for deadline := time.Now().Add(5 * time.Second); r.Edge.Snapshot().ByCanonical(v2) == nil || len(r.Edge.Snapshot().ByCanonical(v2).Deltas) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("edge snapshot has no deltas")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The page and the blobs share one origin (http://localhost:PORT, a
	// potentially trustworthy origin): the page is served here, /b/ is
	// relayed unchanged to the edge, recording each answer's encoding.
	edgeURL, _ := url.Parse("http://" + r.EdgeAddr)
	proxy := httputil.NewSingleHostReverseProxy(edgeURL)
	var mu sync.Mutex
	seen := map[string]string{} // path → Content-Encoding
	proxy.ModifyResponse = func(resp *http.Response) error {
		mu.Lock()
		seen[resp.Request.URL.Path] = resp.Header.Get("Content-Encoding") + "|" + resp.Request.Header.Get("Available-Dictionary")
		mu.Unlock()
		return nil
	}
	page := fmt.Sprintf(`<!doctype html><title>running</title><script>
(async () => {
  try {
    const a = await fetch('/b/%s'); await a.arrayBuffer();
    // Chromium stores the dictionary asynchronously: ask a probe under the
    // dictionary's match pattern until the browser advertises it. Each probe
    // is answered after a real-time pause, during which virtual time stands.
    let ready = false;
    for (let i = 0; i < 600 && !ready; i++) {
      const p = await fetch('/b/probe-' + i, {cache: 'no-store'});
      ready = (await p.text()) === 'yes';
    }
    if (!ready) { document.title = 'ERROR no Available-Dictionary after v1'; return; }
    const b = await fetch('/b/%s'); const buf = await b.arrayBuffer();
    const h = new Uint8Array(await crypto.subtle.digest('SHA-256', buf));
    document.title = 'DONE ' + Array.from(h, x => x.toString(16).padStart(2, '0')).join('') + ' ' + buf.byteLength;
  } catch (e) { document.title = 'ERROR ' + e; }
})();
</script>`, v1, v2)
	mux := http.NewServeMux()
	mux.HandleFunc("/b/", func(w http.ResponseWriter, req *http.Request) {
		if !strings.HasPrefix(req.URL.Path, "/b/probe-") {
			proxy.ServeHTTP(w, req)
			return
		}
		if req.Header.Get("Available-Dictionary") != "" {
			w.Write([]byte("yes"))
			return
		}
		time.Sleep(50 * time.Millisecond) // real time passes; the page's virtual clock does not
		w.Write([]byte("no"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(page))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=8000", "--dump-dom",
		fmt.Sprintf("http://localhost:%d/", port))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`<title>([^<]*)</title>`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no title in:\n%s", out)
	}
	title := string(m[1])
	mu.Lock()
	defer mu.Unlock()
	t.Logf("page: %s; answers: %v", title, seen)
	if !strings.HasPrefix(title, "DONE "+v2+" ") {
		t.Fatalf("page title %q, want DONE %s", title, v2)
	}
	enc, _, _ := strings.Cut(seen["/b/"+v2], "|")
	if enc != "dcb" && enc != "dcz" {
		t.Fatalf("edge answered v2 with Content-Encoding %q (request: %q), want dcb or dcz", enc, seen["/b/"+v2])
	}
}

// TestChromiumHTTP3 has headless Chromium fetch from the edge over QUIC:
// the page reports the protocol it used (Resource Timing's
// nextHopProtocol) and the edge's metrics must count an h3 request.
func TestChromiumHTTP3(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	browser := chromiumPath(t)
	data := t.TempDir()
	r := startTestServe(t, data)
	edge := strings.Replace(r.Listeners.TLS, "127.0.0.1", "localhost", 1)
	page := fmt.Sprintf(`<!doctype html><title>running</title><script>
(async () => {
  try {
    const res = await fetch('https://%s/healthz'); await res.text();
    const e = performance.getEntriesByType('resource').find(x => x.name.includes('/healthz'));
    document.title = 'PROTO ' + (e ? e.nextHopProtocol : 'none');
  } catch (err) { document.title = 'ERROR ' + err; }
})();
</script>`, edge)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(page))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--origin-to-force-quic-on="+edge,
		// The edge listens on 127.0.0.1; localhost may resolve to ::1 first,
		// and QUIC (unlike TCP) does not fall back.
		"--host-resolver-rules=MAP localhost 127.0.0.1",
		"--ignore-certificate-errors-spki-list="+r.Listeners.SPKIHash,
		"--virtual-time-budget=8000", "--dump-dom", fmt.Sprintf("http://localhost:%d/", ln.Addr().(*net.TCPAddr).Port)).Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`<title>([^<]*)</title>`).FindSubmatch(out)
	if m == nil || string(m[1]) != "PROTO h3" {
		t.Fatalf("page reports %q, want PROTO h3", m)
	}
	// Server side: the edge counted an HTTP/3 request.
	_, metrics := get(t, "http://"+r.EdgeAddr+"/metrics")
	if !strings.Contains(string(metrics), `updraft_edge_requests_total{proto="h3"} `) {
		t.Fatal("edge counted no h3 request")
	}
}
