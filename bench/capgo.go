package bench

// The stock plugin's update path (--client capgo): what an unmodified
// @capgo/capacitor-updater 8.x does on a device, from the plugin's source
// (Cap-go/capacitor-updater 8.51.14, the version the fleet reports):
//
//   - the update check is a POST of the device's JSON through the plugin's
//     HTTP stack: OkHttp on Android (DownloadService.sharedClient, which
//     adds "Accept-Encoding: gzip" and decodes gzip by itself), an
//     Alamofire session over an ephemeral URLSession on iOS
//     (CapgoUpdater.swift alamofireSession; URLSession asks for
//     "gzip, deflate, br"); both send the plugin's User-Agent
//     (DownloadService.buildUserAgent, CapgoUpdater.buildUserAgent);
//   - an answer with a manifest is downloaded file by file
//     (DownloadService.handleManifestDownload,
//     CapgoUpdater.downloadManifest): a file the device already holds is
//     copied, not downloaded: the plugin looks it up in its cache folder
//     capgo_downloads under "<file_hash>_<file name without .br>", which it
//     fills with every file of the bundles it installs
//     (CapgoUpdater.cacheBundleFiles, populateDeltaCache); the others are
//     downloaded, MANIFEST_MAX_CONCURRENT_FILES at once, ".br" files
//     brotli-decoded (decompressBrotli), each checked by the SHA-256 of
//     its content against file_hash; one failed file fails the update;
//   - otherwise the zip at url is downloaded and checked against checksum:
//     on Android through HttpURLConnection (handleSingleFileDownload), the
//     platform's stack with its own connection pool, not OkHttp's; on iOS
//     through the same session;
//   - delta_url and the other Updraft-only keys are never read.
//
// Not modelled: the plugin's event posts (download_manifest_start, ...),
// disk writes and copies, the built-in (store) assets it may also reuse,
// WorkManager's scheduling on Android, encrypted bundles.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	kgzip "github.com/klauspost/compress/gzip"
	brrr "github.com/molecule-man/go-brrr"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/valyala/fastjson"
)

// Clients (Options.Client).
const (
	ClientUpdraft = "updraft" // Updraft-aware: the zip, or the offered delta with Options.Deltas
	ClientCapgo   = "capgo"   // the stock @capgo/capacitor-updater 8.x
)

// Connection models of the capgo client (Options.Conn).
const (
	// ConnWarm: a device updates on connections that are already open, as
	// the plugin's HTTP stacks keep theirs between checks. The connections
	// are opened before the clock starts (Options.Connections of them) in
	// lanes: one device's stacks with Options.ManifestConcurrency
	// connections for the check and the files and one for an Android zip
	// (one and one with CapgoZip), each lane dialling from its own
	// loopback address when the target is on loopback (so that through
	// StartLinkShared it is one device's access link). An updating device
	// takes a free lane and gives it back; when none is free it opens a
	// new one, whose connections are counted in
	// PhaseReport.ConnectionsOpened like any opened during the phase.
	ConnWarm = "warm"
	// ConnCold: every device update starts without a connection: TCP and
	// TLS (or QUIC) handshakes are part of its time to update, as for the
	// first check after an app launch. Within the update the device
	// reuses its connections like the plugin's stacks. Against a loopback
	// target each device dials from its own address (deviceAddr), so that
	// through StartLinkShared its connections share one access link.
	ConnCold = "cold"
)

// Update paths of the capgo client (PathReport.Path).
const (
	PathManifest = "manifest" // the manifest's files the device did not hold
	PathZip      = "zip"      // the whole bundle
	// The updraft client with Deltas: the delta from delta_url, or inside
	// the update answer (InlineDeltas).
	PathDelta       = "delta"
	PathDeltaInline = "delta-inline"
)

