package main

import (
	"bytes"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/updraft-cdn/updraft/bundlecrypt"
	"github.com/updraft-cdn/updraft/origin/client"
)

// TestEncryptedUploadSendsNoSecret (issue 14: "the private key never
// reaches the origin", "the origin and edges never see plaintext"):
// everything `bundle upload --encrypt-key` sends to the origin is recorded
// and searched for the private key (its PEM lines, d, p, q), the plaintext
// zip and the plaintext SHA-256.
func TestEncryptedUploadSendsNoSecret(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	cli(t, r, data, "app", "create", "com.example.app")
	// A recording relay in front of the real origin: every byte the CLI
	// sends passes through it.
	target, _ := url.Parse("http://" + r.OriginAddr)
	relay := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	var sent bytes.Buffer
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		mu.Lock()
		sent.WriteString(req.Method + " " + req.URL.String() + "\n")
		for k, v := range req.Header {
			sent.WriteString(k + ": " + strings.Join(v, ",") + "\n")
		}
		sent.Write(body)
		mu.Unlock()
		req.Body = io.NopCloser(bytes.NewReader(body))
		relay.ServeHTTP(w, req)
	}))
	defer origin.Close()
	keys := t.TempDir()
	if err := run(t.Context(), []string{"keys", "create-bundle-key", "--dir", keys}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(keys, ".capgo_key_v2")
	key, err := bundlecrypt.LoadPrivateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	zipPath := fixture(t, "swagger-ui-5.35.0.zip")
	if _, err := uploadEncrypted(t.Context(), client.New(origin.URL, readKey(t, data)), "com.example.app", "1.0.0", zipPath, keyPath, client.UploadOptions{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	body := sent.Bytes()
	if len(body) < 1<<20 {
		t.Fatalf("only %d bytes reached the origin", len(body))
	}
	privPEM, _ := os.ReadFile(keyPath)
	for _, line := range strings.Split(string(privPEM), "\n")[1:] {
		if len(line) >= 32 && bytes.Contains(body, []byte(line)) {
			t.Fatalf("a line of the private key PEM was sent: %s", line)
		}
	}
	for name, n := range map[string][]byte{"d": key.D.Bytes(), "p": key.Primes[0].Bytes(), "q": key.Primes[1].Bytes()} {
		if bytes.Contains(body, n) || bytes.Contains(body, []byte(hex.EncodeToString(n))) {
			t.Fatalf("the private exponent or a prime (%s) was sent", name)
		}
	}
	plain, _ := os.ReadFile(zipPath)
	if bytes.Contains(body, plain[:256]) || bytes.Contains(body, []byte(hexSHA(plain))) {
		t.Fatal("the plaintext zip or its SHA-256 was sent")
	}
}
