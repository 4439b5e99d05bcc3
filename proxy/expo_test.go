package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	brrr "github.com/molecule-man/go-brrr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// The Expo Updates endpoints, tested against what the stock client sends
// (expo/expo packages/expo-updates/android/.../loader/FileDownloader.kt,
// createRequestForRemoteUpdate and createRequestForAsset) and read with
// parsers that share nothing with the edge's writer: Go's mime/multipart
// and a small structured-field reader below.

const (
	expoRuntime   = "1.0.0"
	expoIssued    = int64(1764331200000) // 2025-11-28T12:00:00Z
	expoEmbedded  = "5ee0f0b6-1c8e-4d5c-9a60-0f4c11d2a001"
	expoSegDevice = "5e6d0000-0000-4000-8000-000000000001"
	expoPinDevice = "9a9a0000-0000-4000-8000-000000000002"
)

// expoDevice is a device outside production's 10% rollout (bucket 1,595
// of 10,000 for rollout expo-rollout-1).
const expoDevice = "00009a6b-eefe-490a-9c60-8e965132ae52"

// expoFile is one file of an `npx expo export` output.
type expoFile struct {
	path string
	data []byte
	br   bool // stored brotli-compressed (".br")
}

// expoFiles returns the export of one update: a Hermes bundle per
// platform and three assets (an image and a font stored as they are, a
// JSON file stored only as brotli).
func expoFiles(seed string) []expoFile {
	js := func(p string) []byte {
		return []byte(strings.Repeat(fmt.Sprintf("__d(function(g,r,i,a,m,e,d){console.log(%q,%q)});\n", seed, p), 400))
	}
	rnd := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	hexOf := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:16]) }
	return []expoFile{
		{"_expo/static/js/android/index-" + hexOf(seed+"android") + ".hbc", js("android"), true},
		{"_expo/static/js/ios/index-" + hexOf(seed+"ios") + ".hbc", js("ios"), true},
		{"assets/" + hexOf(seed+"png"), append([]byte("\x89PNG\r\n\x1a\n"), rnd(3000)...), false},
		{"assets/" + hexOf(seed+"ttf"), rnd(2000), false},
		{"assets/" + hexOf(seed+"json"), []byte(strings.Repeat(`{"v":"`+seed+`","k":[1,2,3]},`, 300)), true},
	}
}

// expoBundle stores an update's files (in te's upstream when te is not
// nil) and returns its bundle.
func expoBundle(t testing.TB, te *testEdge, version, seed, runtime string) *snapshot.Bundle {
	t.Helper()
	files := expoFiles(seed)
	b := &snapshot.Bundle{Version: version, SHA256: fakeSHA("zip " + version), Size: 1}
	for _, f := range files {
		stored, name := f.data, f.path
		if f.br {
			c, err := brrr.Compress(f.data, 5)
			if err != nil {
				t.Fatal(err)
			}
			stored, name = c, f.path+".br"
		}
		sum := sha256.Sum256(stored)
		blobSHA := hex.EncodeToString(sum[:])
		if te != nil {
			if got := te.put(t, stored); got != blobSHA {
				t.Fatalf("stored as %s, want %s", got, blobSHA)
			}
		}
		raw := sha256.Sum256(f.data)
		b.Manifest = append(b.Manifest, snapshot.ManifestEntry{Name: name, Hash: hex.EncodeToString(raw[:]), Blob: blobSHA, Size: int64(len(stored))})
	}
	assets := []snapshot.ExpoAsset{{Path: files[2].path, Ext: "png"}, {Path: files[3].path, Ext: "ttf"}, {Path: files[4].path, Ext: "json"}}
	b.Expo = &snapshot.ExpoUpdate{Platforms: map[string]snapshot.ExpoPlatform{
		"android": {RuntimeVersion: runtime, Launch: files[0].path, Assets: assets},
		"ios":     {RuntimeVersion: runtime, Launch: files[1].path, Assets: assets},
	}, Extra: json.RawMessage(`{"expoClient": {"name": "demo", "slug": "demo", "runtimeVersion": "` + runtime + `"}}`)}
	return b
}

// expoSnapshot is an app with Expo updates 2.0.0 and 2.1.0 (runtime
// 1.0.0) and 3.0.0 (runtime 2.0.0), and a Capgo bundle 1.1.0. production
// (public) serves 2.0.0 with a 10% rollout of 2.1.0; beta (2.1.0), next
// (3.0.0), capgo (1.1.0) and store (the store build) allow
// self-assignment; the segment "testers" sends expoSegDevice to beta and
// an override pins expoPinDevice to next.
func expoSnapshot(t testing.TB, te *testEdge, rev int64) *snapshot.Snapshot {
	t.Helper()
	return expoSnapshotWith(t, te, rev, nil)
}

// expoSnapshotWith is expoSnapshot changed by mod before it is indexed.
func expoSnapshotWith(t testing.TB, te *testEdge, rev int64, mod func(*snapshot.Snapshot)) *snapshot.Snapshot {
	t.Helper()
	open := func(name, bundle string) *snapshot.Channel {
		return &snapshot.Channel{Name: name, Bundle: bundle, IOS: true, Android: true, AllowDeviceSelfSet: true,
			AllowEmulator: true, AllowDev: true, AllowProd: true, AllowDevice: true, DisableAutoUpdate: snapshot.DisableNone}
	}
	prod := open("production", "2.0.0")
	prod.Public, prod.AllowDeviceSelfSet = true, false
	prod.Rollout = &snapshot.Rollout{ID: "expo-rollout-1", Bundle: "2.1.0", BPS: 1000}
	a := &snapshot.App{ID: testAppID,
		Bundles: []*snapshot.Bundle{{Version: "1.1.0", SHA256: fakeSHA("capgo 1.1.0"), Size: 1},
			expoBundle(t, te, "2.0.0", "a", expoRuntime), expoBundle(t, te, "2.1.0", "b", expoRuntime),
			expoBundle(t, te, "3.0.0", "c", "2.0.0")},
		Channels: []*snapshot.Channel{prod, open("beta", "2.1.0"), open("next", "3.0.0"), open("capgo", "1.1.0"),
			open("store", snapshot.BuiltinVersion)},
		Rules: []*snapshot.Rule{{Name: "testers", Channel: "beta", DeviceIDs: []string{expoSegDevice}}},
	}
	pin, _ := snapshot.ParseDeviceID(expoPinDevice)
	var shards snapshot.MapShards
	a.OverrideShards, shards, _ = snapshot.ShardOverrides(map[[16]byte]string{pin: "next"})
	s := &snapshot.Snapshot{Format: snapshot.FormatVersion, Rev: rev, Issued: expoIssued, Apps: []*snapshot.App{a}}
	if mod != nil {
		mod(s)
	}
	if err := s.Index(shards); err != nil {
		t.Fatal(err)
	}
	return s
}

// expoLegacyID is the id the edge gave every manifest of b for platform
// before manifest ids named the device's current update and the snapshot
// (expoManifestID): devices that got it report it, and it must still map
// to b.
func expoLegacyID(b *snapshot.Bundle, platform string) string {
	return snapshot.FormatDeviceID(expoUpdateID(b.SHA256, platform))
}

// expoSameUpdate reports whether manifest id id names the update that
// other (an id of it, such as its legacy one) names: the same first 8
// bytes, and a UUID of version 8 with RFC 9562's variant.
func expoSameUpdate(id, other string) bool {
	u, ok := snapshot.ParseDeviceID(id)
	return ok && snapshot.FormatDeviceID(u) == id && len(other) == 36 && id[:18] == other[:18] &&
		u[6]>>4 == 8 && u[8]>>6 == 2
}

// androidHeaders is the manifest request of expo-updates' Android client
// (FileDownloader.createRequestForRemoteUpdate) with the extra headers it
// adds from its database (getExtraHeadersForRemoteUpdateRequest), the
// channel the app configures in updates.requestHeaders, and what OkHttp
// and its BrotliInterceptor add.
func androidHeaders(device, current string, sign bool) []string {
	h := []string{
		"Expo-Current-Update-ID", current,
		"Expo-Embedded-Update-ID", expoEmbedded,
		"Accept", "multipart/mixed,application/expo+json,application/json",
		"Expo-Platform", "android",
		"Expo-Protocol-Version", "1",
		"Expo-API-Version", "1",
		"Expo-Updates-Environment", "BARE",
		"Expo-JSON-Error", "true",
		"EAS-Client-ID", device,
		"Expo-Runtime-Version", expoRuntime,
		"expo-channel-name", "production",
		"Accept-Encoding", "br,gzip",
		"User-Agent", "okhttp/4.12.0",
	}
	if sign {
		h = append(h, "expo-expect-signature", `sig, keyid="main", alg="rsa-v1_5-sha256"`)
	}
	return h
}

// withHeader returns h with name set to value ("" deletes it).
func withHeader(h []string, name, value string) []string {
	out := make([]string, 0, len(h)+2)
	found := false
	for i := 0; i+1 < len(h); i += 2 {
		if strings.EqualFold(h[i], name) {
			found = true
			if value == "" {
				continue
			}
			out = append(out, h[i], value)
			continue
		}
		out = append(out, h[i], h[i+1])
	}
	if !found && value != "" {
		out = append(out, name, value)
	}
	return out
}

// expoPart is one part of a multipart answer, as mime/multipart reads it.
type expoPart struct {
	header textproto.MIMEHeader
	body   []byte
}

