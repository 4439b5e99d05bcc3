package origin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/updraft-cdn/updraft/bundlecrypt"
	"github.com/updraft-cdn/updraft/internal/expotest"
	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/delta"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

const expoApp = "com.example.rn"

// expoExport writes an `npx expo export`-shaped folder and the Expo update
// the CLI makes of it.
func expoExport(t *testing.T, seed string) (expotest.Export, *snapshot.ExpoUpdate) {
	t.Helper()
	exp, err := expotest.Write(t.TempDir(), expotest.Options{Seed: seed, RuntimeVersion: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := client.ExpoFromExport(exp.Dir, "")
	if err != nil {
		t.Fatal(err)
	}
	return exp, e
}

// An Expo export uploaded with its Expo update is stored as a bundle (no
// index.html needed), published at once with the update as sent, and once
// built its manifest holds every file the update names, by content hash.
func TestExpoUploadPublishedAndBuilt(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	if _, err := o.client.CreateApp(ctx, expoApp, ""); err != nil {
		t.Fatal(err)
	}
	exp, e := expoExport(t, "1")
	// What the CLI read, as metadata.json and expoConfig.json say.
	for _, p := range []string{"ios", "android"} {
		ep := e.Platforms[p]
		if ep.RuntimeVersion != "1.0.0" || ep.Launch != exp.Launch[p] || len(ep.Assets) != len(exp.Assets[p]) {
			t.Fatalf("%s: %+v, export %s %+v", p, ep, exp.Launch[p], exp.Assets[p])
		}
		for i, a := range exp.Assets[p] {
			if ep.Assets[i] != (snapshot.ExpoAsset{Path: a.Path, Ext: a.Ext}) {
				t.Fatalf("%s asset %d: %+v, want %+v", p, i, ep.Assets[i], a)
			}
		}
	}
	var extra struct{ ExpoClient json.RawMessage }
	if err := json.Unmarshal(e.Extra, &extra); err != nil || !bytes.Equal(extra.ExpoClient, exp.Config) {
		t.Fatalf("extra %s, want expoClient %s (%v)", e.Extra, exp.Config, err)
	}

	b, err := o.client.UploadPath(ctx, expoApp, "1.0.0", exp.Dir, client.UploadOptions{Expo: e, Channel: "production"})
	if err != nil {
		t.Fatal(err)
	}
	if !sameExpo(b.Expo, e) {
		t.Fatalf("upload answered expo %s, want %s", expoJSON(b.Expo), expoJSON(e))
	}
	// Published before the upload answered, with the Expo update.
	sb := o.srv.Current().Snap.App(expoApp).Bundle("1.0.0")
	if sb == nil || !sameExpo(sb.Expo, e) {
		t.Fatalf("published bundle: %+v", sb)
	}
	// The signed wire document carries it too (what edges decode).
	wire, _, _ := pollSnapshot(t, o, "-1", o.srv.PublicKey())
	doc, err := snapshot.DecodeDocument(wire, o.srv.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if got := doc.Apps[0].Bundles[0].Expo; !sameExpo(got, e) {
		t.Fatalf("wire snapshot expo %+v, want %+v", got, e)
	}

	waitDeltas(t, o.client, expoApp, "1.0.0")
	var built *snapshot.Bundle
	waitUntil(t, "a snapshot with 1.0.0's manifest", func() bool {
		built = o.srv.Current().Snap.App(expoApp).Bundle("1.0.0")
		return len(built.Manifest) > 0
	}, func() string { return fmt.Sprintf("%+v", built) })
	if !sameExpo(built.Expo, e) {
		t.Fatalf("built bundle lost its expo: %+v", built.Expo)
	}
	byName := map[string]snapshot.ManifestEntry{}
	for _, m := range built.Manifest {
		byName[strings.TrimSuffix(m.Name, ".br")] = m
	}
	brotli := 0
	for _, path := range exp.Files() {
		m, ok := byName[path]
		data, err := os.ReadFile(filepath.Join(exp.Dir, path))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if !ok || m.Hash != hex.EncodeToString(sum[:]) || !o.srv.Current().Snap.Deliverable(m.Blob) {
			t.Fatalf("manifest entry of %s: %+v (listed %v), want hash %x", path, m, ok, sum)
		}
		if strings.HasSuffix(m.Name, ".br") {
			brotli++
		}
	}
	if brotli == 0 {
		t.Fatalf("no file stored brotli; the launch bundles are compressible: %+v", built.Manifest)
	}
}

// expoJSON is e encoded as the store keeps it (extra compacted).
func expoJSON(e *snapshot.ExpoUpdate) string {
	b, _ := json.Marshal(e)
	return string(b)
}

// sameExpo compares two Expo updates as the store and the snapshot encode
// them (an API answer indents extra).
func sameExpo(a, b *snapshot.ExpoUpdate) bool {
	return a != nil && b != nil && expoJSON(a) == expoJSON(b)
}

// expoPart is one part of a hand-made multipart upload.
type expoPart struct {
	name string
	data []byte
}

func multipartBody(t *testing.T, parts []expoPart) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		w, err := mw.CreateFormFile(p.name, p.name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(p.data)
	}
	mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

// The origin refuses an Expo update that does not match the zip it came
// with or breaks the rules, whatever the CLI checked, and keeps nothing of
// it.
func TestExpoUploadRefusals(t *testing.T) {
	o, _ := startOriginCfg(t, nil) // 64 MiB bundles: the oversized document reaches the Expo check
	ctx := context.Background()
	if _, err := o.client.CreateApp(ctx, expoApp, ""); err != nil {
		t.Fatal(err)
	}
	exp, good := expoExport(t, "2")
	var zipBuf bytes.Buffer
	if err := client.ZipDir(exp.Dir, &zipBuf); err != nil {
		t.Fatal(err)
	}
	zipData := zipBuf.Bytes()
	with := func(mod func(e *snapshot.ExpoUpdate)) []byte {
		raw, _ := json.Marshal(good)
		var e snapshot.ExpoUpdate
		json.Unmarshal(raw, &e)
		mod(&e)
		out, _ := json.Marshal(&e)
		return out
	}
	goodJSON := with(func(*snapshot.ExpoUpdate) {})
	zipWith := func(extra map[string]string) []byte {
		dir := t.TempDir()
		if err := os.CopyFS(dir, os.DirFS(exp.Dir)); err != nil {
			t.Fatal(err)
		}
		for name, body := range extra {
			os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
		}
		var b bytes.Buffer
		if err := client.ZipDir(dir, &b); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	meta, _ := json.Marshal(api.EncryptedMeta{
		SessionKey: base64.StdEncoding.EncodeToString(make([]byte, 16)) + ":" + base64.StdEncoding.EncodeToString(make([]byte, 256)),
		Checksum:   strings.Repeat("0", bundlecrypt.ChecksumHexLen), KeyID: "abc123",
		Manifest: []snapshot.ManifestEntry{{Name: "a.js", Hash: strings.Repeat("1", bundlecrypt.ChecksumHexLen), Blob: strings.Repeat("2", 64), Size: 1024}},
	})
	ios := func(e *snapshot.ExpoUpdate, mod func(p *snapshot.ExpoPlatform)) {
		p := e.Platforms["ios"]
		mod(&p)
		e.Platforms["ios"] = p
	}
	for _, tc := range []struct {
		name     string
		parts    []expoPart
		code     string
		contains string
	}{
		{"missing file", []expoPart{{"expo", with(func(e *snapshot.ExpoUpdate) {
			ios(e, func(p *snapshot.ExpoPlatform) {
				p.Assets = append(p.Assets, snapshot.ExpoAsset{Path: "assets/0123missing", Ext: "png"})
			})
		})}, {"bundle", zipData}}, "invalid_bundle", "assets/0123missing"},
		{"missing launch asset", []expoPart{{"expo", with(func(e *snapshot.ExpoUpdate) {
			ios(e, func(p *snapshot.ExpoPlatform) { p.Launch = "_expo/static/js/ios/gone.hbc" })
		})}, {"bundle", zipData}}, "invalid_bundle", "_expo/static/js/ios/gone.hbc"},
		{"empty asset", []expoPart{{"expo", with(func(e *snapshot.ExpoUpdate) {
			ios(e, func(p *snapshot.ExpoPlatform) {
				p.Assets = append(p.Assets, snapshot.ExpoAsset{Path: "empty.png", Ext: "png"})
			})
		})}, {"bundle", zipWith(map[string]string{"empty.png": ""})}}, "invalid_bundle", "empty.png (the ios asset) is empty"},
		{"bad platform", []expoPart{{"expo", with(func(e *snapshot.ExpoUpdate) {
			e.Platforms["web"] = e.Platforms["ios"]
		})}, {"bundle", zipData}}, "invalid_expo_metadata", `platform "web"`},
		{"runtime version over 255", []expoPart{{"expo", with(func(e *snapshot.ExpoUpdate) {
			ios(e, func(p *snapshot.ExpoPlatform) { p.RuntimeVersion = strings.Repeat("1", 256) })
		})}, {"bundle", zipData}}, "invalid_expo_metadata", "limit is 255"},
		{"empty runtime version", []expoPart{{"expo", with(func(e *snapshot.ExpoUpdate) {
			ios(e, func(p *snapshot.ExpoPlatform) { p.RuntimeVersion = "" })
		})}, {"bundle", zipData}}, "invalid_expo_metadata", "runtime version is empty"},
		{"runtime version with a newline", []expoPart{{"expo", with(func(e *snapshot.ExpoUpdate) {
			ios(e, func(p *snapshot.ExpoPlatform) { p.RuntimeVersion = "1.0\r\nx: y" })
		})}, {"bundle", zipData}}, "invalid_expo_metadata", "printable ASCII"},
		{"path outside the bundle", []expoPart{{"expo", with(func(e *snapshot.ExpoUpdate) {
			ios(e, func(p *snapshot.ExpoPlatform) { p.Launch = "../../etc/passwd" })
		})}, {"bundle", zipData}}, "invalid_expo_metadata", "relative path"},
		{"brotli name", []expoPart{{"expo", with(func(e *snapshot.ExpoUpdate) {
			ios(e, func(p *snapshot.ExpoPlatform) { p.Launch += ".br" })
		})}, {"bundle", zipData}}, "invalid_expo_metadata", ".br"},
		{"duplicate asset", []expoPart{{"expo", with(func(e *snapshot.ExpoUpdate) {
			ios(e, func(p *snapshot.ExpoPlatform) { p.Assets = append(p.Assets, p.Assets[0]) })
		})}, {"bundle", zipData}}, "invalid_expo_metadata", "twice"},
		{"extra not an object", []expoPart{{"expo", with(func(e *snapshot.ExpoUpdate) { e.Extra = json.RawMessage(`[1]`) })}, {"bundle", zipData}},
			"invalid_expo_metadata", "extra must be a JSON object"},
		{"no platform", []expoPart{{"expo", []byte(`{"platforms":{}}`)}, {"bundle", zipData}}, "invalid_expo_metadata", "no platform"},
		{"unknown field", []expoPart{{"expo", []byte(`{"platforms":{"ios":{"runtime_version":"1","launch":"a.js","assets":[],"hash":"x"}}}`)}, {"bundle", zipData}},
			"invalid_expo_metadata", "hash"},
		{"not JSON", []expoPart{{"expo", []byte(`{"platforms":`)}, {"bundle", zipData}}, "invalid_expo_metadata", "not the expected JSON"},
		{"trailing data", []expoPart{{"expo", append(goodJSON, []byte(" {}")...)}, {"bundle", zipData}}, "invalid_expo_metadata", "after its JSON"},
		{"too large", []expoPart{{"expo", append(goodJSON, bytes.Repeat([]byte(" "), api.MaxExpoJSON)...)}, {"bundle", zipData}}, "invalid_expo_metadata", "limit is"},
		{"not a zip", []expoPart{{"expo", goodJSON}, {"bundle", []byte("not a zip at all")}}, "invalid_bundle", "zip"},
		{"no bundle part", []expoPart{{"expo", goodJSON}}, "invalid_upload", `"bundle" part`},
		{"part after the bundle", []expoPart{{"expo", goodJSON}, {"bundle", zipData}, {"notes", []byte("x")}}, "invalid_upload", `"notes"`},
		{"encrypted after expo", []expoPart{{"expo", goodJSON}, {"meta", meta}, {"bundle", zipData}}, "invalid_expo_metadata", "cannot be encrypted"},
		{"expo after encrypted meta", []expoPart{{"meta", meta}, {"expo", goodJSON}, {"bundle", zipData}}, "invalid_expo_metadata", "cannot be encrypted"},
		{"encrypted files after the bundle", []expoPart{{"expo", goodJSON}, {"bundle", zipData}, {"file", []byte("x")}}, "invalid_expo_metadata", "cannot be encrypted"},
		{"unknown first part", []expoPart{{"bundle", zipData}}, "invalid_upload", "want meta"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, ct := multipartBody(t, tc.parts)
			status, ae, raw := send(t, o, o.client.APIKey, "POST", "/api/v1/apps/"+expoApp+"/bundles?version=1.0.0", ct, body)
			if status != http.StatusBadRequest || ae.Code != tc.code || !strings.Contains(ae.Message, tc.contains) {
				t.Fatalf("%d %s, want 400 %s containing %q", status, raw, tc.code, tc.contains)
			}
		})
	}
	if bs, err := o.client.ListBundles(ctx, expoApp); err != nil || len(bs) != 0 {
		t.Fatalf("after refusals: %+v %v", bs, err)
	}
	assertBlobs(t, o, 0)

	// The same parts, right, are stored.
	body, ct := multipartBody(t, []expoPart{{"expo", goodJSON}, {"bundle", zipData}})
	if status, _, raw := send(t, o, o.client.APIKey, "POST", "/api/v1/apps/"+expoApp+"/bundles?version=1.0.0", ct, body); status != http.StatusCreated {
		t.Fatalf("good upload: %d %s", status, raw)
	}
	if got := o.srv.Current().Snap.App(expoApp).Bundle("1.0.0").Expo; !sameExpo(got, good) {
		t.Fatalf("stored %+v, want %+v", got, good)
	}
}

// FuzzExpoMetadata: whatever the origin accepts as an Expo update's
// document names only ios and android, valid runtime versions, safe paths
// and an object extra, and reads back the same once re-encoded (as the
// store and the snapshot do).
func FuzzExpoMetadata(f *testing.F) {
	f.Add([]byte(`{"platforms":{"ios":{"runtime_version":"1.0.0","launch":"_expo/static/js/ios/index-0a.hbc","assets":[{"path":"assets/0b","ext":"png"}]},"android":{"runtime_version":"exposdk:52.0.0","launch":"_expo/static/js/android/index-0c.js","assets":[]}},"extra":{"expoClient":{"name":"x"}}}`))
	f.Add([]byte(`{"platforms":{"web":{"runtime_version":"1","launch":"a.js","assets":null}}}`))
	f.Add([]byte(`{"platforms":{"ios":{"runtime_version":" 1","launch":"../a.js","assets":[{"path":"a.js","ext":"..png"}]}},"extra":null}`))
	f.Add([]byte(`{"platforms":{"android":{"runtime_version":"1","launch":"a.js.br","assets":[]}},"extra":"str"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := checkExpoMeta(data)
		if err != nil {
			var ae *api.Error
			if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Code != "invalid_expo_metadata" {
				t.Fatalf("refusal %v is not a 400 invalid_expo_metadata", err)
			}
			return
		}
		if len(e.Platforms) == 0 || len(e.Platforms) > 2 {
			t.Fatalf("accepted %d platforms", len(e.Platforms))
		}
		for name, p := range e.Platforms {
			if name != "ios" && name != "android" {
				t.Fatalf("accepted platform %q", name)
			}
			if api.CheckRuntimeVersion(p.RuntimeVersion) != nil || len(p.RuntimeVersion) > 255 {
				t.Fatalf("accepted runtime version %q", p.RuntimeVersion)
			}
			for _, path := range append([]string{p.Launch}, expoPaths(p.Assets)...) {
				if !delta.ValidPath(path) || strings.HasSuffix(path, ".br") {
					t.Fatalf("accepted path %q", path)
				}
			}
		}
		if e.Extra != nil && (len(e.Extra) > api.MaxExpoExtra || bytes.TrimSpace(e.Extra)[0] != '{') {
			t.Fatalf("accepted extra %q", e.Extra)
		}
		again, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		e2, err := checkExpoMeta(again)
		if err != nil {
			t.Fatalf("re-encoded %s refused: %v", again, err)
		}
		again2, _ := json.Marshal(e2)
		if !bytes.Equal(again, again2) {
			t.Fatalf("not stable:\n%s\n%s", again, again2)
		}
	})
}

func expoPaths(as []snapshot.ExpoAsset) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Path
	}
	return out
}
