package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	brrr "github.com/molecule-man/go-brrr"

	"github.com/updraft-cdn/updraft/bench"
	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/delta"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

func get(t *testing.T, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	// A plain transport: Go would otherwise add its own Accept-Encoding.
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func hexSHA(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// TestDeltaDelivery uploads two real releases, waits for the deltas, and
// checks both ways a device gets one: the explicit offer in /updates, and
// RFC 9842 negotiation on the new canonical archive.
func TestDeltaDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds brotli q11 deltas")
	}
	data := t.TempDir()
	r := startTestServe(t, data)
	cli(t, r, data, "app", "create", "com.example.app")
	cli(t, r, data, "bundle", "upload", fixture(t, "swagger-ui-5.34.0.zip"), "--app", "com.example.app", "--version", "1.0.1", "--channel", "production")
	cli(t, r, data, "channel", "set", "production", "--app", "com.example.app", "--default")
	cli(t, r, data, "bundle", "upload", fixture(t, "swagger-ui-5.34.1.zip"), "--app", "com.example.app", "--version", "1.0.2", "--channel", "production")
	c := client.New("http://"+r.OriginAddr, readKey(t, data))
	var bs []origin.BundleInfo
	deadline := time.Now().Add(testenv.Patience(3 * time.Minute))
	for {
		bs, _ = c.ListBundles(context.Background(), "com.example.app")
		if len(bs) == 2 && len(bs[0].Deltas) == 2 && bs[1].Canonical != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deltas not built: %+v", bs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out := cli(t, r, data, "bundle", "list", "--app", "com.example.app"); !strings.Contains(out, "SMALLEST_DELTA") {
		t.Fatalf("bundle list:\n%s", out)
	}
	v2, v1 := bs[0], bs[1]
	// The edge offers the delta its device profile (the defaults: 20mbit,
	// decode factor 4) finishes first, by the decode cost the origin
	// measured for each.
	for _, d := range v2.Deltas {
		if d.DecodeNs <= 0 {
			t.Fatalf("delta without its decode cost: %+v", d)
		}
	}
	ec := config.NewEdge("")
	chosen := (&snapshot.Bundle{Deltas: v2.Deltas}).DeltaFrom(v1.Canonical, true, true,
		snapshot.DeltaCost{LinkBitsPerSecond: float64(ec.DeltaLink), DecodeFactor: ec.DeltaDecodeFactor})
	if chosen == nil {
		t.Fatalf("no delta from 1.0.1: %+v", v2.Deltas)
	}
	// The edge learns of the deltas with the next snapshot.
	var offer struct {
		Version, Checksum string
		DeltaURL          string `json:"delta_url"`
		DeltaEncoding     string `json:"delta_encoding"`
		DeltaBase         string `json:"delta_base_checksum"`
		DeltaChecksum     string `json:"delta_checksum"`
		DeltaSize         int64  `json:"delta_size"`
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		_, b := post(t, "http://"+r.EdgeAddr+"/updates", "POST", strings.Replace(deviceBody, `"builtin"`, `"1.0.1"`, 1))
		json.Unmarshal([]byte(b), &offer)
		if offer.DeltaURL != "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if offer.Version != "1.0.2" || offer.DeltaEncoding != chosen.Encoding || offer.DeltaBase != v1.Canonical || offer.DeltaChecksum != v2.Canonical || offer.Checksum != v2.SHA256 {
		t.Fatalf("offer %+v", offer)
	}
	// Explicit offer: download the delta, apply it to the canonical archive
	// of the bundle the device runs, check the result's SHA-256.
	_, base := get(t, "http://"+r.EdgeAddr+"/b/"+v1.Canonical)
	_, d := get(t, offer.DeltaURL)
	if int64(len(d)) != offer.DeltaSize {
		t.Fatalf("delta %d bytes, offer says %d", len(d), offer.DeltaSize)
	}
	out, err := delta.Apply(base, d, delta.MaxCanonical)
	if err != nil || hexSHA(out) != offer.DeltaChecksum {
		t.Fatalf("applied delta: %v", err)
	}
	t.Logf("update 1.0.1 → 1.0.2: zip %d bytes, delta %d bytes (%s); deltas %+v", v2.Size, len(d), offer.DeltaEncoding, v2.Deltas)

	// RFC 9842: the full archive announces itself as a dictionary; asking
	// for the next one with that dictionary gets the delta.
	resp, full := get(t, "http://"+r.EdgeAddr+"/b/"+v1.Canonical)
	if resp.Header.Get("Use-As-Dictionary") != `match="/b/*"` || hexSHA(full) != v1.Canonical {
		t.Fatalf("canonical answer: %v", resp.Header)
	}
	sum := sha256.Sum256(full)
	dict := ":" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
	for _, ae := range []string{"gzip, deflate, br, zstd, dcb, dcz", "dcz"} {
		resp, enc := get(t, "http://"+r.EdgeAddr+"/b/"+v2.Canonical, "Available-Dictionary", dict, "Accept-Encoding", ae)
		ce := resp.Header.Get("Content-Encoding")
		if (ce != chosen.Encoding && ae != "dcz") || (ae == "dcz" && ce != "dcz") || !strings.Contains(resp.Header.Get("Vary"), "available-dictionary") {
			t.Fatalf("Accept-Encoding %q: Content-Encoding %q, Vary %q", ae, ce, resp.Header.Get("Vary"))
		}
		out, err := delta.Apply(full, enc, delta.MaxCanonical)
		if err != nil || hexSHA(out) != v2.Canonical {
			t.Fatalf("%s answer does not decode to 1.0.2: %v", ce, err)
		}
	}
	// Without dictionary codings, or with an unknown dictionary: the full archive.
	for _, h := range [][]string{{"Available-Dictionary", dict, "Accept-Encoding", "gzip, br"},
		{"Available-Dictionary", ":" + base64.StdEncoding.EncodeToString(make([]byte, 32)) + ":", "Accept-Encoding", "dcb, dcz"}} {
		resp, b := get(t, "http://"+r.EdgeAddr+"/b/"+v2.Canonical, h...)
		if resp.Header.Get("Content-Encoding") != "" || hexSHA(b) != v2.Canonical {
			t.Fatalf("%v: Content-Encoding %q", h, resp.Header.Get("Content-Encoding"))
		}
	}

	// An Updraft-aware client (updraft bench --deltas): the delta, now in
	// the edge's memory tier, comes inside the update answer, applied and
	// verified by every device; with --inline-deltas=false from delta_url.
	for _, c := range []struct {
		flag, path string
	}{{"--inline-deltas=true", bench.PathDeltaInline}, {"--inline-deltas=false", bench.PathDelta}} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), []string{"bench", "--target", "http://" + r.EdgeAddr, "--devices", "20", "--duration", "1s",
			"--version-name", "1.0.1", "--deltas", c.flag, "--json", "--app", "com.example.app", "--i-know-this-is-production"}, &out, &errb); err != nil {
			t.Fatalf("bench %s: %v\n%s", c.flag, err, errb.String())
		}
		var rep bench.Report
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		p := rep.Phases[0]
		if p.Failures != 0 || len(p.Paths) != 1 || p.Paths[0].Path != c.path || p.Paths[0].TimeToUpdate.Count != 20 || p.Paths[0].BytesDown != 20*offer.DeltaSize {
			t.Fatalf("bench %s: failures %d, paths %+v (want 20 updates by %s of %d bytes each)", c.flag, p.Failures, p.Paths, c.path, offer.DeltaSize)
		}
	}
}