// DefaultManifestConcurrency is the number of manifest files the plugin
// downloads at once on an 8-core phone. Cap-go/capacitor-updater 8.51.14,
// android/src/main/java/ee/forgr/capacitor_updater/DownloadService.java:
// MANIFEST_MAX_CONCURRENT_FILES = manifestMaxConcurrentFiles() =
// min(64, max(8, 2 × availableProcessors)), the thread pool of
// handleManifestDownload and OkHttp's Dispatcher.maxRequestsPerHost;
// ios/Sources/CapacitorUpdaterPlugin/CapgoUpdater.swift:
// manifestMaxConcurrentFiles = clampedManifestConcurrency(processorCount:),
// the same formula, for manifestDownloadQueue.maxConcurrentOperationCount
// and httpMaximumConnectionsPerHost. 8 on a 4-core phone, 64 at most.
const DefaultManifestConcurrency = 16

// MaxManifestConcurrency is the plugin's cap (the formula's 64).
const MaxManifestConcurrency = 64

// capgoPluginVersion is the plugin version the fleet reports (fleet()).
const capgoPluginVersion = "8.51.14"

// maxCapgoFile bounds what one download may decode to (a bench is no place
// to be exhausted by a decompression bomb).
const maxCapgoFile = 1 << 30

// capgoState is the capgo client's run-wide state.
type capgoState struct {
	// held: the files every device holds from the bundle it runs, by
	// heldKey (the plugin's cache file name).
	held      map[string]struct{}
	heldFiles int
	lanes     chan *capgoStack // ConnWarm: free lanes; nil when cold
	laneSeq   atomic.Uint32
	dials     atomic.Int64 // connections opened
	dialing   atomic.Int64 // dials under way
	// bind: cold devices dial from their own loopback address (the target
	// is on loopback, e.g. a --link), so that a shared link gives each
	// device its own bandwidth; noBind once the system refused one.
	bind      bool
	noBind    atomic.Bool
	tls       *tls.Config
	uaAndroid string
	uaIOS     string
}

// heldKey is how the plugin finds a file it holds: capgo_downloads/
// "<hash>_<base name without .br>" (DownloadService.handleManifestDownload
// cacheFile, CapgoUpdater.downloadManifest cacheFilePath).
func heldKey(hash, name string) string {
	return hash + "_" + path.Base(strings.TrimSuffix(name, ".br"))
}

// capgoStack is one device's HTTP stacks (warm: one lane's).
type capgoStack struct {
	plugin *http.Client // OkHttp's sharedClient / the Alamofire session: check and manifest files
	zip    *http.Client // Android: HttpURLConnection's own pool; iOS: the same session
	closes []func()
}

func (s *capgoStack) close() {
	for _, f := range s.closes {
		f()
	}
}

// roundTripper is a new HTTP stack with its own connections: HTTP/1.1 or,
// over TLS, HTTP/2 when the server offers it (OkHttp is built with
// HTTP_2 and HTTP_1_1, URLSession negotiates h2), or HTTP/3 for proto h3.
// Every connection it opens is counted in c.dials.
func (c *capgoState) roundTripper(proto string, idle int, local net.IP) (http.RoundTripper, func()) {
	if proto == "h3" {
		t := &http3.Transport{TLSClientConfig: c.tls.Clone(),
			Dial: func(ctx context.Context, addr string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
				c.dialing.Add(1)
				defer c.dialing.Add(-1)
				conn, err := quic.DialAddrEarly(ctx, addr, tlsCfg, cfg)
				if err == nil {
					c.dials.Add(1)
				}
				return conn, err
			}}
		return t, func() { t.Close() }
	}
	d := &net.Dialer{Timeout: 30 * time.Second}
	var bound *net.Dialer
	if local != nil {
		bound = &net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: local}}
	}
	var inFlight atomic.Int64 // this stack's dials under way
	t := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c.dialing.Add(1)
			inFlight.Add(1)
			defer func() { inFlight.Add(-1); c.dialing.Add(-1) }()
			if bound != nil && !c.noBind.Load() {
				conn, err := bound.DialContext(ctx, network, addr)
				if err == nil {
					c.dials.Add(1)
					return conn, nil
				}
				if !errors.Is(err, syscall.EADDRNOTAVAIL) {
					return nil, err
				}
				c.noBind.Store(true) // this system has only 127.0.0.1: share it
			}
			conn, err := d.DialContext(ctx, network, addr)
			if err == nil {
				c.dials.Add(1)
			}
			return conn, err
		},
		TLSClientConfig: c.tls.Clone(), ForceAttemptHTTP2: true, TLSHandshakeTimeout: 30 * time.Second,
		MaxIdleConnsPerHost: idle, IdleConnTimeout: 5 * time.Minute, // OkHttp's ConnectionPool keep-alive
		DisableCompression: true, // the device's Accept-Encoding is set and decoded here (decodeBody)
	}
	return t, func() {
		t.CloseIdleConnections()
		if inFlight.Load() > 0 { // a dial that finishes now leaves its connection idle: close it then
			go func() {
				for deadline := time.Now().Add(time.Minute); inFlight.Load() > 0 && time.Now().Before(deadline); {
					time.Sleep(10 * time.Millisecond)
				}
				t.CloseIdleConnections()
			}()
		}
	}
}

