package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// statsBody is one event as @capgo/capacitor-updater sends it to /stats.
const statsBody = `{"app_id":"com.example.app","device_id":"00009a6b-eefe-490a-9c60-8e965132ae51",` +
	`"platform":"android","version_name":"1.0.0","version_build":"1.0.0","version_code":"1","version_os":"13",` +
	`"plugin_version":"8.51.14","is_emulator":false,"is_prod":true,"action":"set","old_version_name":"0.9.0",` +
	`"custom_id":"user-42","install_source":"google_play"}`

// statsEv returns statsBody with keys set (nil value: deleted).
func statsEv(t testing.TB, set map[string]any) string { return string(withKeys(t, statsBody, set)) }

func batch(evs ...string) string { return "[" + strings.Join(evs, ",") + "]" }

// statsSnapshot is testSnapshot with placements to annotate: production
// has a rollout covering every device, and the rule "beta" sends custom id
// beta-42 to the channel "native".
func statsSnapshot(t testing.TB) *snapshot.Snapshot {
	t.Helper()
	s := testSnapshot(t, 1, fakeSHA("bundle"))
	app := s.Apps[0]
	app.Channels[0].Rollout = &snapshot.Rollout{ID: "rollout-1", Bundle: "2.0.0", BPS: snapshot.BucketCount}
	app.Rules = []*snapshot.Rule{{Name: "beta", Channel: "native", CustomIDs: []string{"beta-42"}}}
	if err := s.Index(nil); err != nil {
		t.Fatal(err)
	}
	return s
}

// statsEdge returns an edge with statsSnapshot and, when sink is not nil,
// stats collection into a spool in its data folder.
func statsEdge(t testing.TB, sink EventSink, mod func(*config.Edge)) *Edge {
	t.Helper()
	cfg := config.NewEdge(t.TempDir())
	if mod != nil {
		mod(&cfg)
	}
	e := New(cfg, nil, quiet)
	e.SetSnapshot(statsSnapshot(t))
	if sink != nil {
		if err := e.StartStats(sink); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(e.Close)
	return e
}

// routeReq calls the router as a transport does.
func routeReq(e *Edge, method, path string, body []byte, header http.Header) *reply {
	if header == nil {
		header = http.Header{}
	}
	out := &reply{}
	r := request{ctx: context.Background(), method: method, path: path, host: "edge.test", proto: "h1", body: body,
		header: httpHeaders{header}, query: urlQuery{}}
	e.route(&r, out)
	if path == "/updates" {
		out.body = answerBody(out)
	}
	return out
}

// serveEdge serves e over HTTP/1.1 on a loopback port.
func serveEdge(t *testing.T, e *Edge) *testEdge {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := NewHTTP1(e)
	h.srv.Logger = discardLogger{}
	served := make(chan error, 1)
	go func() { served <- h.Serve(ln) }()
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		select {
		case <-served:
		case <-ctx.Done():
			t.Errorf("Serve still running after Shutdown")
		}
	})
	te := &testEdge{edge: e, base: "http://" + ln.Addr().String(), client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
	if a := te.do(t, http.MethodGet, "/healthz", nil); a.status != 200 {
		t.Fatalf("healthz: HTTP %d %s", a.status, a.body)
	}
	return te
}

func flushStats(t testing.TB, e *Edge) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.FlushStats(ctx); err != nil {
		n, b := e.StatsBacklog()
		t.Fatalf("FlushStats: %v (backlog %d segments, %d bytes)", err, n, b)
	}
}

// sunkEvents decodes every segment the sink acknowledged.
func sunkEvents(t testing.TB, s *memSink) []events.Event {
	t.Helper()
	var out []events.Event
	for _, d := range s.acked() {
		out = append(out, segmentEvents(t, d.segment)...)
	}
	return out
}

func metadataOf(n, keyLen, valLen int) map[string]any {
	m := map[string]any{}
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("k%03d", i)
		k += strings.Repeat("k", max(0, keyLen-len(k)))
		m[k] = strings.Repeat("v", valLen)
	}
	return m
}

func issueBody(path, msg string) string {
	b, _ := json.Marshal(msg)
	return `{"error":"invalid_json_body","message":"Cannot parse body","moreInfo":{"issues":[{"path":["` + path + `"],"message":` + string(b) + `}]}}`
}

const semverMsg = "Native version: 1.0.0.0 doesn't follow semver convention, please check https://capgo.app/semver_tester/ to learn more about semver usage in Capgo"

