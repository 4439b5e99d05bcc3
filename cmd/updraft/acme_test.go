package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/config"
)

// requireTool finds a command, skipping the test without it unless
// UPDRAFT_REQUIRE_PEBBLE is set (CI installs pebble and sets it).
func requireTool(t *testing.T, name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("UPDRAFT_REQUIRE_PEBBLE") != "" {
		t.Fatalf("%s not found and UPDRAFT_REQUIRE_PEBBLE is set", name)
	}
	t.Skipf("%s not installed (Debian: apt-get install pebble)", name)
	return ""
}

// writeServerCert writes a self-signed certificate for 127.0.0.1 (pebble's
// own HTTPS) and returns the paths.
func writeServerCert(t *testing.T, dir string) (certFile, keyFile string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pebble"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "pebble.crt"), filepath.Join(dir, "pebble.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

func startProcess(t *testing.T, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	logFile, _ := os.Create(filepath.Join(t.TempDir(), filepath.Base(name)+".log"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("%s log:\n%s", name, b)
		}
	})
}

// TestACMEWithPebble: pebble (a real ACME server) issues the edge's
// certificate through certmagic, validating with TLS-ALPN-01 on the edge's
// own HTTPS port (pebble-challtestsrv answers pebble's DNS: every name is
// 127.0.0.1); a client trusting pebble's root then verifies the chain.
func TestACMEWithPebble(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an ACME server")
	}
	pebble := requireTool(t, "pebble")
	challtest := requireTool(t, "pebble-challtestsrv")
	dir := t.TempDir()
	edgePort := freePort(t)
	_, port, _ := net.SplitHostPort(edgePort)
	acme, mgmt, dns, chMgmt := freePort(t), freePort(t), freePort(t), freePort(t)
	startProcess(t, nil, challtest, "-dns01", dns, "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", chMgmt, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")
	certFile, keyFile := writeServerCert(t, dir)
	cfg := fmt.Sprintf(`{"pebble":{"listenAddress":%q,"managementListenAddress":%q,"certificate":%q,"privateKey":%q,"httpPort":%s,"tlsPort":%s,"ocspResponderURL":"","externalAccountBindingRequired":false}}`,
		acme, mgmt, certFile, keyFile, "18099", port)
	cfgFile := filepath.Join(dir, "pebble.json")
	os.WriteFile(cfgFile, []byte(cfg), 0o644)
	startProcess(t, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"}, pebble, "-config", cfgFile, "-dnsserver", dns)
	waitTCP(t, acme)

	data := t.TempDir()
	oc := testOriginConfig(t, data)
	oc.Listen = "127.0.0.1:0"
	ec := config.NewEdge(filepath.Join(data, "edge"))
	ec.Listen, ec.TLS, ec.TLSListen = "127.0.0.1:0", "acme", edgePort
	ec.ACMEDomains, ec.ACMECA, ec.ACMECARoot = []string{"edge.updraft.test"}, "https://"+acme+"/dir", certFile
	r, err := startServe(context.Background(), serveOptions{origin: oc, edge: ec, log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer r.stop(context.Background())

	// Pebble's root (a fresh one each run) from its management interface.
	pebbleTLS := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool(t, certFile)}}}
	resp, err := pebbleTLS.Get("https://" + mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("pebble root: %s", rootPEM)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := tls.Dial("tcp", edgePort, &tls.Config{ServerName: "edge.updraft.test", RootCAs: roots})
		if err == nil {
			st := conn.ConnectionState()
			conn.Close()
			leaf := st.PeerCertificates[0]
			t.Logf("edge certificate for %v issued by %q, chain of %d verified against pebble's root", leaf.DNSNames, leaf.Issuer.CommonName, len(st.VerifiedChains[0]))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no verified certificate within 60s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A name off the allow-list gets no certificate (and no CA request).
	if _, err := tls.Dial("tcp", edgePort, &tls.Config{ServerName: "attacker.example", RootCAs: roots}); err == nil {
		t.Fatal("handshake succeeded for a name that is not on the allow-list")
	}
}

func pool(t *testing.T, certFile string) *x509.CertPool {
	p := x509.NewCertPool()
	b, _ := os.ReadFile(certFile)
	p.AppendCertsFromPEM(b)
	return p
}

func waitTCP(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("%s did not come up", addr)
}