// settle waits (up to 10 s) for the dials under way to finish, so that
// each connection is counted where it was started: net/http dials for a
// request that waits and keeps the connection when another one served the
// request first.
func (c *capgoState) settle() {
	for deadline := time.Now().Add(10 * time.Second); c.dialing.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}

// deviceAddr is a cold device's own loopback address (127.1.0.1 onwards)
// and laneAddr a warm lane's (127.200.0.1 onwards).
func deviceAddr(seq uint32) net.IP {
	n := seq + 1
	return net.IPv4(127, byte(1+n>>16), byte(n>>8), byte(n))
}
func laneAddr(seq uint32) net.IP {
	n := seq + 1
	return net.IPv4(127, byte(200+n>>16), byte(n>>8), byte(n))
}

// newStack builds a device's stacks, dialling from local when c.bind: the
// plugin's, and with zip on Android a second one for the zip
// (HttpURLConnection does not share OkHttp's connections; an iOS device
// uses st.plugin).
func (c *capgoState) newStack(proto string, idle int, local net.IP, zip bool) *capgoStack {
	if !c.bind {
		local = nil
	}
	rt, closeRT := c.roundTripper(proto, idle, local)
	s := &capgoStack{plugin: &http.Client{Transport: rt, Timeout: 2 * time.Minute}, closes: []func(){closeRT}}
	if zip {
		zrt, closeZ := c.roundTripper(proto, 1, local)
		s.zip, s.closes = &http.Client{Transport: zrt, Timeout: 2 * time.Minute}, append(s.closes, closeZ)
	}
	return s
}

// newClientStack is a device's stacks for the run's client: the capgo
// plugin's two, or the expo client's one OkHttpClient (its pool keeps
// expoIdleConns idle connections).
func (r *runner) newClientStack(local net.IP) *capgoStack {
	if r.expo != nil {
		return r.capgo.newStack(r.o.Proto, expoIdleConns, local, false)
	}
	return r.capgo.newStack(r.o.Proto, r.o.ManifestConcurrency, local, true)
}

// zipClient is the stack a device downloads the zip with.
func (s *capgoStack) zipClient(dev *device) *http.Client {
	if dev.ios {
		return s.plugin
	}
	return s.zip
}

// lanePlugin is how many connections a warm lane opens on its plugin
// stack (expo: on its OkHttpClient, what its pool keeps idle).
func (r *runner) lanePlugin() int {
	switch {
	case r.expo != nil:
		return min(r.o.ExpoConcurrency, expoIdleConns)
	case r.o.CapgoZip:
		return 1
	}
	return r.o.ManifestConcurrency
}

// laneConns is how many connections a warm lane opens in all.
func (r *runner) laneConns() int {
	if r.expo != nil {
		return r.lanePlugin()
	}
	return r.lanePlugin() + 1
}

// newLane builds a warm lane and opens its connections.
func (r *runner) newLane(ctx context.Context) *capgoStack {
	s := r.newClientStack(laneAddr(r.capgo.laneSeq.Add(1) - 1))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.capgoWarmUp(ctx, s.plugin, r.lanePlugin()) }()
	if s.zip != nil {
		wg.Add(1)
		go func() { defer wg.Done(); r.capgoWarmUp(ctx, s.zip, 1) }()
	}
	wg.Wait()
	return s
}

