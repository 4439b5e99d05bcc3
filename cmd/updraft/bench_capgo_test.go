package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/updraft-cdn/updraft/bench"
)

// capgoPairZips is a generated release pair: JavaScript-like text chunks
// (20 KiB: the origin serves them brotli-compressed, as .br), small
// stylesheets (served as they are) and random images; the second release
// edits two chunks and a stylesheet and adds a file.
func capgoPairZips(t *testing.T) (old, new []byte) {
	t.Helper()
	rng := rand.New(rand.NewPCG(17, 4))
	text := func(n int) []byte {
		var b bytes.Buffer
		for b.Len() < n {
			fmt.Fprintf(&b, "export const v%d = %q;\n", rng.IntN(100000), []string{"device", "bundle", "edge", "channel"}[rng.IntN(4)])
		}
		return b.Bytes()
	}
	files := [][2]string{{"index.html", `<!doctype html><script type="module" src="js/chunk-0.js"></script>`}}
	for i := range 6 {
		files = append(files, [2]string{fmt.Sprintf("js/chunk-%d.js", i), string(text(20 << 10))})
	}
	for i := range 3 {
		files = append(files, [2]string{fmt.Sprintf("css/part-%d.css", i), string(text(1 << 10))})
	}
	img := make([]byte, 12<<10)
	for i := range img {
		img[i] = byte(rng.UintN(256))
	}
	files = append(files, [2]string{"assets/img.bin", string(img)})
	zipOf := func(files [][2]string) []byte {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		for _, f := range files {
			w, _ := zw.Create(f[0])
			io.WriteString(w, f[1])
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	old = zipOf(files)
	edited := slices.Clone(files)
	for _, i := range []int{2, 5, 8} { // js/chunk-1.js, js/chunk-4.js, css/part-1.css
		edited[i][1] += "export const release = 2;\n"
	}
	edited = append(edited, [2]string{"js/new-feature.js", string(text(16 << 10))})
	return old, zipOf(edited)
}

// edgeProxy is a real HTTP server on 127.0.0.1 in front of the edge: it
// counts the connections it accepts (a wrapping net.Listener) and the GETs
// by path, and can serve one path with a wrong byte. Devices reach the edge
// only through it (the edge's answers name the host they were asked on).
type edgeProxy struct {
	addr     string
	accepted atomic.Int64
	mu       sync.Mutex
	gets     map[string]int
	corrupt  atomic.Value // string: path whose body gets one byte flipped
}

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

func startEdgeProxy(t *testing.T, edge string) *edgeProxy {
	t.Helper()
	p := &edgeProxy{gets: map[string]int{}}
	p.corrupt.Store("")
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: edge})
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.URL.Path != p.corrupt.Load().(string) || resp.StatusCode != 200 {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		body[len(body)/2] ^= 0x01
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			p.mu.Lock()
			p.gets[r.URL.Path]++
			p.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(countingListener{ln, &p.accepted})
	t.Cleanup(func() { srv.Close() })
	p.addr = ln.Addr().String()
	return p
}

func (p *edgeProxy) reset() {
	p.mu.Lock()
	p.gets = map[string]int{}
	p.mu.Unlock()
	p.accepted.Store(0)
}

// TestBenchCapgo runs `updraft bench --client capgo` against a real serve
// with a release pair: devices on the first release download only the
// manifest's files that changed (decoding the .br ones) and verify them,
// never the zip or the delta; a file served with a wrong byte fails every
// update; --conn cold opens connections per update; --capgo-zip takes the
// zip path.
func TestBenchCapgo(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	oldZip, newZip := capgoPairZips(t)
	cli(t, r, data, "app", "create", "com.example.app")
	cli(t, r, data, "bundle", "upload", writeZip(t, oldZip), "--app", "com.example.app", "--version", "1.0.1", "--channel", "production", "--wait")
	cli(t, r, data, "channel", "set", "production", "--app", "com.example.app", "--default")
	cli(t, r, data, "bundle", "upload", writeZip(t, newZip), "--app", "com.example.app", "--version", "1.0.2", "--channel", "production", "--wait")
	px := startEdgeProxy(t, r.EdgeAddr)

	// What a device on 1.0.1 is offered, and which of the manifest's files
	// it lacks, from the zips themselves.
	body := strings.Replace(deviceBody, `"version_name":"builtin"`, `"version_name":"1.0.1"`, 1)
	resp, err := http.Post("http://"+px.addr+"/updates", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var offer struct {
		URL      string `json:"url"`
		DeltaURL string `json:"delta_url"`
		Manifest []struct {
			FileName    string `json:"file_name"`
			FileHash    string `json:"file_hash"`
			DownloadURL string `json:"download_url"`
		} `json:"manifest"`
	}
	json.NewDecoder(resp.Body).Decode(&offer)
	resp.Body.Close()
	zr, _ := zip.NewReader(bytes.NewReader(oldZip), int64(len(oldZip)))
	held := map[string]bool{}
	for _, f := range zr.File {
		rc, _ := f.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		held[f.Name+" "+hexSHA(b)] = true
	}
	var changed []string // download paths
	var plain string     // a changed file served as it is (no .br)
	for _, m := range offer.Manifest {
		if !held[strings.TrimSuffix(m.FileName, ".br")+" "+m.FileHash] {
			u, _ := url.Parse(m.DownloadURL)
			changed = append(changed, u.Path)
			if !strings.HasSuffix(m.FileName, ".br") {
				plain = u.Path
			}
		}
	}
	if len(offer.Manifest) != 12 || len(changed) != 4 || plain == "" || offer.DeltaURL == "" {
		t.Fatalf("offer to 1.0.1: %d manifest files, %d changed (plain %q), delta %q: %+v", len(offer.Manifest), len(changed), plain, offer.DeltaURL, offer)
	}
	zipPath, _ := url.Parse(offer.URL)
	deltaPath, _ := url.Parse(offer.DeltaURL)

	const devices = 20
	runBench := func(extra ...string) bench.PhaseReport {
		t.Helper()
		px.reset()
		args := append([]string{"bench", "--client", "capgo", "--target", "http://" + px.addr, "--app", "com.example.app", "--i-know-this-is-production",
			"--version-name", "1.0.1", "--devices", strconv.Itoa(devices), "--duration", "2s", "--connections", "4", "--json"}, extra...)
		var out, errb bytes.Buffer
		if err := run(context.Background(), args, &out, &errb); err != nil {
			t.Fatalf("bench %v: %v\n%s", extra, err, errb.String())
		}
		var rep bench.Report
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil || len(rep.Phases) != 1 {
			t.Fatalf("%v: %s", err, out.String())
		}
		if rep.Client != "capgo" || rep.HeldFiles != 11 {
			t.Fatalf("report: client %q, %d files held; want capgo, the 11 files of 1.0.1", rep.Client, rep.HeldFiles)
		}
		return rep.Phases[0]
	}

	// Warm: only the changed files, each verified; no zip, no delta.
	p := runBench()
	if p.Failures != 0 || len(p.Paths) != 1 || p.Paths[0].Path != "manifest" || p.Paths[0].TimeToUpdate.Count != devices ||
		p.Paths[0].FilesDownloaded != devices*int64(len(changed)) || p.Paths[0].FilesReused != devices*int64(len(offer.Manifest)-len(changed)) {
		t.Fatalf("warm manifest: %+v", p)
	}
	px.mu.Lock()
	for _, m := range offer.Manifest {
		u, _ := url.Parse(m.DownloadURL)
		want := 0
		if slices.Contains(changed, u.Path) {
			want = devices
		}
		if px.gets[u.Path] != want {
			t.Errorf("%s fetched %d times, want %d", m.FileName, px.gets[u.Path], want)
		}
	}
	if px.gets[zipPath.Path] != 0 || px.gets[deltaPath.Path] != 0 {
		t.Errorf("zip fetched %d times, delta %d times; want neither", px.gets[zipPath.Path], px.gets[deltaPath.Path])
	}
	px.mu.Unlock()
	t.Logf("warm manifest: time to update p50 %.2f ms, p99 %.2f ms; %d connections opened", p.TimeToUpdate.P50, p.TimeToUpdate.P99, p.ConnectionsOpened)

	// Cold: every update opens its own connections (one at least), counted
	// by the proxy's listener as by the client.
	p = runBench("--conn", "cold")
	if p.Failures != 0 || p.TimeToUpdate.Count != devices || p.ConnectionsOpened < devices || px.accepted.Load() < p.ConnectionsOpened {
		t.Fatalf("cold: %d connections reported, %d accepted: %+v", p.ConnectionsOpened, px.accepted.Load(), p)
	}
	t.Logf("cold manifest: time to update p50 %.2f ms, p99 %.2f ms; %d connections for %d updates", p.TimeToUpdate.P50, p.TimeToUpdate.P99, px.accepted.Load(), devices)

	// A changed file served with one wrong byte: every update fails.
	px.corrupt.Store(plain)
	p = runBench()
	px.corrupt.Store("")
	if p.Failures != devices || p.TimeToUpdate.Count != 0 || len(p.Outcomes) != 2 ||
		!slices.Contains(p.Outcomes, bench.Outcome{Outcome: "manifest_checksum_mismatch", Count: devices}) {
		t.Fatalf("corrupt %s: %+v", plain, p)
	}

	// The zip path, cold: a whole zip per device, verified.
	p = runBench("--capgo-zip", "--conn", "cold")
	if p.Failures != 0 || len(p.Paths) != 1 || p.Paths[0].Path != "zip" || p.BytesDown != devices*int64(len(newZip)) || px.gets[zipPath.Path] != devices {
		t.Fatalf("zip: %+v (zip fetched %d times)", p, px.gets[zipPath.Path])
	}
	// Android devices (60%) fetch the zip on a second connection
	// (HttpURLConnection), iOS devices on the check's.
	if p.ConnectionsOpened != devices*6/10*2+devices*4/10 {
		t.Fatalf("cold zip: %d connections opened, want %d", p.ConnectionsOpened, devices*6/10*2+devices*4/10)
	}
}

// Flags of the capgo client that are refused as usage errors.
func TestBenchCapgoFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--client", "ionic"}, {"--client", "capgo", "--conn", "lukewarm"}, {"--conn", "cold"}, {"--capgo-zip"},
		{"--client", "capgo", "--deltas"}, {"--client", "capgo", "--manifest-concurrency", "65"},
	} {
		var out, errb bytes.Buffer
		err := run(context.Background(), append([]string{"bench", "--target", "http://127.0.0.1:1"}, args...), &out, &errb)
		if code := exitCode(err); code != 2 {
			t.Errorf("bench %v: exit %d (%v), want 2", args, code, err)
		}
	}
}
