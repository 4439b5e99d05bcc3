package snapshot

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// schedule builds an indexed schedule from window and blackout texts.
func schedule(t testing.TB, windows []string, blackouts ...string) *Windows {
	t.Helper()
	ws := &Windows{}
	for _, s := range windows {
		w, err := ParseWindow(s)
		if err != nil {
			t.Fatal(err)
		}
		ws.Weekly = append(ws.Weekly, w)
	}
	for _, s := range blackouts {
		b, err := ParseBlackout(s)
		if err != nil {
			t.Fatal(err)
		}
		ws.Blackouts = append(ws.Blackouts, b)
	}
	if err := ws.Normalize(); err != nil {
		t.Fatal(err)
	}
	return ws
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

type heldCase struct {
	at   string // RFC 3339 instant
	want string // Held
}

func checkHeld(t *testing.T, ws *Windows, cases []heldCase) {
	t.Helper()
	for _, c := range cases {
		if got := ws.Held(utc(c.at)); got != c.want {
			t.Errorf("%v at %s (%s): held %q, want %q", ws.Weekly, c.at, utc(c.at).In(ws.zone()), got, c.want)
		}
	}
}

// zone is the first zone of the schedule, for messages.
func (ws *Windows) zone() *time.Location {
	if len(ws.Weekly) > 0 {
		return ws.Weekly[0].loc
	}
	if len(ws.Blackouts) > 0 {
		return ws.Blackouts[0].loc
	}
	return time.UTC
}

// openMinutes counts the minutes of [from, from+d) at which ws is open.
func openMinutes(ws *Windows, from time.Time, d time.Duration) int {
	n := 0
	for t := from; t.Before(from.Add(d)); t = t.Add(time.Minute) {
		if ws.Held(t) == "" {
			n++
		}
	}
	return n
}

func TestWindowInsideOutside(t *testing.T) {
	// 2026-12-05 is a Saturday; Rome is UTC+1 in December.
	ws := schedule(t, []string{"Sat 01:00-05:00 Europe/Rome"})
	checkHeld(t, ws, []heldCase{
		{"2026-12-04T23:59:00Z", HeldOutsideWindow}, // Sat 00:59 Rome
		{"2026-12-05T00:00:00Z", ""},                // Sat 01:00 Rome: start included
		{"2026-12-05T03:59:59Z", ""},                // Sat 04:59:59
		{"2026-12-05T04:00:00Z", HeldOutsideWindow}, // Sat 05:00: end excluded
		{"2026-12-12T02:00:00Z", ""},                // the next Saturday
		{"2026-12-06T02:00:00Z", HeldOutsideWindow}, // Sunday
		{"2026-12-04T02:00:00Z", HeldOutsideWindow}, // Friday
	})
	// A window is 4 hours every week: 240 minutes in any 7 days.
	if n := openMinutes(ws, utc("2026-12-01T00:00:00Z"), 7*24*time.Hour); n != 240 {
		t.Errorf("open %d minutes in a week, want 240", n)
	}
}

func TestWindowSpanningMidnight(t *testing.T) {
	ws := schedule(t, []string{"Sat 23:00-02:00 UTC"})
	checkHeld(t, ws, []heldCase{
		{"2026-12-05T22:59:00Z", HeldOutsideWindow}, // Sat 22:59
		{"2026-12-05T23:00:00Z", ""},                // Sat 23:00
		{"2026-12-06T00:00:00Z", ""},                // Sun 00:00: still Saturday's window
		{"2026-12-06T01:59:00Z", ""},                // Sun 01:59
		{"2026-12-06T02:00:00Z", HeldOutsideWindow}, // Sun 02:00
		{"2026-12-05T01:00:00Z", HeldOutsideWindow}, // Sat 01:00: Friday has no window
		{"2026-12-06T23:30:00Z", HeldOutsideWindow}, // Sun 23:30: the window belongs to Saturday
		{"2026-12-04T23:30:00Z", HeldOutsideWindow}, // Fri 23:30
	})
	// Sat 22:00-24:00 is the same as a window ending at midnight.
	whole := schedule(t, []string{"Sun 00:00-24:00 UTC"})
	checkHeld(t, whole, []heldCase{
		{"2026-12-06T00:00:00Z", ""}, {"2026-12-06T23:59:59Z", ""}, {"2026-12-07T00:00:00Z", HeldOutsideWindow},
		{"2026-12-05T23:59:59Z", HeldOutsideWindow},
	})
	// Saturday to Sunday across the week's end: a Sun window spanning into Monday.
	sun := schedule(t, []string{"Sun 22:00-01:00 UTC"})
	checkHeld(t, sun, []heldCase{{"2026-12-07T00:30:00Z", ""}, {"2026-12-07T01:00:00Z", HeldOutsideWindow}})
}

func TestWindowDSTRome(t *testing.T) {
	// Spring forward: Sunday 2026-03-29, 02:00 CET (01:00 UTC) becomes 03:00 CEST.
	gap := schedule(t, []string{"Sun 02:30-04:00 Europe/Rome"})
	checkHeld(t, gap, []heldCase{
		{"2026-03-29T00:59:00Z", HeldOutsideWindow}, // 01:59 CET
		{"2026-03-29T01:00:00Z", ""},                // 03:00 CEST: the first wall time after 02:30 that exists
		{"2026-03-29T01:59:00Z", ""},                // 03:59 CEST
		{"2026-03-29T02:00:00Z", HeldOutsideWindow}, // 04:00 CEST
	})
	if n := openMinutes(gap, utc("2026-03-28T12:00:00Z"), 24*time.Hour); n != 60 {
		t.Errorf("spring forward: open %d minutes, want 60 (03:00-04:00 CEST)", n)
	}
	// A window wholly inside the skipped hour does not open that week.
	inGap := schedule(t, []string{"Sun 02:00-02:45 Europe/Rome"})
	if n := openMinutes(inGap, utc("2026-03-28T12:00:00Z"), 24*time.Hour); n != 0 {
		t.Errorf("window inside the gap: open %d minutes, want 0", n)
	}
	if n := openMinutes(inGap, utc("2026-04-04T12:00:00Z"), 24*time.Hour); n != 45 {
		t.Errorf("window inside the gap, a week later: open %d minutes, want 45", n)
	}

	// Fall back: Sunday 2026-10-25, 03:00 CEST (01:00 UTC) becomes 02:00 CET:
	// 02:00-02:59 occurs twice and the window is open both times.
	rep := schedule(t, []string{"Sun 02:30-03:00 Europe/Rome"})
	checkHeld(t, rep, []heldCase{
		{"2026-10-25T00:29:00Z", HeldOutsideWindow}, // 02:29 CEST
		{"2026-10-25T00:30:00Z", ""},                // 02:30 CEST, first time
		{"2026-10-25T00:59:00Z", ""},                // 02:59 CEST
		{"2026-10-25T01:00:00Z", HeldOutsideWindow}, // 02:00 CET
		{"2026-10-25T01:30:00Z", ""},                // 02:30 CET, second time
		{"2026-10-25T02:00:00Z", HeldOutsideWindow}, // 03:00 CET
	})
	if n := openMinutes(rep, utc("2026-10-24T12:00:00Z"), 24*time.Hour); n != 60 {
		t.Errorf("fall back: open %d minutes, want 60 (twice 30)", n)
	}
	// A window across the transition lasts an hour longer that night.
	night := schedule(t, []string{"Sun 01:00-05:00 Europe/Rome"})
	if n := openMinutes(night, utc("2026-10-24T12:00:00Z"), 24*time.Hour); n != 5*60 {
		t.Errorf("fall back: 01:00-05:00 open %d minutes, want 300", n)
	}
	if n := openMinutes(night, utc("2026-03-28T12:00:00Z"), 24*time.Hour); n != 3*60 {
		t.Errorf("spring forward: 01:00-05:00 open %d minutes, want 180", n)
	}
}

func TestWindowDSTNewYork(t *testing.T) {
	// Spring forward: Sunday 2026-03-08, 02:00 EST (07:00 UTC) becomes 03:00 EDT.
	gap := schedule(t, []string{"Sun 02:30-03:30 America/New_York"})
	checkHeld(t, gap, []heldCase{
		{"2026-03-08T06:59:00Z", HeldOutsideWindow}, // 01:59 EST
		{"2026-03-08T07:00:00Z", ""},                // 03:00 EDT
		{"2026-03-08T07:29:00Z", ""},                // 03:29 EDT
		{"2026-03-08T07:30:00Z", HeldOutsideWindow}, // 03:30 EDT
	})
	if n := openMinutes(gap, utc("2026-03-07T12:00:00Z"), 24*time.Hour); n != 30 {
		t.Errorf("spring forward: open %d minutes, want 30", n)
	}
	// Fall back: Sunday 2026-11-01, 02:00 EDT (06:00 UTC) becomes 01:00 EST:
	// 01:00-01:59 occurs twice.
	rep := schedule(t, []string{"Sun 01:00-02:00 America/New_York"})
	checkHeld(t, rep, []heldCase{
		{"2026-11-01T04:59:00Z", HeldOutsideWindow}, // 00:59 EDT
		{"2026-11-01T05:00:00Z", ""},                // 01:00 EDT
		{"2026-11-01T05:59:00Z", ""},                // 01:59 EDT
		{"2026-11-01T06:00:00Z", ""},                // 01:00 EST, again
		{"2026-11-01T06:59:00Z", ""},                // 01:59 EST
		{"2026-11-01T07:00:00Z", HeldOutsideWindow}, // 02:00 EST
	})
	if n := openMinutes(rep, utc("2026-10-31T12:00:00Z"), 24*time.Hour); n != 120 {
		t.Errorf("fall back: open %d minutes, want 120", n)
	}
	// A window spanning midnight on the night of the change.
	span := schedule(t, []string{"Sat 23:00-03:00 America/New_York"})
	if n := openMinutes(span, utc("2026-10-31T12:00:00Z"), 24*time.Hour); n != 5*60 {
		t.Errorf("fall back, spanning midnight: open %d minutes, want 300", n)
	}
	if n := openMinutes(span, utc("2026-03-07T12:00:00Z"), 24*time.Hour); n != 3*60 {
		t.Errorf("spring forward, spanning midnight: open %d minutes, want 180", n)
	}
}

func TestWindowBlackouts(t *testing.T) {
	// Every day 00:00-24:00 except the blackout: the blackout decides alone.
	var every []string
	for _, d := range []string{"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"} {
		every = append(every, d+" 00:00-24:00 Europe/Rome")
	}
	ws := schedule(t, every, "2026-12-24") // the zone of the windows
	if ws.Blackouts[0].TZ != "Europe/Rome" {
		t.Fatalf("blackout zone %q, want the windows' Europe/Rome", ws.Blackouts[0].TZ)
	}
	checkHeld(t, ws, []heldCase{
		{"2026-12-23T22:59:00Z", ""},           // Dec 23 23:59 Rome
		{"2026-12-23T23:00:00Z", HeldBlackout}, // Dec 24 00:00 Rome
		{"2026-12-24T22:59:59Z", HeldBlackout}, // Dec 24 23:59:59 Rome
		{"2026-12-24T23:00:00Z", ""},           // Dec 25 00:00 Rome
	})
	// Blackouts alone: open any other day.
	only := schedule(t, nil, "2026-12-24 America/New_York", "2026-12-31 America/New_York")
	checkHeld(t, only, []heldCase{
		{"2026-12-24T04:59:00Z", ""}, // Dec 23 23:59 EST
		{"2026-12-24T05:00:00Z", HeldBlackout},
		{"2026-12-25T04:59:00Z", HeldBlackout},
		{"2026-12-25T05:00:00Z", ""},
		{"2027-01-01T03:00:00Z", HeldBlackout}, // Dec 31 22:00 EST
		{"2027-01-01T05:00:00Z", ""},
	})
	// A blackout wins over a window that includes the instant.
	sat := schedule(t, []string{"Sat 01:00-05:00 Europe/Rome"}, "2026-12-05")
	checkHeld(t, sat, []heldCase{{"2026-12-05T01:00:00Z", HeldBlackout}, {"2026-12-12T01:00:00Z", ""}})
}

func TestWindowMultiple(t *testing.T) {
	ws := schedule(t, []string{"Sat 01:00-05:00 Europe/Rome", "Wed 22:00-23:00 America/New_York", "Sat 04:00-06:00 Europe/Rome"})
	checkHeld(t, ws, []heldCase{
		{"2026-12-05T00:30:00Z", ""},                // Sat 01:30 Rome
		{"2026-12-05T04:30:00Z", ""},                // Sat 05:30 Rome: the overlapping third window
		{"2026-12-05T05:00:00Z", HeldOutsideWindow}, // Sat 06:00 Rome
		{"2026-12-03T03:30:00Z", ""},                // Wed 22:30 EST = Thu 03:30 UTC
		{"2026-12-03T04:00:00Z", HeldOutsideWindow}, // Wed 23:00 EST
		{"2026-12-02T22:30:00Z", HeldOutsideWindow}, // Wed 22:30 UTC is 17:30 EST
	})
	if n := openMinutes(ws, utc("2026-11-30T00:00:00Z"), 7*24*time.Hour); n != 5*60+60 {
		t.Errorf("open %d minutes in a week, want 360", n)
	}
}

func TestWindowNextOpen(t *testing.T) {
	ws := schedule(t, []string{"Sat 01:00-05:00 Europe/Rome"}, "2026-12-12")
	cases := []struct{ at, want string }{
		{"2026-12-05T02:00:00Z", "2026-12-05T02:00:00Z"}, // open now
		{"2026-12-05T04:30:00Z", "2026-12-19T00:00:00Z"}, // after Saturday's window; the next Saturday is a blackout
		{"2026-12-01T10:00:00Z", "2026-12-05T00:00:00Z"},
	}
	for _, c := range cases {
		got, ok := ws.NextOpen(utc(c.at))
		if !ok || !got.Equal(utc(c.want)) {
			t.Errorf("NextOpen(%s) = %s, %v; want %s", c.at, got.UTC().Format(time.RFC3339), ok, c.want)
		}
	}
	// A start inside the spring-forward gap: the window opens at 03:00 CEST.
	gap := schedule(t, []string{"Sun 02:30-04:00 Europe/Rome"})
	if got, ok := gap.NextOpen(utc("2026-03-28T12:00:00Z")); !ok || !got.Equal(utc("2026-03-29T01:00:00Z")) {
		t.Errorf("NextOpen in the gap = %s, %v; want 2026-03-29T01:00:00Z", got.UTC().Format(time.RFC3339), ok)
	}
	// The second occurrence of a repeated hour opens the window again.
	rep := schedule(t, []string{"Sun 02:30-03:00 Europe/Rome"})
	if got, ok := rep.NextOpen(utc("2026-10-25T01:00:00Z")); !ok || !got.Equal(utc("2026-10-25T01:30:00Z")) {
		t.Errorf("NextOpen between the repeated hours = %s, %v; want 2026-10-25T01:30:00Z", got.UTC().Format(time.RFC3339), ok)
	}
	// Blackouts alone: the midnight after the last one.
	only := schedule(t, nil, "2026-12-24 UTC", "2026-12-25 UTC")
	if got, ok := only.NextOpen(utc("2026-12-24T10:00:00Z")); !ok || !got.Equal(utc("2026-12-26T00:00:00Z")) {
		t.Errorf("NextOpen after blackouts = %s, %v; want 2026-12-26T00:00:00Z", got.UTC().Format(time.RFC3339), ok)
	}
}

func TestWindowValidation(t *testing.T) {
	bad := []struct{ in, msg string }{
		{"Sat 01:00-05:00", "want DAY HH:MM-HH:MM ZONE"},
		{"Sat 01:00 05:00 Europe/Rome", "want DAY HH:MM-HH:MM ZONE"},
		{"Sat 01:00/05:00 Europe/Rome", "HH:MM-HH:MM"},
		{"Xyz 01:00-05:00 Europe/Rome", `day "Xyz"`},
		{"Sat 25:00-05:00 Europe/Rome", `start "25:00"`},
		{"Sat 24:00-05:00 Europe/Rome", `start "24:00"`},
		{"Sat 01:60-05:00 Europe/Rome", `start "01:60"`},
		{"Sat 01:00-24:30 Europe/Rome", `end "24:30"`},
		{"Sat 01:00-01:00 Europe/Rome", "end equals start"},
		{"Sat 01:00-05:00 Europe/Atlantis", `unknown time zone "Europe/Atlantis"`},
		{"Sat 01:00-05:00 Local", "IANA"},
	}
	for _, c := range bad {
		_, err := ParseWindow(c.in)
		var we *WindowError
		if !errors.As(err, &we) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("ParseWindow(%q) = %v, want a WindowError with %q", c.in, err, c.msg)
		}
	}
	good := map[string]string{
		"sat 1:00-5:00 Europe/Rome":        "Sat 01:00-05:00 Europe/Rome",
		"Saturday 23:00-02:00 UTC":         "Sat 23:00-02:00 UTC",
		"SUN 00:00-24:00 America/New_York": "Sun 00:00-24:00 America/New_York",
	}
	for in, want := range good {
		w, err := ParseWindow(in)
		if err != nil || w.String() != want {
			t.Errorf("ParseWindow(%q) = %q, %v; want %q", in, w.String(), err, want)
		}
	}
	var many Windows
	for i := 0; i <= MaxWindows; i++ {
		many.Weekly = append(many.Weekly, Window{Day: "sat", Start: "01:00", End: "02:00", TZ: "UTC"})
	}
	if err := many.Normalize(); err == nil || !strings.Contains(err.Error(), "at most 16") {
		t.Errorf("17 windows: %v", err)
	}
	for _, c := range []struct {
		ws  Windows
		msg string
	}{
		{Windows{Blackouts: []Blackout{{Date: "2026-12-24"}}}, "name its time zone"},
		{Windows{Weekly: []Window{{Day: "sat", Start: "01:00", End: "02:00", TZ: "UTC"}, {Day: "sat", Start: "01:00", End: "02:00", TZ: "Europe/Rome"}},
			Blackouts: []Blackout{{Date: "2026-12-24"}}}, "several"},
		{Windows{Blackouts: []Blackout{{Date: "2026-13-24", TZ: "UTC"}}}, "YYYY-MM-DD"},
		{Windows{Blackouts: []Blackout{{Date: "2026-12-24", TZ: "Mars/Olympus"}}}, "unknown time zone"},
		{Windows{Blackouts: []Blackout{{Date: "2026-12-24", TZ: "UTC"}, {Date: "2026-12-24", TZ: "UTC"}}}, "twice"},
	} {
		if err := c.ws.Normalize(); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("Normalize(%+v) = %v, want %q", c.ws, err, c.msg)
		}
	}
	if _, err := ParseBlackout("24/12/2026"); err == nil {
		t.Error("ParseBlackout accepted 24/12/2026")
	}
}