// lane takes a free warm lane or, when none is, makes a new one whose
// connections the device opens as it needs them (as a cold device does).
func (r *runner) lane() *capgoStack {
	select {
	case s := <-r.capgo.lanes:
		return s
	default:
		return r.newClientStack(laneAddr(r.capgo.laneSeq.Add(1) - 1))
	}
}

// freeLane gives a lane back (or closes it when the pool is full).
func (r *runner) freeLane(s *capgoStack) {
	select {
	case r.capgo.lanes <- s:
	default:
		s.close()
	}
}

// capgoSetup prepares the capgo client: the files the devices hold, and
// for warm connections the lanes with their connections open.
func (r *runner) capgoSetup(ctx context.Context) error {
	r.capgo = r.newConnState()
	if err := r.loadHeld(ctx); err != nil {
		return err
	}
	r.openLanes(ctx)
	return nil
}

// newConnState is the connection state of the stock clients (capgo,
// expo): TLS, dial counts, per-device addresses.
func (r *runner) newConnState() *capgoState {
	c := &capgoState{tls: &tls.Config{InsecureSkipVerify: r.o.Insecure},
		uaAndroid: "CapacitorUpdater/" + capgoPluginVersion + " (" + r.o.AppID + ") android/14",
		uaIOS:     "CapacitorUpdater/" + capgoPluginVersion + " (" + r.o.AppID + ") ios/17.4"}
	if u, err := url.Parse(r.o.Target); err == nil && r.o.Proto != "h3" {
		ip := net.ParseIP(u.Hostname())
		c.bind = u.Hostname() == "localhost" || ip != nil && ip.IsLoopback()
	}
	return c
}

// openLanes opens, for warm connections, the lanes and their connections:
// --connections of them in all.
func (r *runner) openLanes(ctx context.Context) {
	c := r.capgo
	if r.o.Conn != ConnWarm {
		return
	}
	n := max(1, r.o.Connections/r.laneConns())
	c.lanes = make(chan *capgoStack, n+r.o.MaxInFlight)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() { defer wg.Done(); c.lanes <- r.newLane(ctx) }()
	}
	wg.Wait()
	c.settle()
}

// capgoWarmUp opens n connections on hc: n HEAD requests at once, each on
// its own connection, all kept idle.
func (r *runner) capgoWarmUp(ctx context.Context, hc *http.Client, n int) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequestWithContext(ctx, http.MethodHead, r.o.Target+"/updates", nil)
			if err != nil {
				return
			}
			if resp, err := hc.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
}

func (r *runner) capgoClose() {
	if r.capgo == nil || r.capgo.lanes == nil {
		return
	}
	for {
		select {
		case s := <-r.capgo.lanes:
			s.close()
		default:
			return
		}
	}
}

