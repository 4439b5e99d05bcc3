package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEdgeExpoSigning: --expo-signing-key takes a PEM RSA key of at least
// 2048 bits, PKCS#1 or PKCS#8 (a certificate may share the file); the key
// id must fit an SFV string.
func TestEdgeExpoSigning(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, blocks ...*pem.Block) string {
		var b []byte
		for _, bl := range blocks {
			b = append(b, pem.EncodeToMemory(bl)...)
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		return p
	}
	k2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	k1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p8, _ := x509.MarshalPKCS8PrivateKey(k2048)
	ec8, _ := x509.MarshalPKCS8PrivateKey(ec)
	cases := []struct {
		name, path, keyID, want string
	}{
		{"none", "", "main", ""},
		{"pkcs1", write("p1.pem", &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k2048)}), "main", ""},
		{"pkcs8 after a certificate", write("p8.pem", &pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")}, &pem.Block{Type: "PRIVATE KEY", Bytes: p8}), "root", ""},
		{"empty key id is the default", "", "", ""},
		{"short key", write("short.pem", &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k1024)}), "main", "1024 bits"},
		{"ecdsa", write("ec.pem", &pem.Block{Type: "PRIVATE KEY", Bytes: ec8}), "main", "RSA keys only"},
		{"not pem", write("x.pem"), "main", "want a PEM RSA private key"},
		{"missing file", filepath.Join(dir, "nope.pem"), "main", "expo_signing_key"},
		{"quote in key id", "", `a"b`, "expo_signing_keyid"},
		{"long key id", "", strings.Repeat("k", 65), "expo_signing_keyid"},
	}
	for _, c := range cases {
		e := NewEdge(t.TempDir())
		e.ExpoSigningKey, e.ExpoSigningKeyID = c.path, c.keyID
		err := e.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if NewEdge("x").ExpoSigningKeyID != DefaultExpoSigningKeyID {
		t.Error("default key id")
	}
}
