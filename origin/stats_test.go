package origin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/events"
)

func readKeyFile(t testing.TB, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// metricValue reads one series (name with labels, as exposed) from the
// origin's GET /metrics; 0 when the series is absent.
func metricValue(t *testing.T, o *testOrigin, series string) float64 {
	t.Helper()
	resp, err := http.Get(o.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: HTTP %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %q: %v", series, v, err)
			}
			return f
		}
	}
	return 0
}

// statsEvent is a device event of guardApp in segment "default".
func statsEvent(received int64, dev int, action, version, channel string) events.Event {
	return events.Event{
		Timestamp: received - 250, Received: received, AppID: guardApp, DeviceID: devUUID(dev), Action: action,
		VersionName: version, Platform: "ios", VersionBuild: "3.1.0", PluginVersion: "7.2.0",
		IsProd: true, Channel: channel, Segment: "default",
	}
}

type postResult struct {
	status int
	code   string
}

// postEvents sends a segment to POST /v1/events; headers with an empty
// value are left out.
func postEvents(t *testing.T, o *testOrigin, key, edge, seq string, body []byte) postResult {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, o.http.URL+"/v1/events", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"Authorization": "Bearer " + key, "X-Updraft-Edge-Id": edge, "X-Updraft-Segment": seq} {
		if v != "" && v != "Bearer " {
			req.Header.Set(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/vnd.updraft.events")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Code   string `json:"error"`
		Status string `json:"status"`
	}
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("POST /v1/events: HTTP %d, body %q is not JSON", resp.StatusCode, data)
	}
	if resp.StatusCode == http.StatusOK && out.Status != "ok" {
		t.Fatalf("POST /v1/events: 200 with body %q", data)
	}
	return postResult{resp.StatusCode, out.Code}
}