// TestWindowResolve: a channel's windows hold an update (Capgo's
// no_new_version_available, with Held saying why); a channel without
// windows, and answers that change nothing, are unaffected.
func TestWindowResolve(t *testing.T) {
	ws := func(a *App) {
		a.Channels[0].Windows = &Windows{Weekly: []Window{{Day: "sat", Start: "01:00", End: "05:00", TZ: "Europe/Rome"}}}
	}
	s := testSnapshot(t, ws)
	inside, outside := utc("2026-12-05T01:00:00Z"), utc("2026-12-05T10:00:00Z")

	r := baseReq()
	r.Now = inside
	if d := Resolve(s, &r); !d.OK() || d.Bundle.Version != "1.2.0" || d.Held != "" {
		t.Fatalf("inside the window: %+v, want 1.2.0", d)
	}
	r.Now = outside
	d := Resolve(s, &r)
	if d.OK() || d.Code != CodeNoNewVersion || d.Kind != KindUpToDate || d.Held != HeldOutsideWindow ||
		d.HeldBundle == nil || d.HeldBundle.Version != "1.2.0" || d.Channel == nil || d.Channel.Name != "production" || d.Version != "" {
		t.Fatalf("outside the window: %+v, want no_new_version_available held outside_maintenance_window", d)
	}
	// A refusal stays what it is: the device already runs the bundle.
	r.VersionName = "1.2.0"
	if d := Resolve(s, &r); d.Code != CodeNoNewVersion || d.Held != "" {
		t.Errorf("already current outside the window: %+v, want no Held", d)
	}
	// The beta channel has no windows: it updates at any time.
	r = baseReq()
	r.Now, r.DefaultChannel = outside, "beta"
	if d := Resolve(s, &r); !d.OK() || d.Bundle.Version != "1.3.0-beta.1" {
		t.Errorf("channel without windows: %+v", d)
	}
	// Back to the store build waits too.
	s = testSnapshot(t, func(a *App) { ws(a); a.Channels[0].Bundle = BuiltinVersion })
	r = baseReq()
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	r.Now = outside
	if d := Resolve(s, &r); d.Code != CodeNoNewVersion || d.Held != HeldOutsideWindow || !d.HeldBundle.Builtin() {
		t.Errorf("builtin outside the window: %+v", d)
	}
	r.Now = inside
	if d := Resolve(s, &r); !d.OK() || !d.Bundle.Builtin() {
		t.Errorf("builtin inside the window: %+v", d)
	}
}

