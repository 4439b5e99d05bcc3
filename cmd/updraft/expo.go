package main

// Expo apps: `bundle upload DIR --expo` (the flags' checks and the result
// line) and `keys create-expo-signing`, the key and certificate of Expo's
// code signing.

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// checkExpoFlags checks bundle upload's --expo, --runtime-version and
// --encrypt-key together.
func checkExpoFlags(expo bool, runtimeVersion, encryptKey string) error {
	switch {
	case runtimeVersion != "" && !expo:
		return usagef("", "bundle upload: --runtime-version is for Expo updates: add --expo")
	case expo && encryptKey != "":
		return usagef("", "bundle upload: --expo and --encrypt-key: an Expo update cannot be encrypted end to end "+
			"(the client checks every asset by the SHA-256 of its content); Expo's code signing protects it instead: updraft keys create-expo-signing")
	}
	return nil
}

// printExpo prints an uploaded Expo update's platforms (nothing for other bundles).
func printExpo(w io.Writer, e *snapshot.ExpoUpdate) {
	if e == nil {
		return
	}
	names := make([]string, 0, len(e.Platforms))
	for n := range e.Platforms {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := e.Platforms[n]
		fmt.Fprintf(w, "expo %s: runtime version %s, launch asset %s, %d assets\n", n, p.RuntimeVersion, p.Launch, len(p.Assets))
	}
}

// Files `keys create-expo-signing` writes, named as `npx expo-updates
// codesigning:generate` names them.
const (
	expoPrivateKeyFile  = "private-key.pem"
	expoPublicKeyFile   = "public-key.pem"
	expoCertificateFile = "certificate.pem"
)

// Expo's code signing: the key id the client assumes when its
// codeSigningMetadata names none, and the one algorithm it implements.
const (
	expoKeyID = "main"
	expoAlg   = "rsa-v1_5-sha256"
)

var (
	oidExtKeyUsage    = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidEKUCodeSigning = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 3}
)

// cmdKeysExpoSigning is `updraft keys create-expo-signing`.
func cmdKeysExpoSigning(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("keys create-expo-signing", flag.ContinueOnError)
	dir := fs.String("dir", ".", "folder for private-key.pem, public-key.pem and certificate.pem (none of them may exist)")
	cn := fs.String("cn", "Updraft Expo updates", "the certificate's common name (its subject and issuer)")
	years := fs.Int("years", 10, "years the certificate is valid: the app refuses signed updates after that")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := want(0, pos, "no arguments"); err != nil {
		return err
	}
	if *years < 1 || *years > 100 {
		return usagef("", "--years %d: want 1 to 100", *years)
	}
	if *cn == "" || len(*cn) > 64 {
		return usagef("", "--cn: want 1 to 64 bytes (X.509's limit for a common name)")
	}
	s, err := createExpoSigning(*dir, *cn, *years, time.Now())
	if err != nil {
		return fmt.Errorf("keys create-expo-signing: %w", err)
	}
	fmt.Fprintf(stdout, "Expo code signing (RSA-2048, %s), certificate valid until %s:\n", expoAlg, s.notAfter.UTC().Format("2006-01-02"))
	fmt.Fprintf(stdout, "  private key:  %s (keep it secret, out of the app and the repository: edges sign manifests with it)\n", s.priv)
	fmt.Fprintf(stdout, "  public key:   %s\n", s.pub)
	fmt.Fprintf(stdout, "  certificate:  %s (self-signed, CN=%s: the app embeds it)\n\n", s.cert, *cn)
	fmt.Fprintf(stdout, "app.json, under \"expo\" (copy the certificate into the app project; its path is relative to the project root):\n")
	fmt.Fprintf(stdout, "  \"updates\": {\n")
	fmt.Fprintf(stdout, "    \"url\": \"https://EDGE/expo/APP_ID/manifest\",\n")
	fmt.Fprintf(stdout, "    \"codeSigningCertificate\": \"./%s\",\n", expoCertificateFile)
	fmt.Fprintf(stdout, "    \"codeSigningMetadata\": { \"keyid\": %q, \"alg\": %q }\n", expoKeyID, expoAlg)
	fmt.Fprintf(stdout, "  }\n\n")
	fmt.Fprintf(stdout, "start the edges with the private key (they sign every manifest they answer):\n")
	fmt.Fprintf(stdout, "  updraft edge ... --expo-signing-key %s\n", s.priv)
	return nil
}

// expoSigning is what createExpoSigning wrote.
type expoSigning struct {
	priv, pub, cert string
	notAfter        time.Time
}

// createExpoSigning writes an RSA-2048 key pair and a self-signed
// certificate for Expo's code signing to dir, refusing to replace any of
// the files. The certificate is what expo-updates accepts as its embedded
// code signing certificate, and what `npx expo-updates codesigning:generate`
// (@expo/code-signing-certificates) makes: self-signed (subject = issuer =
// CN), key usage digitalSignature (critical), extended key usage
// codeSigning (critical), SHA-256 with RSA. The client checks the
// validity period, the self-signature, key usage bit 0 and the codeSigning
// EKU; the expoProjectInformation extension only scopes certificates that
// chain to Expo's own root (development builds) and is absent here, as in
// Expo's self-signed certificates. The private key is PKCS#1 PEM, as
// Expo's tool writes it; the public key PKIX ("PUBLIC KEY").
func createExpoSigning(dir, cn string, years int, now time.Time) (expoSigning, error) {
	s := expoSigning{priv: filepath.Join(dir, expoPrivateKeyFile), pub: filepath.Join(dir, expoPublicKeyFile),
		cert: filepath.Join(dir, expoCertificateFile)}
	for _, p := range []string{s.priv, s.pub, s.cert} {
		if _, err := os.Lstat(p); err == nil {
			return s, fmt.Errorf("%s exists: apps embed the certificate of a key, so it is never replaced; choose another --dir", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return s, err
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return s, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 72))
	if err != nil {
		return s, err
	}
	serial.Add(serial, big.NewInt(1)) // positive, never 0
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{oidEKUCodeSigning})
	if err != nil {
		return s, err
	}
	s.notAfter = now.AddDate(years, 0, 0)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		// An hour early: a device whose clock is a little behind must not
		// find the certificate not yet valid.
		NotBefore:          now.Add(-time.Hour),
		NotAfter:           s.notAfter,
		KeyUsage:           x509.KeyUsageDigitalSignature,
		ExtKeyUsage:        []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		SignatureAlgorithm: x509.SHA256WithRSA,
		// The EKU as Expo marks it, critical (crypto/x509 writes it
		// non-critical from ExtKeyUsage; an extra extension replaces it).
		ExtraExtensions: []pkix.Extension{{Id: oidExtKeyUsage, Critical: true, Value: eku}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return s, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return s, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return s, err
	}
	for _, f := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{
		{s.priv, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key), 0o600},
		{s.pub, "PUBLIC KEY", pubDER, 0o644},
		{s.cert, "CERTIFICATE", der, 0o644},
	} {
		if err := writeNew(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			return s, err
		}
	}
	return s, nil
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