func TestPostEvents(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	edgeKey := readKeyFile(t, o.dir, "edge-key")
	opKey := o.client.APIKey
	now := time.Now().UnixMilli()
	seg1 := segmentOf([]events.Event{
		statsEvent(now, 1, "set", "1.0.1", "production"),
		statsEvent(now, 2, "get", "1.0.1", "production"),
		statsEvent(now, 3, "update_fail", "1.0.1", "production"),
	})
	seg2 := segmentOf([]events.Event{statsEvent(now, 4, "ping", "1.0.0", "production"), statsEvent(now, 5, "set", "1.0.0", "beta")})
	seg3 := segmentOf([]events.Event{
		statsEvent(now, 6, "download_complete", "1.0.1", "production"),
		statsEvent(now, 7, "set", "1.0.1", "production"),
		statsEvent(now, 8, "app_moved_to_foreground", "1.0.1", "production"),
	})
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 0x40
		return c
	}
	invalidEvent := func(fn func(e *events.Event)) []byte {
		e := statsEvent(now, 9, "set", "1.0.1", "production")
		fn(&e)
		return segmentOf([]events.Event{statsEvent(now, 10, "set", "1.0.1", "production"), e})
	}
	total := func() int64 {
		t.Helper()
		n, err := o.srv.Events().TotalEvents(ctx, guardApp)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	steps := []struct {
		name       string
		key, edge  string
		seq        string
		body       []byte
		want       postResult
		wantTotal  int64
		reachesIng bool // refused inside IngestSegment (counted as corrupt)
	}{
		{"no key", "", guardEdge, "1", seg1, postResult{401, "unauthorized"}, 0, false},
		{"wrong key", "upd_wrong", guardEdge, "1", seg1, postResult{401, "unauthorized"}, 0, false},
		{"edge key", edgeKey, guardEdge, "1", seg1, postResult{200, ""}, 3, false},
		{"re-sent segment", edgeKey, guardEdge, "1", seg1, postResult{200, ""}, 3, false},
		{"re-sent with the operator key", opKey, guardEdge, "1", seg1, postResult{200, ""}, 3, false},
		{"operator key, next segment", opKey, guardEdge, "2", seg2, postResult{200, ""}, 5, false},
		{"flipped byte in the magic", edgeKey, guardEdge, "3", flip(seg3, 0), postResult{400, "corrupt_segment"}, 5, true},
		{"flipped byte in a record length", edgeKey, guardEdge, "3", flip(seg3, len(events.Magic)), postResult{400, "corrupt_segment"}, 5, true},
		{"flipped byte in the CRC", edgeKey, guardEdge, "3", flip(seg3, len(events.Magic)+5), postResult{400, "corrupt_segment"}, 5, true},
		{"flipped byte in an event", edgeKey, guardEdge, "3", flip(seg3, len(seg3)-3), postResult{400, "corrupt_segment"}, 5, true},
		{"torn tail", edgeKey, guardEdge, "3", seg3[:len(seg3)-1], postResult{400, "corrupt_segment"}, 5, true},
		{"empty body", edgeKey, guardEdge, "3", nil, postResult{400, "corrupt_segment"}, 5, true},
		// Well-framed segments with a bad event: the event is skipped (and
		// counted), the rest ingested; an unknown but well-formed action
		// (from a newer edge) is kept.
		{"invalid device id", edgeKey, guardEdge, "3", invalidEvent(func(e *events.Event) { e.DeviceID = "not-a-uuid" }), postResult{200, ""}, 6, false},
		{"unknown action", edgeKey, guardEdge, "3", invalidEvent(func(e *events.Event) { e.Action = "explode" }), postResult{200, ""}, 8, false},
		{"invalid app id", edgeKey, guardEdge, "3", invalidEvent(func(e *events.Event) { e.AppID = "nodots" }), postResult{200, ""}, 9, false},
		{"edge id not hex", edgeKey, strings.Repeat("zz", 16), "3", seg3, postResult{400, "corrupt_segment"}, 9, true},
		{"edge id too short", edgeKey, "00112233", "3", seg3, postResult{400, "corrupt_segment"}, 9, true},
		{"edge id too long", edgeKey, guardEdge + "00", "3", seg3, postResult{400, "corrupt_segment"}, 9, true},
		{"no edge id", edgeKey, "", "3", seg3, postResult{400, "corrupt_segment"}, 9, true},
		{"no segment number", edgeKey, guardEdge, "", seg3, postResult{400, "corrupt_segment"}, 9, false},
		{"segment number not a number", edgeKey, guardEdge, "three", seg3, postResult{400, "corrupt_segment"}, 9, false},
		{"negative segment number", edgeKey, guardEdge, "-3", seg3, postResult{400, "corrupt_segment"}, 9, false},
		// (edge, 3) with other content is another segment.
		{"valid segment 3", edgeKey, guardEdge, "3", seg3, postResult{200, ""}, 12, false},
		// Another edge's segment 1 is its own.
		{"other edge, seq 1", edgeKey, strings.Repeat("ab", 16), "1", seg1, postResult{200, ""}, 15, false},
	}
	corrupt := 0
	for _, s := range steps {
		got := postEvents(t, o, s.key, s.edge, s.seq, s.body)
		if got != s.want {
			t.Errorf("%s: got %d %q, want %d %q", s.name, got.status, got.code, s.want.status, s.want.code)
		}
		if n := total(); n != s.wantTotal {
			t.Fatalf("%s: TotalEvents = %d, want %d", s.name, n, s.wantTotal)
		}
		if s.reachesIng {
			corrupt++
		}
	}
	if raw, err := o.srv.Events().RawEvents(ctx); err != nil || raw != 15 {
		t.Fatalf("RawEvents = %d (%v), want 15", raw, err)
	}
	for series, want := range map[string]float64{
		"updraft_origin_events_ingested_total":                           15,
		"updraft_origin_events_skipped_total":                            2,
		`updraft_origin_event_segments_total{outcome="ingested"}`:        7,
		`updraft_origin_event_segments_total{outcome="duplicate"}`:       2,
		`updraft_origin_event_segments_total{outcome="corrupt"}`:         float64(corrupt),
		`updraft_origin_event_segments_total{outcome="error"}`:           0,
		`updraft_origin_event_ingest_seconds_count`:                      7,
		`updraft_origin_guard_actions_total{action="pause"}`:             0,
		`updraft_origin_event_ingest_seconds_bucket{le="+Inf"}`:          7,
		`updraft_origin_guard_evaluations_total`:                         0,
		`updraft_origin_event_segments_total{outcome="no_such_outcome"}`: 0,
	} {
		if got := metricValue(t, o, series); got != want {
			t.Errorf("metric %s = %v, want %v", series, got, want)
		}
	}
	// The edge key is for edges: it may not read the operator API.
	edge := client.New(o.http.URL, edgeKey)
	if got := apiCode(edge.DoJSON(ctx, http.MethodGet, "/api/v1/apps/"+guardApp+"/stats", nil, nil)); got != "401 unauthorized" {
		t.Fatalf("edge key GET stats: %q, want 401 unauthorized", got)
	}
}