// TestManifestMode downloads a bundle file by file as the stock plugin does
// in manifest mode: ".br" entries are brotli, every file's SHA-256 (of the
// decompressed content) must match, and the files must be the bundle's.
func TestManifestMode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds brotli q11 manifests")
	}
	data := t.TempDir()
	// A device on builtin holds none of the files: with the default
	// device profile the edge would offer it the zip alone (all 26 files,
	// 2 round trips: 602 ms against 598 ms); --device-rtt 0 offers the
	// manifest whenever the plugin takes one.
	r := startTestServeWith(t, data, func(ec *config.Edge) { ec.DeviceRTT = 0 })
	cli(t, r, data, "app", "create", "com.example.app")
	zipPath := fixture(t, "swagger-ui-5.34.0.zip")
	cli(t, r, data, "bundle", "upload", zipPath, "--app", "com.example.app", "--version", "1.0.1", "--channel", "production")
	cli(t, r, data, "channel", "set", "production", "--app", "com.example.app", "--default")
	type entry struct {
		Name string `json:"file_name"`
		Hash string `json:"file_hash"`
		URL  string `json:"download_url"`
	}
	var ans struct {
		Version  string
		URL      string
		Manifest []entry
	}
	for deadline := time.Now().Add(testenv.Patience(3 * time.Minute)); len(ans.Manifest) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no manifest in the update answer: %+v", ans)
		}
		_, b := post(t, "http://"+r.EdgeAddr+"/updates", "POST", deviceBody)
		json.Unmarshal([]byte(b), &ans)
	}
	raw, _ := os.ReadFile(zipPath)
	files, err := delta.ReadZip(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for _, f := range files {
		want[f.Path] = f.Data
	}
	var sizeReq []string
	compressed := 0
	for _, e := range ans.Manifest {
		resp, body := get(t, e.URL)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: HTTP %d", e.URL, resp.StatusCode)
		}
		name := e.Name
		if strings.HasSuffix(name, ".br") {
			compressed++
			name = strings.TrimSuffix(name, ".br")
			if body, err = brrr.Decompress(body); err != nil {
				t.Fatalf("%s: %v", e.Name, err)
			}
		}
		if hexSHA(body) != e.Hash || !bytes.Equal(body, want[name]) {
			t.Fatalf("%s: content does not match the bundle", e.Name)
		}
		delete(want, name)
		b, _ := json.Marshal(e)
		sizeReq = append(sizeReq, string(b))
	}
	if len(want) != 0 || compressed == 0 {
		t.Fatalf("files not in the manifest: %d; compressed entries: %d", len(want), compressed)
	}
	// manifest_size: the sizes of what the device would download.
	_, b := post(t, "http://"+r.EdgeAddr+"/updates/manifest_size", "POST",
		strings.TrimSuffix(deviceBody, "}")+`,"manifest":[`+strings.Join(sizeReq, ",")+`,{"file_name":"x","file_hash":"y","download_url":"http://elsewhere/z"}]}`)
	var sz struct {
		TotalSize, KnownFiles, UnknownFiles int64
	}
	if err := json.Unmarshal([]byte(b), &sz); err != nil || sz.KnownFiles != int64(len(ans.Manifest)) || sz.UnknownFiles != 1 || sz.TotalSize <= 0 {
		t.Fatalf("manifest_size: %s", b)
	}
	// A plugin too old for manifests gets the zip only.
	_, old := post(t, "http://"+r.EdgeAddr+"/updates", "POST", strings.Replace(deviceBody, `"8.51.14"`, `"7.0.30"`, 1))
	if strings.Contains(old, "manifest") || !strings.Contains(old, `"url"`) {
		t.Fatalf("plugin 7.0.30: %s", old)
	}
}

