package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// pairSnapshot is testSnapshot where 1.0.0 (the devices' bundle) has a
// manifest of total files of heldSize bytes and production's 1.1.0 has
// the same files, the first changed of them changed (changedSize bytes
// each, stored), and a zip of zipSize bytes. Every other unchanged file
// moved to another folder: the plugin finds a held file by hash and base
// name, so it still holds it.
func pairSnapshot(tb testing.TB, rev int64, total, changed int, changedSize, heldSize, zipSize int64) *snapshot.Snapshot {
	tb.Helper()
	s := testSnapshot(tb, rev, fakeSHA("bundle"))
	from, to := s.Apps[0].Bundles[0], s.Apps[0].Bundles[1]
	to.Size = zipSize
	for i := range total {
		name := fmt.Sprintf("assets/chunk-%d.js.br", i)
		f := snapshot.ManifestEntry{Name: name, Hash: fakeSHA(fmt.Sprint("h", i)), Blob: fakeSHA(fmt.Sprint("b", i)), Size: heldSize}
		from.Manifest = append(from.Manifest, f)
		switch {
		case i < changed:
			f.Hash, f.Blob, f.Size = fakeSHA(fmt.Sprint("h2-", i)), fakeSHA(fmt.Sprint("b2-", i)), changedSize
		case i%2 == 1:
			f.Name = "static/" + strings.TrimPrefix(name, "assets/")
		}
		to.Manifest = append(to.Manifest, f)
	}
	s2 := &snapshot.Snapshot{Format: s.Format, Rev: rev, Apps: s.Apps}
	if err := s2.Index(nil); err != nil {
		tb.Fatal(err)
	}
	return s2
}

// The fixtures' shapes (bench/RESULTS.md, stock plugin): Ionic 9.0.4 →
// 9.0.5, 83 of 1,455 files changed (306,050 bytes stored) against an
// 843,968-byte zip; swagger-ui 5.34.1 → 5.35.0, 9 of 26 files changed
// (928,335 bytes) against a 1,273,808-byte zip.
func ionicLike(tb testing.TB, rev int64) *snapshot.Snapshot {
	return pairSnapshot(tb, rev, 1455, 83, 306_050/83, 2_000, 843_968)
}

func swaggerLike(tb testing.TB, rev int64) *snapshot.Snapshot {
	return pairSnapshot(tb, rev, 26, 9, 928_335/9, 20_000, 1_273_808)
}

var (
	builtinBody = strings.Replace(pluginBody, `"version_name":"1.0.0"`, `"version_name":"builtin"`, 1)
	unknownBody = strings.Replace(pluginBody, `"version_name":"1.0.0"`, `"version_name":"0.9.0"`, 1)
)

// updateAnswer is what the tests read of an update answer.
type updateAnswer struct {
	Version  string            `json:"version"`
	URL      string            `json:"url"`
	Checksum string            `json:"checksum"`
	Manifest []json.RawMessage `json:"manifest"`
}