// TestWindowSnapshotJSON: windows travel in the snapshot and come back
// indexed (their zones loaded) on the other side.
func TestWindowSnapshotJSON(t *testing.T) {
	s := testSnapshot(t, func(a *App) {
		a.Channels[0].Windows = &Windows{Weekly: []Window{{Day: "sat", Start: "01:00", End: "05:00", TZ: "Europe/Rome"}},
			Blackouts: []Blackout{{Date: "2026-12-12", TZ: "Europe/Rome"}}}
	})
	j, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(j), `"windows":{"weekly":[{"day":"sat","start":"01:00","end":"05:00","tz":"Europe/Rome"}],"blackouts":[{"date":"2026-12-12","tz":"Europe/Rome"}]}`) {
		t.Fatalf("snapshot JSON lacks the windows: %s", j)
	}
	var back Snapshot
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Index(nil); err != nil {
		t.Fatal(err)
	}
	ch := back.App("com.example.app").Channel("production")
	if ch.Windows.Held(utc("2026-12-05T01:00:00Z")) != "" || ch.Windows.Held(utc("2026-12-12T01:00:00Z")) != HeldBlackout {
		t.Error("decoded windows evaluate differently")
	}
	// An invalid schedule makes the snapshot invalid (the origin validates
	// it before storing, so only a corrupt snapshot can carry one).
	bad := testSnapshotErr(func(a *App) {
		a.Channels[0].Windows = &Windows{Weekly: []Window{{Day: "sat", Start: "01:00", End: "01:00", TZ: "UTC"}}}
	})
	if bad == nil || !strings.Contains(bad.Error(), "end equals start") {
		t.Errorf("invalid windows indexed: %v", bad)
	}
}