// loadHeld learns, once, which files the devices hold: the files of the
// bundle they run (Options.VersionName), as the plugin keeps them after
// installing it. Like loadBases, it asks the target which bundle that is
// (an update check as a device: delta_base_checksum names the canonical
// archive of the bundle the device runs; only the harness reads it, never
// a capgo device) and fetches that archive (a tar of the bundle's files)
// from the target, verified by its SHA-256. Devices on the store build
// ("builtin") hold no downloaded files.
func (r *runner) loadHeld(ctx context.Context) error {
	c := r.capgo
	c.held = map[string]struct{}{}
	if r.o.VersionName == "builtin" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	status, body, err := r.t.do(ctx, "POST", r.o.Target+"/updates", r.devices[0].body, nil)
	if err != nil || status != 200 {
		return fmt.Errorf("bench --client capgo: update check: %v (HTTP %d)", err, status)
	}
	v, err := fastjson.ParseBytes(body)
	if err != nil {
		return fmt.Errorf("bench --client capgo: %w", err)
	}
	base := string(v.GetStringBytes("delta_base_checksum"))
	if base == "" {
		return fmt.Errorf("bench --client capgo: devices on %s: the target names no base archive (delta_base_checksum) to learn "+
			"which files they hold; run them on --version-name builtin (they then hold none) or let the target build the delta: %.300s", r.o.VersionName, body)
	}
	status, data, err := r.t.do(ctx, "GET", r.o.Target+"/b/"+base, nil, nil)
	if err != nil || status != 200 {
		return fmt.Errorf("bench --client capgo: base archive %s: %v (HTTP %d)", base, err, status)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != base {
		return fmt.Errorf("bench --client capgo: base archive %s failed verification", base)
	}
	held, n, err := heldFiles(data)
	if err != nil {
		return fmt.Errorf("bench --client capgo: base archive %s: %w", base, err)
	}
	c.held, c.heldFiles = held, n
	return nil
}

// heldFiles reads a canonical archive (tar) into the plugin's cache keys.
func heldFiles(archive []byte) (map[string]struct{}, int, error) {
	held := map[string]struct{}{}
	tr := tar.NewReader(bytes.NewReader(archive))
	n := 0
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return held, n, nil
		}
		if err != nil {
			return nil, 0, err
		}
		if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
			continue
		}
		h := sha256.New()
		if _, err := io.Copy(h, tr); err != nil {
			return nil, 0, err
		}
		held[heldKey(hex.EncodeToString(h.Sum(nil)), hdr.Name)] = struct{}{}
		n++
	}
}

// capgoFile is one manifest entry.
type capgoFile struct{ name, hash, url string }

// deviceStack returns the connections a capgo or expo device uses for one
// update: a warm lane (released for the next device), or with cold
// connections a stack of its own from its own address (closed), and the
// function that gives it back.
func (r *runner) deviceStack(dev *device) (*capgoStack, func()) {
	if r.capgo.lanes != nil {
		st := r.lane()
		return st, func() { r.freeLane(st) }
	}
	st := r.newClientStack(deviceAddr(dev.seq))
	return st, st.close
}

// capgoDevice runs one device's update as the stock plugin: check, then
// the manifest's missing files or the zip.
func (r *runner) capgoDevice(ctx context.Context, dev *device, due time.Time, download bool, rec *recorder) {
	r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	st, release := r.deviceStack(dev)
	defer release()
	bufp := bufs.Get().(*[]byte)
	defer bufs.Put(bufp)
	status, body, err := r.capgoCheck(ctx, st.plugin, dev, *bufp)
	*bufp = body
	done := time.Now()
	if err != nil {
		rec.checked(due, done, "transport_error", true)
		return
	}
	if status != 200 {
		rec.checked(due, done, fmt.Sprintf("http_%d", status), true)
		return
	}
	var url, checksum string
	var files []capgoFile
	if !r.checkAnswer(due, done, body, rec, func(v *fastjson.Value) {
		url, checksum = string(v.GetStringBytes("url")), string(v.GetStringBytes("checksum"))
		if !r.o.CapgoZip {
			for _, e := range v.GetArray("manifest") {
				files = append(files, capgoFile{name: string(e.GetStringBytes("file_name")), hash: string(e.GetStringBytes("file_hash")),
					url: string(e.GetStringBytes("download_url"))})
			}
		}
	}) {
		return
	}
	if url == "" && len(files) == 0 { // {"version":"builtin"}: the plugin resets to the store build
		rec.checked(due, done, "builtin", false)
		return
	}
	rec.checked(due, done, "update", false)
	if !download {
		return
	}
	started := time.Now()
	if len(files) > 0 {
		wire, fetched, reused, fail := r.capgoManifest(ctx, st.plugin, dev, files)
		if fail != "" {
			rec.failed(fail)
			return
		}
		rec.updated(PathManifest, due, started, time.Now(), wire, fetched, reused)
		return
	}
	wire, fail := r.capgoFetch(ctx, st.zipClient(dev), dev, url, checksum, false, true)
	if fail != "" {
		rec.failed(fail)
		return
	}
	rec.updated(PathZip, due, started, time.Now(), wire, 0, 0)
}

