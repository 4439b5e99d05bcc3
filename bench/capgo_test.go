package bench

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kgzip "github.com/klauspost/compress/gzip"
	brrr "github.com/molecule-man/go-brrr"
	"github.com/updraft-cdn/updraft/origin/delta"
)

// The capgo client against a small server of the device protocol on
// 127.0.0.1 that serves generated releases in the published formats
// (origin/delta's manifest rule and canonical archive) and records what it
// is asked. The same client against a real edge: cmd/updraft
// TestBenchCapgo.

// capgoRelease is a generated bundle: JavaScript-like text (files of 20 KiB,
// served brotli-compressed as .br), small stylesheets (served as they are)
// and random images; edit changes two chunks and a stylesheet and adds a
// file, as a release does.
func capgoRelease(edit bool) []delta.File {
	rng := rand.New(rand.NewPCG(7, 1))
	words := []string{"update", "bundle", "device", "manifest", "edge", "capacitor", "plugin", "release", "channel", "version"}
	text := func(n int) []byte {
		var b bytes.Buffer
		for b.Len() < n {
			fmt.Fprintf(&b, "export const %s_%s = %d;\n", words[rng.IntN(len(words))], words[rng.IntN(len(words))], rng.IntN(100000))
		}
		return b.Bytes()
	}
	files := []delta.File{{Path: "index.html", Data: []byte(`<!doctype html><script type="module" src="js/chunk-0.js"></script>`)}}
	for i := range 6 {
		files = append(files, delta.File{Path: fmt.Sprintf("js/chunk-%d.js", i), Data: text(20 << 10)})
	}
	for i := range 3 {
		files = append(files, delta.File{Path: fmt.Sprintf("css/part-%d.css", i), Data: text(1 << 10)})
	}
	for i := range 2 {
		img := make([]byte, 12<<10)
		for j := range img {
			img[j] = byte(rng.UintN(256))
		}
		files = append(files, delta.File{Path: fmt.Sprintf("assets/img-%d.bin", i), Data: img})
	}
	if edit {
		for _, f := range []int{2, 5, 8} { // chunk-1, chunk-4, part-1
			files[f].Data = append(slices.Clone(files[f].Data), "export const release = 2;\n"...)
		}
		files = append(files, delta.File{Path: "js/new-feature.js", Data: text(16 << 10)})
	}
	slices.SortFunc(files, func(a, b delta.File) int { return strings.Compare(a.Path, b.Path) })
	return files
}