func TestStatsAnswers(t *testing.T) {
	e := statsEdge(t, &memSink{}, nil)
	ok := statsEv(t, nil)
	many := func(n int) string {
		evs := make([]string, n)
		for i := range evs {
			evs[i] = ok
		}
		return batch(evs...)
	}
	manyOK := func(n int) string {
		var b strings.Builder
		b.WriteString(`{"status":"ok","results":[`)
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"status":"ok","index":%d}`, i)
		}
		b.WriteString("]}")
		return b.String()
	}
	other := statsEv(t, map[string]any{"app_id": "com.example.other"})
	tests := []struct {
		name   string
		body   string
		status int
		want   string
	}{
		{"invalid JSON", `{"app_id":`, 400, `{"error":"invalid_json_parse_body","message":"Invalid JSON body","moreInfo":{}}`},
		{"empty body", ``, 400, `{"error":"invalid_json_parse_body","message":"Invalid JSON body","moreInfo":{}}`},
		{"trailing garbage", ok + `x`, 400, `{"error":"invalid_json_parse_body","message":"Invalid JSON body","moreInfo":{}}`},
		{"empty array", `[]`, 200, `{"status":"ok","results":[]}`},
		{"empty object", `{}`, 400, `{"error":"invalid_app_id","message":"App ID is required","moreInfo":{}}`},
		{"first event missing app_id", statsEv(t, map[string]any{"app_id": nil}), 400, `{"error":"invalid_app_id","message":"App ID is required","moreInfo":{}}`},
		{"first event app_id not a string", statsEv(t, map[string]any{"app_id": 7}), 400, `{"error":"invalid_app_id","message":"App ID is required","moreInfo":{}}`},
		{"null", `null`, 400, `{"error":"invalid_app_id","message":"App ID is required","moreInfo":{}}`},
		{"number", `12`, 400, `{"error":"invalid_app_id","message":"App ID is required","moreInfo":{}}`},
		{"batch of a non-object", `[1]`, 400, `{"error":"invalid_app_id","message":"App ID is required","moreInfo":{}}`},
		{"bad app_id", statsEv(t, map[string]any{"app_id": "no-dots"}), 400, `{"error":"invalid_app_id","message":"App ID must be a reverse domain string","moreInfo":{}}`},
		{"bad app_id in first of a batch", batch(statsEv(t, map[string]any{"app_id": "no-dots"}), ok), 400, `{"error":"invalid_app_id","message":"App ID must be a reverse domain string","moreInfo":{}}`},
		{"later event bad app_id", batch(ok, statsEv(t, map[string]any{"app_id": "no-dots"})), 200, `{"error":"invalid_app_id","message":"App ID must be a reverse domain string"}`},
		{"later event missing app_id", batch(ok, ok, statsEv(t, map[string]any{"app_id": nil})), 200, `{"error":"invalid_app_id","message":"App ID is required"}`},
		{"later event not an object", batch(ok, `"x"`), 200, `{"error":"invalid_app_id","message":"App ID is required"}`},
		{"mixed app ids", batch(ok, other), 200, `{"error":"mixed_app_ids","message":"All events in a batch must have the same app_id"}`},
		{"bad app_id after mixed ones", batch(ok, other, statsEv(t, map[string]any{"app_id": "x"})), 200, `{"error":"mixed_app_ids","message":"All events in a batch must have the same app_id"}`},
		{"201 events", many(201), 400, `{"error":"batch_too_large","message":"A batch carries at most 200 events","moreInfo":{}}`},
		{"200 events", many(200), 200, manyOK(200)},
		{"unknown app", other, 200, `{"error":"app_not_found","message":"App not found"}`},
		{"unknown app, batch", batch(other, statsEv(t, map[string]any{"app_id": "com.example.other", "device_id": nil})), 200,
			`{"status":"ok","results":[{"status":"error","error":"app_not_found","message":"App not found","index":0},{"status":"error","error":"app_not_found","message":"App not found","index":1}]}`},
		{"single valid event", ok, 200, `{"status":"ok"}`},
		{"batch of one", batch(ok), 200, manyOK(1)},
		{"batch mix", batch(
			ok,
			statsEv(t, map[string]any{"action": "not_an_action"}),
			statsEv(t, map[string]any{"device_id": nil}),
			statsEv(t, map[string]any{"version_name": "9.9.9"}),
			statsEv(t, map[string]any{"version_build": "1.0.0.0"}),
			statsEv(t, map[string]any{"device_id": ""}),
			statsEv(t, map[string]any{"action": "download_fail"}),
		), 200, `{"status":"ok","results":[` +
			`{"status":"ok","index":0},` +
			`{"status":"error","error":"invalid_json_body","message":"Cannot parse body","index":1},` +
			`{"status":"error","error":"missing_device_id","message":"Cannot find device_id","index":2},` +
			`{"status":"error","error":"version_not_found","message":"Version not found","moreInfo":{"app_id":"com.example.app","version_name":"9.9.9"},"index":3},` +
			`{"status":"error","error":"semver_error","message":"` + semverMsg + `","index":4},` +
			`{"status":"error","error":"missing_device_id","message":"Cannot find device_id","index":5},` +
			`{"status":"ok","index":6}]}`},
		{"missing device_id", statsEv(t, map[string]any{"device_id": nil}), 400, `{"error":"missing_device_id","message":"Cannot find device_id","moreInfo":{}}`},
		{"bad device_id", statsEv(t, map[string]any{"device_id": "not-a-uuid"}), 400, issueBody("device_id", "Device ID must be a valid UUID string")},
		{"device_id too long", statsEv(t, map[string]any{"device_id": testDeviceID + "0"}), 400, issueBody("device_id", "String must contain at most 36 character(s)")},
		{"missing action", statsEv(t, map[string]any{"action": nil}), 400, issueBody("action", "action is required")},
		{"unknown action", statsEv(t, map[string]any{"action": "dance"}), 400, issueBody("action", "action must be one of: "+events.ActionList)},
		{"missing platform", statsEv(t, map[string]any{"platform": nil}), 400, issueBody("platform", "Platform is required")},
		{"missing version_name", statsEv(t, map[string]any{"version_name": nil}), 400, issueBody("version_name", "Version name is required")},
		{"missing version_os", statsEv(t, map[string]any{"version_os": nil}), 400, issueBody("version_os", "Version OS is required")},
		{"is_prod not a boolean", statsEv(t, map[string]any{"is_prod": "yes"}), 400, issueBody("is_prod", "is_prod must be a boolean")},
		{"key_id too long", statsEv(t, map[string]any{"key_id": strings.Repeat("k", 21)}), 400, issueBody("key_id", "String must contain at most 20 character(s)")},
		{"version_not_found", statsEv(t, map[string]any{"version_name": "9.9.9"}), 200,
			`{"error":"version_not_found","message":"Version not found","app_id":"com.example.app","version_name":"9.9.9"}`},
		{"semver_error", statsEv(t, map[string]any{"version_build": "1.0.0.0"}), 400,
			`{"error":"semver_error","message":"` + semverMsg + `","moreInfo":{"version_build":"1.0.0.0"}}`},
		{"31 metadata fields", statsEv(t, map[string]any{"metadata": metadataOf(31, 4, 1)}), 400, issueBody("metadata", "metadata must contain at most 30 fields")},
		{"30 metadata fields", statsEv(t, map[string]any{"metadata": metadataOf(30, 4, 1)}), 200, `{"status":"ok"}`},
		{"65-char metadata key", statsEv(t, map[string]any{"metadata": metadataOf(1, 65, 1)}), 400, issueBody("metadata", "metadata keys must contain at most 64 characters")},
		{"64-char metadata key", statsEv(t, map[string]any{"metadata": metadataOf(1, 64, 1)}), 200, `{"status":"ok"}`},
		{"non-string metadata value", statsEv(t, map[string]any{"metadata": map[string]any{"n": 1}}), 400, issueBody("metadata", "metadata values must be strings")},
		{"2049-char metadata value", statsEv(t, map[string]any{"metadata": metadataOf(1, 4, 2049)}), 400, issueBody("metadata", "metadata values must contain at most 2048 characters")},
		{"2048-char metadata value", statsEv(t, map[string]any{"metadata": metadataOf(30, 64, 2048)}), 200, `{"status":"ok"}`},
		{"metadata not an object", statsEv(t, map[string]any{"metadata": []string{"a"}}), 400, issueBody("metadata", "metadata must be an object")},
		{"composite version name", statsEv(t, map[string]any{"version_name": "1.0.0:main.js"}), 200, `{"status":"ok"}`},
		{"composite version of an unknown bundle", statsEv(t, map[string]any{"version_name": "9.9.9:main.js"}), 200,
			`{"error":"version_not_found","message":"Version not found","app_id":"com.example.app","version_name":"9.9.9:main.js"}`},
		{"builtin", statsEv(t, map[string]any{"version_name": "builtin"}), 200, `{"status":"ok"}`},
		{"unknown", statsEv(t, map[string]any{"version_name": "unknown"}), 200, `{"status":"ok"}`},
		{"upper-case device_id", statsEv(t, map[string]any{"device_id": strings.ToUpper(testDeviceID)}), 200, `{"status":"ok"}`},
		{"pre-5.0 plugin without flags", statsEv(t, map[string]any{"is_emulator": nil, "is_prod": nil}), 200, `{"status":"ok"}`},
		{"unknown keys ignored", statsEv(t, map[string]any{"extra": []int{1}}), 200, `{"status":"ok"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := routeReq(e, "POST", "/stats", []byte(tc.body), nil)
			if out.status != tc.status || string(out.body) != tc.want {
				t.Fatalf("HTTP %d %s\nwant HTTP %d %s", out.status, out.body, tc.status, tc.want)
			}
			if out.contentType != contentTypeJSON || !json.Valid(out.body) {
				t.Fatalf("answer is not JSON (%q): %s", out.contentType, out.body)
			}
		})
	}

	for _, c := range []struct {
		method string
		status int
		want   string
	}{
		{"GET", 200, `{"status":"ok"}`},
		{"PUT", 405, `{"error":"method_not_allowed","message":"Use POST to send stats","moreInfo":{}}`},
		{"DELETE", 405, `{"error":"method_not_allowed","message":"Use POST to send stats","moreInfo":{}}`},
	} {
		if out := routeReq(e, c.method, "/stats", nil, nil); out.status != c.status || string(out.body) != c.want {
			t.Errorf("%s /stats: HTTP %d %s, want %d %s", c.method, out.status, out.body, c.status, c.want)
		}
	}
}