// setHeaders sets what the device's HTTP stack sends.
func (r *runner) setHeaders(h http.Header, ios, zip bool) {
	switch {
	case ios:
		h["User-Agent"] = []string{r.capgo.uaIOS}
		h["Accept-Encoding"] = []string{"gzip, deflate, br"} // URLSession
	case zip: // HttpURLConnection: the platform's agent, gzip added by the stack
		h["User-Agent"] = []string{"Dalvik/2.1.0 (Linux; U; Android 14)"}
		h["Accept-Encoding"] = []string{"gzip"}
	default: // OkHttp's BridgeInterceptor adds gzip; the plugin's interceptor the agent
		h["User-Agent"] = []string{r.capgo.uaAndroid}
		h["Accept-Encoding"] = []string{"gzip"}
	}
}

// capgoCheck posts the update check and returns the decoded answer,
// appended to buf.
func (r *runner) capgoCheck(ctx context.Context, hc *http.Client, dev *device, buf []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.o.Target+"/updates", bytes.NewReader(dev.body))
	if err != nil {
		return 0, buf, err
	}
	r.setHeaders(req.Header, dev.ios, false)
	if dev.ios {
		req.Header["Content-Type"] = []string{"application/json"} // Alamofire's JSON encoding
	} else {
		req.Header["Content-Type"] = []string{"application/json; charset=utf-8"} // MediaType.get in CapgoUpdater.getLatest
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, buf, err
	}
	defer resp.Body.Close()
	body, release, err := decodeBody(resp.Header.Get("Content-Encoding"), resp.Body)
	if err != nil {
		return 0, buf, err
	}
	defer release()
	b := bytes.NewBuffer(buf[:0])
	_, err = b.ReadFrom(io.LimitReader(body, 64<<20))
	return resp.StatusCode, b.Bytes(), err
}

// capgoManifest downloads the files the device does not hold, at most
// Options.ManifestConcurrency at once, and verifies each. It returns the
// bytes on the wire, the files downloaded and reused, and the first
// failure ("" when every file verified). Like the plugin, a failure does
// not stop the other files; the update fails once all are done.
func (r *runner) capgoManifest(ctx context.Context, hc *http.Client, dev *device, files []capgoFile) (wire int64, fetched, reused int, fail string) {
	pending := files[:0:0]
	for _, f := range files {
		if f.hash == "" {
			return 0, 0, 0, "manifest_missing_hash"
		}
		if _, ok := r.capgo.held[heldKey(f.hash, f.name)]; ok {
			reused++
			continue
		}
		pending = append(pending, f)
	}
	wire, fail = fetchEach(len(pending), r.o.ManifestConcurrency, func(i int) (int64, string) {
		f := &pending[i]
		return r.capgoFetch(ctx, hc, dev, f.url, f.hash, strings.HasSuffix(f.name, ".br"), false)
	})
	return wire, len(pending), reused, fail
}

// fetchEach runs fetch(i) for every i below n, at most concurrency at
// once, as the stock clients' download pools do, and returns the bytes on
// the wire and the first failure ("" when every fetch verified). A failure
// does not stop the other fetches.
func fetchEach(n, concurrency int, fetch func(i int) (wire int64, fail string)) (wire int64, fail string) {
	var next, onWire atomic.Int64
	var once sync.Once
	var wg sync.WaitGroup
	for w := 0; w < min(concurrency, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				w, bad := fetch(i)
				onWire.Add(w)
				if bad != "" {
					once.Do(func() { fail = bad })
				}
			}
		}()
	}
	wg.Wait()
	return onWire.Load(), fail
}

// get sends a GET for url with the headers set writes, and returns the
// response when it answered 200, else the failure outcome after prefix
// (bad_url, transport_error, http_N).
func get(ctx context.Context, hc *http.Client, url string, set func(http.Header), prefix string) (*http.Response, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, prefix + "bad_url"
	}
	set(req.Header)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, prefix + "transport_error"
	}
	if resp.StatusCode != 200 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		return nil, fmt.Sprintf("%shttp_%d", prefix, resp.StatusCode)
	}
	return resp, ""
}

