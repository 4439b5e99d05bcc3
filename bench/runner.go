package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/delta"
	"github.com/valyala/fastjson"
)

// InlineDeltaMax is the largest delta an updraft client with InlineDeltas
// takes inside an update answer; the edge's --inline-delta-max bounds it
// too.
const InlineDeltaMax = 16 << 20

// Options configure a run.
type Options struct {
	Target       string // edge base URL, e.g. http://127.0.0.1:8080
	AppID        string
	Devices      int    // fleet size
	Connections  int    // HTTP/1.1 connections to the target (reused, like apps)
	MaxInFlight  int    // open loop: requests allowed in flight before arrivals queue
	VersionBuild string // native version, or a comma-separated mix spread evenly over the fleet
	VersionName  string // bundle the devices run ("builtin": the store build)
	// Deltas: devices that are offered a delta (delta_url) download and apply
	// it instead of the zip, like an Updraft-aware client.
	Deltas bool
	// InlineDeltas: with Deltas, the update check asks for the delta inside
	// the answer (Updraft-Inline-Delta, up to InlineDeltaMax bytes), one
	// round trip fewer; the edge inlines deltas it holds in memory.
	InlineDeltas bool
	// Proto is the HTTP version: h1 (default; http:// or https://) or h3.
	Proto string
	// Insecure skips certificate verification (development certificates).
	Insecure bool
	// Client is the software the devices run: ClientUpdraft (default: the
	// zip, or with Deltas the offered delta), ClientCapgo (the stock
	// @capgo/capacitor-updater 8.x: the manifest's missing files or the
	// zip, never a delta; capgo.go) or ClientExpo (the stock expo-updates
	// Android client: the Expo manifest request, then the assets it lacks;
	// expo.go). With ClientExpo, VersionName is "builtin" (devices on their
	// embedded update) or ExpoOffered, and VersionBuild the runtime
	// version(s) they send.
	Client string
	// Conn is the capgo and expo clients' connection model: ConnWarm
	// (default) or ConnCold (new connections, handshakes included, per
	// device update).
	Conn string
	// ManifestConcurrency is how many manifest files a capgo device
	// downloads at once (default DefaultManifestConcurrency, the plugin's
	// figure on an 8-core phone; at most MaxManifestConcurrency).
	ManifestConcurrency int
	// CapgoZip makes capgo devices download the zip even when the answer
	// has a manifest: the plugin's path for a bundle without one.
	CapgoZip bool
	// ExpoConcurrency is how many assets an expo device downloads at once
	// (default DefaultExpoConcurrency, the client's; at most
	// MaxExpoConcurrency).
	ExpoConcurrency int
	Seed            uint64
	Progress        io.Writer // live progress line; nil: none
	// Operator is the origin's operator API, for cohorts phases (their
	// cohorts, segment and waits); the app must be a throwaway one.
	Operator *client.Client
}