func testSnapshotErr(mod func(a *App)) error {
	app := &App{ID: "com.example.app", Bundles: []*Bundle{{Version: "1.0.0", SHA256: strings.Repeat("a", 64)}},
		Channels: []*Channel{{Name: "production", Bundle: "1.0.0", Public: true, IOS: true}}}
	mod(app)
	s := &Snapshot{Format: FormatVersion, Rev: 1, Apps: []*App{app}}
	return s.Index(nil)
}

func TestWindowHeldAllocs(t *testing.T) {
	ws := schedule(t, []string{"Sat 01:00-05:00 Europe/Rome", "Sun 02:00-04:00 America/New_York", "Wed 23:00-01:00 Asia/Tokyo"},
		"2026-12-24 Europe/Rome", "2026-12-31 Europe/Rome")
	now := utc("2026-12-02T10:00:00Z")
	if n := testing.AllocsPerRun(1000, func() { _ = ws.Held(now) }); n != 0 {
		t.Errorf("Held allocates %v times", n)
	}
	s := testSnapshot(t, func(a *App) { a.Channels[0].Windows = ws })
	r := baseReq()
	r.Now = now
	if n := testing.AllocsPerRun(1000, func() { _ = Resolve(s, &r) }); n != 0 {
		t.Errorf("Resolve on a channel with windows allocates %v times", n)
	}
}