// TestManifestOrZipPerDevice: with the default device profile (100 ms,
// 20 Mbit/s), a device whose missing files are many and small gets the
// answer without a manifest (the stock plugin then downloads the zip,
// still offered by url and checksum); one missing few large files keeps
// the manifest; a device on the store build or on a bundle the app does
// not have holds nothing; --device-rtt 0 answers as before the choice.
func TestManifestOrZipPerDevice(t *testing.T) {
	for _, c := range []struct {
		name   string
		rtt    time.Duration
		snap   func(testing.TB, int64) *snapshot.Snapshot
		body   string
		manif  bool
		reason string
	}{
		{"ionic-like from 1.0.0", config.DefaultDeviceRTT, ionicLike, pluginBody, false,
			"83 files: 6 × 100 ms + 122 ms against 100 ms + 338 ms"},
		{"swagger-like from 1.0.0", config.DefaultDeviceRTT, swaggerLike, pluginBody, true,
			"9 files: 100 ms + 371 ms against 100 ms + 510 ms"},
		{"swagger-like from builtin", config.DefaultDeviceRTT, swaggerLike, builtinBody, false,
			"all 26 files: 2 × 100 ms + 507 ms against 100 ms + 510 ms"},
		{"swagger-like from an unknown bundle", config.DefaultDeviceRTT, swaggerLike, unknownBody, false, "all 26 files"},
		{"ionic-like, --device-rtt 0", 0, ionicLike, pluginBody, true, "no choice"},
		{"swagger-like from builtin, --device-rtt 0", 0, swaggerLike, builtinBody, true, "no choice"},
		{"ionic-like, --device-rtt 10ms", 10 * time.Millisecond, ionicLike, pluginBody, true,
			"6 × 10 ms + 122 ms against 10 ms + 338 ms"},
	} {
		t.Run(c.name, func(t *testing.T) {
			te := startEdge(t, func(e *config.Edge) { e.DeviceRTT, e.NoPrefetch = c.rtt, true })
			s := c.snap(t, 1)
			te.edge.SetSnapshot(s)
			to := s.App(testAppID).Bundle("1.1.0")
			a := te.do(t, http.MethodPost, "/updates", []byte(c.body))
			var ans updateAnswer
			if err := json.Unmarshal(a.body, &ans); err != nil || a.status != 200 || ans.Version != "1.1.0" {
				t.Fatalf("HTTP %d %.300s: %v", a.status, a.body, err)
			}
			if got := ans.Manifest != nil; got != c.manif {
				t.Fatalf("manifest in the answer: %v, want %v (%s)", got, c.manif, c.reason)
			}
			if c.manif && len(ans.Manifest) != len(to.Manifest) {
				t.Fatalf("manifest of %d files, want all %d", len(ans.Manifest), len(to.Manifest))
			}
			// The zip is offered either way: the plugin downloads it when
			// there is no manifest.
			if ans.URL != te.base+"/b/"+to.SHA256 || ans.Checksum != to.SHA256 {
				t.Fatalf("url %q checksum %q, want the zip %s", ans.URL, ans.Checksum, to.SHA256)
			}
			if b := te.do(t, http.MethodPost, "/updates", []byte(c.body)); !bytes.Equal(b.body, a.body) {
				t.Fatalf("second answer differs:\n%.300s\n%.300s", a.body, b.body)
			}
			omitted := 0.0
			if !c.manif {
				omitted = 2
			}
			if got := testutil.ToFloat64(te.edge.metrics.manifestOmitted); got != omitted {
				t.Errorf("updraft_edge_update_manifest_omitted_total %v, want %v", got, omitted)
			}
			// A plugin without manifests gets the zip, as before.
			old := strings.Replace(c.body, `"8.51.14"`, `"7.0.30"`, 1)
			if b := te.do(t, http.MethodPost, "/updates", []byte(old)); bytes.Contains(b.body, []byte(`"manifest"`)) {
				t.Fatalf("plugin 7.0.30: %.300s", b.body)
			}
		})
	}
}

// TestManifestChoiceOncePerPair: the choice is made once per snapshot and
// pair (devices on builtin and on unknown bundles share one), is made
// again under the next snapshot, and answering from it allocates nothing.
func TestManifestChoiceOncePerPair(t *testing.T) {
	e := newCoreEdge(t, ionicLike(t, 1))
	base := []byte("https://edge.example.com")
	out := &reply{body: make([]byte, 0, 512)}
	ask := func(body string) bool {
		t.Helper()
		out.reset()
		e.updates([]byte(body), base, "", out)
		if out.status != 200 || !bytes.HasPrefix(answerBody(out), []byte(`{"version":"1.1.0"`)) {
			t.Fatalf("HTTP %d %.200s", out.status, answerBody(out))
		}
		return bytes.Contains(answerBody(out), []byte(`"manifest"`))
	}
	for range 3 {
		for _, body := range []string{pluginBody, builtinBody, unknownBody} {
			if ask(body) {
				t.Fatalf("%s: manifest offered for the Ionic-like pair", body)
			}
		}
	}
	if n := len(*e.answers.table.Load().choices.Load()); n != 2 {
		t.Errorf("%d choices remembered, want 2 (1.0.0 → 1.1.0, nothing held → 1.1.0)", n)
	}
	// Allocations of the answered path: BenchmarkUpdatesManifestChoice.
	// The next snapshot's 1.1.0 has a 64 MiB zip: the manifest again.
	s := ionicLike(t, 2)
	s.App(testAppID).Bundle("1.1.0").Size = 64 << 20
	e.SetSnapshot(s)
	if !ask(pluginBody) {
		t.Fatal("no manifest under the next snapshot, whose zip is 64 MiB")
	}
}