func (o *Options) defaults() error {
	if o.Target == "" {
		return errors.New("bench: no target URL")
	}
	o.Target = strings.TrimRight(o.Target, "/")
	if o.AppID == "" {
		o.AppID = "com.example.app"
	}
	if o.Devices <= 0 {
		o.Devices = 1000
	}
	if o.Devices > 10_000_000 {
		return errors.New("bench: at most 10,000,000 devices")
	}
	if o.Connections <= 0 {
		o.Connections = 64
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 4096
	}
	if o.VersionBuild == "" {
		o.VersionBuild = "1.0.0"
	}
	if o.VersionName == "" {
		o.VersionName = "builtin"
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	switch o.Client {
	case "":
		o.Client = ClientUpdraft
	case ClientUpdraft, ClientCapgo, ClientExpo:
	default:
		return fmt.Errorf("bench: client %q: want %s, %s or %s", o.Client, ClientUpdraft, ClientCapgo, ClientExpo)
	}
	switch o.Conn {
	case "":
		o.Conn = ConnWarm
	case ConnWarm, ConnCold:
	default:
		return fmt.Errorf("bench: conn %q: want %s or %s", o.Conn, ConnWarm, ConnCold)
	}
	if o.Client == ClientUpdraft && o.Conn == ConnCold {
		return errors.New("bench: cold connections are the stock clients' (--client capgo or expo)")
	}
	if o.Client != ClientCapgo && o.CapgoZip {
		return errors.New("bench: the forced zip is the capgo client's (--client capgo)")
	}
	switch o.Client {
	case ClientUpdraft:
		return nil
	case ClientExpo:
		if o.Deltas {
			return errors.New("bench: the expo client downloads assets, never deltas; drop --deltas")
		}
		if o.VersionName != "builtin" && o.VersionName != ExpoOffered {
			return fmt.Errorf("bench: expo devices run builtin (their embedded update) or %s (the update the target offers), not %q", ExpoOffered, o.VersionName)
		}
		if o.ExpoConcurrency == 0 {
			o.ExpoConcurrency = DefaultExpoConcurrency
		}
		if o.ExpoConcurrency < 0 || o.ExpoConcurrency > MaxExpoConcurrency {
			return fmt.Errorf("bench: expo concurrency %d: want 1..%d", o.ExpoConcurrency, MaxExpoConcurrency)
		}
		return nil
	}
	if o.Deltas {
		return errors.New("bench: the capgo client (the stock plugin) never uses deltas; drop --deltas")
	}
	if o.ManifestConcurrency == 0 {
		o.ManifestConcurrency = DefaultManifestConcurrency
	}
	if o.ManifestConcurrency < 0 || o.ManifestConcurrency > MaxManifestConcurrency {
		return fmt.Errorf("bench: manifest concurrency %d: want 1..%d (the plugin's cap)", o.ManifestConcurrency, MaxManifestConcurrency)
	}
	return nil
}

// device is one simulated phone with its pre-encoded update check.
type device struct {
	id   string
	body []byte
	ios  bool
	seq  uint32 // place in the fleet
}

// fleet builds n devices: 60% Android, 40% iOS, on the store build, with a
// custom id; deterministic for a seed.
func fleet(o Options) []device {
	rng := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	out := make([]device, o.Devices)
	builds := strings.Split(o.VersionBuild, ",") // native versions, spread over the fleet
	for i := range out {
		var u [16]byte
		for j := range u {
			u[j] = byte(rng.UintN(256))
		}
		u[6] = u[6]&0x0f | 0x40
		u[8] = u[8]&0x3f | 0x80
		h := hex.EncodeToString(u[:])
		id := h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
		platform, os := "android", "14"
		if i%10 >= 6 {
			platform, os = "ios", "17.4"
		}
		build := builds[i%len(builds)]
		out[i] = device{id: id, ios: platform == "ios", seq: uint32(i), body: fmt.Appendf(nil,
			`{"app_id":%q,"device_id":%q,"version_name":%q,"version_build":%q,"version_code":"1","version_os":%q,`+
				`"platform":%q,"plugin_version":"8.51.14","is_emulator":false,"is_prod":true,"custom_id":"user-%d"}`,
			o.AppID, id, o.VersionName, build, os, platform, i)}
	}
	return out
}

// runner executes phases against the target.
type runner struct {
	o        Options
	t        transport
	devices  []device
	parsers  fastjson.ParserPool
	inFlight atomic.Int64
	bases    sync.Map    // canonical SHA-256 → []byte: archives devices already hold
	capgo    *capgoState // the capgo and expo clients' connections (and capgo's held files)
	expo     *expoState
}

// Run executes the scenario and returns its report.
func Run(ctx context.Context, sc Scenario, o Options) (*Report, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	t, err := newTransport(o.Proto, o.Connections, o.Insecure)
	if err != nil {
		return nil, err
	}
	defer t.close()
	r := &runner{o: o, devices: fleet(o), t: t}
	if o.Deltas {
		if err := r.loadBases(); err != nil {
			return nil, err
		}
	}
	for _, p := range sc.Phases {
		if p.Kind != KindCohorts {
			continue
		}
		switch {
		case o.Operator == nil:
			return nil, fmt.Errorf("bench: scenario %q phase %s: cohorts phases need the operator API (--origin)", sc.Name, p.Name)
		case o.Client != ClientUpdraft || o.Deltas || o.VersionName != "builtin":
			return nil, fmt.Errorf("bench: scenario %q phase %s: cohorts phases run the updraft client on the store build", sc.Name, p.Name)
		case o.Devices < 2:
			return nil, fmt.Errorf("bench: scenario %q phase %s: cohorts phases need at least 2 devices", sc.Name, p.Name)
		}
	}
	rep := &Report{Scenario: sc.Name, Target: o.Target, Devices: o.Devices, Connections: o.Connections, Client: o.Client, Conn: o.Conn}
	switch o.Client {
	case ClientCapgo:
		if err := r.capgoSetup(ctx); err != nil {
			return nil, err
		}
		defer r.capgoClose()
		rep.ManifestConcurrency, rep.HeldFiles = o.ManifestConcurrency, r.capgo.heldFiles
	case ClientExpo:
		for _, p := range sc.Phases {
			if p.Kind == KindSwitch {
				return nil, fmt.Errorf("bench: scenario %q phase %s: switch phases speak the Capgo protocol (channel_self); the expo client names its channel in every request", sc.Name, p.Name)
			}
		}
		if err := r.expoSetup(ctx); err != nil {
			return nil, err
		}
		defer r.capgoClose()
		rep.AssetConcurrency, rep.HeldFiles, rep.ExpoCurrentUpdateID = o.ExpoConcurrency, len(r.expo.held), r.expo.current
	}
	rep.Started = time.Now().UTC()
	for _, p := range sc.Phases {
		pr, err := r.phase(ctx, p)
		if err != nil {
			return rep, err
		}
		rep.Phases = append(rep.Phases, pr)
		if ctx.Err() != nil {
			break
		}
	}
	return rep, nil
}

// grace is how long in-flight work may finish after a phase's duration.
func grace(d time.Duration) time.Duration { return max(10*time.Second, d) }

func (r *runner) phase(ctx context.Context, p Phase) (PhaseReport, error) {
	d := time.Duration(p.Duration)
	start := time.Now()
	rec := newRecorder(start)
	deadline := start.Add(d + grace(d))
	if p.Kind == KindCohorts {
		// The activity's rounds (at most HeavyChecks check-ins per device,
		// at the phase's rate), then the ingest, the cohorts, the segment
		// and a check per device: a bound, never what cuts a run short.
		cp := cohortDefaults(p)
		checks := float64(len(r.devices)) * float64(cp.HeavyChecks+1)
		deadline = deadline.Add(ingestDeadline(len(r.devices)) + time.Duration(checks/cp.Rate*float64(time.Second)) + 5*time.Minute)
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	stopProgress := r.progress(p, start, rec)
	dials := r.dials()
	var started int64
	var cohorts *CohortFleetReport
	switch p.Kind {
	case KindCohorts:
		cohorts, started = r.cohortsPhase(ctx, p, rec)
	case KindStorm:
		started = r.openLoop(ctx, start, d, len(r.devices), true, rec)
	case KindRate:
		started = r.openLoop(ctx, start, d, int(p.Rate*d.Seconds()), p.Download, rec)
	case KindSwitch:
		started = r.switchLoop(ctx, start, d, p.Channel, rec)
	case KindSteady:
		started = r.closedLoop(ctx, start, d, p.Connections, rec)
	case KindStats:
		started = r.statsLoop(ctx, start, d, p, rec)
	}
	stopProgress()
	pr := rec.report(p, started, time.Since(start))
	pr.ConnectionsOpened = r.dials() - dials
	pr.Cohorts = cohorts
	if p.Kind == KindStats {
		for _, o := range pr.Outcomes {
			if o.Outcome == "events_accepted" {
				pr.EventsPerSec = float64(o.Count*int64(statsBatch(p))) / time.Since(start).Seconds()
			}
		}
	}
	return pr, nil
}

// openLoop issues n update checks at evenly spaced due times over d. Each
// latency counts from the due time: if the target (or the in-flight cap)
// delays a request, the delay is measured.
func (r *runner) openLoop(ctx context.Context, start time.Time, d time.Duration, n int, download bool, rec *recorder) int64 {
	sem := make(chan struct{}, r.o.MaxInFlight)
	var wg sync.WaitGroup
	var started int64
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(float64(d) * float64(i) / float64(n)))
		sleepCtx(ctx, time.Until(due))
		if ctx.Err() != nil {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		started++
		wg.Add(1)
		dev := &r.devices[i%len(r.devices)]
		go func() {
			defer func() { <-sem; wg.Done() }()
			r.device(ctx, dev, due, download, rec)
		}()
	}
	wg.Wait()
	return started
}

// switchLoop moves every device to channel: setChannel, then an update
// check carrying it as defaultChannel (open loop over d). The outcome of a
// refused setChannel is its error code.
func (r *runner) switchLoop(ctx context.Context, start time.Time, d time.Duration, channel string, rec *recorder) int64 {
	sem := make(chan struct{}, r.o.MaxInFlight)
	var wg sync.WaitGroup
	var started int64
	n := len(r.devices)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(float64(d) * float64(i) / float64(n)))
		sleepCtx(ctx, time.Until(due))
		sem <- struct{}{}
		started++
		wg.Add(1)
		dev := &r.devices[i]
		go func() {
			defer func() { <-sem; wg.Done() }()
			base := dev.body[:len(dev.body)-1]
			set := append(append(append([]byte(nil), base...), `,"channel":`...), fmt.Appendf(nil, "%q}", channel)...)
			status, body, err := r.t.do(ctx, "POST", r.o.Target+"/channel_self", set, nil)
			if err != nil || status != 200 {
				rec.checked(due, time.Now(), fmt.Sprintf("set_channel_http_%d", status), true)
				return
			}
			if v, err := fastjson.ParseBytes(body); err != nil || v.GetStringBytes("error") != nil {
				rec.checked(due, time.Now(), "set_channel_"+string(v.GetStringBytes("error")), true)
				return
			}
			moved := device{id: dev.id, ios: dev.ios, seq: dev.seq, body: append(append(append([]byte(nil), base...), `,"defaultChannel":`...), fmt.Appendf(nil, "%q}", channel)...)}
			r.device(ctx, &moved, due, false, rec)
		}()
	}
	wg.Wait()
	return started
}

