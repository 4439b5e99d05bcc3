package main

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quic-go/quic-go/http3"
	"github.com/updraft-cdn/updraft/origin/client"
)

// TestHTTP3AndTLS checks the same update check and a 5 MB bundle download
// over HTTP/3 (quic-go's client) and over HTTP/1.1 + TLS, bytes verified by
// SHA-256, with the edge's self-signed certificate trusted by the client.
func TestHTTP3AndTLS(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("<html>big</html>"), 0o644)
	big := make([]byte, 5<<20)
	rand.Read(big)
	os.WriteFile(filepath.Join(dir, "app.bin"), big, 0o644)
	var zb bytes.Buffer
	if err := client.ZipDir(dir, &zb); err != nil {
		t.Fatal(err)
	}
	zipPath := filepath.Join(t.TempDir(), "big.zip")
	os.WriteFile(zipPath, zb.Bytes(), 0o644)
	cli(t, r, data, "app", "create", "com.example.app")
	cli(t, r, data, "bundle", "upload", zipPath, "--app", "com.example.app", "--version", "1.0.1", "--channel", "production")
	cli(t, r, data, "channel", "set", "production", "--app", "com.example.app", "--default")

	leaf, err := x509.ParseCertificate(r.Listeners.Certs.Leaf())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	tlsConf := &tls.Config{RootCAs: roots, ServerName: "localhost"}
	h3 := &http3.Transport{TLSClientConfig: tlsConf}
	defer h3.Close()
	h1 := &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: false}
	defer h1.CloseIdleConnections()

	for _, c := range []struct {
		name string
		rt   http.RoundTripper
		want string
	}{{"h3", h3, "HTTP/3.0"}, {"h1+tls", h1, "HTTP/1.1"}} {
		client := &http.Client{Transport: c.rt}
		resp, err := client.Post("https://"+r.Listeners.TLS+"/updates", "application/json", strings.NewReader(deviceBody))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var a updateAnswer
		json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if resp.Proto != c.want || a.Version != "1.0.1" || !strings.HasPrefix(a.URL, "https://") {
			t.Fatalf("%s: %s %+v", c.name, resp.Proto, a)
		}
		if c.name == "h1+tls" {
			port := r.Listeners.TLS[strings.LastIndexByte(r.Listeners.TLS, ':')+1:]
			if got := resp.Header.Get("Alt-Svc"); got != `h3=":`+port+`"; ma=86400` {
				t.Fatalf("Alt-Svc %q", got)
			}
		}
		// Device events travel the same way.
		ev := `[{"app_id":"com.example.app","device_id":"00009a6b-eefe-490a-9c60-8e965132ae51","platform":"ios",
			"version_name":"1.0.1","version_build":"1.0.0","version_os":"17.2","action":"set"}]`
		sresp, err := client.Post("https://"+r.Listeners.TLS+"/stats", "application/json", strings.NewReader(ev))
		if err != nil {
			t.Fatalf("%s stats: %v", c.name, err)
		}
		sb, _ := io.ReadAll(sresp.Body)
		sresp.Body.Close()
		if sresp.Proto != c.want || string(sb) != `{"status":"ok","results":[{"status":"ok","index":0}]}` {
			t.Fatalf("%s stats: %s %d %s", c.name, sresp.Proto, sresp.StatusCode, sb)
		}
		resp, err = client.Get(a.URL)
		if err != nil {
			t.Fatalf("%s download: %v", c.name, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Proto != c.want || hexSHA(got) != a.Checksum || len(got) < 5<<20 {
			t.Fatalf("%s download: %s, %d bytes, sha256 %s want %s", c.name, resp.Proto, len(got), hexSHA(got), a.Checksum)
		}
	}
	// The edge counted the HTTP/3 requests.
	resp, err := (&http.Client{Transport: h3}).Get("https://" + r.Listeners.TLS + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(m), `updraft_edge_requests_total{proto="h3"}`) {
		t.Fatal("no h3 request counted")
	}
}