// TestIngestSegmentErrors calls IngestSegment directly: refusals wrap
// ErrCorruptSegment.
func TestIngestSegmentErrors(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	good := segmentOf([]events.Event{statsEvent(time.Now().UnixMilli(), 1, "set", "1.0.1", "production")})
	if err := o.srv.IngestSegment(ctx, guardEdge, 1, good); err != nil {
		t.Fatal(err)
	}
	if err := o.srv.IngestSegment(ctx, guardEdge, 1, good); err != nil {
		t.Fatalf("duplicate: %v, want nil", err)
	}
	for name, call := range map[string]func() error{
		"bad edge id": func() error { return o.srv.IngestSegment(ctx, "edge-1", 2, good) },
		"bad magic":   func() error { return o.srv.IngestSegment(ctx, guardEdge, 2, append([]byte("UPDEVT0\n"), good[8:]...)) },
		"record with a bad CRC": func() error {
			seg := segmentOf([]events.Event{statsEvent(1, 1, "set", "1.0.1", "production")})
			seg[len(seg)-1] ^= 1
			return o.srv.IngestSegment(ctx, guardEdge, 2, seg)
		},
	} {
		if err := call(); !errors.Is(err, ErrCorruptSegment) {
			t.Errorf("%s: %v, want an error wrapping ErrCorruptSegment", name, err)
		}
	}
	// A segment of only the magic is valid and empty.
	if err := o.srv.IngestSegment(ctx, guardEdge, 3, []byte(events.Magic)); err != nil {
		t.Fatalf("empty segment: %v", err)
	}
	if n, _ := o.srv.Events().TotalEvents(ctx, guardApp); n != 1 {
		t.Fatalf("TotalEvents = %d, want 1", n)
	}
}