// closedLoop runs workers that check back to back until d has passed.
func (r *runner) closedLoop(ctx context.Context, start time.Time, d time.Duration, workers int, rec *recorder) int64 {
	end := start.Add(d)
	var next, started atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) && ctx.Err() == nil {
				i := next.Add(1) - 1
				started.Add(1)
				r.device(ctx, &r.devices[int(i)%len(r.devices)], time.Now(), false, rec)
			}
		}()
	}
	wg.Wait()
	return started.Load()
}

func statsBatch(p Phase) int {
	if p.Batch == 0 {
		return 50
	}
	return p.Batch
}

// statsActions is the event mix of a stats phase: mostly progress and
// installs, some failures.
var statsActions = []string{"download_zip_start", "download_50", "download_complete", "set", "set", "get", "app_moved_to_foreground", "update_fail"}

// statsLoop posts batches of device events back to back until d has passed.
// A request counts as ok when the edge accepted every event of it.
func (r *runner) statsLoop(ctx context.Context, start time.Time, d time.Duration, p Phase, rec *recorder) int64 {
	end := start.Add(d)
	batch := statsBatch(p)
	var next, started atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < p.Connections; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body, buf []byte
			for time.Now().Before(end) && ctx.Err() == nil {
				i := int(next.Add(int64(batch)) - int64(batch))
				body = append(body[:0], '[')
				for j := 0; j < batch; j++ {
					dev := &r.devices[(i+j)%len(r.devices)]
					if j > 0 {
						body = append(body, ',')
					}
					body = append(body, dev.body[:len(dev.body)-1]...)
					body = fmt.Appendf(body, `,"action":%q,"old_version_name":"","timestamp":%d}`, statsActions[(i+j)%len(statsActions)], time.Now().UnixMilli())
				}
				body = append(body, ']')
				started.Add(1)
				due := time.Now()
				status, answer, err := r.t.do(ctx, "POST", r.o.Target+"/stats", body, buf)
				buf = answer
				done := time.Now()
				switch {
				case err != nil:
					rec.checked(due, done, "transport_error", true)
				case status != 200:
					rec.checked(due, done, fmt.Sprintf("http_%d", status), true)
				case bytes.Contains(answer, []byte(`"status":"error"`)) || !bytes.HasPrefix(answer, []byte(`{"status":"ok"`)):
					rec.checked(due, done, "events_refused", true)
				default:
					rec.checked(due, done, "events_accepted", false)
				}
			}
		}()
	}
	wg.Wait()
	return started.Load()
}

