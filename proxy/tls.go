package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/updraft-cdn/updraft/origin/blob"
)

// TLS modes of an edge's HTTPS and HTTP/3 listeners.
const (
	TLSOff        = "off"         // plain HTTP/1.1 only (behind a load balancer)
	TLSFiles      = "files"       // certificate and key files, reloaded on demand (SIGHUP)
	TLSSelfSigned = "self-signed" // generated once and kept in the data folder (development)
)

// Certificates holds the edge's current certificate; Reload swaps it
// atomically, so new handshakes use the new one and none fails mid-swap.
type Certificates struct {
	cert     atomic.Pointer[tls.Certificate]
	load     func() (*tls.Certificate, error)
	Source   string // where the certificate comes from, for logs
	SPKIHash string // base64 SHA-256 of the leaf's public key (Chromium's --ignore-certificate-errors-spki-list)
	leafDER  []byte
	// getCert, when set (ACME), serves certificates instead of cert.
	getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// LoadCertificates prepares certificates for a mode: TLSFiles reads
// certFile/keyFile; TLSSelfSigned generates (or reuses) a certificate for
// localhost, 127.0.0.1 and ::1 under dataDir/tls.
func LoadCertificates(mode, certFile, keyFile, dataDir string) (*Certificates, error) {
	c := &Certificates{}
	switch mode {
	case TLSFiles:
		if certFile == "" || keyFile == "" {
			return nil, errors.New("tls files: want --cert FILE and --key FILE")
		}
		c.Source = certFile
		c.load = func() (*tls.Certificate, error) {
			kp, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("tls files: %w", err)
			}
			return &kp, nil
		}
	case TLSSelfSigned:
		dir := filepath.Join(dataDir, "tls")
		certFile, keyFile = filepath.Join(dir, "self-signed.crt"), filepath.Join(dir, "self-signed.key")
		c.Source = certFile
		c.load = func() (*tls.Certificate, error) {
			if kp, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
				if leaf, err := x509.ParseCertificate(kp.Certificate[0]); err == nil && time.Until(leaf.NotAfter) > 7*24*time.Hour {
					return &kp, nil
				}
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
			certPEM, keyPEM, err := selfSigned()
			if err != nil {
				return nil, err
			}
			if err := blob.WriteFileAtomic(keyFile, keyPEM, 0o600); err != nil {
				return nil, err
			}
			if err := blob.WriteFileAtomic(certFile, certPEM, 0o644); err != nil {
				return nil, err
			}
			kp, err := tls.X509KeyPair(certPEM, keyPEM)
			return &kp, err
		}
	default:
		return nil, fmt.Errorf("tls mode %q: want off, files or self-signed", mode)
	}
	return c, c.Reload()
}

// Reload reads the certificate again (files mode: after renewal). ACME
// certificates renew themselves.
func (c *Certificates) Reload() error {
	if c.load == nil {
		return nil
	}
	kp, err := c.load()
	if err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(kp.Certificate[0])
	if err != nil {
		return err
	}
	kp.Leaf = leaf
	c.cert.Store(kp)
	c.leafDER = kp.Certificate[0]
	c.SPKIHash = spkiHash(leaf)
	return nil
}

// Leaf is the current certificate's DER, for clients that pin it.
func (c *Certificates) Leaf() []byte { return c.leafDER }

// Config returns a TLS configuration serving the current certificate for
// the given ALPN protocols. With ACME, TCP configurations (those without h3)
// also speak acme-tls/1, so TLS-ALPN-01 challenges are answered on the same
// port as devices.
func (c *Certificates) Config(alpn ...string) *tls.Config {
	get := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cert.Load(), nil }
	if c.getCert != nil {
		get = c.getCert
		if !slices.Contains(alpn, "h3") {
			alpn = append(alpn, acmeALPN)
		}
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: alpn, GetCertificate: get}
}

func selfSigned() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "updraft development edge"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

func spkiHash(leaf *x509.Certificate) string {
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}