func getStats(t *testing.T, o *testOrigin, query url.Values) (*StatsReport, error) {
	t.Helper()
	var rep StatsReport
	p := "/api/v1/apps/" + guardApp + "/stats"
	if len(query) > 0 {
		p += "?" + query.Encode()
	}
	if err := o.client.DoJSON(context.Background(), http.MethodGet, p, nil, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// bundleStats finds a version's figures in a report.
func bundleStats(t *testing.T, rep *StatsReport, version string) VersionStats {
	t.Helper()
	for _, vs := range rep.Bundles {
		if vs.Version == version {
			return vs
		}
	}
	t.Fatalf("report has no bundle %s: %+v", version, rep.Bundles)
	return VersionStats{}
}

func TestStatsReport(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	b := time.Now().Add(-10*time.Minute).UnixMilli() / 60000 * 60000 // a minute boundary
	m1 := b + 60000

	// Minute 0: devices 0 and 1 install 1.0.0.
	ingestAs := func(seq uint64, evs []events.Event) {
		t.Helper()
		if err := o.srv.IngestSegment(ctx, guardEdge, seq, segmentOf(evs)); err != nil {
			t.Fatal(err)
		}
	}
	ingestAs(1, []events.Event{statsEvent(b, 0, "set", "1.0.0", "production"), statsEvent(b+1, 1, "set", "1.0.0", "production")})
	// Minute 1, production: 4 downloads, 7 installs of 1.0.1 (devices 0-5
	// and 9; 0 and 1 leave 1.0.0), 3 failures (2 update_fail, 1
	// download_fail), 3 gets, and device 9 resets to the store build.
	var evs []events.Event
	at := m1
	add := func(dev int, action, version string) {
		evs = append(evs, statsEvent(at, dev, action, version, "production"))
		at++
	}
	for d := range 4 {
		add(d, "download_complete", "1.0.1")
	}
	for d := range 6 {
		add(d, "set", "1.0.1")
	}
	add(9, "set", "1.0.1")
	add(6, "update_fail", "1.0.1")
	add(7, "update_fail", "1.0.1")
	add(8, "download_fail", "1.0.1")
	for d := range 3 {
		add(d, "get", "1.0.1")
	}
	add(9, "reset", "1.0.1")
	ingestAs(2, evs)
	// Minute 1, beta: device 10 installs 1.0.1.
	ingestAs(3, []events.Event{statsEvent(m1+500, 10, "set", "1.0.1", "beta")})
	// The same segment re-sent changes nothing.
	ingestAs(2, evs)

	// All channels, default range (the last 24 hours).
	rep, err := getStats(t, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.AppID != guardApp || rep.Events != 21 {
		t.Fatalf("report app %q events %d, want %s and 21", rep.AppID, rep.Events, guardApp)
	}
	if d := rep.To.Sub(rep.From); d != 24*time.Hour {
		t.Fatalf("default range %v → %v (%v), want 24h", rep.From, rep.To, d)
	}
	if len(rep.Bundles) != 3 || rep.Bundles[0].Version != "1.0.0" || rep.Bundles[1].Version != "1.0.1" || rep.Bundles[2].Version != "builtin" {
		t.Fatalf("bundles %+v, want 1.0.0, 1.0.1, builtin in order", rep.Bundles)
	}
	want := map[string]VersionStats{
		"1.0.0": {Version: "1.0.0", Devices: 0, Installs: 2, Events: 2},
		"1.0.1": {Version: "1.0.1", Devices: 7, Downloads: 4, Installs: 8, Failures: 3, FailureRate: 3.0 / 11,
			FailureRateLower: WilsonLower(3, 11, 0.95), FailuresByAction: map[string]int64{"update_fail": 2, "download_fail": 1}, Events: 19},
		"builtin": {Version: "builtin", Devices: 1},
	}
	for v, w := range want {
		if got := bundleStats(t, rep, v); !reflect.DeepEqual(got, w) {
			t.Errorf("all channels, bundle %s:\n got  %+v\n want %+v", v, got, w)
		}
	}

	// Production only, minute buckets over five minutes from b.
	q := url.Values{"channel": {"production"}, "from": {strconv.FormatInt(b/1000, 10)}, "to": {strconv.FormatInt(b/1000+300, 10)}, "step": {"1m"}}
	rep, err = getStats(t, o, q)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Channel != "production" || rep.Events != 20 || rep.StepSeconds != 60 || !rep.From.Equal(time.UnixMilli(b)) || !rep.To.Equal(time.UnixMilli(b+300000)) {
		t.Fatalf("production report: channel %q events %d step %d range %v → %v, want production, 20, 60, %v → %v",
			rep.Channel, rep.Events, rep.StepSeconds, rep.From, rep.To, time.UnixMilli(b).UTC(), time.UnixMilli(b+300000).UTC())
	}
	want = map[string]VersionStats{
		"1.0.0": {Version: "1.0.0", Devices: 0, Installs: 2, Events: 2},
		"1.0.1": {Version: "1.0.1", Devices: 6, Downloads: 4, Installs: 7, Failures: 3, FailureRate: 0.3,
			FailureRateLower: WilsonLower(3, 10, 0.95), FailuresByAction: map[string]int64{"update_fail": 2, "download_fail": 1}, Events: 18},
		"builtin": {Version: "builtin", Devices: 1},
	}
	for v, w := range want {
		if got := bundleStats(t, rep, v); !reflect.DeepEqual(got, w) {
			t.Errorf("production, bundle %s:\n got  %+v\n want %+v", v, got, w)
		}
	}
	// Every event is in segment "default": per segment, the same figures.
	if len(rep.Segments) != len(rep.Bundles) {
		t.Fatalf("segments %+v, want one per bundle", rep.Segments)
	}
	for i, s := range rep.Segments {
		w := rep.Bundles[i]
		w.Segment = "default"
		if !reflect.DeepEqual(s, w) {
			t.Errorf("segment row %d: %+v, want %+v", i, s, w)
		}
	}
	wantAdoption := []Series{
		{Version: "1.0.0", Points: []float64{2, 0, 0, 0, 0}},
		{Version: "1.0.1", Points: []float64{0, 6, 6, 6, 6}},
		{Version: "builtin", Points: []float64{0, 1, 1, 1, 1}},
	}
	if !reflect.DeepEqual(rep.Adoption, wantAdoption) {
		t.Errorf("adoption series %+v, want %+v", rep.Adoption, wantAdoption)
	}
	wantRate := []Series{
		{Version: "1.0.0", Points: []float64{0, -1, -1, -1, -1}},
		{Version: "1.0.1", Points: []float64{-1, 0.3, -1, -1, -1}},
	}
	if !reflect.DeepEqual(rep.FailureRate, wantRate) {
		t.Errorf("failure rate series %+v, want %+v", rep.FailureRate, wantRate)
	}
	// RFC 3339 times mean the same.
	q.Set("from", time.UnixMilli(b).UTC().Format(time.RFC3339))
	q.Set("to", time.UnixMilli(b+300000).UTC().Format(time.RFC3339))
	rep2, err := getStats(t, o, q)
	if err != nil || !reflect.DeepEqual(rep2, rep) {
		t.Fatalf("RFC 3339 range gave another report (%v):\n%+v\n%+v", err, rep2, rep)
	}
	// A range after the events: no counts, adoption still known.
	rep, err = getStats(t, o, url.Values{"from": {strconv.FormatInt(b/1000+180, 10)}, "to": {strconv.FormatInt(b/1000+240, 10)}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != 0 || bundleStats(t, rep, "1.0.1").Devices != 7 || bundleStats(t, rep, "1.0.1").Installs != 0 {
		t.Fatalf("later range: events %d, bundles %+v, want 0 events and 7 devices on 1.0.1", rep.Events, rep.Bundles)
	}
	if total, err := o.srv.Events().TotalEvents(ctx, guardApp); err != nil || total != 21 {
		t.Fatalf("TotalEvents = %d (%v), want 21", total, err)
	}

	// Refused queries.
	day := time.Now().Add(-24 * time.Hour).Unix()
	for _, tc := range []struct {
		query url.Values
		want  string
	}{
		{url.Values{"from": {"yesterday"}}, "400 invalid_time"},
		{url.Values{"to": {"2026-13-40T00:00:00Z"}}, "400 invalid_time"},
		{url.Values{"from": {"2026-11-28"}}, "400 invalid_time"},
		{url.Values{"from": {"1700000000"}, "to": {"1700000000"}}, "400 invalid_time"},
		{url.Values{"from": {"1700000060"}, "to": {"1700000000"}}, "400 invalid_time"},
		{url.Values{"step": {"30s"}}, "400 invalid_step"},
		{url.Values{"step": {"fortnightly"}}, "400 invalid_step"},
		{url.Values{"step": {"-5m"}}, "400 invalid_step"},
		{url.Values{"step": {"1m"}, "from": {strconv.FormatInt(day-30*86400, 10)}}, "400 invalid_step"}, // 44640 points
	} {
		_, err := getStats(t, o, tc.query)
		if got := apiCode(err); got != tc.want {
			t.Errorf("stats?%s: %q, want %q", tc.query.Encode(), got, tc.want)
		}
	}
	if got := apiCode(o.client.DoJSON(ctx, http.MethodGet, "/api/v1/apps/nodots/stats", nil, nil)); got != "400 invalid_app_id" {
		t.Errorf("stats of a bad app id: %q, want 400 invalid_app_id", got)
	}
	// A 1h step over a week is fine.
	if _, err := getStats(t, o, url.Values{"step": {"1h"}, "from": {strconv.FormatInt(day-6*86400, 10)}}); err != nil {
		t.Errorf("1h step over a week: %v", err)
	}
}

// TestStatsQueryRange_BUG documents two gaps in statsQuery's validation
// (origin/stats_api.go): "from must be before to" is only checked when to
// is given, so a from in the future without to yields a 200 report whose
// from is after its to; and Unix seconds are multiplied by 1000 without an
// overflow check, so from=9223372036854775807 wraps to -1000 ms and
// silently becomes a report starting in 1969.
func TestStatsQueryRange_BUG(t *testing.T) {
	o := startOrigin(t)
	for name, q := range map[string]url.Values{
		"from in the future, no to": {"from": {strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)}},
		"from overflows int64 ms":   {"from": {"9223372036854775807"}},
	} {
		rep, err := getStats(t, o, q)
		if got := apiCode(err); got != "400 invalid_time" {
			from, to := "", ""
			if rep != nil {
				from, to = rep.From.String(), rep.To.String()
			}
			t.Errorf("BUG: %s: got %q (report from %s to %s), want 400 invalid_time", name, got, from, to)
		}
	}
}

// BenchmarkIngestSegment ingests edge segments of 1000 events of one app
// (5 versions, ~10% installs, some failures, the rest downloads, checks
// and lifecycle events over 20000 devices), one new segment per iteration.
// Each segment's 1000 events come from about 950 distinct devices: the
// device inventory's log writes one ring page per device.
func BenchmarkIngestSegment(b *testing.B) { benchIngestSegment(b, false) }

// BenchmarkIngestSegmentNoDeviceLog is BenchmarkIngestSegment with
// --device-log=false (the inventory keeps the last check-in only).
func BenchmarkIngestSegmentNoDeviceLog(b *testing.B) { benchIngestSegment(b, true) }

func benchIngestSegment(b *testing.B, noDeviceLog bool) {
	dir := b.TempDir()
	cfg := testConfig(b, dir)
	cfg.NoDeviceLog = noDeviceLog
	srv, err := Open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	const perSegment = 1000
	versions := []string{"1.4.0", "1.4.1", "1.5.0", "1.5.1", "1.6.0"}
	type weighted struct {
		action string
		weight int
	}
	mix := []weighted{
		{"set", 10}, {"get", 25}, {"download_complete", 10}, {"download_10", 4}, {"download_50", 4}, {"download_90", 4},
		{"app_moved_to_foreground", 14}, {"app_moved_to_background", 12}, {"ping", 5}, {"noNew", 7},
		{"update_fail", 2}, {"download_fail", 2}, {"app_launch_ready", 1},
	}
	var pick []string
	for _, w := range mix {
		for range w.weight {
			pick = append(pick, w.action)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	segs := make([][]byte, 16)
	now := time.Now().UnixMilli()
	for i := range segs {
		evs := make([]events.Event, perSegment)
		for j := range evs {
			dev := rng.IntN(20000)
			v := versions[rng.IntN(len(versions))]
			meta := ""
			if rng.IntN(10) == 0 {
				meta = `{"locale":"en-US","session":"` + strconv.Itoa(rng.IntN(1e6)) + `"}`
			}
			platform := "android"
			if dev%3 == 0 {
				platform = "ios"
			}
			evs[j] = events.Event{
				Timestamp: now - int64(rng.IntN(5000)), Received: now + int64(j), AppID: "com.example.benchapp",
				DeviceID: devUUID(dev), Action: pick[rng.IntN(len(pick))], VersionName: v, OldVersionName: versions[0],
				Platform: platform, VersionBuild: "5.2.1", PluginVersion: "7.3.2", CustomID: "user-" + strconv.Itoa(dev),
				IsProd: true, Channel: "production", Segment: "default", Arm: []string{"rollout", "base"}[dev%2], Metadata: meta,
			}
		}
		segs[i] = segmentOf(evs)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(segs[0])))
	n := 0
	for b.Loop() {
		if err := srv.IngestSegment(ctx, guardEdge, uint64(n+1), segs[n%len(segs)]); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n*perSegment)/b.Elapsed().Seconds(), "events/s")
	if total, err := srv.Events().TotalEvents(ctx, "com.example.benchapp"); err != nil || total != int64(n*perSegment) {
		b.Fatalf("TotalEvents = %d (%v), want %d", total, err, n*perSegment)
	}
}