// device runs one device's update: check, then (if offered and wanted)
// download and verify the bundle (or apply and verify the offered delta).
func (r *runner) device(ctx context.Context, dev *device, due time.Time, download bool, rec *recorder) {
	if r.expo != nil {
		r.expoDevice(ctx, dev, due, download, rec)
		return
	}
	if r.capgo != nil {
		r.capgoDevice(ctx, dev, due, download, rec)
		return
	}
	r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	bufp := bufs.Get().(*[]byte)
	defer bufs.Put(bufp)
	var status, off int
	var body []byte
	var err error
	if r.o.Deltas && r.o.InlineDeltas {
		status, body, off, err = r.t.check(ctx, r.o.Target+"/updates", dev.body, InlineDeltaMax, *bufp)
	} else {
		status, body, err = r.t.do(ctx, "POST", r.o.Target+"/updates", dev.body, *bufp)
	}
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
	var url, checksum, deltaURL, deltaBase, deltaSum string
	answer, inline := body, []byte(nil)
	if off > 0 { // the delta follows the answer
		answer, inline = body[:off], body[off:]
	}
	if !r.checkAnswer(due, done, answer, rec, func(v *fastjson.Value) {
		url, checksum = string(v.GetStringBytes("url")), string(v.GetStringBytes("checksum"))
		deltaURL, deltaBase, deltaSum = string(v.GetStringBytes("delta_url")), string(v.GetStringBytes("delta_base_checksum")), string(v.GetStringBytes("delta_checksum"))
	}) {
		return
	}
	var base []byte
	path := PathZip
	if r.o.Deltas && deltaURL != "" {
		if b, ok := r.bases.Load(deltaBase); ok {
			base = b.([]byte)
			url, checksum, path = deltaURL, deltaSum, PathDelta
		}
	}
	rec.checked(due, done, "update", false)
	if !download {
		return
	}
	started := time.Now()
	if base != nil && inline != nil {
		body, path = inline, PathDeltaInline // no second request
	} else {
		if status, body, err = r.t.do(ctx, "GET", url, nil, *bufp); err != nil {
			rec.failed("download_transport_error")
			return
		}
		*bufp = body
		if status != 200 {
			rec.failed(fmt.Sprintf("download_http_%d", status))
			return
		}
	}
	n := int64(len(body))
	if base != nil {
		if body, err = delta.Apply(base, body, delta.MaxCanonical); err != nil {
			rec.failed("delta_apply_error")
			return
		}
	}
	if sum := sha256.Sum256(body); hex.EncodeToString(sum[:]) != checksum {
		rec.failed("checksum_mismatch")
		return
	}
	if r.o.Deltas { // by path: the zip, the delta from delta_url, or inline
		rec.updated(path, due, started, time.Now(), n, 0, 0)
		return
	}
	rec.downloaded(due, started, time.Now(), n)
}