// readParts parses a multipart/mixed answer with Go's mime/multipart.
func readParts(t testing.TB, a answer) map[string]expoPart {
	t.Helper()
	mt, params, err := mime.ParseMediaType(a.header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		t.Fatalf("Content-Type %q: %v", a.header.Get("Content-Type"), err)
	}
	parts := map[string]expoPart{}
	mr := multipart.NewReader(bytes.NewReader(a.body), params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("multipart: %v\n%s", err, a.body)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		disp, dp, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
		if err != nil || disp != "inline" {
			t.Fatalf("part Content-Disposition %q: %v", p.Header.Get("Content-Disposition"), err)
		}
		if ct := p.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("part %s: Content-Type %q", dp["name"], ct)
		}
		parts[dp["name"]] = expoPart{p.Header, b}
	}
	return parts
}

// sfvDict is an independent reader of an RFC 8941 dictionary of strings,
// tokens and booleans, for checking the edge's headers.
func sfvDict(t testing.TB, s string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; {
		eq := strings.IndexAny(s, "=,")
		if eq < 0 {
			out[s] = "?1"
			break
		}
		key := strings.TrimSpace(s[:eq])
		if s[eq] == ',' {
			out[key] = "?1"
			s = strings.TrimSpace(s[eq+1:])
			continue
		}
		s = s[eq+1:]
		if strings.HasPrefix(s, `"`) {
			var v strings.Builder
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
				}
				v.WriteByte(s[i])
			}
			if i >= len(s) {
				t.Fatalf("unterminated string in %q", s)
			}
			out[key] = v.String()
			s = strings.TrimSpace(s[i+1:])
		} else {
			end := strings.IndexByte(s, ',')
			if end < 0 {
				end = len(s)
			}
			out[key] = strings.TrimSpace(s[:end])
			s = s[end:]
		}
		s = strings.TrimPrefix(s, ",")
		s = strings.TrimSpace(s)
	}
	return out
}

// expoManifestDoc is a manifest as the client reads it.
type expoManifestDoc struct {
	ID             string          `json:"id"`
	CreatedAt      string          `json:"createdAt"`
	RuntimeVersion string          `json:"runtimeVersion"`
	LaunchAsset    expoAssetDoc    `json:"launchAsset"`
	Assets         []expoAssetDoc  `json:"assets"`
	Metadata       map[string]any  `json:"metadata"`
	Extra          json.RawMessage `json:"extra"`
}

type expoAssetDoc struct {
	Hash          string  `json:"hash"`
	Key           string  `json:"key"`
	ContentType   string  `json:"contentType"`
	FileExtension *string `json:"fileExtension"`
	URL           string  `json:"url"`
}

// expoSigner is a code signing key and its self-signed certificate, as
// `updraft keys create-expo-signing` would make them, written for the
// edge (PKCS#8 key) and for the verifiers (certificate).
type expoSigner struct {
	keyFile, certFile string
	cert              *x509.Certificate
}