// A device_id that is not a string is one issue ("device_id must be a
// string"), as in Capgo's validator; the edge must not add a second one
// about the UUID format of a value the device never sent as a string.
func TestStatsDeviceIDNotAString(t *testing.T) {
	e := statsEdge(t, &memSink{}, nil)
	out := routeReq(e, "POST", "/stats", []byte(statsEv(t, map[string]any{"device_id": 5})), nil)
	if want := issueBody("device_id", "device_id must be a string"); out.status != 400 || string(out.body) != want {
		t.Fatalf("HTTP %d %s\nwant HTTP 400 %s", out.status, out.body, want)
	}
}

func TestStatsUnavailable(t *testing.T) {
	e := statsEdge(t, nil, nil) // no StartStats
	out := routeReq(e, "POST", "/stats", []byte(statsEv(t, nil)), nil)
	if want := `{"error":"stats_unavailable","message":"This edge does not collect stats (no stats sink configured)","moreInfo":{}}`; out.status != 503 || string(out.body) != want {
		t.Fatalf("HTTP %d %s, want 503 %s", out.status, out.body, want)
	}
	if out := routeReq(e, "GET", "/stats", nil, nil); out.status != 200 {
		t.Fatalf("GET /stats without stats: HTTP %d", out.status)
	}
	if err := e.FlushStats(context.Background()); err != nil {
		t.Fatalf("FlushStats without stats: %v", err)
	}
	if n, b := e.StatsBacklog(); n != 0 || b != 0 {
		t.Fatalf("StatsBacklog without stats: %d, %d", n, b)
	}

	// With a spool but no snapshot yet: not ready.
	cold := New(config.NewEdge(t.TempDir()), nil, quiet)
	t.Cleanup(cold.Close)
	if err := cold.StartStats(&memSink{}); err != nil {
		t.Fatal(err)
	}
	out = routeReq(cold, "POST", "/stats", []byte(statsEv(t, nil)), nil)
	if want := `{"error":"not_ready","message":"Edge has no verified snapshot yet","moreInfo":{}}`; out.status != 503 || string(out.body) != want {
		t.Fatalf("edge without a snapshot: HTTP %d %s, want 503 %s", out.status, out.body, want)
	}
}