// checkAnswer parses an update check's 200 answer as every Capgo-protocol
// client does: bad JSON, or an "error" code (a failure when its kind is
// "failed"), is recorded as the check's outcome and checkAnswer returns
// false; otherwise read takes what the client needs from the answer while
// it is parsed and checkAnswer returns true (the caller records the
// outcome).
func (r *runner) checkAnswer(due, done time.Time, body []byte, rec *recorder, read func(v *fastjson.Value)) bool {
	p := r.parsers.Get()
	defer r.parsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil {
		rec.checked(due, done, "bad_json", true)
		return false
	}
	if code := v.GetStringBytes("error"); code != nil {
		rec.checked(due, done, string(code), string(v.GetStringBytes("kind")) == "failed")
		return false
	}
	read(v)
	return true
}

// dials is the number of connections the capgo or expo client has opened, once
// the dials under way have finished (0 for the updraft client, whose pool
// is not counted).
func (r *runner) dials() int64 {
	if r.capgo == nil {
		return 0
	}
	r.capgo.settle()
	return r.capgo.dials.Load()
}

// bufs are response buffers reused across devices.
var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// progress prints a live line every second until stopped.
func (r *runner) progress(p Phase, start time.Time, rec *recorder) func() {
	if r.o.Progress == nil {
		return func() {}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				fmt.Fprintln(r.o.Progress)
				return
			case now := <-t.C:
				rec.mu.Lock()
				checks, downloads := rec.check.TotalCount(), rec.download.TotalCount()
				errs := int64(0)
				for _, s := range rec.seconds {
					errs += s.Errors
				}
				p99 := float64(rec.check.ValueAtQuantile(99)) / 1000
				rec.mu.Unlock()
				fmt.Fprintf(r.o.Progress, "\r[%s] %4.0fs/%s  checks %d  downloads %d  errors %d  in-flight %d  check p99 %.1fms   ",
					p.Name, now.Sub(start).Seconds(), time.Duration(p.Duration), checks, downloads, errs, r.inFlight.Load(), p99)
			}
		}
	}()
	return func() { close(stop); <-done }
}

// loadBases fetches, once, the canonical archive of the bundle the devices
// run (what an Updraft-aware device holds on disk), so that offered deltas
// can be applied. It asks the target which base a delta would use.
func (r *runner) loadBases() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	status, body, err := r.t.do(ctx, "POST", r.o.Target+"/updates", r.devices[0].body, nil)
	if err != nil || status != 200 {
		return fmt.Errorf("bench --deltas: update check: %v (HTTP %d)", err, status)
	}
	v, err := fastjson.ParseBytes(body)
	if err != nil {
		return fmt.Errorf("bench --deltas: %w", err)
	}
	base := string(v.GetStringBytes("delta_base_checksum"))
	if base == "" {
		return fmt.Errorf("bench --deltas: the target offers no delta to devices on %s: %s", r.o.VersionName, body)
	}
	status, data, err := r.t.do(ctx, "GET", r.o.Target+"/b/"+base, nil, nil)
	if err != nil || status != 200 {
		return fmt.Errorf("bench --deltas: base archive %s: %v (HTTP %d)", base, err, status)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != base {
		return fmt.Errorf("bench --deltas: base archive %s failed verification", base)
	}
	r.bases.Store(base, data)
	return nil
}

// sleepCtx waits d (nothing when d ≤ 0), or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