// TestManifestOrZipEndToEnd: with the bench link as device profile (40 ms,
// 100 Mbit/s), swagger-ui 5.34.0 → 5.34.1 is offered with its manifest to
// a device on 5.34.0 (10 of 26 files to download, 902 KB: 112 ms against
// the zip's 140 ms) and without it to a device on the store build (all
// 26 files, 1,005 KB in 2 round trips: 160 ms), which then downloads the
// zip the answer still names.
func TestManifestOrZipEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds brotli q11 manifests")
	}
	data := t.TempDir()
	r := startTestServeWith(t, data, func(ec *config.Edge) { ec.DeviceRTT, ec.DeltaLink = 40*time.Millisecond, 100*config.Mbit })
	cli(t, r, data, "app", "create", "com.example.app")
	cli(t, r, data, "bundle", "upload", fixture(t, "swagger-ui-5.34.0.zip"), "--app", "com.example.app", "--version", "1.0.1", "--channel", "production")
	cli(t, r, data, "channel", "set", "production", "--app", "com.example.app", "--default")
	cli(t, r, data, "bundle", "upload", fixture(t, "swagger-ui-5.34.1.zip"), "--app", "com.example.app", "--version", "1.0.2", "--channel", "production")
	type offer struct {
		Version, URL, Checksum string
		Manifest               []json.RawMessage
	}
	ask := func(body string) offer {
		t.Helper()
		_, b := post(t, "http://"+r.EdgeAddr+"/updates", "POST", body)
		var o offer
		if err := json.Unmarshal([]byte(b), &o); err != nil || o.Version != "1.0.2" {
			t.Fatalf("update answer %.300s: %v", b, err)
		}
		return o
	}
	// Both manifests are built once a device on 1.0.1 gets one (until
	// then it holds nothing the edge knows of).
	onOld := strings.Replace(deviceBody, `"builtin"`, `"1.0.1"`, 1)
	for deadline := time.Now().Add(testenv.Patience(3 * time.Minute)); len(ask(onOld).Manifest) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no manifest for a device on 1.0.1")
		}
	}
	if o := ask(onOld); len(o.Manifest) != 26 {
		t.Fatalf("device on 1.0.1: manifest of %d files, want 26", len(o.Manifest))
	}
	o := ask(deviceBody)
	if o.Manifest != nil || o.URL == "" || o.Checksum == "" {
		t.Fatalf("device on builtin: %+v, want the zip without manifest", o)
	}
	resp, zip := get(t, o.URL)
	if resp.StatusCode != 200 || hexSHA(zip) != o.Checksum {
		t.Fatalf("zip: HTTP %d, %d bytes, checksum mismatch", resp.StatusCode, len(zip))
	}
}
