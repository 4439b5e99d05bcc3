package origin

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

const tailEdge = "0123456789abcdef0123456789abcdef"

// checkInSegment is an edge segment holding one detailed check-in.
func checkInSegment(app, dev string, d events.CheckInDetail) []byte {
	id, _ := snapshot.ParseDeviceID(dev)
	return events.AppendCheckIns([]byte(events.Magic), &events.CheckIns{AppID: app, At: d.At, Devices: [][16]byte{id},
		Details: []events.CheckInDetail{d}})
}

func apiGet(t *testing.T, o *testOrigin, path string) (*http.Response, error) {
	t.Helper()
	req, _ := http.NewRequest("GET", o.http.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+o.client.APIKey)
	return http.DefaultClient.Do(req)
}

func apiStatus(t *testing.T, o *testOrigin, path string) (int, string) {
	t.Helper()
	resp, err := apiGet(t, o, path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Error
}

// The tail streams check-ins recorded after it started, including those
// another origin sharing the store ingested (on PostgreSQL: a second
// origin; on SQLite, one origin is all there is).
func TestDeviceTailAcrossOrigins(t *testing.T) {
	a := startOrigin(t)
	ingester := a.srv
	if a.srv.cfg.Store != "" {
		cfg := testConfig(t, t.TempDir())
		cfg.Store = a.srv.cfg.Store
		b, err := Open(context.Background(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		ingester = b
	}
	const app, dev = "com.example.app", "00009a6b-eefe-490a-9c60-8e965132ae51"
	ctx := context.Background()
	now := time.Now().UnixMilli()
	// A check-in before the tail starts is not streamed.
	if err := ingester.IngestSegment(ctx, tailEdge, 1, checkInSegment(app, dev, events.CheckInDetail{At: now, Platform: "ios", VersionName: "1.0.0", Outcome: "no_new_version_available"})); err != nil {
		t.Fatal(err)
	}
	saved := tailPoll
	tailPoll = 50 * time.Millisecond
	t.Cleanup(func() { tailPoll = saved })
	resp, err := apiGet(t, a, "/api/v1/apps/"+app+"/devices/"+strings.ToUpper(dev)+"/tail?seconds=30")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("tail: HTTP %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// The headers are out: the tail's starting point is set.
	if err := ingester.IngestSegment(ctx, tailEdge, 2, checkInSegment(app, dev, events.CheckInDetail{At: now + 1000, Platform: "ios",
		VersionName: "1.0.1", Channel: "beta", Segment: "segment:testers", Outcome: "update", Bundle: "1.0.2"})); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() {
		t.Fatalf("tail ended without a line: %v", sc.Err())
	}
	var e store.DeviceLogEntry
	if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
		t.Fatal(err)
	}
	if e.Seq != 2 || e.Kind != store.LogCheckIn || e.VersionName != "1.0.1" || e.Channel != "beta" || e.Reason != "segment:testers" ||
		e.Action != "update" || e.Target != "1.0.2" || e.EdgeID != tailEdge || e.At != now+1000 {
		t.Fatalf("tail line %s", sc.Bytes())
	}
	// The tail's lifetime is bounded.
	if code, _ := apiStatus(t, a, "/api/v1/apps/"+app+"/devices/"+dev+"/tail?seconds=3601"); code != 400 {
		t.Fatalf("tail for over an hour: HTTP %d", code)
	}
	start := time.Now()
	r2, err := apiGet(t, a, "/api/v1/apps/"+app+"/devices/"+dev+"/tail?seconds=1")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for sc := bufio.NewScanner(r2.Body); sc.Scan(); {
		n++
	}
	r2.Body.Close()
	if n != 0 || time.Since(start) > 20*time.Second {
		t.Fatalf("a 1 s tail: %d lines, ended after %v", n, time.Since(start))
	}
}

// The list API: filters, cursors bound to their filters, errors.
func TestDeviceListAPI(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	const app = "com.example.app"
	var devs []store.Device
	for i := range 30 {
		devs = append(devs, store.Device{AppID: app, DeviceID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i), LastSeen: time.Now().UnixMilli(), CheckedIn: int64(i+1) * 1000,
			Platform: []string{"ios", "android"}[i%2], Channel: "production", VersionName: "1.0.0"})
	}
	if err := o.srv.events.BulkDevices(ctx, devs); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	q := client.DeviceQuery{Platform: "ios", Limit: 4}
	pages := 0
	for {
		page, err := o.client.ListDevices(ctx, app, q)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, d := range page.Devices {
			seen[d.DeviceID]++
			if d.Platform != "ios" {
				t.Fatalf("listed %+v", d)
			}
		}
		if page.NextCursor == "" {
			break
		}
		q.Cursor = page.NextCursor
	}
	if len(seen) != 15 || pages != 4 {
		t.Fatalf("%d devices over %d pages, want 15 over 4", len(seen), pages)
	}
	for d, n := range seen {
		if n != 1 {
			t.Fatalf("%s listed %d times", d, n)
		}
	}
	first, err := o.client.ListDevices(ctx, app, client.DeviceQuery{Platform: "ios", Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	c := first.NextCursor
	after, mac, _ := strings.Cut(c, ".")
	for name, bad := range map[string]string{
		"edited mac":    after + "." + strings.Repeat("A", len(mac)),
		"other device":  base64.RawURLEncoding.EncodeToString([]byte(devs[11].DeviceID)) + "." + mac,
		"no mac":        after,
		"garbage":       "%%%",
		"other filters": c + "&platform=android", // same cursor, other filter (see below)
		"not a device":  base64.RawURLEncoding.EncodeToString([]byte("not-a-device")) + "." + mac,
	} {
		path := "/api/v1/apps/" + app + "/devices?platform=ios&cursor=" + url.QueryEscape(bad)
		if name == "other filters" {
			path = "/api/v1/apps/" + app + "/devices?platform=android&cursor=" + url.QueryEscape(c)
		}
		if code, e := apiStatus(t, o, path); code != 400 || e != "invalid_cursor" {
			t.Errorf("%s: HTTP %d %s, want 400 invalid_cursor", name, code, e)
		}
	}
	// Counts: the filters, and since (Unix seconds or RFC 3339) on the
	// last check-in: devices 19..29 checked in at 20 s and later.
	for _, c := range []struct {
		q     client.DeviceQuery
		since time.Time
		want  int64
	}{
		{client.DeviceQuery{}, time.Time{}, 30},
		{client.DeviceQuery{Platform: "ios"}, time.Time{}, 15},
		{client.DeviceQuery{}, time.UnixMilli(20_000), 11},
		{client.DeviceQuery{Platform: "ios"}, time.UnixMilli(20_000), 5},
		{client.DeviceQuery{}, time.UnixMilli(20_001), 10},
		{client.DeviceQuery{Version: "9.9.9"}, time.Time{}, 0},
	} {
		if n, err := o.client.CountDevices(ctx, app, c.q, c.since); err != nil || n != c.want {
			t.Errorf("count %+v since %v: %d %v, want %d", c.q, c.since, n, err, c.want)
		}
	}
	if resp, err := apiGet(t, o, "/api/v1/apps/"+app+"/devices/count?since=20"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("count since=20: %v %v", resp, err)
	} else {
		var dc api.DeviceCount
		json.NewDecoder(resp.Body).Decode(&dc)
		resp.Body.Close()
		if dc.Devices != 11 || dc.AppID != app {
			t.Fatalf("count since=20: %+v", dc)
		}
	}
	for path, want := range map[string]string{
		"/api/v1/apps/" + app + "/devices/count?since=yesterday":                "invalid_time",
		"/api/v1/apps/" + app + "/devices?limit=0":                              "invalid_limit",
		"/api/v1/apps/" + app + "/devices?limit=1001":                           "invalid_limit",
		"/api/v1/apps/" + app + "/devices/not-a-uuid":                           "invalid_device_id",
		"/api/v1/apps/" + app + "/devices/ffffffff-0000-4000-8000-000000000000": "device_not_found",
	} {
		if code, e := apiStatus(t, o, path); e != want || code/100 != 4 {
			t.Errorf("%s: HTTP %d %s, want %s", path, code, e, want)
		}
	}
}

// The hourly sweep removes devices not seen within --device-retention.
func TestDeviceRetention(t *testing.T) {
	o, _ := startOriginCfg(t, func(c *config.Origin) { c.DeviceRetention = 48 * time.Hour })
	ctx := context.Background()
	now := time.Now()
	old, recent := "00000001-0000-4000-8000-000000000001", "00000002-0000-4000-8000-000000000002"
	if err := o.srv.events.BulkDevices(ctx, []store.Device{
		{AppID: "com.example.app", DeviceID: old, LastSeen: now.Add(-49 * time.Hour).UnixMilli()},
		{AppID: "com.example.app", DeviceID: recent, LastSeen: now.Add(-47 * time.Hour).UnixMilli()},
	}); err != nil {
		t.Fatal(err)
	}
	o.srv.pruneDevices(ctx)
	if _, err := o.client.Device(ctx, "com.example.app", old); err == nil || !strings.Contains(err.Error(), "device_not_found") {
		t.Fatalf("a device past the retention: %v", err)
	}
	if d, err := o.client.Device(ctx, "com.example.app", recent); err != nil || d.Device.DeviceID != recent {
		t.Fatalf("a device within the retention: %+v %v", d, err)
	}
}

// The device page on /ui shows what `device show` does, escaped.
func TestDeviceUIPage(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	const app, dev = "com.example.app", "00009a6b-eefe-490a-9c60-8e965132ae51"
	if _, err := o.client.CreateApp(ctx, app, "App"); err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(filepath.Join(o.dir, "api-key"))
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.PostForm(o.http.URL+"/ui", url.Values{"key": {strings.TrimSpace(string(key))}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == uiCookie {
			session = c
		}
	}
	get := func(path string) (int, string) {
		req, _ := http.NewRequest("GET", o.http.URL+path, nil)
		req.AddCookie(session)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	now := time.Now().UnixMilli()
	if err := o.srv.IngestSegment(ctx, tailEdge, 1, checkInSegment(app, dev, events.CheckInDetail{At: now, Platform: "android",
		VersionBuild: "3.1.0", VersionName: "1.0.4", PluginVersion: "8.51.14", CustomID: `<script>alert("x")</script>`,
		Channel: "beta", Segment: "segment:testers", Arm: "rollout", Outcome: "update", Bundle: "1.0.5"})); err != nil {
		t.Fatal(err)
	}
	if code, body := get("/ui/apps/" + app); code != 200 || !strings.Contains(body, `action="/ui/apps/`+app+`/device"`) {
		t.Fatalf("app page: HTTP %d, no device lookup form", code)
	}
	code, body := get("/ui/apps/" + app + "/device?id=" + strings.ToUpper(dev))
	if code != 200 {
		t.Fatalf("device page: HTTP %d %s", code, body)
	}
	for _, s := range []string{dev, "3.1.0", "1.0.4", "8.51.14", "beta", "segment:testers", "(arm rollout)", "1.0.5", tailEdge,
		"&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;", "Recent check-ins and events", "checkin"} {
		if !strings.Contains(body, s) {
			t.Errorf("device page lacks %q", s)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Fatal("device page holds an unescaped custom id")
	}
	if _, body := get("/ui/apps/" + app + "/device?id=ffffffff-0000-4000-8000-000000000000"); !strings.Contains(body, "no device ffffffff") {
		t.Fatalf("unknown device: %.300s", body)
	}
	if _, body := get("/ui/apps/" + app + "/device?id=%22%3E%3Cb%3E"); !strings.Contains(body, "not a device id") || strings.Contains(body, `"><b>`) {
		t.Fatalf("invalid id: %.600s", body)
	}
}