// protocolServer answers update checks with the new release (its manifest
// unless noManifest, its zip, and a delta offer from the old one) and
// serves files, zip and the old release's canonical archive.
type protocolServer struct {
	t          *testing.T
	srv        *httptest.Server
	manifest   []delta.ManifestFile
	zip        []byte
	zipSum     string
	base       []byte // canonical archive of the release the devices run
	baseSum    string
	noManifest bool
	corrupt    string // path whose body gets one byte flipped

	accepted atomic.Int64
	mu       sync.Mutex
	gets     map[string]int // GET path → count
	headers  map[string]http.Header
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func startProtocolServer(t *testing.T, configure func(*protocolServer)) *protocolServer {
	t.Helper()
	oldFiles, newFiles := capgoRelease(false), capgoRelease(true)
	m, err := delta.Manifest(newFiles)
	if err != nil {
		t.Fatal(err)
	}
	base, err := delta.Canonical(oldFiles)
	if err != nil {
		t.Fatal(err)
	}
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	for _, f := range newFiles {
		w, _ := zw.Create(f.Path)
		w.Write(f.Data)
	}
	zw.Close()
	s := &protocolServer{t: t, manifest: m, zip: zb.Bytes(), zipSum: hexSum(zb.Bytes()), base: base, baseSum: hexSum(base),
		gets: map[string]int{}, headers: map[string]http.Header{}}
	if configure != nil {
		configure(s)
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.Listener = countingListener{s.srv.Listener, &s.accepted}
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	return s
}

func hexSum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func (s *protocolServer) serve(w http.ResponseWriter, r *http.Request) {
	base := "http://" + r.Host
	if r.Method == http.MethodHead {
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == "/updates" {
		platform := "android"
		if bytes.Contains(readAll(r), []byte(`"platform":"ios"`)) {
			platform = "ios"
		}
		s.mu.Lock()
		if r.Header.Get("User-Agent") != "updraft-bench" { // not the harness's setup check (loadHeld)
			s.headers[platform] = r.Header.Clone()
		}
		s.mu.Unlock()
		answer := fmt.Appendf(nil, `{"version":"1.0.2","url":"%s/b/%s","checksum":"%s"`, base, s.zipSum, s.zipSum)
		if !s.noManifest {
			answer = append(answer, `,"manifest":[`...)
			for i, f := range s.manifest {
				if i > 0 {
					answer = append(answer, ',')
				}
				answer = fmt.Appendf(answer, `{"file_name":%q,"file_hash":%q,"download_url":"%s/f/%d"}`, f.Name, f.Hash, base, i)
			}
			answer = append(answer, ']')
		}
		answer = fmt.Appendf(answer, `,"delta_url":"%s/d/1","delta_base_checksum":"%s","delta_checksum":"x"}`, base, s.baseSum)
		w.Header().Set("Content-Type", "application/json")
		switch ae := r.Header.Get("Accept-Encoding"); {
		case strings.Contains(ae, "br"):
			c, _ := brrr.Compress(answer, 5)
			w.Header().Set("Content-Encoding", "br")
			w.Write(c)
		case strings.Contains(ae, "gzip"):
			w.Header().Set("Content-Encoding", "gzip")
			z := kgzip.NewWriter(w)
			z.Write(answer)
			z.Close()
		default:
			w.Write(answer)
		}
		return
	}
	s.mu.Lock()
	s.gets[r.URL.Path]++
	s.mu.Unlock()
	var body []byte
	switch p := r.URL.Path; {
	case p == "/b/"+s.zipSum:
		body = s.zip
	case p == "/b/"+s.baseSum:
		body = s.base
	case strings.HasPrefix(p, "/f/"):
		var i int
		if _, err := fmt.Sscanf(p, "/f/%d", &i); err != nil || i < 0 || i >= len(s.manifest) {
			http.NotFound(w, r)
			return
		}
		body = s.manifest[i].Data
	default:
		http.NotFound(w, r)
		return
	}
	if r.URL.Path == s.corrupt {
		body = slices.Clone(body)
		body[len(body)/2] ^= 0x01
	}
	w.Write(body)
}

func readAll(r *http.Request) []byte {
	var b bytes.Buffer
	b.ReadFrom(r.Body)
	return b.Bytes()
}

// changed is the manifest entries (by index) the devices on the old
// release do not hold, computed here from the releases themselves.
func (s *protocolServer) changed() (idx []int, wire int64) {
	old := map[string]bool{}
	for _, f := range capgoRelease(false) {
		old[f.Path+"\x00"+hexSum(f.Data)] = true
	}
	for i, f := range s.manifest {
		if !old[strings.TrimSuffix(f.Name, ".br")+"\x00"+f.Hash] {
			idx = append(idx, i)
			wire += int64(len(f.Data))
		}
	}
	return idx, wire
}

func capgoRun(t *testing.T, s *protocolServer, o Options) PhaseReport {
	t.Helper()
	o.Target, o.Client = s.srv.URL, ClientCapgo
	if o.VersionName == "" {
		o.VersionName = "1.0.1"
	}
	sc := Scenario{Name: "capgo", Phases: []Phase{{Name: "storm", Kind: KindStorm, Duration: Duration(time.Second)}}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := Run(ctx, sc, o)
	if err != nil {
		t.Fatal(err)
	}
	var text, page bytes.Buffer
	rep.WriteText(&text)
	t.Logf("\n%s", text.String())
	if err := rep.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	for _, pa := range rep.Phases[0].Paths { // the per-path rows in both reports
		row := "time to update (" + pa.Path + ")"
		if !strings.Contains(text.String(), row) || !strings.Contains(page.String(), row) {
			t.Fatalf("reports lack %q:\n%s\n%s", row, text.String(), page.String())
		}
	}
	return rep.Phases[0]
}

// Devices on the old release download only the manifest's files they do
// not hold (by hash and name, as the plugin's cache), decode the .br ones,
// verify every file, never touch delta_url, and send the plugin's headers.
func TestCapgoManifestDownloadsOnlyChangedFiles(t *testing.T) {
	s := startProtocolServer(t, nil)
	changed, wire := s.changed()
	if len(changed) != 4 || len(s.manifest) != 13 {
		t.Fatalf("fixture: %d of %d files changed, want 4 of 13", len(changed), len(s.manifest))
	}
	br := 0
	for _, i := range changed {
		if strings.HasSuffix(s.manifest[i].Name, ".br") {
			br++
		}
	}
	if br < 2 || br == len(changed) {
		t.Fatalf("fixture: want changed files both brotli-compressed and plain, got %d of %d .br", br, len(changed))
	}
	const devices = 20
	p := capgoRun(t, s, Options{Devices: devices, Connections: 4})
	if p.Failures != 0 || p.TimeToUpdate.Count != devices || len(p.Paths) != 1 {
		t.Fatalf("phase: %+v", p)
	}
	m := p.Paths[0]
	if m.Path != PathManifest || m.TimeToUpdate.Count != devices || m.FilesDownloaded != devices*int64(len(changed)) ||
		m.FilesReused != devices*int64(len(s.manifest)-len(changed)) || m.BytesDown != devices*wire || p.BytesDown != devices*wire {
		t.Fatalf("manifest path: %+v; want %d files downloaded and %d bytes per device", m, len(changed), wire)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.manifest {
		want := 0
		if slices.Contains(changed, i) {
			want = devices
		}
		if got := s.gets[fmt.Sprintf("/f/%d", i)]; got != want {
			t.Errorf("%s fetched %d times, want %d", s.manifest[i].Name, got, want)
		}
	}
	if s.gets["/d/1"] != 0 || s.gets["/b/"+s.zipSum] != 0 || s.gets["/b/"+s.baseSum] != 1 {
		t.Errorf("requests %v: want no delta, no zip, the base archive once (setup)", s.gets)
	}
	if h := s.headers["android"]; h.Get("Accept-Encoding") != "gzip" || h.Get("User-Agent") != "CapacitorUpdater/8.51.14 (com.example.app) android/14" ||
		h.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("android check headers %v", h)
	}
	if h := s.headers["ios"]; h.Get("Accept-Encoding") != "gzip, deflate, br" || h.Get("User-Agent") != "CapacitorUpdater/8.51.14 (com.example.app) ios/17.4" {
		t.Errorf("ios check headers %v", h)
	}
}

// Devices on the store build hold nothing: every file is downloaded.
func TestCapgoBuiltinDownloadsEveryFile(t *testing.T) {
	s := startProtocolServer(t, nil)
	var all int64
	for _, f := range s.manifest {
		all += int64(len(f.Data))
	}
	p := capgoRun(t, s, Options{Devices: 5, Connections: 2, VersionName: "builtin"})
	if p.Failures != 0 || len(p.Paths) != 1 || p.Paths[0].FilesDownloaded != 5*int64(len(s.manifest)) || p.Paths[0].FilesReused != 0 || p.BytesDown != 5*all {
		t.Fatalf("phase: %+v", p)
	}
}

// A file served with one wrong byte fails every update (the plugin fails
// the whole download when one file fails), whether the file is plain or
// brotli-compressed; a wrong byte in the zip fails the zip path.
func TestCapgoCorruptFileFails(t *testing.T) {
	probe := startProtocolServer(t, nil)
	changed, _ := probe.changed()
	var plain, br string
	for _, i := range changed {
		if strings.HasSuffix(probe.manifest[i].Name, ".br") {
			br = fmt.Sprintf("/f/%d", i)
		} else {
			plain = fmt.Sprintf("/f/%d", i)
		}
	}
	for _, tc := range []struct {
		name, path string
		zip        bool
		outcomes   []string
	}{
		{"plain file", plain, false, []string{"manifest_checksum_mismatch"}},
		{"brotli file", br, false, []string{"manifest_checksum_mismatch", "manifest_brotli_error"}},
		{"zip", "/b/" + probe.zipSum, true, []string{"checksum_mismatch"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startProtocolServer(t, func(s *protocolServer) { s.corrupt = tc.path })
			const devices = 10
			p := capgoRun(t, s, Options{Devices: devices, Connections: 2, CapgoZip: tc.zip})
			if p.Failures != devices || p.TimeToUpdate.Count != 0 || len(p.Paths) != 0 {
				t.Fatalf("phase: %+v", p)
			}
			var failed int64
			for _, o := range p.Outcomes {
				if slices.Contains(tc.outcomes, o.Outcome) {
					failed += o.Count
				}
			}
			if failed != devices {
				t.Fatalf("outcomes %+v, want %d of %v", p.Outcomes, devices, tc.outcomes)
			}
		})
	}
}

// Cold: every update opens its own connections, counted by the server's
// listener and reported alike: on the zip path an Android device opens two
// (OkHttp for the check, HttpURLConnection for the zip) and an iOS device
// one. Warm: the connections opened before the clock serve every update.
func TestCapgoColdOpensConnectionsPerUpdate(t *testing.T) {
	const devices = 10 // 6 Android, 4 iOS (fleet)
	for _, tc := range []struct {
		conn        string
		zip         bool
		connections int
	}{
		{ConnCold, true, 4}, {ConnCold, false, 4}, {ConnWarm, true, 4},
	} {
		t.Run(fmt.Sprintf("%s zip=%v", tc.conn, tc.zip), func(t *testing.T) {
			s := startProtocolServer(t, nil)
			p := capgoRun(t, s, Options{Devices: devices, Connections: tc.connections, Conn: tc.conn, CapgoZip: tc.zip, VersionName: "builtin"})
			if p.Failures != 0 || p.TimeToUpdate.Count != devices {
				t.Fatalf("phase: %+v", p)
			}
			// The server's accept loop may trail the client's connect.
			accepted := s.accepted.Load()
			for deadline := time.Now().Add(2 * time.Second); accepted < p.ConnectionsOpened && time.Now().Before(deadline); accepted = s.accepted.Load() {
				time.Sleep(5 * time.Millisecond)
			}
			switch {
			case tc.conn == ConnCold && tc.zip:
				if accepted != 6*2+4 || p.ConnectionsOpened != accepted {
					t.Fatalf("cold zip: server accepted %d, client reported %d; want 16", accepted, p.ConnectionsOpened)
				}
			case tc.conn == ConnCold:
				// net/http may give up a dial the server has already
				// accepted (its request was served by another connection).
				if p.ConnectionsOpened < devices || accepted < p.ConnectionsOpened {
					t.Fatalf("cold manifest: server accepted %d, client reported %d; want at least %d", accepted, p.ConnectionsOpened, devices)
				}
			default:
				if p.ConnectionsOpened != 0 || accepted > int64(tc.connections) {
					t.Fatalf("warm: %d opened during the phase, %d accepted in all; want 0 and at most %d (warm-up)", p.ConnectionsOpened, accepted, tc.connections)
				}
			}
			t.Logf("%s: %d connections for %d updates", tc.conn, accepted, devices)
		})
	}
}

// Options the capgo client refuses.
func TestCapgoOptions(t *testing.T) {
	for _, o := range []Options{
		{Client: "ionic"}, {Client: ClientCapgo, Conn: "lukewarm"}, {Conn: ConnCold}, {CapgoZip: true},
		{Client: ClientCapgo, Deltas: true}, {Client: ClientCapgo, ManifestConcurrency: 65},
	} {
		o.Target = "http://127.0.0.1:1"
		if err := o.defaults(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	o := Options{Target: "http://x", Client: ClientCapgo}
	if err := o.defaults(); err != nil || o.Conn != ConnWarm || o.ManifestConcurrency != DefaultManifestConcurrency {
		t.Fatalf("%+v %v", o, err)
	}
}

// BenchmarkCapgoVerify is the client's per-file work: brotli decode and
// SHA-256 of a 20 KiB JavaScript-like file.
func BenchmarkCapgoVerify(b *testing.B) {
	var f delta.ManifestFile
	for _, m := range must(delta.Manifest(capgoRelease(false))) {
		if strings.HasSuffix(m.Name, ".br") {
			f = m
			break
		}
	}
	r := bytes.NewReader(f.Data)
	b.ReportAllocs()
	b.SetBytes(int64(len(f.Data)))
	for b.Loop() {
		r.Reset(f.Data)
		if ok, err := verifyContent("", r, true, f.Hash); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