func BenchmarkWindowHeld(b *testing.B) {
	ws := schedule(b, []string{"Sat 01:00-05:00 Europe/Rome", "Sun 02:00-04:00 Europe/Rome"}, "2026-12-24")
	now := utc("2026-12-02T10:00:00Z")
	b.ReportAllocs()
	for b.Loop() {
		_ = ws.Held(now)
	}
}

// TestWindowSegment: a segment's windows hold the devices it routes, on
// top of the channel's; the channel's other devices are not held by them.
func TestWindowSegment(t *testing.T) {
	s := testSnapshot(t, func(a *App) {
		a.Rules = []*Rule{{Name: "enterprise", Channel: "production", CustomIDPrefix: "corp-",
			Windows: &Windows{Weekly: []Window{{Day: "sat", Start: "01:00", End: "05:00", TZ: "Europe/Rome"}}}}}
	})
	inside, outside := utc("2026-12-05T01:00:00Z"), utc("2026-12-05T10:00:00Z")
	r := baseReq()
	r.CustomID, r.Now = "corp-42", outside
	if d := Resolve(s, &r); d.Code != CodeNoNewVersion || d.Held != HeldOutsideWindow || d.Rule != RuleSegment || d.Segment != "enterprise" {
		t.Errorf("segment device outside its window: %+v", d)
	}
	r.Now = inside
	if d := Resolve(s, &r); !d.OK() || d.Bundle.Version != "1.2.0" {
		t.Errorf("segment device inside its window: %+v", d)
	}
	r.CustomID, r.Now = "home-1", outside // the default rule, same channel: not held
	if d := Resolve(s, &r); !d.OK() || d.Rule != RuleDefault {
		t.Errorf("other device of the channel: %+v", d)
	}
	// Both schedules must be open: the channel's blackout holds the segment's devices too.
	s = testSnapshot(t, func(a *App) {
		a.Channels[0].Windows = &Windows{Blackouts: []Blackout{{Date: "2026-12-05", TZ: "UTC"}}}
		a.Rules = []*Rule{{Name: "enterprise", Channel: "production", CustomIDPrefix: "corp-",
			Windows: &Windows{Weekly: []Window{{Day: "sat", Start: "01:00", End: "05:00", TZ: "Europe/Rome"}}}}}
	})
	r.CustomID, r.Now = "corp-42", inside
	if d := Resolve(s, &r); d.Held != HeldBlackout {
		t.Errorf("channel blackout inside the segment's window: %+v", d)
	}
	// NextOpenAll: the first instant both are open.
	ch, seg := s.App("com.example.app").Channel("production").Windows, s.App("com.example.app").Rules[0].Windows
	if got, ok := NextOpenAll(inside, ch, seg); !ok || !got.Equal(utc("2026-12-12T00:00:00Z")) {
		t.Errorf("NextOpenAll = %s %v, want 2026-12-12T00:00:00Z", got, ok)
	}
	// An invalid schedule makes the rule invalid, as a WindowError.
	bad := &Rule{Name: "x", Channel: "production", Windows: &Windows{Weekly: []Window{{Day: "sat", Start: "01:00", End: "02:00", TZ: "Nowhere/City"}}}}
	var we *WindowError
	if err := bad.Validate(); !errors.As(err, &we) || !strings.Contains(err.Error(), "unknown time zone") {
		t.Errorf("rule with a bad window: %v", err)
	}
}

// FuzzParseWindow: any text either fails with a WindowError or gives a
// window whose canonical form parses back to itself.
func FuzzParseWindow(f *testing.F) {
	for _, s := range []string{"Sat 01:00-05:00 Europe/Rome", "sun 23:00-02:00 UTC", "Mon 00:00-24:00 America/New_York", "x 1:1-2:2 Y", "Tue 9:05-9:06 Asia/Tokyo"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseWindow(s)
		if err != nil {
			var we *WindowError
			if !errors.As(err, &we) {
				t.Fatalf("ParseWindow(%q): %T %v, want a WindowError", s, err, err)
			}
			return
		}
		back, err := ParseWindow(w.String())
		if err != nil || back.String() != w.String() {
			t.Fatalf("ParseWindow(%q) = %q, which parses as %q, %v", s, w.String(), back.String(), err)
		}
		_ = w.loc.String()
	})
}