func newExpoSigner(t testing.TB) *expoSigner {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Updraft Expo code signing"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &expoSigner{keyFile: filepath.Join(dir, "private-key.pem"), certFile: filepath.Join(dir, "certificate.pem"), cert: cert}
	os.WriteFile(s.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600)
	os.WriteFile(s.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	return s
}

// verify checks an expo-signature over body as the client does: the
// keyid, the algorithm, and SHA256withRSA with the certificate's key
// (Go's x509). It returns the signature's bytes.
func (s *expoSigner) verify(t testing.TB, header string, body []byte) []byte {
	t.Helper()
	d := sfvDict(t, header)
	if d["keyid"] != "main" || d["alg"] != "rsa-v1_5-sha256" {
		t.Fatalf("expo-signature %q: keyid %q alg %q", header, d["keyid"], d["alg"])
	}
	sig, err := base64.StdEncoding.DecodeString(d["sig"])
	if err != nil {
		t.Fatalf("sig %q: %v", d["sig"], err)
	}
	if err := s.cert.CheckSignature(x509.SHA256WithRSA, body, sig); err != nil {
		t.Fatalf("signature does not verify with the certificate: %v", err)
	}
	return sig
}

// startExpoEdge is an edge over HTTP/1.1 with expoSnapshot, filling its
// cache from the files the snapshot lists.
func startExpoEdge(t testing.TB, mod func(*config.Edge)) (*testEdge, *snapshot.Snapshot) {
	t.Helper()
	te := startEdge(t, func(c *config.Edge) {
		c.NoPrefetch = true // fills racing the test's cleanup
		if mod != nil {
			mod(c)
		}
	})
	s := expoSnapshot(t, te, 1)
	te.edge.SetSnapshot(s)
	return te, s
}

// expoCall routes a GET as a transport does, headers given as pairs.
func expoCall(e *Edge, path string, hdr ...string) answer {
	h := http.Header{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	out := &reply{}
	r := request{ctx: context.Background(), method: "GET", path: path, host: "edge.test", proto: "h1",
		header: httpHeaders{h}, query: urlQuery{}}
	e.route(&r, out)
	rh := http.Header{}
	out.eachHeader(func(k, v string) { rh.Set(k, v) })
	if out.contentType != "" {
		rh.Set("Content-Type", out.contentType)
	}
	body := out.body
	if out.data != nil {
		body = out.data
	}
	if out.stream != nil {
		body, _ = io.ReadAll(out.stream)
		out.stream.Close()
	}
	return answer{out.status, rh, bytes.Clone(body)}
}

const expoManifestPath = "/expo/" + testAppID + "/manifest"

// expoUpdateOf is the manifest of an update answer, checked against the
// protocol's headers.
func expoUpdateOf(t testing.TB, a answer) (expoManifestDoc, expoPart) {
	t.Helper()
	if a.status != 200 {
		t.Fatalf("HTTP %d %s", a.status, a.body)
	}
	checkExpoHeaders(t, a, "1")
	parts := readParts(t, a)
	m, ok := parts["manifest"]
	if !ok {
		t.Fatalf("no manifest part in %s", a.body)
	}
	if ext, ok := parts["extensions"]; !ok || string(ext.body) != `{"assetRequestHeaders":{}}` {
		t.Errorf("extensions part %q", ext.body)
	}
	var doc expoManifestDoc
	if err := json.Unmarshal(m.body, &doc); err != nil {
		t.Fatalf("manifest: %v\n%s", err, m.body)
	}
	return doc, m
}

// expoDirectiveOf is the directive of a directive answer.
func expoDirectiveOf(t testing.TB, a answer) (map[string]any, expoPart) {
	t.Helper()
	if a.status != 200 {
		t.Fatalf("HTTP %d %s", a.status, a.body)
	}
	checkExpoHeaders(t, a, "1")
	parts := readParts(t, a)
	d, ok := parts["directive"]
	if !ok || len(parts) != 1 {
		t.Fatalf("want one directive part, got %v in %s", len(parts), a.body)
	}
	var doc map[string]any
	if err := json.Unmarshal(d.body, &doc); err != nil {
		t.Fatalf("directive: %v\n%s", err, d.body)
	}
	return doc, d
}

func checkExpoHeaders(t testing.TB, a answer, proto string) {
	t.Helper()
	for k, want := range map[string]string{"expo-protocol-version": proto, "expo-sfv-version": "0", "Cache-Control": "private, max-age=0"} {
		if got := a.header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"expo-manifest-filters", "expo-server-defined-headers"} {
		if _, ok := a.header[textproto.CanonicalMIMEHeaderKey(k)]; !ok {
			t.Errorf("no %s header", k)
		} else if len(sfvDict(t, a.header.Get(k))) != 0 {
			t.Errorf("%s: %q, want an empty dictionary", k, a.header.Get(k))
		}
	}
}

// TestExpoAndroidClient replays the Android client on both transports: the
// manifest of the channel's bundle (signed), every asset downloaded as the
// client asks for it (br) and as a client without brotli does, each
// hashing to the manifest's hash; the signature verifies with Go's x509
// and Node's crypto.verify over the part's exact bytes.
func TestExpoAndroidClient(t *testing.T) {
	signer := newExpoSigner(t)
	te, s := startExpoEdge(t, func(c *config.Edge) { c.ExpoSigningKey = signer.keyFile })
	dev := expoDevice
	want := s.App(testAppID).Bundle("2.0.0")
	check := func(a answer, base string, get func(url string, hdr ...string) answer) {
		t.Helper()
		doc, part := expoUpdateOf(t, a)
		if !expoSameUpdate(doc.ID, expoLegacyID(want, "android")) || doc.RuntimeVersion != expoRuntime ||
			doc.CreatedAt != "2025-11-28T12:00:00.000Z" || doc.Metadata == nil || len(doc.Metadata) != 0 {
			t.Errorf("manifest %s", part.body)
		}
		if string(doc.Extra) != `{"expoClient":{"name":"demo","slug":"demo","runtimeVersion":"1.0.0"}}` {
			t.Errorf("extra %s", doc.Extra)
		}
		if doc.LaunchAsset.ContentType != "application/javascript" || doc.LaunchAsset.FileExtension != nil || len(doc.Assets) != 3 {
			t.Errorf("launch asset %+v, %d assets", doc.LaunchAsset, len(doc.Assets))
		}
		sig := signer.verify(t, part.header.Get("expo-signature"), part.body)
		verifyNode(t, signer, part.body, sig)
		types := []string{"image/png", "font/ttf", "application/json"}
		exts := []string{".png", ".ttf", ".json"}
		for i, as := range append([]expoAssetDoc{doc.LaunchAsset}, doc.Assets...) {
			if i > 0 && (as.ContentType != types[i-1] || as.FileExtension == nil || *as.FileExtension != exts[i-1] || len(as.Key) != 32) {
				t.Errorf("asset %d: %+v", i, as)
			}
			if !strings.HasPrefix(as.URL, base+"/expo/"+testAppID+"/a/") {
				t.Fatalf("asset url %s, want under %s", as.URL, base)
			}
			for _, ae := range []string{"br,gzip", ""} {
				h := []string{"Expo-Platform", "android", "Expo-Protocol-Version", "1", "Expo-API-Version", "1",
					"Expo-Updates-Environment", "BARE", "EAS-Client-ID", dev}
				if ae != "" {
					h = append(h, "Accept-Encoding", ae)
				}
				r := get(as.URL, h...)
				if r.status != 200 || r.header.Get("Content-Type") != as.ContentType ||
					r.header.Get("Cache-Control") != "public, max-age=31536000, immutable" {
					t.Fatalf("GET %s (Accept-Encoding %q): HTTP %d %q %q %.100s", as.URL, ae, r.status,
						r.header.Get("Content-Type"), r.header.Get("Cache-Control"), r.body)
				}
				body := decode(t, r.header.Get("Content-Encoding"), r.body)
				sum := sha256.Sum256(body)
				if got := base64.RawURLEncoding.EncodeToString(sum[:]); got != as.Hash {
					t.Errorf("asset %s (Accept-Encoding %q, Content-Encoding %q): hash %s, manifest says %s",
						as.Key, ae, r.header.Get("Content-Encoding"), got, as.Hash)
				}
			}
		}
	}
	hdr := androidHeaders(dev, expoEmbedded, true)
	check(te.do(t, http.MethodGet, expoManifestPath, nil, hdr...), te.base, func(u string, h ...string) answer {
		return te.do(t, http.MethodGet, strings.TrimPrefix(u, te.base), nil, h...)
	})

	// HTTP/3: the same answers.
	addr, client := serveHTTP3(t, te.edge)
	get := func(u string, h ...string) answer {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		for i := 0; i+1 < len(h); i += 2 {
			req.Header.Set(h[i], h[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		if resp.ProtoMajor != 3 {
			t.Fatalf("answered over %s", resp.Proto)
		}
		return answer{resp.StatusCode, resp.Header, b}
	}
	base := "https://" + addr
	check(get(base+expoManifestPath, hdr...), base, get)
}

// verifyNode checks a signature with Node's crypto.verify and the
// certificate (skipped without node unless UPDRAFT_REQUIRE_NODE is set).
func verifyNode(t testing.TB, s *expoSigner, body, sig []byte) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("UPDRAFT_REQUIRE_NODE") != "" {
			t.Fatal("node is required (UPDRAFT_REQUIRE_NODE is set) but not installed")
		}
		t.Log("node not installed: the Node.js check of the signature is skipped")
		return
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "body"), body, 0o644)
	os.WriteFile(filepath.Join(dir, "sig"), sig, 0o644)
	script := `const c = require('crypto'), fs = require('fs');
const key = c.createPublicKey(fs.readFileSync(process.argv[1]));
const ok = c.verify('sha256', fs.readFileSync(process.argv[2] + '/body'), {key, padding: c.constants.RSA_PKCS1_PADDING}, fs.readFileSync(process.argv[2] + '/sig'));
process.stdout.write(ok ? 'verified' : 'INVALID');`
	out, err := exec.Command(node, "-e", script, s.certFile, dir).CombinedOutput()
	if err != nil || string(out) != "verified" {
		t.Fatalf("node crypto.verify: %v: %s", err, out)
	}
}

// TestExpoResolution: rollouts, segments, overrides, channels, the store
// build and the runtime version decide for Expo devices as for Capgo ones.
func TestExpoResolution(t *testing.T) {
	s := expoSnapshot(t, nil, 1)
	e := newCoreEdge(t, s)
	app := s.App(testAppID)
	// Devices report ids issued before manifest ids named the current
	// update (expoLegacyID): they still map; manifests are compared by
	// the update their id names (its first 8 bytes).
	legacy := func(version, platform string) string { return expoLegacyID(app.Bundle(version), platform) }
	idOf := func(version, platform string) string { return legacy(version, platform)[:18] }
	manifestID := func(t *testing.T, a answer) string {
		doc, _ := expoUpdateOf(t, a)
		return doc.ID[:18]
	}

	// A 10% rollout: the same devices get 2.1.0 as from the Capgo resolver.
	in := 0
	for i := range 400 {
		dev := fmt.Sprintf("%08x-0000-4000-8000-%012x", i*7919, i)
		capgo := snapshot.Request{AppID: testAppID, DeviceID: dev, VersionName: "builtin", VersionBuild: "1.0.0",
			Platform: "android", PluginVersion: "8.51.14", IsProd: true}
		if err := capgo.Validate(); err != nil {
			t.Fatal(err)
		}
		d := snapshot.Resolve(s, &capgo)
		if !d.OK() {
			t.Fatalf("capgo %s: %s", dev, d.Code)
		}
		got := manifestID(t, expoCall(e, expoManifestPath, androidHeaders(dev, expoEmbedded, false)...))
		if want := idOf(d.Bundle.Version, "android"); got != want {
			t.Fatalf("device %s: manifest %s, the Capgo resolver chose %s (%s)", dev, got, d.Bundle.Version, d.Variant)
		}
		if d.Bundle.Version == "2.1.0" {
			in++
		}
	}
	if in < 20 || in > 65 {
		t.Errorf("%d of 400 devices in a 10%% rollout", in)
	}

	dev := expoDevice
	cases := []struct {
		name string
		hdr  []string
		want string // a manifest of this version; "" noUpdateAvailable; "rollback"
	}{
		{"segment", androidHeaders(expoSegDevice, expoEmbedded, false), "2.1.0"},
		{"override (runtime 2.0.0)", withHeader(androidHeaders(expoPinDevice, expoEmbedded, false), "Expo-Runtime-Version", "2.0.0"), "3.0.0"},
		{"override, other runtime", androidHeaders(expoPinDevice, expoEmbedded, false), ""},
		{"self-assigned channel", withHeader(androidHeaders(dev, expoEmbedded, false), "expo-channel-name", "beta"), "2.1.0"},
		{"no channel header: the default", withHeader(androidHeaders(dev, expoEmbedded, false), "expo-channel-name", ""), "2.0.0"},
		{"ios", withHeader(androidHeaders(dev, expoEmbedded, false), "Expo-Platform", "ios"), "2.0.0"},
		{"already running it", androidHeaders(dev, legacy("2.0.0", "android"), false), ""},
		{"running the other platform's id", androidHeaders(dev, legacy("2.0.0", "ios"), false), "2.0.0"},
		{"running an older update", androidHeaders(dev, legacy("2.1.0", "android"), false), "2.0.0"},
		{"unknown runtime version", withHeader(androidHeaders(dev, expoEmbedded, false), "Expo-Runtime-Version", "9.9.9"), ""},
		{"fingerprint runtime version", withHeader(androidHeaders(dev, expoEmbedded, false), "Expo-Runtime-Version", "4f1cb2cac2370cd5050681232e8575a8"), ""},
		{"a Capgo bundle's channel", withHeader(androidHeaders(dev, expoEmbedded, false), "expo-channel-name", "capgo"), ""},
		{"store build, on an update", withHeader(androidHeaders(dev, legacy("2.0.0", "android"), false), "expo-channel-name", "store"), "rollback"},
		{"store build, on the embedded update", withHeader(androidHeaders(dev, expoEmbedded, false), "expo-channel-name", "store"), ""},
		{"store build, first launch", withHeader(withHeader(androidHeaders(dev, "", false), "expo-channel-name", "store"), "Expo-Embedded-Update-ID", ""), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := expoCall(e, expoManifestPath, c.hdr...)
			switch c.want {
			case "":
				if d, _ := expoDirectiveOf(t, a); d["type"] != "noUpdateAvailable" || len(d) != 1 {
					t.Fatalf("directive %v, want noUpdateAvailable", d)
				}
			case "rollback":
				d, part := expoDirectiveOf(t, a)
				params, _ := d["parameters"].(map[string]any)
				if d["type"] != "rollBackToEmbedded" || params["commitTime"] != "2025-11-28T12:00:00.000Z" {
					t.Fatalf("directive %s", part.body)
				}
				if _, err := time.Parse(time.RFC3339Nano, params["commitTime"].(string)); err != nil {
					t.Fatal(err)
				}
			default:
				platform := "android"
				if c.name == "ios" {
					platform = "ios"
				}
				if got := manifestID(t, a); got != idOf(c.want, platform) {
					t.Fatalf("manifest %s, want %s's %s", got, c.want, idOf(c.want, platform))
				}
			}
		})
	}
}

// TestExpoProtocolAndFormats: protocol 0 (no directives: the update even
// when the device runs it, 204 when there is nothing), JSON answers (the
// manifest alone, signed in a header; 406 when a directive would be
// needed), and q-values.
func TestExpoProtocolAndFormats(t *testing.T) {
	signer := newExpoSigner(t)
	cfg := config.NewEdge(t.TempDir())
	cfg.ExpoSigningKey = signer.keyFile
	e := New(cfg, nil, quiet)
	s := expoSnapshot(t, nil, 1)
	e.SetSnapshot(s)
	dev := expoDevice
	running := expoLegacyID(s.App(testAppID).Bundle("2.0.0"), "android")
	base := androidHeaders(dev, expoEmbedded, false)

	v0 := withHeader(base, "Expo-Protocol-Version", "0")
	if a := expoCall(e, expoManifestPath, withHeader(v0, "Expo-Current-Update-ID", running)...); a.status != 200 {
		t.Fatalf("protocol 0, running the update: HTTP %d %s", a.status, a.body)
	} else if parts := readParts(t, a); parts["manifest"].body == nil || a.header.Get("expo-protocol-version") != "0" {
		t.Fatalf("protocol 0: %s", a.body)
	}
	for _, h := range [][]string{withHeader(v0, "Expo-Runtime-Version", "9.9.9"), withHeader(withHeader(v0, "Expo-Protocol-Version", ""), "Expo-Runtime-Version", "9.9.9")} {
		if a := expoCall(e, expoManifestPath, h...); a.status != 204 || len(a.body) != 0 || a.header.Get("expo-protocol-version") != "0" {
			t.Fatalf("protocol 0, nothing to serve: HTTP %d %q %v", a.status, a.body, a.header)
		}
	}
	rollback := withHeader(withHeader(v0, "expo-channel-name", "store"), "Expo-Current-Update-ID", running)
	if a := expoCall(e, expoManifestPath, rollback...); a.status != 406 {
		t.Fatalf("protocol 0 rollback: HTTP %d %s", a.status, a.body)
	}

	for _, c := range []struct{ accept, ctype string }{
		{"application/expo+json", "application/expo+json"},
		{"application/json", "application/json"},
		{"application/expo+json;q=0.9, application/json;q=0.8, multipart/mixed;q=0.5", "application/expo+json"},
		{"multipart/mixed;q=0, application/*;q=0.5", "application/expo+json"},
	} {
		a := expoCall(e, expoManifestPath, withHeader(withHeader(base, "Accept", c.accept), "expo-expect-signature", "sig")...)
		if a.status != 200 || a.header.Get("Content-Type") != c.ctype {
			t.Fatalf("Accept %q: HTTP %d %q %s", c.accept, a.status, a.header.Get("Content-Type"), a.body)
		}
		checkExpoHeaders(t, a, "1")
		var doc expoManifestDoc
		if err := json.Unmarshal(a.body, &doc); err != nil || doc.ID == "" {
			t.Fatalf("JSON manifest: %v %s", err, a.body)
		}
		signer.verify(t, a.header.Get("expo-signature"), a.body)
		nothing := withHeader(withHeader(base, "Accept", c.accept), "Expo-Current-Update-ID", running)
		if a := expoCall(e, expoManifestPath, nothing...); a.status != 406 {
			t.Fatalf("Accept %q, no update: HTTP %d %s, want 406", c.accept, a.status, a.body)
		}
	}
	for _, accept := range []string{"text/html", "multipart/mixed;q=0, application/json;q=0, application/expo+json;q=0", "image/*"} {
		if a := expoCall(e, expoManifestPath, withHeader(base, "Accept", accept)...); a.status != 406 {
			t.Fatalf("Accept %q: HTTP %d, want 406", accept, a.status)
		}
	}

	// Signed directives, and the same bytes for every request.
	signed := withHeader(base, "expo-expect-signature", `sig, keyid="main"`)
	a1 := expoCall(e, expoManifestPath, withHeader(signed, "Expo-Current-Update-ID", running)...)
	d, part := expoDirectiveOf(t, a1)
	if d["type"] != "noUpdateAvailable" {
		t.Fatal(d)
	}
	signer.verify(t, part.header.Get("expo-signature"), part.body)
	a2 := expoCall(e, expoManifestPath, withHeader(withHeader(signed, "Expo-Current-Update-ID", running), "expo-channel-name", "store")...)
	_, part = expoDirectiveOf(t, a2)
	signer.verify(t, part.header.Get("expo-signature"), part.body)
	m1 := expoCall(e, expoManifestPath, signed...)
	m2 := expoCall(e, expoManifestPath, signed...)
	if !bytes.Equal(m1.body, m2.body) {
		t.Fatal("the same request got different bytes")
	}
	if n := testutil.ToFloat64(e.expo.signatures); n != 3 {
		t.Errorf("%v signatures made, want 3 (manifest, two directives, each once)", n)
	}
}

// TestExpoBadInput: every malformed request is a 4xx with a JSON error,
// never a 500.
func TestExpoBadInput(t *testing.T) {
	te, _ := startExpoEdge(t, nil)
	dev := expoDevice
	base := androidHeaders(dev, expoEmbedded, false)
	for _, c := range []struct {
		name   string
		method string
		path   string
		hdr    []string
		status int
		code   string
	}{
		{"protocol 2", "GET", expoManifestPath, withHeader(base, "Expo-Protocol-Version", "2"), 400, codeExpoProtocol},
		{"protocol garbage", "GET", expoManifestPath, withHeader(base, "Expo-Protocol-Version", "1, 1"), 400, codeExpoProtocol},
		{"no platform", "GET", expoManifestPath, withHeader(base, "Expo-Platform", ""), 400, codeExpoPlatform},
		{"web platform", "GET", expoManifestPath, withHeader(base, "Expo-Platform", "web"), 400, codeExpoPlatform},
		{"no runtime version", "GET", expoManifestPath, withHeader(base, "Expo-Runtime-Version", ""), 400, codeExpoRuntime},
		{"no client id", "GET", expoManifestPath, withHeader(base, "EAS-Client-ID", ""), 400, codeExpoClientID},
		{"client id not a UUID", "GET", expoManifestPath, withHeader(base, "EAS-Client-ID", "device-1"), 400, codeExpoClientID},
		{"long channel", "GET", expoManifestPath, withHeader(base, "expo-channel-name", strings.Repeat("c", 129)), 400, codeExpoChannel},
		{"bad expect-signature", "GET", expoManifestPath, withHeader(base, "expo-expect-signature", `sig=:AAA=:`), 400, codeExpoExpectSig},
		{"signature without a key", "GET", expoManifestPath, withHeader(base, "expo-expect-signature", `sig, keyid="main"`), 400, codeExpoSigningUnavail},
		{"unknown app", "GET", "/expo/com.example.other/manifest", base, 404, snapshot.CodeAppNotFound},
		{"POST", "POST", expoManifestPath, base, 405, codeMethod},
		{"unknown subpath", "GET", "/expo/" + testAppID + "/other", base, 404, codeNotFound},
		{"asset id", "GET", "/expo/" + testAppID + "/a/xyz", nil, 400, codeInvalidBlobID},
		{"unknown asset", "GET", "/expo/" + testAppID + "/a/" + fakeSHA("nothing"), nil, 404, codeBlobNotFound},
		{"asset of another app", "GET", "/expo/com.example.other/a/" + fakeSHA("nothing"), nil, 404, codeBlobNotFound},
	} {
		a := te.do(t, c.method, c.path, nil, c.hdr...)
		var env struct{ Error, Message string }
		if a.status != c.status || json.Unmarshal(a.body, &env) != nil || env.Error != c.code || env.Message == "" {
			t.Errorf("%s: HTTP %d %s, want %d %s", c.name, a.status, a.body, c.status, c.code)
		}
	}
	// Malformed but harmless headers are ignored.
	for _, h := range [][]string{
		withHeader(base, "Expo-Current-Update-ID", "not-a-uuid"),
		withHeader(base, "Expo-Recent-Failed-Update-IDs", `"x", (1 2), :AA=:`),
		withHeader(base, "Expo-Embedded-Update-ID", ""),
		withHeader(base, "Accept", ""),
	} {
		if a := te.do(t, "GET", expoManifestPath, nil, h...); a.status != 200 {
			t.Errorf("%v: HTTP %d %s", h, a.status, a.body)
		}
	}
}

// TestUpdatesNeverOffersExpoBundle: a Capgo device on a channel whose
// bundle is an Expo update gets Capgo's no_bundle.
func TestUpdatesNeverOffersExpoBundle(t *testing.T) {
	e := newCoreEdge(t, expoSnapshot(t, nil, 1))
	out := routeReq(e, "POST", "/updates", body(t, map[string]any{"device_id": "00009a6b-eefe-490a-9c60-8e965132ae51"}), nil)
	if want := `{"error":"no_bundle","message":"Cannot get bundle","kind":"failed"}`; out.status != 200 || string(out.body) != want {
		t.Fatalf("HTTP %d %s, want %s", out.status, out.body, want)
	}
	// The Capgo bundle of the same app is still offered.
	out = routeReq(e, "POST", "/updates", body(t, map[string]any{"defaultChannel": "capgo"}), nil)
	if out.status != 200 || !bytes.HasPrefix(out.body, []byte(`{"version":"1.1.0"`)) {
		t.Fatalf("capgo channel: HTTP %d %s", out.status, out.body)
	}
}

// TestExpoEvents: a manifest request is a check-in; the update a device
// runs is a "set" and its recently failed updates "update_fail" events,
// once each, placed in the device's channel and arm.
func TestExpoEvents(t *testing.T) {
	saved := checkInInterval
	checkInInterval = time.Hour
	t.Cleanup(func() { checkInInterval = saved })
	sink := &memSink{}
	e := New(config.NewEdge(t.TempDir()), nil, quiet)
	s := expoSnapshot(t, nil, 1)
	e.SetSnapshot(s)
	if err := e.StartStats(sink); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	app := s.App(testAppID)
	id := func(v string) string { return expoLegacyID(app.Bundle(v), "android") }
	dev := expoDevice
	hdr := withHeader(androidHeaders(dev, id("2.0.0"), false), "Expo-Recent-Failed-Update-IDs",
		`"`+id("2.1.0")+`", "`+strings.ToUpper(id("3.0.0"))+`", "`+expoEmbedded+`"`)
	for range 3 {
		if a := expoCall(e, expoManifestPath, hdr...); a.status != 200 {
			t.Fatalf("HTTP %d %s", a.status, a.body)
		}
	}
	flushStats(t, e)
	var got []string
	checkIns := 0
	for _, d := range sink.acked() {
		if err := events.Decode(d.segment, events.Visitor{
			CheckIns: func(c *events.CheckIns) error { checkIns += len(c.Devices); return nil },
			Event: func(ev *events.Event) error {
				if ev.DeviceID != dev || ev.Platform != "android" || ev.Channel != "production" || ev.Arm != "base" ||
					ev.Segment != snapshot.RuleDefault || ev.VersionBuild != "1.0.0" {
					t.Errorf("event %+v", ev)
				}
				got = append(got, ev.Action+" "+ev.VersionName)
				return nil
			},
		}); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Join(sorted(got), ", ") != "set 2.0.0, update_fail 2.1.0, update_fail 3.0.0" || checkIns != 1 {
		t.Fatalf("events %v, %d check-ins", got, checkIns)
	}
}

// FuzzExpoHeaders feeds arbitrary header values to the manifest endpoint:
// never a 5xx, a JSON error for every 4xx, and a well-formed answer
// otherwise.
func FuzzExpoHeaders(f *testing.F) {
	f.Add("1", "android", expoRuntime, "multipart/mixed,application/expo+json,application/json", `sig, keyid="main"`, `"a", "b"`, expoEmbedded)
	f.Add("0", "ios", "2.0.0", "application/json;q=0.5", "", "", "")
	f.Add("2", "web", "", "*/*", `sig=?1;a=1, keyid=tok`, `1, 2.5, ?0`, "x")
	f.Add("1", "android", "1", `multipart/*;q=0.001`, `"`, `"\"`, strings.Repeat("f", 36))
	signer := newExpoSigner(f)
	cfg := config.NewEdge(f.TempDir())
	cfg.ExpoSigningKey = signer.keyFile
	e := New(cfg, nil, quiet)
	e.SetSnapshot(expoSnapshot(f, nil, 1))
	dev := expoDevice
	f.Fuzz(func(t *testing.T, proto, platform, runtime, accept, expect, failed, current string) {
		a := expoCall(e, expoManifestPath, "Expo-Protocol-Version", proto, "Expo-Platform", platform, "Expo-Runtime-Version", runtime,
			"Accept", accept, "expo-expect-signature", expect, "Expo-Recent-Failed-Update-IDs", failed,
			"Expo-Current-Update-ID", current, "Expo-Embedded-Update-ID", expoEmbedded, "EAS-Client-ID", dev)
		switch {
		case a.status >= 500:
			t.Fatalf("HTTP %d %s", a.status, a.body)
		case a.status >= 400:
			var env struct{ Error string }
			if json.Unmarshal(a.body, &env) != nil || env.Error == "" {
				t.Fatalf("HTTP %d without a JSON error: %q", a.status, a.body)
			}
		case a.status == 204:
			if len(a.body) != 0 {
				t.Fatal("204 with a body")
			}
		case a.status == 200:
			ct := a.header.Get("Content-Type")
			if strings.HasPrefix(ct, "multipart/") {
				readParts(t, a)
			} else if !json.Valid(a.body) {
				t.Fatalf("invalid JSON answer %q", a.body)
			}
		default:
			t.Fatalf("HTTP %d", a.status)
		}
	})
}

// FuzzExpoSFV: the structured-field and Accept readers never panic, and
// what they accept as a dictionary of strings reads the same with the
// test's independent reader.
func FuzzExpoSFV(f *testing.F) {
	for _, s := range []string{`sig, keyid="root", alg="rsa-v1_5-sha256"`, `sig=?1;x=1, a=1.5, b=-12, c=tok/en:x`, `"a", "b\"c"`,
		`a=(1 2)`, `a=:AAA=:`, `a,`, ``, `  `, `a="\x"`, `a=1.2345`, `a=1234567890123456`, `*a=*b`,
		"multipart/mixed;q=0.9, application/*;q=1.0, */*;q=0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		negotiateExpo(s)
		sfvList(s, func(sfvItem) {})
		strs := map[string]string{}
		onlyStrings := true
		err := sfvDictionary(s, func(k string, v sfvItem) {
			if v.kind != sfvString {
				onlyStrings = false
			}
			strs[k] = v.str
		})
		if err == nil && onlyStrings && !strings.ContainsAny(s, ";\t") {
			if got := sfvDict(t, s); fmt.Sprint(got) != fmt.Sprint(strs) {
				t.Fatalf("%q: %v, the independent reader says %v", s, strs, got)
			}
		}
	})
}

func TestExpoSFVAndAccept(t *testing.T) {
	x, err := parseExpectSignature(`sig, keyid="root", alg="rsa-v1_5-sha256"`)
	if err != nil || x.keyID != "root" || x.alg != "rsa-v1_5-sha256" {
		t.Fatalf("%+v %v", x, err)
	}
	for _, bad := range []string{`sig=:AAA=:`, `keyid=(a b)`, `Sig`, `sig,`, `sig="x`, `sig="\n"`, `a=1.2345`, `a=-`} {
		if _, err := parseExpectSignature(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	var ids []string
	if err := sfvList(`"a", "b\"c";p=1,  tok`, func(v sfvItem) { ids = append(ids, v.str) }); err != nil || strings.Join(ids, "|") != `a|b"c|tok` {
		t.Fatalf("%q %v", ids, err)
	}
	for accept, want := range map[string]int{
		"": expoFormatMultipart, "multipart/mixed,application/expo+json,application/json": expoFormatMultipart,
		"application/expo+json;q=0.9, application/json;q=0.8, multipart/mixed": expoFormatMultipart,
		"application/json, multipart/mixed;q=0.1":                              expoFormatJSON,
		"*/*;q=0.1, application/expo+json;q=0.2":                               expoFormatExpoJSON,
		"application/*, application/json;q=0":                                  expoFormatExpoJSON,
		"text/plain":                                                           expoFormatNone,
		"multipart/mixed;q=2":                                                  expoFormatNone,
	} {
		if got := negotiateExpo(accept); got != want {
			t.Errorf("Accept %q: %d, want %d", accept, got, want)
		}
	}
}

// TestExpoAssetsRange: a file stored as is takes Range and conditional
// requests like /f/; a decoded one is sent whole.
func TestExpoAssetsRange(t *testing.T) {
	te, s := startExpoEdge(t, nil)
	b := s.App(testAppID).Bundle("2.0.0")
	var png, jsonAsset snapshot.ManifestEntry
	for _, f := range b.Manifest {
		switch {
		case f.Name == b.Expo.Platforms["android"].Assets[0].Path:
			png = f
		case f.Name == b.Expo.Platforms["android"].Assets[2].Path+".br":
			jsonAsset = f
		}
	}
	path := "/expo/" + testAppID + "/a/"
	a := te.do(t, "GET", path+png.Hash, nil, "Range", "bytes=0-7")
	if a.status != 206 || string(a.body) != "\x89PNG\r\n\x1a\n" || a.header.Get("Content-Type") != "image/png" {
		t.Fatalf("range: HTTP %d %q %q", a.status, a.body, a.header.Get("Content-Type"))
	}
	if a := te.do(t, "GET", path+png.Hash, nil, "If-None-Match", `"`+png.Hash+`"`); a.status != 304 {
		t.Fatalf("If-None-Match: HTTP %d", a.status)
	}
	a = te.do(t, "GET", path+jsonAsset.Hash, nil, "Range", "bytes=0-7")
	sum := sha256.Sum256(a.body)
	if a.status != 200 || hex.EncodeToString(sum[:]) != jsonAsset.Hash || a.header.Get("Content-Encoding") != "" ||
		a.header.Get("ETag") != `"`+jsonAsset.Hash+`"` || a.header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("decoded: HTTP %d, %d bytes, %v", a.status, len(a.body), a.header)
	}
	for range expoMaxDecodes + 4 { // each releases its decode slot
		if a := te.do(t, "HEAD", path+jsonAsset.Hash, nil); a.status != 200 || len(a.body) != 0 {
			t.Fatalf("HEAD decoded: HTTP %d %s", a.status, a.body)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); len(te.edge.expo.decodes) != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d decode slots held after the answers", len(te.edge.expo.decodes))
		}
	}
	if a := te.do(t, "GET", path+jsonAsset.Hash, nil, "Accept-Encoding", "gzip, br;q=0.5"); a.status != 200 ||
		a.header.Get("Content-Encoding") != "br" || a.header.Get("Content-Length") != fmt.Sprint(jsonAsset.Size) {
		t.Fatalf("br: HTTP %d %v", a.status, a.header)
	}
}

// TestExpoDecodedMismatchCut: decoded bytes that do not hash to the URL
// end the answer without its last chunk.
func TestExpoDecodedMismatchCut(t *testing.T) {
	te, s := startExpoEdge(t, nil)
	b := s.App(testAppID).Bundle("2.0.0")
	p := b.Expo.Platforms["android"].Assets[2].Path
	// Point the asset at another brotli blob of the same app (2.1.0's).
	other := s.App(testAppID).Bundle("2.1.0")
	var want string
	var otherBlob string
	for _, f := range b.Manifest {
		if f.Name == p+".br" {
			want = f.Hash
		}
	}
	for _, f := range other.Manifest {
		if f.Name == other.Expo.Platforms["android"].Assets[2].Path+".br" {
			otherBlob = f.Blob
		}
	}
	loc := te.edge.expo.table(s).assets[expoAssetKey{testAppID, want}]
	wrong := *loc.br
	wrong.Blob = otherBlob
	loc.br = &wrong
	req, _ := http.NewRequest("GET", te.base+"/expo/"+testAppID+"/a/"+want, nil)
	resp, err := te.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("a decoded asset with other bytes was answered in full")
	}
}

