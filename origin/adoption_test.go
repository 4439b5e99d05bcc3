package origin

import (
	"context"
	"encoding/json"
	"io"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// adoptionHistory ingests a scripted history through POST /v1/events (the
// edges' path) and returns its base time (09:00 UTC five days ago):
//
//   - check-ins one hour before base place devices 1–4 on channel
//     production in segment:beta and devices 11–20 in default; device 30
//     (default) checked in 40 days ago and is not active;
//   - devices 11–20 installed 1.0.0 two days before base;
//   - 1.0.1: device 1 reports download_complete at base (the first event:
//     the release's start); beta installs at +10 min (1), +30 (2), +120 (3),
//     device 4 fails (update_fail) at +40 and never installs; default
//     installs at +60 (11–15), +1000 (16–19), +1500 (20), device 20 fails
//     a download (download_fail) at +1400 first;
//   - 1.0.2, installed by nobody: device 1's download_fail at +2000.
func adoptionHistory(t *testing.T, o *testOrigin) time.Time {
	t.Helper()
	edgeKey := readKeyFile(t, o.dir, "edge-key")
	base := time.Now().UTC().Truncate(24 * time.Hour).Add(-5*24*time.Hour + 9*time.Hour)
	seq := 0
	post := func(body []byte) {
		t.Helper()
		seq++
		if r := postEvents(t, o, edgeKey, guardEdge, strconv.Itoa(seq), body); r.status != 200 {
			t.Fatalf("segment %d: %+v", seq, r)
		}
	}
	checkIn := func(at time.Time, segment string, devs ...int) {
		c := events.CheckIns{AppID: guardApp, At: at.UnixMilli()}
		for _, d := range devs {
			id, _ := snapshot.ParseDeviceID(devUUID(d))
			c.Devices = append(c.Devices, id)
			c.Details = append(c.Details, events.CheckInDetail{At: at.UnixMilli(), Platform: "ios", VersionBuild: "3.1.0",
				VersionName: "builtin", PluginVersion: "7.2.0", Channel: "production", Segment: segment, Outcome: "update", Bundle: "1.0.1"})
		}
		post(events.AppendCheckIns([]byte(events.Magic), &c))
	}
	checkIn(base.Add(-time.Hour), "segment:beta", 1, 2, 3, 4)
	checkIn(base.Add(-time.Hour), "default", 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)
	checkIn(time.Now().Add(-40*24*time.Hour), "default", 30)
	// Device 40 is on another channel, beta: its own release there.
	beta := events.CheckIns{AppID: guardApp, At: base.Add(-time.Hour).UnixMilli()}
	id, _ := snapshot.ParseDeviceID(devUUID(40))
	beta.Devices = [][16]byte{id}
	beta.Details = []events.CheckInDetail{{At: beta.At, Platform: "ios", VersionName: "builtin", Channel: "beta", Segment: "default"}}
	post(events.AppendCheckIns([]byte(events.Magic), &beta))
	post(segmentOf([]events.Event{statsEvent(base.Add(5*time.Minute).UnixMilli(), 40, "set", "1.0.1", "beta")}))
	ev := func(minutes int, dev int, action, version, segment string) events.Event {
		e := statsEvent(base.Add(time.Duration(minutes)*time.Minute).UnixMilli(), dev, action, version, "production")
		e.Segment = segment
		return e
	}
	var evs []events.Event
	for d := 11; d <= 20; d++ {
		evs = append(evs, ev(-2*24*60, d, "set", "1.0.0", "default"))
	}
	post(segmentOf(evs))
	evs = []events.Event{
		ev(0, 1, "download_complete", "1.0.1", "segment:beta"),
		ev(10, 1, "set", "1.0.1", "segment:beta"),
		ev(30, 2, "set", "1.0.1", "segment:beta"),
		ev(40, 4, "update_fail", "1.0.1", "segment:beta"),
		ev(120, 3, "set", "1.0.1", "segment:beta"),
	}
	for d := 11; d <= 15; d++ {
		evs = append(evs, ev(60, d, "set", "1.0.1", "default"))
	}
	post(segmentOf(evs))
	evs = nil
	for d := 16; d <= 19; d++ {
		evs = append(evs, ev(1000, d, "set", "1.0.1", "default"))
	}
	evs = append(evs, ev(1400, 20, "download_fail", "1.0.1", "default"), ev(1500, 20, "set", "1.0.1", "default"),
		ev(2000, 1, "download_fail", "1.0.2", "segment:beta"))
	post(segmentOf(evs))
	return base
}

func secs(s int64) *int64      { return &s }
func ratio(f float64) *float64 { return &f }

// Adoption-speed figures on a scripted history equal hand-computed ones:
// time to 50/90/95% of the active devices, the share within 24 h and the
// install success rate, per release and segment (issue 19).
func TestAdoptionScripted(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	if _, err := o.client.CreateApp(ctx, guardApp, "App"); err != nil {
		t.Fatal(err)
	}
	base := adoptionHistory(t, o)
	rep, err := o.client.Adoption(ctx, guardApp, url.Values{"channel": {"production"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.ActiveWindowSeconds != 30*24*3600 {
		t.Fatalf("active window %d", rep.ActiveWindowSeconds)
	}
	type fig struct {
		Segment            string
		Active, Devices    int64
		Share, Share24h    float64
		To50, To90, To95   *int64
		Installs, Failures int64
		Success            *float64
	}
	got := map[string][]fig{}
	starts := map[string]time.Time{}
	for _, r := range rep.Releases {
		if r.Channel != "production" {
			t.Fatalf("release on channel %q", r.Channel)
		}
		starts[r.Version] = r.Start
		if r.StartSource != "first_event" {
			t.Errorf("%s: start source %q", r.Version, r.StartSource)
		}
		for _, s := range r.Segments {
			got[r.Version] = append(got[r.Version], fig{s.Segment, s.Active, s.Devices, s.Share, s.Share24h,
				s.TimeTo50, s.TimeTo90, s.TimeTo95, s.Installs, s.Failures, s.SuccessRate})
		}
	}
	// By hand (minutes from the start; 14 active devices: 4 beta, 10
	// default, device 30 inactive).
	want := map[string][]fig{
		"1.0.0": { // all 10 default devices at its start, all moved on since
			{"", 14, 0, 0, 10.0 / 14, secs(0), nil, nil, 10, 0, ratio(1)}, // 10 of 14 ≥ 50%
			{"default", 10, 0, 0, 1, secs(0), secs(0), secs(0), 10, 0, ratio(1)},
			{"segment:beta", 4, 0, 0, 0, nil, nil, nil, 0, 0, nil},
		},
		"1.0.1": {
			// running: +10:1 +30:2 +60:7 +120:8 +1000:12 +1500:13; 7 = 50% of 14, 13 ≥ 90%, 14 never.
			{"", 14, 13, 13.0 / 14, 12.0 / 14, secs(60 * 60), secs(1500 * 60), nil, 13, 2, ratio(13.0 / 15)},
			// +60:5 +1000:9 +1500:10
			{"default", 10, 10, 1, 0.9, secs(60 * 60), secs(1000 * 60), secs(1500 * 60), 10, 1, ratio(10.0 / 11)},
			// +10:1 +30:2 +120:3; 4 never
			{"segment:beta", 4, 3, 0.75, 0.75, secs(30 * 60), nil, nil, 3, 1, ratio(0.75)},
		},
		"1.0.2": { // installed by nobody
			{"", 14, 0, 0, 0, nil, nil, nil, 0, 1, ratio(0)},
			{"default", 10, 0, 0, 0, nil, nil, nil, 0, 0, nil},
			{"segment:beta", 4, 0, 0, 0, nil, nil, nil, 0, 1, ratio(0)},
		},
	}
	for v, w := range want {
		if !reflect.DeepEqual(got[v], w) {
			t.Errorf("%s:\n got %s\nwant %s", v, dump(got[v]), dump(w))
		}
	}
	if len(got) != len(want) {
		t.Errorf("releases %v", starts)
	}
	for v, start := range map[string]time.Time{"1.0.0": base.Add(-48 * time.Hour), "1.0.1": base, "1.0.2": base.Add(2000 * time.Minute)} {
		if !starts[v].Equal(start) {
			t.Errorf("%s: start %s, want %s", v, starts[v], start)
		}
	}

	// Every channel: beta's release of 1.0.1 is its own (one active device,
	// installed 5 minutes after the first event there).
	all, err := o.client.Adoption(ctx, guardApp, url.Values{"version": {"1.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Releases) != 2 || all.Releases[0].Channel != "beta" || all.Releases[1].Channel != "production" {
		t.Fatalf("releases of 1.0.1: %+v", all.Releases)
	}
	if b := all.Releases[0]; !b.Start.Equal(base.Add(5*time.Minute)) || len(b.Segments) != 2 || b.Segments[0].Active != 1 ||
		b.Segments[0].Devices != 1 || *b.Segments[0].TimeTo95 != 0 || b.Segments[1].Segment != "default" {
		t.Fatalf("beta: %+v", b)
	}
	if p := all.Releases[1].Segments[0]; p.Active != 14 || p.Devices != 13 {
		t.Fatalf("production with every channel asked: %+v", p)
	}

	// One segment, one version: the same figures, without the others.
	one, err := o.client.Adoption(ctx, guardApp, url.Values{"version": {"1.0.1"}, "segment": {"segment:beta"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(one.Releases) != 1 || len(one.Releases[0].Segments) != 1 {
		t.Fatalf("one segment: %+v", one.Releases)
	}
	if s := one.Releases[0].Segments[0]; s.Segment != "segment:beta" || s.Active != 4 || s.Devices != 3 || *s.TimeTo50 != 1800 || s.TimeTo90 != nil {
		t.Fatalf("one segment: %+v", s)
	}
	// The curve: none at the start, 2 of 4 at the end of the first step, the
	// current share at the end. The step is span/120 rounded up to a minute:
	// the release started 4 days 15 hours before today's midnight (base), so
	// 56 to 68 minutes depending on the time of day the test runs (it
	// asked for at least an hour, and failed before 09:00 UTC), always past
	// the devices at +10 and +30 minutes and before the one at +120.
	span := time.Since(base)
	stepMin := (int64(span/time.Minute) + 119) / 120
	if s := one.Releases[0].Segments[0]; len(s.Curve) == 0 || s.Curve[len(s.Curve)-1] != 0.75 || s.Curve[0] != 0 || s.Curve[1] != 0.5 ||
		s.CurveStepSeconds < (stepMin-1)*60 || s.CurveStepSeconds > (stepMin+1)*60 {
		t.Fatalf("curve %v (step %ds, want about %d min)", s.Curve, s.CurveStepSeconds, stepMin)
	}

	// /ui draws the newest release's cumulative adoption per segment.
	resp, err := apiGet(t, o, "/ui/apps/"+guardApp+"?channel=production")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, s := range []string{"Adoption speed: 1.0.2 on production", `data-version="segment:beta"`, `data-version="default"`,
		`data-version="all segments"`, "<td>segment:beta</td><td>4</td><td>0</td><td>0.0%</td>",
		"<td>segment:beta</td><td>09h 2/1 · 11h 1/0 · 18h 0/1</td>"} {
		if !strings.Contains(string(page), s) {
			t.Errorf("/ui lacks %q", s)
		}
	}

	// Release timing: installs and failures by hour and weekday (UTC).
	type hw struct {
		hour    int
		weekday time.Weekday
	}
	at := func(minutes int) hw {
		t := base.Add(time.Duration(minutes) * time.Minute)
		return hw{t.Hour(), t.Weekday()}
	}
	wantInstalls := map[string]map[hw]int64{
		"default":      {at(-2880): 10, at(60): 5, at(1000): 4, at(1500): 1},
		"segment:beta": {at(10): 2, at(120): 1},
	}
	wantFailures := map[string]map[hw]int64{
		"default":      {at(1400): 1},
		"segment:beta": {at(40): 1, at(2000): 1},
	}
	if len(rep.Timing) != 2 {
		t.Fatalf("timing of %d segments", len(rep.Timing))
	}
	for _, st := range rep.Timing {
		for _, c := range []struct {
			name   string
			byHour [24]int64
			byDay  [7]int64
			want   map[hw]int64
		}{{"installs", st.InstallsByHour, st.InstallsByDay, wantInstalls[st.Segment]}, {"failures", st.FailuresByHour, st.FailuresByDay, wantFailures[st.Segment]}} {
			var h [24]int64
			var d [7]int64
			for k, n := range c.want {
				h[k.hour] += n
				d[k.weekday] += n
			}
			if h != c.byHour || d != c.byDay {
				t.Errorf("%s %s: by hour %v, want %v; by weekday %v, want %v", st.Segment, c.name, c.byHour, h, c.byDay, d)
			}
		}
	}
}

// The one definition of an active device.
func TestActiveDefinition(t *testing.T) {
	now := time.Now().UnixMilli()
	day := 24 * time.Hour.Milliseconds()
	for _, c := range []struct {
		lastSeen int64
		want     bool
	}{{now, true}, {now - 29*day, true}, {now - 30*day + 1, true}, {now - 30*day, false}, {now - 40*day, false}} {
		if got := store.Active(c.lastSeen, now); got != c.want {
			t.Errorf("Active(now-%dms) = %v", now-c.lastSeen, got)
		}
	}
}

func dump(fs any) string {
	b, _ := json.Marshal(fs)
	return string(b)
}

// Slow adoption results are reused for slowTTL; fast ones are always
// computed afresh.
func TestAdoptionSlowCache(t *testing.T) {
	var c slowCache[string, int]
	now := time.Now()
	calls := 0
	fast := func() (int, error) { calls++; return calls, nil }
	slow := func() (int, error) { calls++; time.Sleep(slowResult + 10*time.Millisecond); return calls, nil }
	a, _ := c.get("fast", now, fast)
	b, _ := c.get("fast", now, fast)
	if a != 1 || b != 2 {
		t.Fatalf("fast results kept: %d %d", a, b)
	}
	a, _ = c.get("slow", now, slow)
	b, _ = c.get("slow", now.Add(slowTTL-time.Second), slow)
	if a != 3 || b != 3 {
		t.Fatalf("slow result not reused: %d %d", a, b)
	}
	if x, _ := c.get("slow", now.Add(slowTTL), fast); x != 4 {
		t.Fatalf("slow result reused past its TTL: %d", x)
	}
}