// Accepted events reach the sink normalized and annotated with the
// device's placement; refused ones do not.
func TestStatsEventsReachSink(t *testing.T) {
	sink := &memSink{}
	e := statsEdge(t, sink, nil)
	upper := strings.ToUpper(testDeviceID)
	body := batch(
		statsEv(t, map[string]any{"device_id": upper, "timestamp": 1_700_000_000_123}),
		statsEv(t, map[string]any{"defaultChannel": "major-guard", "action": "get", "custom_id": nil, "old_version_name": nil}),
		statsEv(t, map[string]any{"custom_id": "beta-42", "platform": "ios", "is_emulator": true, "is_prod": false, "action": "app_crash"}),
		statsEv(t, map[string]any{"version_name": "1.0.0:main.js", "version_build": "1.0", "is_prod": nil, "action": "download_fail",
			"metadata": map[string]any{"file": "main.js", "reason": "checksum"}}),
		statsEv(t, map[string]any{"action": "nope"}), // refused
		statsEv(t, map[string]any{"version_name": "builtin", "plugin_version": "7.0.0", "action": "set_fail", "timestamp": -5}),
	)
	before := time.Now().UnixMilli()
	out := routeReq(e, "POST", "/stats", []byte(body), nil)
	after := time.Now().UnixMilli()
	if out.status != 200 || !bytes.Contains(out.body, []byte(`{"status":"error","error":"invalid_json_body","message":"Cannot parse body","index":4}`)) ||
		bytes.Count(out.body, []byte(`{"status":"ok","index":`)) != 5 {
		t.Fatalf("HTTP %d %s", out.status, out.body)
	}
	flushStats(t, e)
	got := sunkEvents(t, sink)
	if len(sink.acked()) != 1 {
		t.Fatalf("one request became %d segments, want 1", len(sink.acked()))
	}
	base := events.Event{AppID: testAppID, DeviceID: testDeviceID, Action: "set", VersionName: "1.0.0", OldVersionName: "0.9.0",
		Platform: "android", VersionBuild: "1.0.0", PluginVersion: "8.51.14", CustomID: "user-42", IsProd: true,
		Channel: "production", Segment: "default", Arm: "rollout"}
	want := []events.Event{base, base, base, base, base}
	want[0].Timestamp = 1_700_000_000_123
	want[1].Action, want[1].CustomID, want[1].OldVersionName = "get", "", ""
	want[1].Channel, want[1].Segment, want[1].Arm = "major-guard", "self_assigned", ""
	want[2].Action, want[2].CustomID, want[2].Platform, want[2].IsEmulator, want[2].IsProd = "app_crash", "beta-42", "ios", true, false
	want[2].Channel, want[2].Segment, want[2].Arm = "native", "segment:beta", ""
	want[3].Action, want[3].VersionBuild, want[3].Metadata = "download_fail", "1.0.0", `{"file":"main.js","reason":"checksum"}`
	want[4].Action, want[4].VersionName, want[4].PluginVersion = "set_fail", "builtin", "7.0.0"
	if len(got) != len(want) {
		t.Fatalf("%d events reached the sink, want %d: %+v", len(got), len(want), got)
	}
	for i := range got {
		if got[i].Received < before || got[i].Received > after {
			t.Errorf("event %d: Received %d outside the request [%d, %d]", i, got[i].Received, before, after)
		}
		got[i].Received = 0
		if got[i] != want[i] {
			t.Errorf("event %d\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	if n := testutil.ToFloat64(e.metrics.statsEvents.WithLabelValues("ok")); n != 3 {
		t.Errorf("stats events{ok} = %v, want 3", n)
	}
	if n := testutil.ToFloat64(e.metrics.statsEvents.WithLabelValues("failure")); n != 2 {
		t.Errorf("stats events{failure} = %v, want 2", n)
	}
	if n := testutil.ToFloat64(e.metrics.statsRequests.WithLabelValues("ok")); n != 1 {
		t.Errorf("stats requests{ok} = %v, want 1", n)
	}
}

// Event.Metadata is "JSON object as sent": it must stay valid JSON whatever
// escapes the device used.
func TestStatsMetadataStaysJSON(t *testing.T) {
	sink := &memSink{}
	e := statsEdge(t, sink, nil)
	meta := map[string]any{"bell": "a\u0007b", "quote": `say "hi"`, "nl": "x\ny", "tab": "\t", "uni": "é🚀\u2028",
		"back\\slash": `\`, "html": "<a&b>"}
	out := routeReq(e, "POST", "/stats", []byte(statsEv(t, map[string]any{"metadata": meta})), nil)
	if out.status != 200 {
		t.Fatalf("HTTP %d %s", out.status, out.body)
	}
	flushStats(t, e)
	got := sunkEvents(t, sink)
	if len(got) != 1 {
		t.Fatalf("%d events", len(got))
	}
	var back map[string]any
	if err := json.Unmarshal([]byte(got[0].Metadata), &back); err != nil {
		t.Fatalf("stored metadata is not JSON: %v: %s", err, got[0].Metadata)
	}
	for k, v := range meta {
		if back[k] != v {
			t.Errorf("metadata[%q] = %q, sent %q", k, back[k], v)
		}
	}
}

// A request the edge answers 200 is one the origin can take: its record
// must not exceed what the segment format accepts (events.MaxRecord),
// even when max_updates_body allows bodies that large.
func TestStatsLargeBatchDeliverable(t *testing.T) {
	var refused atomic.Int64
	sink := &memSink{}
	validating := sinkFunc(func(ctx context.Context, edgeID string, seq uint64, segment []byte) error {
		if err := events.DecodeSegment(segment, func(*events.Event) error { return nil }); err != nil {
			refused.Add(1)
		}
		return sink.DeliverEvents(ctx, edgeID, seq, segment)
	})
	e := statsEdge(t, validating, func(c *config.Edge) { c.MaxUpdatesBody = 16 * config.MiB })
	ev := statsEv(t, map[string]any{"metadata": metadataOf(30, 64, 2048)})
	evs := make([]string, events.MaxBatch)
	for i := range evs {
		evs[i] = ev
	}
	body := batch(evs...)
	if len(body) > int(16*config.MiB) {
		t.Fatalf("test body is %d bytes", len(body))
	}
	out := routeReq(e, "POST", "/stats", []byte(body), nil)
	if out.status != 200 {
		return // refused: fine
	}
	flushStats(t, e)
	if n := refused.Load(); n != 0 {
		var size int
		for _, d := range sink.acked() {
			size = max(size, len(d.segment))
		}
		t.Fatalf("the edge answered 200 to a %d-byte batch of %d events, but its segment (%d bytes, MaxRecord %d) does not decode: "+
			"the origin refuses it as corrupt and every event in it is lost", len(body), events.MaxBatch, size, events.MaxRecord)
	}
}

// Over HTTP: a valid event is accepted; when the spool's disk budget is
// exhausted the edge answers 429 stats_unavailable with Retry-After and
// counts the drop; once the origin takes the backlog, events are accepted
// again.
func TestStatsOverHTTPAndSpoolFull(t *testing.T) {
	var up atomic.Bool
	sink := &memSink{fail: func(int, uint64) (error, bool) {
		if up.Load() {
			return nil, true
		}
		return errOriginDown, false
	}}
	e := statsEdge(t, sink, func(c *config.Edge) { c.StatsSpool = 4 * config.MiB })
	te := serveEdge(t, e)
	a := te.do(t, "POST", "/stats", []byte(statsEv(t, nil)))
	if a.status != 200 || string(a.body) != `{"status":"ok"}` || a.header.Get("Content-Type") != contentTypeJSON {
		t.Fatalf("HTTP %d %s (%s)", a.status, a.body, a.header.Get("Content-Type"))
	}
	// ~0.9 MB requests until the 4 MiB budget is exhausted.
	ev := statsEv(t, map[string]any{"metadata": metadataOf(4, 8, 1200)})
	const perRequest = 180
	evs := make([]string, perRequest)
	for i := range evs {
		evs[i] = ev
	}
	big := []byte(batch(evs...))
	if len(big) > int(config.NewEdge("").MaxUpdatesBody) {
		t.Fatalf("test batch is %d bytes, over the body limit", len(big))
	}
	accepted := 0
	for i := 0; ; i++ {
		if i == 20 {
			t.Fatalf("20 requests of %d bytes accepted into a 4 MiB spool", len(big))
		}
		a = te.do(t, "POST", "/stats", big)
		if a.status != 200 {
			break
		}
		accepted++
	}
	if accepted == 0 {
		t.Fatal("no large request accepted before the spool was full")
	}
	if want := `{"error":"stats_unavailable","message":"Stats cannot be stored right now; retry later","moreInfo":{}}`; a.status != 429 || string(a.body) != want {
		t.Fatalf("full spool: HTTP %d %s, want 429 %s", a.status, a.body, want)
	}
	if ra := a.header.Get("Retry-After"); ra != "5" {
		t.Fatalf("Retry-After %q, want 5", ra)
	}
	if n := testutil.ToFloat64(e.metrics.statsDropped.WithLabelValues("spool_full")); n != perRequest {
		t.Fatalf("dropped{spool_full} = %v, want %d", n, perRequest)
	}
	if n := testutil.ToFloat64(e.metrics.statsRequests.WithLabelValues(codeStatsUnavailable)); n != 1 {
		t.Fatalf("requests{stats_unavailable} = %v, want 1", n)
	}
	up.Store(true)
	flushStats(t, e)
	if a = te.do(t, "POST", "/stats", big); a.status != 200 {
		t.Fatalf("after the backlog drained: HTTP %d %s", a.status, a.body)
	}
	flushStats(t, e)
	if got, want := len(sunkEvents(t, sink)), 1+(accepted+1)*perRequest; got != want {
		t.Fatalf("%d events delivered, want %d", got, want)
	}
	a = te.do(t, "GET", "/metrics", nil)
	if !bytes.Contains(a.body, []byte("updraft_edge_stats_spool_segments 0")) || !bytes.Contains(a.body, []byte("updraft_edge_stats_spool_bytes 0")) {
		t.Errorf("metrics lack an empty spool backlog:\n%s", grepLines(a.body, "updraft_edge_stats_spool"))
	}
}

func grepLines(b []byte, s string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A parent edge relays a child's segments to its own sink and answers with
// the sink's verdict; a child spool delivering through it loses nothing.
func TestRelayEvents(t *testing.T) {
	var mode atomic.Int32 // 0 accept, 1 transient, 2 permanent
	sink := &memSink{fail: func(int, uint64) (error, bool) {
		switch mode.Load() {
		case 1:
			return errOriginDown, false
		case 2:
			return &PermanentError{errors.New("damaged")}, false
		}
		return nil, true
	}}
	parent := statsEdge(t, sink, func(c *config.Edge) { c.EdgeKey = "edge-secret" })
	seg := append([]byte(events.Magic), testRecord(1, 2)...)
	hdr := func(auth, edge, seq string) http.Header {
		h := http.Header{}
		h.Set("Authorization", auth)
		h.Set("X-Updraft-Edge-Id", edge)
		h.Set("X-Updraft-Segment", seq)
		return h
	}
	const child = "0123456789abcdef0123456789abcdef"
	good := hdr("Bearer edge-secret", child, "12")
	for _, c := range []struct {
		name   string
		method string
		header http.Header
		mode   int32
		status int
		want   string
	}{
		{"accepted", "POST", good, 0, 200, `{"status":"ok"}`},
		{"no key", "POST", hdr("", child, "12"), 0, 401, `{"error":"unauthorized","message":"child edges must send Authorization: Bearer EDGE_KEY","moreInfo":{}}`},
		{"wrong key", "POST", hdr("Bearer nope", child, "12"), 0, 401, ""},
		{"GET", "GET", good, 0, 405, `{"error":"method_not_allowed","message":"Use POST","moreInfo":{}}`},
		{"bad seq", "POST", hdr("Bearer edge-secret", child, "x"), 0, 400, `{"error":"corrupt_segment","message":"X-Updraft-Segment: want the segment's sequence number","moreInfo":{}}`},
		{"origin down", "POST", good, 1, 502, ""},
		{"origin refuses", "POST", good, 2, 400, `{"error":"corrupt_segment","message":"damaged","moreInfo":{}}`},
	} {
		mode.Store(c.mode)
		before := len(sink.snapshot())
		out := routeReq(parent, c.method, "/v1/events", seg, c.header)
		if out.status != c.status || c.want != "" && string(out.body) != c.want {
			t.Errorf("%s: HTTP %d %s, want %d %s", c.name, out.status, out.body, c.status, c.want)
		}
		calls := sink.snapshot()[before:]
		if reached := c.status == 200 || c.mode != 0; reached != (len(calls) == 1) {
			t.Errorf("%s: %d calls reached the sink", c.name, len(calls))
		}
		for _, d := range calls {
			if d.edgeID != child || d.seq != 12 || !bytes.Equal(d.segment, seg) {
				t.Errorf("%s: sink got (%s, %d, %d bytes), want the child's (%s, 12, %d bytes)", c.name, d.edgeID, d.seq, len(d.segment), child, len(seg))
			}
		}
	}
	mode.Store(0)
	noStats := statsEdge(t, nil, func(c *config.Edge) { c.EdgeKey = "edge-secret" })
	if out := routeReq(noStats, "POST", "/v1/events", seg, good); out.status != 503 || !bytes.Contains(out.body, []byte(`"stats_unavailable"`)) {
		t.Errorf("parent without stats: HTTP %d %s, want 503 stats_unavailable", out.status, out.body)
	}

	// End to end: a child edge's spool delivering through the parent.
	te := serveEdge(t, parent)
	before := len(sink.acked())
	sp := openTestSpool(t, t.TempDir(), NewHTTPEventSink(te.base, "edge-secret"), func(o *spoolOptions) { o.MaxSegment = 700 })
	const n = 20
	for i := int64(1); i <= n; i++ {
		appendOK(t, sp, testRecord(i, 1))
	}
	flushSpool(t, sp)
	relayed := sink.acked()[before:]
	var segs [][]byte
	for i, d := range relayed {
		if d.edgeID != sp.edgeID || d.seq != uint64(i) {
			t.Fatalf("relayed delivery %d is (%s, %d), want (%s, %d)", i, d.edgeID, d.seq, sp.edgeID, i)
		}
		segs = append(segs, d.segment)
	}
	if ids := idsOf(t, segs...); len(ids) != n || ids[0] != 1 || ids[n-1] != n {
		t.Fatalf("relayed requests %v, want 1..%d", ids, n)
	}
}

// FuzzStatsBody feeds arbitrary bodies to POST /stats: no panic, only 200,
// 400, 429 or 503, always a JSON object, and the body is not modified.
func FuzzStatsBody(f *testing.F) {
	ok := statsEv(f, nil)
	for _, s := range []string{
		ok, batch(ok, ok), `[]`, `{}`, `null`, `[1]`, ``, `{"app_id":`, `"x"`, `1e999`,
		batch(ok, statsEv(f, map[string]any{"app_id": "com.example.other"})),
		statsEv(f, map[string]any{"app_id": "com.example.other"}),
		statsEv(f, map[string]any{"device_id": strings.ToUpper(testDeviceID), "version_name": "1.0.0:main.js"}),
		statsEv(f, map[string]any{"metadata": map[string]any{"a": "\u0007\"\\"}}),
		statsEv(f, map[string]any{"metadata": metadataOf(31, 1, 1)}),
		statsEv(f, map[string]any{"version_build": "1.0.0.0", "action": "x"}),
		statsEv(f, map[string]any{"version_name": "9.9.9", "defaultChannel": "major-guard"}),
		statsEv(f, map[string]any{"custom_id": "beta-42", "timestamp": 1e20}),
		batch(ok, `{"app_id":"com.example.app"}`, `{"app_id":"com.example.app","device_id":null}`),
		strings.Repeat(`[`, 1000),
	} {
		f.Add([]byte(s))
	}
	e := statsEdge(f, sinkFunc(func(context.Context, string, uint64, []byte) error { return nil }), nil)
	off := statsEdge(f, nil, nil)
	// A public client: the per-network limit and the client prefix apply
	// (a low limit, so that fuzzing also reaches its 429).
	limitedEdge := statsEdge(f, sinkFunc(func(context.Context, string, uint64, []byte) error { return nil }), func(c *config.Edge) {
		c.StatsPerPrefixSecond = 20
	})
	f.Fuzz(func(t *testing.T, body []byte) {
		in := bytes.Clone(body)
		for _, edge := range []*Edge{e, off, limitedEdge} {
			var out *reply
			if edge == limitedEdge {
				out = &reply{}
				r := request{ctx: context.Background(), method: "POST", path: "/stats", host: "edge.test", proto: "h1", body: body,
					header: httpHeaders{http.Header{}}, query: urlQuery{}, client: netip.MustParseAddr("203.0.113.9")}
				edge.route(&r, out)
			} else {
				out = routeReq(edge, "POST", "/stats", body, nil)
			}
			if !bytes.Equal(body, in) {
				t.Fatal("POST /stats modified its input")
			}
			switch out.status {
			case 200, 400, 429, 503:
			default:
				t.Fatalf("HTTP %d for %q", out.status, body)
			}
			var m map[string]json.RawMessage
			if out.contentType != contentTypeJSON || json.Unmarshal(out.body, &m) != nil {
				t.Fatalf("HTTP %d: answer is not a JSON object: %q for %q", out.status, out.body, body)
			}
			_, hasErr := m["error"]
			if out.status != 200 && !hasErr {
				t.Fatalf("HTTP %d without an error code: %s", out.status, out.body)
			}
			if edge == off && out.status != 503 {
				t.Fatalf("edge without stats answered %d: %s", out.status, out.body)
			}
		}
	})
}

// BenchmarkStatsAccept posts 50-event batches through the router into a
// spool whose origin discards; parallel requests share fsyncs (group
// commit).
func BenchmarkStatsAccept(b *testing.B) {
	e := statsEdge(b, sinkFunc(func(context.Context, string, uint64, []byte) error { return nil }), nil)
	evs := make([]string, 50)
	for i := range evs {
		dev := fmt.Sprintf("%08x-eefe-490a-9c60-8e965132ae51", i)
		evs[i] = statsEv(b, map[string]any{"device_id": dev, "action": events.ActionList[:strings.IndexByte(events.ActionList, ',')],
			"timestamp": 1_700_000_000_000 + i, "metadata": map[string]any{"i": strconv.Itoa(i)}})
	}
	body := []byte(batch(evs...))
	okPrefix := []byte(`{"status":"ok","results":[{"status":"ok","index":0},`)
	if out := routeReq(e, "POST", "/stats", body, nil); out.status != 200 || !bytes.HasPrefix(out.body, okPrefix) ||
		bytes.Count(out.body, []byte(`"status":"ok"`)) != 51 {
		b.Fatalf("HTTP %d %s", out.status, out.body)
	}
	fsyncs := testutil.ToFloat64(e.metrics.statsFsyncs)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		out := &reply{body: make([]byte, 0, 4096)}
		r := request{ctx: context.Background(), method: "POST", path: "/stats", host: "edge.test", proto: "h1", body: body,
			header: httpHeaders{http.Header{}}, query: urlQuery{}}
		for pb.Next() {
			out.reset()
			e.route(&r, out)
			if out.status != 200 || !bytes.HasPrefix(out.body, okPrefix) {
				b.Errorf("HTTP %d %s", out.status, out.body)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N*50)/b.Elapsed().Seconds(), "events/s")
	if n := testutil.ToFloat64(e.metrics.statsFsyncs) - fsyncs; n > 0 {
		b.ReportMetric(float64(b.N)/n, "requests/fsync")
	}
}

// A child edge's segments must get through its parent's /v1/events. The
// parent's HTTP body limit is max_updates_body (1 MiB by default), while a
// child's segment may hold up to MaxSegment (512 KiB) plus one request's
// record: a parent answers 413 to such a segment, which the child's
// HTTPEventSink retries forever, blocking every later segment.
func TestRelayLargeSegment(t *testing.T) {
	sink := &memSink{}
	parent := statsEdge(t, sink, func(c *config.Edge) { c.EdgeKey = "edge-secret" })
	te := serveEdge(t, parent)
	// One request's record of about n bytes: 200 events with metadata.
	record := func(id int64, n int) []byte {
		evs := testEvents(id, events.MaxBatch)
		meta, _ := json.Marshal(map[string]string{"stack": strings.Repeat("s", n/events.MaxBatch-150)})
		for i := range evs {
			evs[i].Metadata = string(meta)
		}
		return events.AppendRecord(nil, evs)
	}
	a, b := record(1, 500<<10), record(2, 700<<10)
	if len(a) >= 512<<10 || len(a)+len(b) <= int(parent.cfg.MaxUpdatesBody) || len(b) >= int(parent.cfg.MaxUpdatesBody) {
		t.Fatalf("records of %d and %d bytes do not fit the scenario", len(a), len(b))
	}
	// The edge's own spool settings (StartStats), with a long MaxAge so the
	// two requests land in one segment deterministically (with the default
	// 250 ms, two requests close together do).
	sp := openTestSpool(t, t.TempDir(), NewHTTPEventSink(te.base, "edge-secret"), func(o *spoolOptions) {
		o.MaxSegment = 512 << 10
		o.MaxAge = time.Hour
	})
	appendOK(t, sp, a)
	appendOK(t, sp, b)
	deadline := time.Now().Add(15 * time.Second)
	for len(idsOf(t, segmentsOf(sink.acked())...)) < 2 {
		if time.Now().After(deadline) {
			n, size := sp.backlog()
			t.Fatalf("after 15 s the parent's sink has nothing; the child holds %d sealed segments (%d bytes, over the parent's %d-byte body limit) and retries: %v forward errors",
				n, size, parent.cfg.MaxUpdatesBody, testutil.ToFloat64(sp.m.statsForwardErrors))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ids := idsOf(t, segmentsOf(sink.acked())...); len(ids) != 2 {
		t.Fatalf("relayed requests %v, want 1 and 2", ids)
	}
}

// A paused rollout adds no device: a device in the rollout's buckets that
// does not already run the rollout bundle gets the channel's bundle
// (snapshot.Resolve), so its events belong to the "base" arm.
func TestStatsPausedRolloutArm(t *testing.T) {
	sink := &memSink{}
	e := statsEdge(t, sink, nil)
	s := statsSnapshot(t)
	s.Rev = 2
	s.Apps[0].Channels[0].Rollout.Paused = true
	if err := s.Index(nil); err != nil {
		t.Fatal(err)
	}
	if !e.SetSnapshot(s) {
		t.Fatal("SetSnapshot refused rev 2")
	}
	body := batch(
		statsEv(t, map[string]any{"version_name": "1.0.0", "action": "update_fail"}), // on base: stays on base
		statsEv(t, map[string]any{"version_name": "2.0.0", "action": "set"}),         // on the rollout bundle: kept
	)
	if out := routeReq(e, "POST", "/stats", []byte(body), nil); out.status != 200 || bytes.Count(out.body, []byte(`{"status":"ok","index"`)) != 2 {
		t.Fatalf("HTTP %d %s", out.status, out.body)
	}
	flushStats(t, e)
	got := sunkEvents(t, sink)
	if len(got) != 2 {
		t.Fatalf("%d events", len(got))
	}
	// What the device is served decides its arm.
	d := snapshot.Resolve(s, &snapshot.Request{AppID: testAppID, DeviceID: testDeviceID, VersionName: "1.0.0", VersionBuild: "1.0.0",
		Platform: "android", PluginVersion: "8.51.14", IsProd: true})
	if d.Variant != snapshot.VariantChannel || d.Bundle == nil || d.Bundle.Version != "1.1.0" {
		t.Fatalf("Resolve under the paused rollout: variant %q, bundle %+v; want the channel's 1.1.0", d.Variant, d.Bundle)
	}
	if got[0].Arm != "base" {
		t.Errorf("event of a device on the base bundle under a paused rollout: arm %q, want base", got[0].Arm)
	}
	if got[1].Arm != "rollout" {
		t.Errorf("event of a device kept on the paused rollout's bundle: arm %q, want rollout", got[1].Arm)
	}
}

// Like Capgo, download_fail from plugins before 7.17.0 (6.x before 6.14.25)
// is acknowledged but not kept, and counted as a drop.
func TestStatsLegacyDownloadFail(t *testing.T) {
	sink := &memSink{}
	e := statsEdge(t, sink, nil)
	cases := []struct {
		plugin string
		kept   bool
	}{{"7.16.9", false}, {"7.17.0", true}, {"6.14.24", false}, {"6.14.25", true}, {"5.10.0", false}, {"8.0.0", true}}
	var evs []string
	for _, c := range cases {
		evs = append(evs, statsEv(t, map[string]any{"plugin_version": c.plugin, "action": "download_fail"}))
	}
	out := routeReq(e, "POST", "/stats", []byte(batch(evs...)), nil)
	if out.status != 200 || bytes.Count(out.body, []byte(`{"status":"ok","index"`)) != len(cases) {
		t.Fatalf("HTTP %d %s", out.status, out.body)
	}
	flushStats(t, e)
	var got []string
	for _, ev := range sunkEvents(t, sink) {
		got = append(got, ev.PluginVersion)
	}
	var want []string
	for _, c := range cases {
		if c.kept {
			want = append(want, c.plugin)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("kept plugin versions %v, want %v", got, want)
	}
	if n := testutil.ToFloat64(e.metrics.statsDropped.WithLabelValues("legacy_download_fail")); n != 3 {
		t.Fatalf("legacy_download_fail drops %v, want 3", n)
	}
}
