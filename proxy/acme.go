package proxy

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/caddyserver/certmagic"
)

// TLSACME obtains and renews certificates automatically from an ACME CA
// with certmagic (TLS-ALPN-01 on the edge's own HTTPS port).
const TLSACME = "acme"

// ACMEOptions configure automatic certificates.
type ACMEOptions struct {
	Domains []string // names to obtain certificates for; also the on-demand allow-list
	CA      string   // ACME directory URL (default: Let's Encrypt)
	Email   string
	// CARoot is a PEM file of roots to trust for the CA's own HTTPS (a
	// private or test CA such as pebble).
	CARoot string
	// OnDemand also issues, at the first handshake, for names in Domains
	// that were not obtained at start-up. Never for other names: an edge
	// must not ask a CA for whatever SNI a client sends.
	OnDemand bool
	// TLSPort is the HTTPS port that answers TLS-ALPN-01 challenges.
	TLSPort int
	DataDir string
}

// LoadACME starts certificate management and returns certificates served
// through certmagic. Obtaining runs in the background; handshakes for a name
// whose certificate is not there yet fail until it is.
func LoadACME(ctx context.Context, o ACMEOptions) (*Certificates, error) {
	if len(o.Domains) == 0 {
		return nil, fmt.Errorf("tls acme: want at least one --acme-domain")
	}
	for _, d := range o.Domains {
		if !certmagic.SubjectQualifiesForCert(d) {
			return nil, fmt.Errorf("tls acme: %q cannot have a certificate", d)
		}
	}
	var roots *x509.CertPool
	if o.CARoot != "" {
		pem, err := os.ReadFile(o.CARoot)
		if err != nil {
			return nil, fmt.Errorf("tls acme: --acme-ca-root: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls acme: --acme-ca-root %s: no PEM certificate", o.CARoot)
		}
	}
	allowed := append([]string(nil), o.Domains...)
	var magic *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
	})
	cfg := certmagic.Config{Storage: &certmagic.FileStorage{Path: filepath.Join(o.DataDir, "acme")}}
	if o.OnDemand {
		cfg.OnDemand = &certmagic.OnDemandConfig{DecisionFunc: func(_ context.Context, name string) error {
			if slices.Contains(allowed, strings.ToLower(name)) {
				return nil
			}
			return fmt.Errorf("%q is not on the edge's certificate allow-list", name)
		}}
	}
	magic = certmagic.New(cache, cfg)
	issuer := certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA: o.CA, TestCA: o.CA, Email: o.Email, Agreed: true,
		DisableHTTPChallenge: true, // no port 80 here: TLS-ALPN-01 on the HTTPS port
		AltTLSALPNPort:       o.TLSPort,
		TrustedRoots:         roots,
	})
	if o.CA == "" {
		issuer.CA, issuer.TestCA = certmagic.LetsEncryptProductionCA, certmagic.LetsEncryptStagingCA
	}
	magic.Issuers = []certmagic.Issuer{issuer}
	if err := magic.ManageAsync(ctx, o.Domains); err != nil {
		return nil, fmt.Errorf("tls acme: %w", err)
	}
	return &Certificates{Source: "acme " + strings.Join(o.Domains, ","), getCert: magic.GetCertificate}, nil
}

// acmeALPN is the ALPN protocol of TLS-ALPN-01 challenges.
const acmeALPN = "acme-tls/1"