// pairHeaders reads headers from name/value pairs without allocating
// (http.Header.Get canonicalizes the name, which allocates).
type pairHeaders []string

func (p pairHeaders) get(name string) string {
	for i := 0; i+1 < len(p); i += 2 {
		if strings.EqualFold(p[i], name) {
			return p[i+1]
		}
	}
	return ""
}

// benchExpo runs the manifest route in process, as a transport calls it.
func benchExpo(b *testing.B, e *Edge, hdr []string, wantStatus int) {
	r := request{ctx: context.Background(), method: "GET", path: expoManifestPath, host: "edge.example.com", proto: "h1",
		header: pairHeaders(hdr), query: urlQuery{}}
	out := &reply{body: make([]byte, 0, 512)}
	e.route(&r, out)
	if out.status != wantStatus {
		b.Fatalf("HTTP %d %s", out.status, out.body)
	}
	b.ReportAllocs()
	for b.Loop() {
		out.reset()
		e.route(&r, out)
	}
}

// BenchmarkExpoManifest is the Android client's check that gets an update:
// validate the headers, resolve, then the multipart answer from the
// table (encoded once).
func BenchmarkExpoManifest(b *testing.B) {
	e := newCoreEdge(b, expoSnapshot(b, nil, 1))
	benchExpo(b, e, androidHeaders(expoDevice, expoEmbedded, false), 200)
}

