package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/internal/expotest"
	"github.com/updraft-cdn/updraft/internal/testenv"
)

// expoGet asks the edge for an Expo manifest with the Android client's
// headers (expo-updates FileDownloader.kt createRequestForRemoteUpdate).
func expoGet(t *testing.T, edge, app, device, current, runtime string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+edge+"/expo/"+app+"/manifest", nil)
	for k, v := range map[string]string{
		"Accept": "multipart/mixed,application/expo+json,application/json", "Expo-Platform": "android",
		"Expo-Protocol-Version": "1", "Expo-API-Version": "1", "Expo-Updates-Environment": "BARE", "Expo-JSON-Error": "true",
		"EAS-Client-ID": device, "Expo-Runtime-Version": runtime, "expo-channel-name": "production",
		"Expo-Embedded-Update-ID": "7a8e3a3e-0000-4000-8000-000000000000",
	} {
		req.Header.Set(k, v)
	}
	if current != "" {
		req.Header.Set("Expo-Current-Update-ID", current)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// multipartParts reads a multipart/mixed answer with the standard library's
// parser (not the edge's writer): part name → body.
func multipartParts(t *testing.T, res *http.Response) map[string][]byte {
	t.Helper()
	defer res.Body.Close()
	mt, params, err := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("content type %q: %v", res.Header.Get("Content-Type"), err)
	}
	parts := map[string][]byte{}
	mr := multipart.NewReader(res.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return parts
		}
		if err != nil {
			t.Fatal(err)
		}
		// Part names ride on "inline" dispositions (FormName reads only
		// form-data ones).
		_, dp, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
		if err != nil {
			t.Fatalf("part disposition %q: %v", p.Header.Get("Content-Disposition"), err)
		}
		b, _ := io.ReadAll(p)
		parts[dp["name"]] = b
	}
}

// An Expo export goes through the real path end to end: `bundle upload
// --expo --wait` to the origin, its build stores the files, the edge of the
// same serve answers the Android client's manifest request with every asset
// the export has, each downloadable from the edge with the announced
// SHA-256; a device already on the update gets noUpdateAvailable; a device
// with another runtime version gets nothing to run.
func TestExpoEndToEnd(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	const app = "com.example.rn"
	cli(t, r, data, "app", "create", app)
	exp, err := expotest.Write(t.TempDir(), expotest.Options{Seed: "e2e", RuntimeVersion: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	cli(t, r, data, "bundle", "upload", exp.Dir, "--app", app, "--version", "1.0.0", "--expo", "--channel", "production", "--wait")

	const device = "5e0c3d3a-4b1e-4f5e-9c1a-2b3c4d5e6f70"
	var manifest struct {
		ID             string `json:"id"`
		RuntimeVersion string `json:"runtimeVersion"`
		LaunchAsset    struct{ Hash, Key, URL, ContentType string }
		Assets         []struct{ Hash, Key, URL, ContentType, FileExtension string }
	}
	// The edge serves the bundle once its snapshot carries the built
	// manifest (the build is done, the publish may trail it).
	deadline := time.Now().Add(testenv.Patience(30 * time.Second))
	for {
		res := expoGet(t, r.EdgeAddr, app, device, "", "1.0.0")
		if res.StatusCode != 200 {
			t.Fatalf("manifest request: HTTP %d", res.StatusCode)
		}
		parts := multipartParts(t, res)
		if m := parts["manifest"]; m != nil {
			if err := json.Unmarshal(m, &manifest); err != nil {
				t.Fatalf("manifest part %s: %v", m, err)
			}
			break
		}
		if time.Now().After(deadline) {
			mres, _ := http.Get("http://" + r.EdgeAddr + "/metrics")
			mb, _ := io.ReadAll(mres.Body)
			var lines []string
			for _, l := range strings.Split(string(mb), "\n") {
				if strings.Contains(l, "expo") && !strings.HasPrefix(l, "#") {
					lines = append(lines, l)
				}
			}
			t.Fatalf("no manifest part; parts: %q; edge metrics:\n%s\nresolve: %s", parts, strings.Join(lines, "\n"),
				cli(t, r, data, "resolve", "--app", app, "--device", device, "--platform", "android", "--version-build", "1.0.0", "--plugin-version", "0.0.0"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if manifest.RuntimeVersion != "1.0.0" || len(manifest.Assets) != len(exp.Assets["android"]) {
		t.Fatalf("manifest %+v, export assets %+v", manifest, exp.Assets["android"])
	}
	// Every asset: the bytes of the export's file, by the announced hash.
	check := func(url, hash, path string) {
		t.Helper()
		want, err := os.ReadFile(filepath.Join(exp.Dir, path))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(want)
		if hash != base64.RawURLEncoding.EncodeToString(sum[:]) {
			t.Fatalf("%s: manifest hash %s is not the export file's", path, hash)
		}
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !bytes.Equal(got, want) {
			t.Fatalf("%s from %s: HTTP %d, %d bytes, want the export's %d", path, url, res.StatusCode, len(got), len(want))
		}
	}
	check(manifest.LaunchAsset.URL, manifest.LaunchAsset.Hash, exp.Launch["android"])
	for i, a := range exp.Assets["android"] {
		m := manifest.Assets[i]
		if m.FileExtension != "."+a.Ext {
			t.Fatalf("asset %s: fileExtension %q", a.Path, m.FileExtension)
		}
		check(m.URL, m.Hash, a.Path)
	}

	// Running it already: the noUpdateAvailable directive.
	parts := multipartParts(t, expoGet(t, r.EdgeAddr, app, device, manifest.ID, "1.0.0"))
	if parts["manifest"] != nil || !strings.Contains(string(parts["directive"]), `"noUpdateAvailable"`) {
		t.Fatalf("device on the update: parts %q", parts)
	}
	// Another runtime version: no manifest.
	parts = multipartParts(t, expoGet(t, r.EdgeAddr, app, device, "", "2.0.0"))
	if parts["manifest"] != nil {
		t.Fatalf("runtime 2.0.0 got a manifest: %s", parts["manifest"])
	}
}
