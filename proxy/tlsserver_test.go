package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// startTLSServer serves te's edge on a loopback TLS listener offering alpn
// and returns its address, the roots trusting it and the server.
func startTLSServer(t *testing.T, te *testEdge, alpn ...string) (string, *x509.CertPool, *TLSServer) {
	t.Helper()
	certs, err := LoadCertificates(TLSSelfSigned, "", "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := NewTLSServer(te.edge, NewHTTP1(te.edge), certs.Config(alpn...))
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
	addr, roots, _ := startTLSServer(t, te, "h2", "http/1.1")
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
	addr2, roots2, _ := startTLSServer(t, te2, "http/1.1")
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
	addr, roots, ts := startTLSServer(t, te, "h2", "http/1.1")
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