// BenchmarkExpoManifestSigned: the same, signed (the signature is made
// once per encoded answer).
func BenchmarkExpoManifestSigned(b *testing.B) {
	signer := newExpoSigner(b)
	cfg := config.NewEdge(b.TempDir())
	cfg.ExpoSigningKey = signer.keyFile
	e := New(cfg, nil, quiet)
	e.SetSnapshot(expoSnapshot(b, nil, 1))
	benchExpo(b, e, androidHeaders(expoDevice, expoEmbedded, true), 200)
}

// BenchmarkExpoNoUpdate: a device already on the channel's update gets
// the noUpdateAvailable directive.
func BenchmarkExpoNoUpdate(b *testing.B) {
	s := expoSnapshot(b, nil, 1)
	e := newCoreEdge(b, s)
	running := expoLegacyID(s.App(testAppID).Bundle("2.0.0"), "android")
	benchExpo(b, e, androidHeaders(expoDevice, running, false), 200)
}

// BenchmarkExpoAssetGzip is a launch asset requested by a client that
// takes gzip but not br, once its variant is made: from memory, and the
// device's download already reported (the dedupe table).
func BenchmarkExpoAssetGzip(b *testing.B) {
	te, s := startExpoEdge(b, nil)
	if err := te.edge.StartStats(&memSink{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(te.edge.Close)
	bundle := s.App(testAppID).Bundle("2.0.0")
	launch := expoStoredFiles(bundle)[bundle.Expo.Platforms["android"].Launch]
	r := request{ctx: context.Background(), method: "GET", path: "/expo/" + testAppID + "/a/" + launch.Hash, host: "edge.example.com",
		proto: "h1", header: pairHeaders(androidAssetHeaders(expoDevice, "gzip")), query: urlQuery{}}
	out := &reply{body: make([]byte, 0, 512)}
	te.edge.route(&r, out)
	if out.status != 200 || out.contentEncoding != encGzip {
		b.Fatalf("HTTP %d %q %s", out.status, out.contentEncoding, out.body)
	}
	b.ReportAllocs()
	for b.Loop() {
		out.reset()
		te.edge.route(&r, out)
	}
}

// BenchmarkExpoManifestHTTP1 is the whole request over fasthttp (in-memory
// connection).
func BenchmarkExpoManifestHTTP1(b *testing.B) {
	e := newCoreEdge(b, expoSnapshot(b, nil, 1))
	client := inMemoryHTTP1(b, e)
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://edge.example.com" + expoManifestPath)
	hdr := androidHeaders(expoDevice, expoEmbedded, false)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 || !bytes.Contains(resp.Body(), []byte(`name="manifest"`)) {
		b.Fatalf("GET manifest: %v: HTTP %d %s", err, resp.StatusCode(), resp.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := client.Do(req, resp); err != nil {
			b.Fatal(err)
		}
	}
}

// TestExpoRollbackIDs: moving a channel back to a bundle devices still
// hold, and forward again, reaches them. The stock client reuses a stored
// update whose id it already has, with the commitTime it stored
// (expo-updates android loader/Loader.kt, processUpdate) and launches the
// newest commitTime (selectionpolicy/LauncherSelectionPolicyFilterAware.kt),
// so each move must bring an id the device never stored and a createdAt
// newer than what it runs; a device that runs the channel's bundle, under
// any of its ids (legacy ones included), gets noUpdateAvailable.
func TestExpoRollbackIDs(t *testing.T) {
	const a, b = "2.0.0", "2.1.0"
	at := func(rev int64, bundle string) *snapshot.Snapshot {
		return expoSnapshotWith(t, nil, rev, func(s *snapshot.Snapshot) {
			prod := s.Apps[0].Channels[0]
			prod.Bundle, prod.Rollout = bundle, nil
			s.Issued = expoIssued + (rev-1)*60_000
		})
	}
	s1 := at(1, b)
	app := s1.App(testAppID)
	legacyA, legacyB := expoLegacyID(app.Bundle(a), "android"), expoLegacyID(app.Bundle(b), "android")
	e := newCoreEdge(t, s1)
	seen := map[string]bool{legacyA: true, legacyB: true}
	other := "0b0b0000-0000-4000-8000-000000000003"
	manifest := func(e *Edge, dev, current, want string, after time.Time) (string, time.Time) {
		t.Helper()
		doc, part := expoUpdateOf(t, expoCall(e, expoManifestPath, androidHeaders(dev, current, false)...))
		if !expoSameUpdate(doc.ID, expoLegacyID(app.Bundle(want), "android")) {
			t.Fatalf("device on %s: manifest %s, want one of %s", current, doc.ID, want)
		}
		created, err := time.Parse(time.RFC3339Nano, doc.CreatedAt)
		if err != nil || !created.After(after) {
			t.Fatalf("createdAt %q (%v), want after %v: %s", doc.CreatedAt, err, after, part.body)
		}
		return doc.ID, created
	}
	upToDate := func(e *Edge, current string) {
		t.Helper()
		if d, _ := expoDirectiveOf(t, expoCall(e, expoManifestPath, androidHeaders(expoDevice, current, false)...)); d["type"] != "noUpdateAvailable" {
			t.Fatalf("device on %s: directive %v, want noUpdateAvailable", current, d)
		}
	}
	fresh := func(id string) {
		t.Helper()
		if seen[id] {
			t.Fatalf("id %s was issued before", id)
		}
		seen[id] = true
	}

	// Production on B: the device on A (an id from before) gets B.
	id1, t1 := manifest(e, expoDevice, legacyA, b, time.UnixMilli(expoIssued-1))
	fresh(id1)
	if again, _ := manifest(e, other, legacyA, b, time.Time{}); again != id1 {
		t.Fatalf("two devices on A got %s and %s from one snapshot", id1, again)
	}
	if emb, _ := manifest(e, expoDevice, expoEmbedded, b, time.Time{}); emb == id1 {
		t.Fatalf("a device on its embedded update got the id of one on A")
	}
	upToDate(e, id1)
	upToDate(e, legacyB)

	// Back to A: an id the device never stored, newer than B.
	e.SetSnapshot(at(2, a))
	id2, t2 := manifest(e, expoDevice, id1, a, t1)
	fresh(id2)
	other2 := newCoreEdge(t, at(2, a)) // another edge, the same snapshot
	if same, _ := manifest(other2, other, id1, a, t1); same != id2 {
		t.Fatalf("another edge gave %s for the same snapshot, this one %s", same, id2)
	}
	upToDate(e, id2)
	upToDate(e, legacyA)

	// B again: another fresh id, newer still; every id of B maps to it.
	e.SetSnapshot(at(3, b))
	id3, _ := manifest(e, expoDevice, id2, b, t2)
	fresh(id3)
	upToDate(e, id3)
	upToDate(e, id1)
	upToDate(e, legacyB)
}

// TestExpoPrefixIndex: an update's id prefix maps to it; the same zip
// uploaded twice maps to the first bundle; two different updates sharing a
// prefix (never expected) map to neither, so a device reporting it is on
// no known update rather than the wrong one.
func TestExpoPrefixIndex(t *testing.T) {
	s := expoSnapshot(t, nil, 1)
	tbl := buildExpoTable(s, time.Now())
	bundle := s.App(testAppID).Bundle("2.0.0")
	u := tbl.update(bundle, "android")
	id := expoLegacyID(bundle, "android")
	manifestID := snapshot.FormatDeviceID(expoManifestID(u.prefix, expoPrefix{}, tbl.issued))
	for _, cur := range []string{id, strings.ToUpper(id), manifestID} {
		if got := tbl.current(testAppID, "android", cur); got != u {
			t.Fatalf("%s maps to %v", cur, got)
		}
	}
	if tbl.current(testAppID, "ios", id) != nil || tbl.current("com.other.app", "android", id) != nil {
		t.Fatal("an id maps across platforms or apps")
	}
	dup := *u
	dup.bundle = &snapshot.Bundle{Version: "2.0.9", SHA256: bundle.SHA256}
	tbl.index(&dup)
	if tbl.current(testAppID, "android", id) != u {
		t.Fatal("the same zip uploaded again took over the prefix")
	}
	clash := *u
	clash.bundle = &snapshot.Bundle{Version: "2.0.8", SHA256: fakeSHA("another zip")}
	tbl.index(&clash)
	if got := tbl.current(testAppID, "android", id); got != nil {
		t.Fatalf("an ambiguous prefix maps to %s", got.bundle.Version)
	}
	tbl.index(u)
	if tbl.current(testAppID, "android", id) != nil {
		t.Fatal("an ambiguous prefix became unambiguous")
	}
}

// androidAssetHeaders is an asset request of expo-updates' Android client
// (FileDownloader.createRequestForAsset): its fixed headers, the device id,
// the app's updates.requestHeaders (the channel), and what OkHttp adds:
// "gzip" alone without the brotli interceptor (expo-updates before it
// added one).
func androidAssetHeaders(device, acceptEncoding string) []string {
	return []string{"Expo-Platform", "android", "Expo-Protocol-Version", "1", "Expo-API-Version", "1",
		"Expo-Updates-Environment", "BARE", "EAS-Client-ID", device, "expo-channel-name", "production",
		"Accept-Encoding", acceptEncoding, "User-Agent", "okhttp/4.12.0"}
}

// expoStoredFiles returns bundle b's files by the path metadata.json names
// them (without ".br"), and whether each is stored brotli.
func expoStoredFiles(b *snapshot.Bundle) map[string]snapshot.ManifestEntry {
	m := map[string]snapshot.ManifestEntry{}
	for _, f := range b.Manifest {
		m[strings.TrimSuffix(f.Name, ".br")] = f
	}
	return m
}

// TestExpoAssetsGzip: a client that takes gzip but not br gets the
// brotli-stored files as gzip — made once per asset even under concurrent
// requests, kept in memory, decoded here by compress/gzip to the manifest's
// hash — with its own ETag; files stored as is stay identity (Range
// works); br still wins when accepted; busy compressions fall back to
// identity.
func TestExpoAssetsGzip(t *testing.T) {
	te, s := startExpoEdge(t, nil)
	b := s.App(testAppID).Bundle("2.0.0")
	files := expoStoredFiles(b)
	p := b.Expo.Platforms["android"]
	launch, png, jsonAsset := files[p.Launch], files[p.Assets[0].Path], files[p.Assets[2].Path]
	path := "/expo/" + testAppID + "/a/"
	gunzip := func(t *testing.T, body []byte) []byte {
		t.Helper()
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		raw, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		return raw
	}
	hashOf := func(b []byte) string { sum := sha256.Sum256(b); return hex.EncodeToString(sum[:]) }

	// Eight Android clients at once on the launch asset: one compression.
	const clients = 8
	answers := make(chan answer, clients)
	for i := range clients {
		go func() {
			dev := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
			answers <- te.do(t, "GET", path+launch.Hash, nil, androidAssetHeaders(dev, "gzip")...)
		}()
	}
	stored := 0
	var first []byte
	for range clients {
		a := <-answers
		if a.status != 200 || a.header.Get("Content-Encoding") != "gzip" || a.header.Get("Vary") != "Accept-Encoding" ||
			a.header.Get("ETag") != `"`+launch.Hash+`-gzip"` || a.header.Get("Content-Type") != "application/javascript" ||
			a.header.Get("Cache-Control") != "public, max-age=31536000, immutable" || a.header.Get("Accept-Ranges") != "" {
			t.Fatalf("launch asset as gzip: HTTP %d %v", a.status, a.header)
		}
		raw := gunzip(t, a.body)
		if hashOf(raw) != launch.Hash {
			t.Fatalf("gzip answer decodes to %s, want %s", hashOf(raw), launch.Hash)
		}
		if len(a.body) >= len(raw) {
			t.Errorf("gzip answer of %d bytes for a %d-byte file", len(a.body), len(raw))
		}
		if first == nil {
			first = a.body
		} else if !bytes.Equal(first, a.body) {
			t.Error("two gzip answers of one asset differ")
		}
		if strings.Contains(a.header.Get("Cache-Status"), "fwd=miss") {
			stored++
		}
	}
	if stored != 1 {
		t.Fatalf("%d answers made the gzip variant, want 1 (the others wait for it)", stored)
	}
	if n := testutil.ToFloat64(te.edge.expo.assetsVec.WithLabelValues("gzip")); n != clients {
		t.Errorf("outcome gzip counted %v times, want %d", n, clients)
	}
	// Later: from memory, Range ignored; conditional on the gzip ETag.
	a := te.do(t, "GET", path+launch.Hash, nil, "Accept-Encoding", "gzip", "Range", "bytes=0-9")
	if a.status != 200 || !bytes.Equal(a.body, first) || a.header.Get("Cache-Status") != "updraft; hit; detail=memory" {
		t.Fatalf("second gzip answer: HTTP %d %v", a.status, a.header)
	}
	if a := te.do(t, "GET", path+launch.Hash, nil, "Accept-Encoding", "gzip", "If-None-Match", `"`+launch.Hash+`-gzip"`); a.status != 304 ||
		a.header.Get("ETag") != `"`+launch.Hash+`-gzip"` {
		t.Fatalf("If-None-Match gzip ETag: HTTP %d %v", a.status, a.header)
	}
	if a := te.do(t, "GET", path+launch.Hash, nil, "Accept-Encoding", "gzip", "If-None-Match", `"`+launch.Hash+`"`); a.status != 200 {
		t.Fatalf("If-None-Match identity ETag on a gzip request: HTTP %d", a.status)
	}
	if a := te.do(t, "HEAD", path+launch.Hash, nil, "Accept-Encoding", "gzip"); a.status != 200 || len(a.body) != 0 ||
		a.header.Get("Content-Length") != fmt.Sprint(len(first)) || a.header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("HEAD gzip: HTTP %d %v", a.status, a.header)
	}
	// br whenever accepted; identity (decoded) for a client without either;
	// files stored as is stay identity with Range.
	for _, tc := range []struct{ ae, enc string }{{"br,gzip", "br"}, {"gzip, br;q=0.5", "br"}, {"", ""}, {"identity", ""},
		{"gzip;q=0.5, identity", ""}, {"x-gzip", "gzip"}, {"*", "br"}} {
		a := te.do(t, "GET", path+jsonAsset.Hash, nil, "Accept-Encoding", tc.ae)
		if a.status != 200 || a.header.Get("Content-Encoding") != tc.enc {
			t.Fatalf("Accept-Encoding %q: HTTP %d, Content-Encoding %q, want %q", tc.ae, a.status, a.header.Get("Content-Encoding"), tc.enc)
		}
		if got := hashOf(decode(t, tc.enc, a.body)); got != jsonAsset.Hash {
			t.Fatalf("Accept-Encoding %q: hash %s, want %s", tc.ae, got, jsonAsset.Hash)
		}
	}
	a = te.do(t, "GET", path+png.Hash, nil, "Accept-Encoding", "gzip", "Range", "bytes=0-7")
	if a.status != 206 || string(a.body) != "\x89PNG\r\n\x1a\n" || a.header.Get("Content-Encoding") != "" {
		t.Fatalf("stored PNG to a gzip client: HTTP %d %v", a.status, a.header)
	}

	// Every compression slot busy: a file without a variant yet goes as
	// identity (decoded), and gets its variant once a slot is free.
	ios := files[b.Expo.Platforms["ios"].Launch]
	for range expoMaxGzips {
		te.edge.expo.gzip.slots <- struct{}{}
	}
	a = te.do(t, "GET", path+ios.Hash, nil, "Accept-Encoding", "gzip")
	if a.status != 200 || a.header.Get("Content-Encoding") != "" || hashOf(a.body) != ios.Hash {
		t.Fatalf("compressions busy: HTTP %d %v", a.status, a.header)
	}
	for range expoMaxGzips {
		<-te.edge.expo.gzip.slots
	}
	a = te.do(t, "GET", path+ios.Hash, nil, "Accept-Encoding", "gzip")
	if a.status != 200 || a.header.Get("Content-Encoding") != "gzip" || hashOf(gunzip(t, a.body)) != ios.Hash {
		t.Fatalf("after the compressions: HTTP %d %v", a.status, a.header)
	}
	if n := te.edge.expo.gzip.lru.Len(); n != 3 { // the Android and iOS bundles, the JSON file
		t.Errorf("%d gzip variants held, want 3", n)
	}
}

// TestExpoGzipMismatch: bytes that do not hash to the asset's SHA-256 are
// never compressed into a variant; the client gets the decoded answer cut
// short.
func TestExpoGzipMismatch(t *testing.T) {
	te, s := startExpoEdge(t, nil)
	b, other := s.App(testAppID).Bundle("2.0.0"), s.App(testAppID).Bundle("2.1.0")
	p := b.Expo.Platforms["android"].Assets[2].Path
	want := expoStoredFiles(b)[p].Hash
	loc := te.edge.expo.table(s).assets[expoAssetKey{testAppID, want}]
	wrong := *loc.br
	wrong.Blob = expoStoredFiles(other)[other.Expo.Platforms["android"].Assets[2].Path].Blob
	loc.br = &wrong
	req, _ := http.NewRequest("GET", te.base+"/expo/"+testAppID+"/a/"+want, nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := te.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err == nil || resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("other bytes answered in full (Content-Encoding %q, %v)", resp.Header.Get("Content-Encoding"), err)
	}
	if _, ok := te.edge.expo.gzip.lookup(hexKey(want)); ok {
		t.Fatal("a gzip variant of bytes that do not match was kept")
	}
	if n := testutil.ToFloat64(te.edge.expo.assetsVec.WithLabelValues("hash_mismatch")); n < 1 {
		t.Fatal("no hash_mismatch counted")
	}
}

// TestExpoGzipBudget: variants beyond the byte budget drop the least
// recently used.
func TestExpoGzipBudget(t *testing.T) {
	var c expoGzipCache
	c.init()
	key := func(i byte) [sha256.Size]byte { return [sha256.Size]byte{i} }
	for i := range byte(5) {
		c.mu.Lock()
		c.add(key(i), &expoGzipped{data: make([]byte, expoGzipMaxEntry)})
		c.mu.Unlock()
		if i == 2 {
			c.lookup(key(0)) // 0 used after 1 and 2
		}
	}
	if c.bytes > expoGzipBudget || c.bytes != int64(c.lru.Len())*(expoGzipMaxEntry+expoGzipOverhead) {
		t.Fatalf("%d bytes held in %d entries, budget %d", c.bytes, c.lru.Len(), expoGzipBudget)
	}
	for _, i := range []byte{1, 2} {
		if _, ok := c.lookup(key(i)); ok {
			t.Errorf("variant %d, among the least recently used, was kept", i)
		}
	}
	if _, ok := c.lookup(key(0)); !ok {
		t.Error("a recently used variant was dropped")
	}
}

// expoSunk decodes the events the sink acknowledged.
func expoSunk(t *testing.T, sink *memSink) []events.Event {
	t.Helper()
	var evs []events.Event
	for _, d := range sink.acked() {
		if err := events.Decode(d.segment, events.Visitor{Event: func(ev *events.Event) error {
			evs = append(evs, *ev)
			return nil
		}}); err != nil {
			t.Fatal(err)
		}
	}
	return evs
}

// TestExpoFatalError: the client's Expo-Fatal-Error (the fatal error of the
// previous launch, at most 1024 characters, sent once; the same request
// again on a retry) is one app_crash of the bundle the device runs — or
// builtin on its embedded update — with the message in the metadata,
// placed like the other events; another message is another crash.
func TestExpoFatalError(t *testing.T) {
	sink := &memSink{}
	e := New(config.NewEdge(t.TempDir()), nil, quiet)
	s := expoSnapshot(t, nil, 1)
	e.SetSnapshot(s)
	if err := e.StartStats(sink); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	running := expoLegacyID(s.App(testAppID).Bundle("2.0.0"), "android")
	// NoDatabaseLauncher writes the exception's toString(); OkHttp takes
	// only visible ASCII in a header. Longer than the client sends, to
	// check the edge's own bound.
	msg := "java.lang.Exception: Failed to load all assets; update 2.0.0 could not launch " + strings.Repeat("x", 1500)
	hdr := withHeader(androidHeaders(expoDevice, running, false), "Expo-Fatal-Error", msg)
	for range 3 {
		if a := expoCall(e, expoManifestPath, hdr...); a.status != 200 {
			t.Fatalf("HTTP %d %s", a.status, a.body)
		}
	}
	other := withHeader(hdr, "Expo-Fatal-Error", `Fatal error: Error Domain=EXUpdates Code=1 "unicode: é"`)
	embedded := withHeader(withHeader(hdr, "Expo-Current-Update-ID", expoEmbedded), "EAS-Client-ID", expoSegDevice)
	for _, h := range [][]string{other, embedded} {
		if a := expoCall(e, expoManifestPath, h...); a.status != 200 {
			t.Fatalf("HTTP %d %s", a.status, a.body)
		}
	}
	flushStats(t, e)
	var got []string
	for _, ev := range expoSunk(t, sink) {
		if ev.Action != "app_crash" {
			continue
		}
		var meta map[string]string
		if err := json.Unmarshal([]byte(ev.Metadata), &meta); err != nil || len(meta) != 1 {
			t.Fatalf("metadata %q: %v", ev.Metadata, err)
		}
		m := meta["expo_fatal_error"]
		switch ev.DeviceID {
		case expoDevice:
			if ev.Platform != "android" || ev.Channel != "production" || ev.Segment != snapshot.RuleDefault || ev.Arm != "base" ||
				ev.VersionBuild != expoRuntime || !ev.IsProd {
				t.Errorf("event %+v", ev)
			}
		case expoSegDevice:
			if ev.Channel != "beta" || ev.Segment != "segment:testers" {
				t.Errorf("event %+v", ev)
			}
		}
		if len(m) > expoFatalMax {
			t.Errorf("message of %d bytes kept", len(m))
		}
		got = append(got, ev.DeviceID[:4]+" "+ev.VersionName+" "+m[:min(len(m), 40)])
	}
	want := []string{
		"0000 2.0.0 Fatal error: Error Domain=EXUpdates Code",
		"0000 2.0.0 java.lang.Exception: Failed to load all ",
		"5e6d builtin java.lang.Exception: Failed to load all ",
	}
	if strings.Join(sorted(got), "\n") != strings.Join(want, "\n") {
		t.Fatalf("app_crash events:\n%s\nwant\n%s", strings.Join(sorted(got), "\n"), strings.Join(want, "\n"))
	}
}

// TestExpoDownloads: a launch asset answered in full to a device that
// names itself (EAS-Client-ID, on every asset request of the stock
// clients) is one download_complete of its update, per device and update,
// placed in the device's channel, segment and arm; ranges, HEAD, other
// assets and anonymous requests are none; Expo-Requested-Update-ID picks
// the update when two bundles share a launch asset.
func TestExpoDownloads(t *testing.T) {
	te, s := startExpoEdge(t, nil)
	// 2.0.1 is 2.0.0 uploaded again under another zip hash: the same files.
	s = expoSnapshotWith(t, te, 2, func(s *snapshot.Snapshot) {
		a := s.Apps[0]
		for _, b := range a.Bundles {
			if b.Version == "2.0.0" {
				twin := *b
				twin.Version, twin.SHA256 = "2.0.1", fakeSHA("zip 2.0.1")
				a.Bundles = append(a.Bundles, &twin)
				break
			}
		}
	})
	te.edge.SetSnapshot(s)
	sink := &memSink{}
	if err := te.edge.StartStats(sink); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(te.edge.Close)
	app := s.App(testAppID)
	path := "/expo/" + testAppID + "/a/"
	launchOf := func(v string) string {
		b := app.Bundle(v)
		return expoStoredFiles(b)[b.Expo.Platforms["android"].Launch].Hash
	}
	get := func(method, sha string, hdr ...string) {
		t.Helper()
		if a := te.do(t, method, path+sha, nil, hdr...); a.status != 200 && a.status != 206 {
			t.Fatalf("%s %s: HTTP %d %s", method, sha, a.status, a.body)
		}
	}
	segDev := androidAssetHeaders(expoSegDevice, "br,gzip")
	for range 2 { // the second is a repeat
		get("GET", launchOf("2.1.0"), segDev...)
		get("GET", launchOf("2.1.0"), withHeader(segDev, "Accept-Encoding", "gzip")...)
	}
	get("HEAD", launchOf("2.1.0"), androidAssetHeaders(expoDevice, "br,gzip")...)
	get("GET", launchOf("2.1.0"), withHeader(androidAssetHeaders(expoDevice, "br,gzip"), "Range", "bytes=0-99")...)
	get("GET", launchOf("2.1.0"), withHeader(androidAssetHeaders(expoDevice, "br,gzip"), "EAS-Client-ID", "")...)
	png := expoStoredFiles(app.Bundle("2.1.0"))[app.Bundle("2.1.0").Expo.Platforms["android"].Assets[0].Path].Hash
	get("GET", png, androidAssetHeaders(expoDevice, "br,gzip")...)
	// 2.0.0 and 2.0.1 share their launch asset: only the requested id (of
	// recent clients) tells them apart.
	get("GET", launchOf("2.0.0"), androidAssetHeaders(expoDevice, "br,gzip")...)
	twinID := expoLegacyID(app.Bundle("2.0.1"), "android")
	pinned := withHeader(withHeader(androidAssetHeaders(expoPinDevice, "br,gzip"), "Expo-Requested-Update-ID", twinID),
		"Expo-Current-Update-ID", expoLegacyID(app.Bundle("3.0.0"), "android"))
	get("GET", launchOf("2.0.0"), pinned...)
	flushStats(t, te.edge)

	var got []string
	for _, ev := range expoSunk(t, sink) {
		if ev.Action != "download_complete" {
			continue
		}
		if ev.Platform != "android" || ev.VersionBuild != expoRuntime || !ev.IsProd || ev.Metadata != "" ||
			!ev.ClientPrefix.IsValid() {
			t.Errorf("event %+v", ev)
		}
		got = append(got, ev.DeviceID[:4]+" "+ev.VersionName+" "+ev.Channel+" "+ev.Segment+" "+ev.Arm)
	}
	// expoSegDevice is in segment testers (beta); expoPinDevice has an
	// override to next, and runs 3.0.0 there.
	want := []string{"5e6d 2.1.0 beta segment:testers ", "9a9a 2.0.1 next override "}
	if strings.Join(sorted(got), "\n") != strings.Join(want, "\n") {
		t.Fatalf("download_complete events:\n%s\nwant\n%s", strings.Join(sorted(got), "\n"), strings.Join(want, "\n"))
	}
	for result, want := range map[string]float64{"new": 2, "repeat": 3, "no_client_id": 1, "ambiguous": 1} {
		if n := testutil.ToFloat64(te.edge.expo.downloads.WithLabelValues(result)); n != want {
			t.Errorf("downloads %s: %v, want %v", result, n, want)
		}
	}
}
