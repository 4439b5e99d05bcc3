package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/cache"
	"github.com/updraft-cdn/updraft/config"
	blobfs "github.com/updraft-cdn/updraft/origin/blob/fs"
)

// startTLSServer serves te's edge on a loopback TLS listener offering alpn
// and returns its address, the roots trusting it and the server.
func startTLSServer(t *testing.T, e *Edge, alpn ...string) (string, *x509.CertPool, *TLSServer) {
	t.Helper()
	certs, err := LoadCertificates(TLSSelfSigned, "", "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := NewTLSServer(e, NewHTTP1(e), certs.Config(alpn...))
	served := make(chan error, 1)
	go func() { served <- ts.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ts.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	leaf, err := x509.ParseCertificate(certs.Leaf())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return ln.Addr().String(), roots, ts
}

// countingClient is an HTTP client that tries HTTP/2 (as OkHttp and
// URLSession do) and counts the connections it opens.
func countingClient(roots *x509.CertPool, h2 bool) (*http.Client, *atomic.Int64) {
	var dials atomic.Int64
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:    &tls.Config{RootCAs: roots, ServerName: "localhost"},
		ForceAttemptHTTP2:  h2,
		DisableCompression: true,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, &dials
}

// The TLS listener speaks HTTP/2 to clients that offer it: the same answer
// bytes as HTTP/1.1, and, after a first request (the plugin's update
// check), 32 concurrent requests as streams of its connection; clients offering only HTTP/1.1 get HTTP/1.1; without h2 in
// the ALPN list (--http2=false) an h2-capable client gets HTTP/1.1.
func TestTLSServerHTTP2(t *testing.T) {
	te := startEdge(t, nil)
	s := manifestSnapshot(t, 1, 60, "a")
	te.edge.SetSnapshot(s)
	addr, roots, _ := startTLSServer(t, te.edge, "h2", "http/1.1")
	want := freshAnswer(s, "https://"+addr)
	post := func(c *http.Client) (int, []byte, error) {
		req, _ := http.NewRequest(http.MethodPost, "https://"+addr+"/updates", strings.NewReader(pluginBody))
		req.Header.Set("Accept-Encoding", "identity")
		resp, err := c.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.ProtoMajor, b, err
	}
	for _, h2 := range []bool{true, false} {
		c, dials := countingClient(roots, h2)
		if _, _, err := post(c); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		protos := map[int]int{}
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				proto, b, err := post(c)
				mu.Lock()
				defer mu.Unlock()
				if err != nil || !bytes.Equal(b, want) {
					t.Errorf("h2 %v: %v, %d bytes, want the %d-byte answer", h2, err, len(b), len(want))
				}
				protos[proto]++
			}()
		}
		wg.Wait()
		if h2 && (protos[2] != 32 || dials.Load() != 1) {
			t.Errorf("h2 client: protocols %v over %d connections, want HTTP/2 over 1", protos, dials.Load())
		}
		if !h2 && (protos[1] != 32 || dials.Load() < 2) {
			t.Errorf("HTTP/1.1 client: protocols %v over %d connections, want HTTP/1.1 over several", protos, dials.Load())
		}
		c.CloseIdleConnections()
	}

	te2 := startEdge(t, nil)
	te2.edge.SetSnapshot(s)
	addr2, roots2, _ := startTLSServer(t, te2.edge, "http/1.1")
	c, _ := countingClient(roots2, true)
	req, _ := http.NewRequest(http.MethodPost, "https://"+addr2+"/updates", strings.NewReader(pluginBody))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 {
		t.Fatalf("without h2 offered: answered over %s", resp.Proto)
	}
}

// A client that never finishes its TLS handshake holds up no other, and
// Shutdown returns while it hangs.
func TestTLSServerSlowHandshake(t *testing.T) {
	te := startEdge(t, nil)
	te.edge.SetSnapshot(manifestSnapshot(t, 1, 3, "a"))
	addr, roots, ts := startTLSServer(t, te.edge, "h2", "http/1.1")
	stalled, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	stalled.Write([]byte{0x16, 0x03, 0x01}) // the start of a ClientHello, then nothing
	c, _ := countingClient(roots, true)
	req, _ := http.NewRequest(http.MethodPost, "https://"+addr+"/updates", strings.NewReader(pluginBody))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("a client behind a stalled handshake: %v", err)
	}
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with a stalled handshake: %v", err)
	}
}

// Many concurrent blob downloads over one HTTP/2 connection each carry
// their own ETag and bytes: the reply's header values live in pooled
// buffers that the next request reuses while HTTP/2 encodes headers on
// another goroutine (a shared buffer once corrupted the HPACK table and
// crashed the edge under the stock-plugin benchmark).
func TestTLSServerHTTP2ConcurrentBlobs(t *testing.T) {
	fs, err := blobfs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var shas []string
	for i := range 40 {
		info, err := fs.Put(bytes.NewReader(randomBytes(t, 1000+i*97)), 0)
		if err != nil {
			t.Fatal(err)
		}
		shas = append(shas, info.SHA256)
	}
	c, err := cache.New(cache.Options{Dir: t.TempDir(), Upstream: LocalUpstream{Blobs: fs}, Log: quiet, MemoryBudget: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.NewEdge(t.TempDir())
	cfg.NoPrefetch = true
	e := New(cfg, c, quiet)
	t.Cleanup(e.Close)
	addr, roots, _ := startTLSServer(t, e, "h2", "http/1.1")
	client, dials := countingClient(roots, true)
	get := func(sha string) error {
		resp, err := client.Get("https://" + addr + "/b/" + sha)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 || hex.EncodeToString(sum[:]) != sha || resp.Header.Get("ETag") != `"`+sha+`"` {
			return fmt.Errorf("GET %s: HTTP %d over %s, ETag %s, body sha256 %x", sha, resp.StatusCode, resp.Proto, resp.Header.Get("ETag"), sum)
		}
		return nil
	}
	if err := get(shas[0]); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				if err := get(shas[(w*7+i)%len(shas)]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}