// TestMissingFiles: the files a device lacks, matched as the plugin finds
// them in its cache (hash and base name without .br).
func TestMissingFiles(t *testing.T) {
	h := func(s string) string { return fakeSHA(s) }
	from := &snapshot.Bundle{Manifest: []snapshot.ManifestEntry{
		{Name: "index.html", Hash: h("index"), Size: 10},
		{Name: "assets/app.js.br", Hash: h("app"), Size: 20},
		{Name: "assets/style.css", Hash: h("style"), Size: 30},
		{Name: "assets/logo.svg.br", Hash: h("logo"), Size: 40},
	}}
	to := &snapshot.Bundle{Manifest: []snapshot.ManifestEntry{
		{Name: "index.html", Hash: h("index2"), Size: 100},         // changed
		{Name: "js/app.js.br", Hash: h("app"), Size: 200},          // moved: held
		{Name: "assets/style.css.br", Hash: h("style"), Size: 300}, // now stored brotli: held
		{Name: "assets/logo-2.svg.br", Hash: h("logo"), Size: 400}, // renamed: not held
		{Name: "a/new.js", Hash: h("new"), Size: 500},
		{Name: "b/new.js", Hash: h("new"), Size: 600}, // the plugin downloads both
	}}
	for _, c := range []struct {
		name  string
		from  *snapshot.Bundle
		n     int
		bytes int64
	}{
		{"from a bundle", from, 4, 100 + 400 + 500 + 600},
		{"from nothing", nil, 6, 2100},
		{"from a bundle without manifest", &snapshot.Bundle{}, 6, 2100},
	} {
		if n, b := missingFiles(c.from, to); n != c.n || b != c.bytes {
			t.Errorf("%s: %d files, %d bytes; want %d, %d", c.name, n, b, c.n, c.bytes)
		}
	}
}

// TestManifestFirstEstimate: the estimate's round trips (16 files at a
// time) and transfer, and the cases that keep the manifest.
func TestManifestFirstEstimate(t *testing.T) {
	files := func(n int, size int64) []snapshot.ManifestEntry {
		m := make([]snapshot.ManifestEntry, n)
		for i := range m {
			m[i] = snapshot.ManifestEntry{Name: fmt.Sprintf("f%d.js", i), Hash: fakeSHA(fmt.Sprint(i)), Size: size}
		}
		return m
	}
	// 100 ms, 8 Mbit/s (1 MB/s): a 100 KB zip takes 200 ms.
	cost := newManifestCost(int64(100*time.Millisecond), 8e6)
	for _, c := range []struct {
		name string
		to   *snapshot.Bundle
		want bool
	}{
		{"16 files, 100 KB = zip: 1 round trip each way", &snapshot.Bundle{Size: 100_000, Manifest: files(16, 100_000/16)}, true},
		{"17 files: 2 round trips", &snapshot.Bundle{Size: 100_000, Manifest: files(17, 1)}, false},
		{"17 files against a 200 KB zip", &snapshot.Bundle{Size: 200_000, Manifest: files(17, 1)}, true},
		{"1 file larger than the zip", &snapshot.Bundle{Size: 100_000, Manifest: files(1, 100_001)}, false},
		{"encrypted", &snapshot.Bundle{Size: 1, SessionKey: "k", Manifest: files(100, 1000)}, true},
	} {
		if got := cost.manifestFirst(nil, c.to); got != c.want {
			t.Errorf("%s: manifest first %v, want %v", c.name, got, c.want)
		}
	}
	many := &snapshot.Bundle{Size: 1, Manifest: files(100, 1000)}
	if !newManifestCost(0, 8e6).manifestFirst(nil, many) || !newManifestCost(int64(time.Second), 0).manifestFirst(nil, many) {
		t.Error("--device-rtt 0 or --delta-link 0: want the manifest")
	}
	if !cost.manifestFirst(&snapshot.Bundle{SessionKey: "k", Manifest: files(1, 1)}, many) {
		t.Error("from an encrypted bundle: want the manifest")
	}
}

// BenchmarkUpdatesManifestChoice: an update check answered without the
// manifest, the zip being faster for the device (the Ionic-like pair):
// the choice is a lookup, the answer cached.
func BenchmarkUpdatesManifestChoice(b *testing.B) {
	e := newCoreEdge(b, ionicLike(b, 1))
	body, base := []byte(pluginBody), []byte("https://edge.example.com")
	out := &reply{body: make([]byte, 0, 512)}
	e.updates(body, base, "", out)
	if out.status != 200 || bytes.Contains(answerBody(out), []byte(`"manifest"`)) {
		b.Fatalf("HTTP %d %.300s, want an update without manifest", out.status, answerBody(out))
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		out.reset()
		e.updates(body, base, "", out)
	}
}