// capgoFetch downloads url, brotli-decodes it when br, and checks the
// SHA-256 of the content against want (lower-case hex, as the plugin
// compares). It returns the bytes on the wire and the failure outcome
// ("" when verified).
func (r *runner) capgoFetch(ctx context.Context, hc *http.Client, dev *device, url, want string, br, zip bool) (int64, string) {
	prefix := "manifest_"
	if zip {
		prefix = "download_"
	}
	resp, fail := get(ctx, hc, url, func(h http.Header) { r.setHeaders(h, dev.ios, zip) }, prefix)
	if fail != "" {
		return 0, fail
	}
	defer resp.Body.Close()
	wr := &wireReader{r: resp.Body}
	ok, err := verifyContent(resp.Header.Get("Content-Encoding"), wr, br, want)
	switch {
	case wr.err != nil:
		return wr.n, prefix + "transport_error"
	case err != nil && br:
		return wr.n, prefix + "brotli_error"
	case err != nil:
		return wr.n, prefix + "decode_error"
	case !ok && zip:
		return wr.n, "checksum_mismatch"
	case !ok:
		return wr.n, "manifest_checksum_mismatch"
	}
	return wr.n, ""
}

// verifyContent reads a response body (decoded by the HTTP stack per
// Content-Encoding, then brotli-decoded by the plugin when br) and reports
// whether the SHA-256 of the content is want (lower-case hex).
func verifyContent(encoding string, body io.Reader, br bool, want string) (bool, error) {
	sum, err := sumContent(encoding, body, br)
	if err != nil {
		return false, err
	}
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], sum[:])
	return string(h[:]) == want, nil
}

// sumContent reads a response body (decoded per Content-Encoding, then
// brotli-decoded when br) and returns the SHA-256 of the content.
func sumContent(encoding string, body io.Reader, br bool) (sum [sha256.Size]byte, err error) {
	src, release, err := decodeBody(encoding, body)
	if err != nil {
		return sum, err
	}
	defer release()
	if br {
		d := brReaders.Get().(*brrr.Reader)
		d.Reset(src)
		defer func() { d.Reset(nil); brReaders.Put(d) }()
		src = d
	}
	v := verifiers.Get().(*verifier)
	defer verifiers.Put(v)
	v.h.Reset()
	for n := 0; ; {
		k, err := src.Read(v.buf[:])
		v.h.Write(v.buf[:k])
		if n += k; n > maxCapgoFile {
			return sum, errors.New("file over 1 GiB")
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return sum, err
		}
	}
	v.h.Sum(sum[:0])
	return sum, nil
}

// verifier is sumContent's reusable state.
type verifier struct {
	h   hash.Hash
	buf [32 << 10]byte
}

// decodeBody undoes a Content-Encoding, as the devices' HTTP stacks do.
func decodeBody(encoding string, body io.Reader) (io.Reader, func(), error) {
	switch encoding {
	case "", "identity":
		return body, func() {}, nil
	case "gzip":
		z, _ := gzReaders.Get().(*kgzip.Reader)
		if z == nil {
			var err error
			if z, err = kgzip.NewReader(body); err != nil {
				return nil, nil, err
			}
		} else if err := z.Reset(body); err != nil {
			gzReaders.Put(z)
			return nil, nil, err
		}
		return z, func() { gzReaders.Put(z) }, nil
	case "br":
		d := brReaders.Get().(*brrr.Reader)
		d.Reset(body)
		return d, func() { d.Reset(nil); brReaders.Put(d) }, nil
	}
	return nil, nil, fmt.Errorf("content encoding %q", encoding)
}

var (
	gzReaders sync.Pool
	brReaders = sync.Pool{New: func() any { return brrr.NewReader(nil) }}
	verifiers = sync.Pool{New: func() any { return &verifier{h: sha256.New()} }}
)

// wireReader counts the bytes read from the network and keeps its error.
type wireReader struct {
	r   io.Reader
	n   int64
	err error
}

func (w *wireReader) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	w.n += int64(n)
	if err != nil && err != io.EOF {
		w.err = err
	}
	return n, err
}
