package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/internal/expotest"
	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// nextSnapshot long-polls the origin for the snapshot after rev (-1: the
// current one) as an edge does, and verifies it with the origin's key.
func nextSnapshot(t *testing.T, r *running, data string, rev int64) *snapshot.Snapshot {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+r.OriginAddr+"/v1/snapshot?wait=30&after="+strconv.FormatInt(rev, 10), nil)
	req.Header.Set("Authorization", "Bearer "+readKeyFile(t, config.EdgeKeyFile(data)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	wire, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/snapshot after %d: %d %s", rev, resp.StatusCode, wire)
	}
	s, err := snapshot.DecodeDocument(wire, r.Origin.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readKeyFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func findBundle(s *snapshot.Snapshot, app, version string) *snapshot.Bundle {
	for _, a := range s.Apps {
		if a.ID != app {
			continue
		}
		for _, b := range a.Bundles {
			if b.Version == version {
				return b
			}
		}
	}
	return nil
}

// `bundle upload DIR --expo --wait` on the folder `npx expo export` writes:
// the snapshot the origin publishes carries the Expo update as
// metadata.json and expoConfig.json describe it, and, once built, a
// manifest holding every file it names with its content's hash.
// --runtime-version overrides expoConfig.json's.
func TestExpoUploadCLI(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	const app = "com.example.rn"
	cli(t, r, data, "app", "create", app)
	exp, err := expotest.Write(t.TempDir(), expotest.Options{Seed: "cli", RuntimeVersion: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	out := cli(t, r, data, "bundle", "upload", exp.Dir, "--app", app, "--version", "1.0.0", "--expo", "--channel", "production", "--wait")
	for _, p := range []string{"android", "ios"} {
		want := fmt.Sprintf("expo %s: runtime version 1.0.0, launch asset %s, 3 assets\n", p, exp.Launch[p])
		if !strings.Contains(out, want) {
			t.Fatalf("upload printed %q, want %q", out, want)
		}
	}
	if !strings.Contains(out, "bundle 1.0.0 built: manifest of ") {
		t.Fatalf("upload --wait printed %q", out)
	}

	// The published snapshot, as an edge fetches it, until it lists the
	// manifest the build stored (each change publishes a new revision).
	s := nextSnapshot(t, r, data, -1)
	deadline := time.Now().Add(testenv.Patience(30 * time.Second))
	for b := findBundle(s, app, "1.0.0"); b == nil || len(b.Manifest) == 0; b = findBundle(s, app, "1.0.0") {
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot with 1.0.0's manifest: %+v", b)
		}
		s = nextSnapshot(t, r, data, s.Rev)
	}
	b := findBundle(s, app, "1.0.0")
	if b.Expo == nil || len(b.Expo.Platforms) != 2 {
		t.Fatalf("published bundle's expo: %+v", b.Expo)
	}
	for p, launch := range exp.Launch {
		ep := b.Expo.Platforms[p]
		if ep.RuntimeVersion != "1.0.0" || ep.Launch != launch || len(ep.Assets) != len(exp.Assets[p]) {
			t.Fatalf("%s: %+v", p, ep)
		}
		for i, a := range exp.Assets[p] {
			if ep.Assets[i] != (snapshot.ExpoAsset{Path: a.Path, Ext: a.Ext}) {
				t.Fatalf("%s asset %d: %+v, want %+v", p, i, ep.Assets[i], a)
			}
		}
	}
	var extra struct {
		ExpoClient json.RawMessage `json:"expoClient"`
	}
	if json.Unmarshal(b.Expo.Extra, &extra) != nil || !bytes.Equal(extra.ExpoClient, exp.Config) {
		t.Fatalf("extra %s, want expoClient %s", b.Expo.Extra, exp.Config)
	}
	manifest := map[string]string{}
	for _, m := range b.Manifest {
		manifest[strings.TrimSuffix(m.Name, ".br")] = m.Hash
	}
	for _, path := range exp.Files() {
		content, err := os.ReadFile(filepath.Join(exp.Dir, path))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(content)
		if manifest[path] != hex.EncodeToString(sum[:]) {
			t.Fatalf("manifest hash of %s: %q, want %x", path, manifest[path], sum)
		}
	}

	// --runtime-version wins over expoConfig.json; --json prints the bundle.
	exp2, _ := expotest.Write(t.TempDir(), expotest.Options{Seed: "cli2", RuntimeVersion: "1.0.0"})
	var sb store.Bundle
	if err := json.Unmarshal([]byte(cli(t, r, data, "bundle", "upload", exp2.Dir, "--app", app, "--version", "1.0.1", "--expo", "--runtime-version", "2.0.0", "--json")), &sb); err != nil {
		t.Fatal(err)
	}
	if sb.Expo == nil || sb.Expo.Platforms["ios"].RuntimeVersion != "2.0.0" || sb.Expo.Platforms["android"].RuntimeVersion != "2.0.0" {
		t.Fatalf("--runtime-version 2.0.0: %+v", sb.Expo)
	}
}

// The CLI refuses an export it cannot upload right, naming the file or
// flag at fault, before sending anything.
func TestExpoUploadCLIRefusals(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	const app = "com.example.rn"
	cli(t, r, data, "app", "create", app)
	write := func(o expotest.Options) expotest.Export {
		t.Helper()
		exp, err := expotest.Write(t.TempDir(), o)
		if err != nil {
			t.Fatal(err)
		}
		return exp
	}
	upload := func(dir string, extra ...string) string {
		t.Helper()
		return cliErr(t, r, data, append([]string{"bundle", "upload", dir, "--app", app, "--version", "1.0.0"}, extra...)...)
	}

	policy := write(expotest.Options{RuntimeVersion: map[string]string{"policy": "appVersion"}})
	if msg := upload(policy.Dir, "--expo"); !strings.Contains(msg, `runtimeVersion is the policy "appVersion"`) || !strings.Contains(msg, "--runtime-version") {
		t.Errorf("policy: %s", msg)
	}
	noConfig := write(expotest.Options{NoConfig: true})
	if msg := upload(noConfig.Dir, "--expo"); !strings.Contains(msg, "no runtime version for") || !strings.Contains(msg, "--runtime-version") {
		t.Errorf("no config: %s", msg)
	}
	noRV := write(expotest.Options{})
	if msg := upload(noRV.Dir, "--expo"); !strings.Contains(msg, "expoConfig.json has no runtimeVersion") {
		t.Errorf("config without runtimeVersion: %s", msg)
	}

	missing := write(expotest.Options{RuntimeVersion: "1"})
	gone := missing.Assets["ios"][2].Path
	os.Remove(filepath.Join(missing.Dir, gone))
	if msg := upload(missing.Dir, "--expo"); !strings.Contains(msg, "metadata.json: ios asset "+gone+": no such file") {
		t.Errorf("missing asset: %s", msg)
	}
	linked := write(expotest.Options{RuntimeVersion: "1"})
	launch := filepath.Join(linked.Dir, linked.Launch["android"])
	os.Rename(launch, filepath.Join(t.TempDir(), "outside.js"))
	os.Symlink("/etc/hostname", launch)
	if msg := upload(linked.Dir, "--expo"); !strings.Contains(msg, "android launch bundle "+linked.Launch["android"]+": not a regular file") {
		t.Errorf("symlinked launch bundle: %s", msg)
	}
	empty := write(expotest.Options{RuntimeVersion: "1"})
	os.WriteFile(filepath.Join(empty.Dir, empty.Assets["android"][0].Path), nil, 0o644)
	if msg := upload(empty.Dir, "--expo"); !strings.Contains(msg, "is empty") {
		t.Errorf("empty asset: %s", msg)
	}

	web := write(expotest.Options{RuntimeVersion: "1"})
	raw, _ := os.ReadFile(filepath.Join(web.Dir, "metadata.json"))
	os.WriteFile(filepath.Join(web.Dir, "metadata.json"), bytes.Replace(raw, []byte(`"ios"`), []byte(`"web"`), 1), 0o644)
	if msg := upload(web.Dir, "--expo"); !strings.Contains(msg, `metadata.json: platform "web"`) {
		t.Errorf("web platform: %s", msg)
	}
	badJSON := write(expotest.Options{RuntimeVersion: "1"})
	os.WriteFile(filepath.Join(badJSON.Dir, "metadata.json"), []byte(`{"version":0,`), 0o644)
	if msg := upload(badJSON.Dir, "--expo"); !strings.Contains(msg, "metadata.json: not the metadata") {
		t.Errorf("bad metadata.json: %s", msg)
	}
	noMeta := t.TempDir()
	os.WriteFile(filepath.Join(noMeta, "index.html"), []byte("<html>"), 0o644)
	if msg := upload(noMeta, "--expo", "--runtime-version", "1"); !strings.Contains(msg, "metadata.json not found") {
		t.Errorf("no metadata.json: %s", msg)
	}
	good := write(expotest.Options{RuntimeVersion: "1"})
	if msg := upload(good.Dir, "--expo", "--runtime-version", strings.Repeat("9", 256)); !strings.Contains(msg, "limit is 255") {
		t.Errorf("long runtime version: %s", msg)
	}
	zipPath := filepath.Join(t.TempDir(), "app.zip")
	os.WriteFile(zipPath, []byte("PK"), 0o644)
	if msg := upload(zipPath, "--expo", "--runtime-version", "1"); !strings.Contains(msg, "is not a folder") {
		t.Errorf("a zip with --expo: %s", msg)
	}

	// Usage errors (exit 2).
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--expo", "--encrypt-key", "k.pem"}, "cannot be encrypted end to end"},
		{[]string{"--runtime-version", "1"}, "add --expo"},
	} {
		var out, errb bytes.Buffer
		args := append([]string{"bundle", "upload", good.Dir, "--app", app, "--version", "1.0.0", "--origin", "http://" + r.OriginAddr, "--data", data}, tc.args...)
		err := run(context.Background(), args, &out, &errb)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v (exit %d), want usage error %q", tc.args, err, exitCode(err), tc.want)
		}
	}
	if out := cli(t, r, data, "bundle", "list", "--app", app, "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("refused uploads left bundles: %s", out)
	}
}

// `keys create-expo-signing` writes what expo-updates embeds and verifies
// with: a self-signed X.509 certificate with key usage digitalSignature
// and the codeSigning extended key usage (both critical, as Expo's own
// tool marks them) over an RSA-2048 key, whose PKCS#1 private key makes
// rsa-v1_5-sha256 signatures the certificate verifies. It prints the app
// config and the edge flag, and never replaces a key.
func TestKeysCreateExpoSigning(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "signing")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"keys", "create-expo-signing", "--dir", dir, "--cn", "Example Inc.", "--years", "3"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	readPEM := func(name, typ string) []byte {
		t.Helper()
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		blk, rest := pem.Decode(raw)
		if blk == nil || blk.Type != typ || len(bytes.TrimSpace(rest)) != 0 {
			t.Fatalf("%s: want one %s PEM block:\n%s", name, typ, raw)
		}
		return blk.Bytes
	}
	key, err := x509.ParsePKCS1PrivateKey(readPEM("private-key.pem", "RSA PRIVATE KEY"))
	if err != nil || key.N.BitLen() != 2048 {
		t.Fatalf("private key: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "private-key.pem")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("private-key.pem mode %v, want 0600", fi.Mode().Perm())
	}
	pub, err := x509.ParsePKIXPublicKey(readPEM("public-key.pem", "PUBLIC KEY"))
	if err != nil || !key.PublicKey.Equal(pub) {
		t.Fatalf("public key: %v (matches the private key: %v)", err, err == nil && key.PublicKey.Equal(pub))
	}
	cert, err := x509.ParseCertificate(readPEM("certificate.pem", "CERTIFICATE"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	switch {
	case cert.Subject.CommonName != "Example Inc." || !bytes.Equal(cert.RawIssuer, cert.RawSubject):
		t.Fatalf("subject %s, issuer %s: want self-issued CN=Example Inc.", cert.Subject, cert.Issuer)
	case cert.NotBefore.After(now) || cert.NotAfter.Before(now.AddDate(3, 0, -1)) || cert.NotAfter.After(now.AddDate(3, 0, 1)):
		t.Fatalf("validity %s to %s, want now to 3 years from now", cert.NotBefore, cert.NotAfter)
	case !key.PublicKey.Equal(cert.PublicKey):
		t.Fatal("the certificate is not for the private key")
	case cert.KeyUsage != x509.KeyUsageDigitalSignature:
		t.Fatalf("key usage %b, want digitalSignature only", cert.KeyUsage)
	case len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageCodeSigning:
		t.Fatalf("extended key usage %v, want codeSigning", cert.ExtKeyUsage)
	case cert.IsCA || cert.SignatureAlgorithm != x509.SHA256WithRSA || cert.SerialNumber.Sign() <= 0:
		t.Fatalf("CA %v, signature %v, serial %v", cert.IsCA, cert.SignatureAlgorithm, cert.SerialNumber)
	}
	// Self-signed (CheckSignatureFrom would want a CA: the client checks
	// the signature with the certificate's own key, as here).
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		t.Fatalf("not self-signed: %v", err)
	}
	critical := map[string]bool{}
	for _, ext := range cert.Extensions {
		critical[ext.Id.String()] = ext.Critical
		if ext.Id.Equal(asn1.ObjectIdentifier{1, 2, 840, 113556, 1, 8000, 2554, 43437, 254, 128, 102, 157, 7894389, 20439, 2, 1}) {
			t.Fatal("expoProjectInformation set: it scopes certificates under Expo's root only")
		}
	}
	if !critical["2.5.29.15"] || !critical["2.5.29.37"] {
		t.Fatalf("key usage and extended key usage must be critical: %v", critical)
	}
	// As a client does: the embedded certificate is the only anchor.
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}); err != nil {
		t.Fatalf("chain of the certificate alone, for code signing: %v", err)
	}
	// A manifest part signed with the private key (rsa-v1_5-sha256)
	// verifies with the certificate.
	body := []byte(`{"id":"0754dad0-d200-d634-113c-ef1f26106028","runtimeVersion":"1"}`)
	digest := sha256.Sum256(body)
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignature(x509.SHA256WithRSA, body, sig); err != nil {
		t.Fatalf("signature: %v", err)
	}
	if cert.CheckSignature(x509.SHA256WithRSA, append(body, ' '), sig) == nil {
		t.Fatal("signature verifies over other bytes")
	}

	text := out.String()
	for _, want := range []string{
		`"codeSigningCertificate": "./certificate.pem"`,
		`"codeSigningMetadata": { "keyid": "main", "alg": "rsa-v1_5-sha256" }`,
		"--expo-signing-key " + filepath.Join(dir, "private-key.pem"),
		"valid until " + cert.NotAfter.UTC().Format("2006-01-02"),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}

	// Never replaced.
	before, _ := os.ReadFile(filepath.Join(dir, "private-key.pem"))
	err = run(context.Background(), []string{"keys", "create-expo-signing", "--dir", dir}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("second run: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "private-key.pem")); !bytes.Equal(before, after) {
		t.Fatal("the private key was replaced")
	}
	for _, args := range [][]string{{"--years", "0"}, {"--cn", ""}, {"extra"}} {
		err := run(context.Background(), append([]string{"keys", "create-expo-signing", "--dir", t.TempDir()}, args...), io.Discard, io.Discard)
		if exitCode(err) != 2 {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}
