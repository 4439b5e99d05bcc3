package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/store/postgres"
	"github.com/updraft-cdn/updraft/origin/store/sqlite"
)

const (
	evApp   = "com.example.app"
	edgeA   = "0123456789abcdef0123456789abcdef"
	edgeB   = "fedcba9876543210fedcba9876543210"
	minuteM = int64(60000)
)

func openEvents(t *testing.T) *EventStore {
	t.Helper()
	s, err := reopenEvents(context.Background(), eventsPath(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// devID returns the i-th test device id (a UUID).
func devID(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i) }

// ev is a device event with the fields the aggregates look at.
func ev(received int64, device int, action, version, channel string) events.Event {
	return events.Event{
		Timestamp: received - 5, Received: received, AppID: evApp, DeviceID: devID(device), Action: action,
		VersionName: version, Platform: "android", VersionBuild: "1.0", PluginVersion: "7.0.0",
		IsProd: true, Channel: channel, Segment: "default", Arm: "rollout",
	}
}

// base is a minute-aligned time, so events at base+k*minute fall in known
// minutes.
func baseTime() int64 {
	return time.Now().Add(-time.Hour).UnixMilli() / minuteM * minuteM
}

// encodeSegment encodes evs as an edge's spool segment (records of at most
// events.MaxBatch events).
func encodeSegment(evs []events.Event) []byte {
	seg := []byte(events.Magic)
	for len(evs) > 0 {
		n := min(len(evs), events.MaxBatch)
		seg = events.AppendRecord(seg, evs[:n])
		evs = evs[n:]
	}
	return seg
}

func mustIngest(t *testing.T, s *EventStore, edge string, seq uint64, evs []events.Event) IngestResult {
	t.Helper()
	res, err := s.Ingest(context.Background(), edge, seq, encodeSegment(evs), evs)
	if err != nil {
		t.Fatalf("ingest %s/%d: %v", edge, seq, err)
	}
	return res
}

// totals returns the app's ingested events and the raw events kept (of
// every app).
func totals(t *testing.T, s *EventStore) (total, raw int64) {
	t.Helper()
	ctx := context.Background()
	total, err := s.TotalEvents(ctx, evApp)
	if err != nil {
		t.Fatal(err)
	}
	raw, err = s.RawEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return total, raw
}

// state is everything the aggregates say, to compare before and after an
// ingest that must change nothing.
type aggState struct {
	total, raw int64
	counts     []Count
	adoption   []AdoptionChange
	attempts   int64
	failures   int64
}

func snapshotAgg(t *testing.T, s *EventStore) aggState {
	t.Helper()
	ctx := context.Background()
	var st aggState
	st.total, st.raw = totals(t, s)
	f := EventFilter{AppID: evApp}
	var err error
	if st.counts, err = s.Counts(ctx, f); err != nil {
		t.Fatal(err)
	}
	sortCounts(st.counts)
	if st.adoption, err = s.AdoptionChanges(ctx, f); err != nil {
		t.Fatal(err)
	}
	sort.Slice(st.adoption, func(i, j int) bool { return fmt.Sprint(st.adoption[i]) < fmt.Sprint(st.adoption[j]) })
	if st.attempts, st.failures, err = s.Outcomes(ctx, evApp, "production", "1.0.1", "", 0); err != nil {
		t.Fatal(err)
	}
	return st
}

func sortCounts(cs []Count) {
	sort.Slice(cs, func(i, j int) bool { return fmt.Sprint(cs[i]) < fmt.Sprint(cs[j]) })
}

func TestIngestExactlyOncePerEdgeAndSeq(t *testing.T) {
	s := openEvents(t)
	b := baseTime()
	seg := []events.Event{
		ev(b, 1, "get", "1.0.0", "production"),
		ev(b+1, 1, "download_complete", "1.0.1", "production"),
		ev(b+2, 1, "set", "1.0.1", "production"),
		ev(b+3, 2, "update_fail", "1.0.1", "production"),
		ev(b+4, 3, "ping", "1.0.0", "production"),
		ev(b+5, 4, "reset", "1.0.0", "production"),
		ev(b+6, 5, "app_moved_to_foreground", "1.0.0", "production"),
	}
	res := mustIngest(t, s, edgeA, 1, seg)
	if res.Duplicate || res.Events != len(seg) {
		t.Fatalf("first ingest: %+v, want %d events, not duplicate", res, len(seg))
	}
	if !res.Outcomes[[2]string{evApp, "production"}] || len(res.Outcomes) != 1 {
		t.Fatalf("first ingest outcomes: %v, want only (app, production)", res.Outcomes)
	}
	if total, raw := totals(t, s); total != 7 || raw != 7 {
		t.Fatalf("after one segment: total %d raw %d, want 7 and 7", total, raw)
	}
	before := snapshotAgg(t, s)

	// The same segment again (a re-send): nothing changes.
	for i := 0; i < 2; i++ {
		res = mustIngest(t, s, edgeA, 1, seg)
		if !res.Duplicate || res.Events != 0 || len(res.Outcomes) != 0 {
			t.Fatalf("re-ingest of %s/1: %+v, want a duplicate with 0 events and no outcomes", edgeA, res)
		}
		if after := snapshotAgg(t, s); !reflect.DeepEqual(before, after) {
			t.Fatalf("a duplicate segment changed the aggregates:\nbefore %+v\nafter  %+v", before, after)
		}
	}
	// The same (edge, seq) with other events (an edge restored from a
	// backup reuses numbers): not a re-send, so it is ingested.
	if res = mustIngest(t, s, edgeA, 1, []events.Event{ev(b+10, 9, "ping", "1.0.1", "production")}); res.Duplicate || res.Events != 1 {
		t.Fatalf("reused seq with other content: %+v, want it ingested", res)
	}
	if total, _ := totals(t, s); total != 8 {
		t.Fatalf("after a reused seq: total %d, want 8", total)
	}
	before = snapshotAgg(t, s)

	// The same seq from another edge is another segment.
	res = mustIngest(t, s, edgeB, 1, seg)
	if res.Duplicate || res.Events != 7 {
		t.Fatalf("same seq from edge B: %+v, want ingested", res)
	}
	// A new seq from edge A too.
	res = mustIngest(t, s, edgeA, 2, seg[:3])
	if res.Duplicate || res.Events != 3 {
		t.Fatalf("edge A seq 2: %+v, want ingested", res)
	}
	if total, raw := totals(t, s); total != 18 || raw != 18 {
		t.Fatalf("after four segments: total %d raw %d, want 18 and 18", total, raw)
	}
	// Another app's events are not counted for this one.
	other := ev(b, 1, "set", "1.0.0", "production")
	other.AppID = "com.example.other"
	mustIngest(t, s, edgeA, 3, []events.Event{other})
	if total, raw := totals(t, s); total != 18 || raw != 19 {
		t.Fatalf("another app's event: total %d raw %d, want 18 for the app and 19 raw", total, raw)
	}
}

// TestIngestConcurrentDuplicates sends one segment from many goroutines at
// once (an edge retrying while its first attempt is still in flight):
// exactly one of them ingests it.
func TestIngestConcurrentDuplicates(t *testing.T) {
	s := openEvents(t)
	b := baseTime()
	seg := []events.Event{ev(b, 1, "set", "1.0.1", "production"), ev(b+1, 2, "update_fail", "1.0.1", "production")}
	const n = 8
	var wg sync.WaitGroup
	results := make([]IngestResult, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.Ingest(context.Background(), edgeA, 42, encodeSegment(seg), seg)
		}()
	}
	wg.Wait()
	ingested := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("concurrent ingest %d: %v", i, errs[i])
		}
		if !results[i].Duplicate {
			ingested++
		}
	}
	if ingested != 1 {
		t.Fatalf("%d of %d concurrent deliveries ingested, want exactly 1", ingested, n)
	}
	if total, raw := totals(t, s); total != 2 || raw != 2 {
		t.Fatalf("total %d raw %d, want 2", total, raw)
	}
	if a, f, err := s.Outcomes(context.Background(), evApp, "production", "1.0.1", "", 0); err != nil || a != 2 || f != 1 {
		t.Fatalf("outcomes: %d attempts %d failures (%v), want 2 and 1", a, f, err)
	}
}

func TestCountsByDimensions(t *testing.T) {
	s := openEvents(t)
	ctx := context.Background()
	b := baseTime()
	m0, m1 := b/minuteM, b/minuteM+1
	withSeg := func(e events.Event, segment, arm, platform string) events.Event {
		e.Segment, e.Arm, e.Platform = segment, arm, platform
		return e
	}
	mustIngest(t, s, edgeA, 1, []events.Event{
		ev(b, 1, "set", "1.0.1", "production"),
		ev(b+10, 2, "set", "1.0.1", "production"),
		ev(b+59999, 3, "set", "1.0.1", "production"), // still minute m0
		ev(b+20, 4, "update_fail", "1.0.1", "production"),
		withSeg(ev(b+30, 5, "set", "1.0.1", "production"), "rule:beta-testers", "base", "ios"),
		ev(b+40, 6, "get", "1.0.0", "production"),
		ev(b+60000, 7, "set", "1.0.1", "production"), // minute m1
		ev(b+60001, 8, "set", "1.0.0", "beta"),
	})
	// A second segment adds to existing rows.
	mustIngest(t, s, edgeB, 1, []events.Event{ev(b+60002, 9, "set", "1.0.1", "production"), ev(b+5, 10, "set", "1.0.1", "production")})

	c := func(minute int64, channel, segment, arm, platform, version, action string, n int64) Count {
		return Count{minute, channel, segment, arm, platform, version, action, n}
	}
	want := []Count{
		c(m0, "production", "default", "rollout", "android", "1.0.1", "set", 4),
		c(m0, "production", "default", "rollout", "android", "1.0.1", "update_fail", 1),
		c(m0, "production", "rule:beta-testers", "base", "ios", "1.0.1", "set", 1),
		c(m0, "production", "default", "rollout", "android", "1.0.0", "get", 1),
		c(m1, "production", "default", "rollout", "android", "1.0.1", "set", 2),
		c(m1, "beta", "default", "rollout", "android", "1.0.0", "set", 1),
	}
	check := func(name string, f EventFilter, want []Count) {
		t.Helper()
		got, err := s.Counts(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Minute < got[i-1].Minute {
				t.Fatalf("%s: counts not ordered by minute: %+v", name, got)
			}
		}
		w := append([]Count(nil), want...)
		sortCounts(got)
		sortCounts(w)
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("%s: counts\n got  %+v\n want %+v", name, got, w)
		}
	}
	check("all", EventFilter{AppID: evApp, From: b, To: b + 10*minuteM}, want)
	check("To 0 means now", EventFilter{AppID: evApp}, want)
	check("production", EventFilter{AppID: evApp, Channel: "production", From: b, To: b + 10*minuteM}, want[:5])
	check("minute m1 only", EventFilter{AppID: evApp, From: b + minuteM, To: b + 10*minuteM}, want[4:])
	check("minute m0 only", EventFilter{AppID: evApp, From: b, To: b + 59999}, want[:4])
	check("other app", EventFilter{AppID: "com.example.other", From: b, To: b + 10*minuteM}, nil)
	if total, _ := totals(t, s); total != 10 {
		t.Fatalf("TotalEvents = %d, want 10", total)
	}
	segs, err := s.Segments(ctx, evApp)
	if err != nil || !reflect.DeepEqual(segs, []string{"default", "rule:beta-testers"}) {
		t.Fatalf("Segments = %v (%v), want [default rule:beta-testers]", segs, err)
	}
	// The segment filter.
	check("segment rule:beta-testers", EventFilter{AppID: evApp, Segment: "rule:beta-testers", From: b, To: b + 10*minuteM}, want[2:3])
}

// netAdoption sums the adoption changes per version.
func netAdoption(t *testing.T, s *EventStore, f EventFilter) map[string]int64 {
	t.Helper()
	chs, err := s.AdoptionChanges(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	net := map[string]int64{}
	for _, c := range chs {
		net[c.Version] += c.Delta
	}
	return net
}

func TestAdoption(t *testing.T) {
	s := openEvents(t)
	ctx := context.Background()
	b := baseTime()
	f := EventFilter{AppID: evApp}

	// Device 1 installs 1.0.0, then (in a later segment and minute) 1.0.1.
	mustIngest(t, s, edgeA, 1, []events.Event{ev(b, 1, "set", "1.0.0", "production")})
	if got := netAdoption(t, s, f); !reflect.DeepEqual(got, map[string]int64{"1.0.0": 1}) {
		t.Fatalf("after set 1.0.0: adoption %v, want 1.0.0:+1", got)
	}
	mustIngest(t, s, edgeA, 2, []events.Event{ev(b+minuteM, 1, "set", "1.0.1", "production")})
	if got := netAdoption(t, s, f); got["1.0.1"] != 1 || got["1.0.0"] != 0 || len(got) != 2 {
		t.Fatalf("after set 1.0.0 then 1.0.1: adoption %v, want 1.0.0:0 1.0.1:+1", got)
	}
	// Up to the first minute only, the device is still on 1.0.0.
	if got := netAdoption(t, s, EventFilter{AppID: evApp, To: b + 59999}); !reflect.DeepEqual(got, map[string]int64{"1.0.0": 1}) {
		t.Fatalf("adoption up to the first minute: %v, want 1.0.0:+1", got)
	}

	// Repeating "set" of the version the device is on changes nothing, in
	// the same minute or later, in one segment or several.
	before, err := s.AdoptionChanges(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	mustIngest(t, s, edgeA, 3, []events.Event{ev(b+minuteM+1, 1, "set", "1.0.1", "production"), ev(b+2*minuteM, 1, "set", "1.0.1", "production")})
	mustIngest(t, s, edgeA, 4, []events.Event{ev(b+3*minuteM, 1, "set", "1.0.1", "production")})
	if after, err := s.AdoptionChanges(ctx, f); err != nil || !reflect.DeepEqual(before, after) {
		t.Fatalf("repeated set changed adoption:\nbefore %+v\nafter  %+v (%v)", before, after, err)
	}

	// "reset" moves the device back to the store build.
	mustIngest(t, s, edgeA, 5, []events.Event{ev(b+4*minuteM, 1, "reset", "1.0.1", "production")})
	if got := netAdoption(t, s, f); got["builtin"] != 1 || got["1.0.1"] != 0 || got["1.0.0"] != 0 {
		t.Fatalf("after reset: adoption %v, want builtin:+1, 1.0.1:0, 1.0.0:0", got)
	}
	// A second reset changes nothing either.
	before, _ = s.AdoptionChanges(ctx, f)
	mustIngest(t, s, edgeA, 6, []events.Event{ev(b+5*minuteM, 1, "reset", "1.0.1", "production")})
	if after, _ := s.AdoptionChanges(ctx, f); !reflect.DeepEqual(before, after) {
		t.Fatalf("repeated reset changed adoption:\nbefore %+v\nafter  %+v", before, after)
	}

	// Several moves of one device inside one segment (and one minute) net
	// out: device 2 goes 1.0.0 → 1.0.1 → builtin → 1.0.1.
	mustIngest(t, s, edgeB, 1, []events.Event{
		ev(b+6*minuteM, 2, "set", "1.0.0", "production"),
		ev(b+6*minuteM+1, 2, "set", "1.0.1", "production"),
		ev(b+6*minuteM+2, 2, "reset", "1.0.1", "production"),
		ev(b+6*minuteM+3, 2, "set", "1.0.1", "production"),
		ev(b+6*minuteM+4, 3, "get", "1.0.0", "production"), // not an install: no adoption
		ev(b+6*minuteM+5, 4, "update_fail", "1.0.0", "production"),
	})
	want := map[string]int64{"1.0.0": 0, "1.0.1": 1, "builtin": 1}
	if got := netAdoption(t, s, f); !reflect.DeepEqual(got, want) {
		t.Fatalf("after in-segment moves: adoption %v, want %v", got, want)
	}
	// No zero-delta rows are stored for a minute where moves cancel out.
	chs, _ := s.AdoptionChanges(ctx, f)
	for _, c := range chs {
		if c.Delta == 0 {
			t.Fatalf("zero adoption change stored: %+v", c)
		}
	}

	// A device moving to another channel leaves the old one: per channel,
	// production loses device 2 and beta gains it.
	mustIngest(t, s, edgeB, 2, []events.Event{ev(b+7*minuteM, 2, "set", "1.0.2", "beta")})
	if got := netAdoption(t, s, EventFilter{AppID: evApp, Channel: "beta"}); !reflect.DeepEqual(got, map[string]int64{"1.0.2": 1}) {
		t.Fatalf("beta adoption %v, want 1.0.2:+1", got)
	}
	if got := netAdoption(t, s, EventFilter{AppID: evApp, Channel: "production"}); got["1.0.1"] != 0 || got["builtin"] != 1 {
		t.Fatalf("production adoption %v, want 1.0.1:0 builtin:+1", got)
	}
}

func TestOutcomesLatestReportWins(t *testing.T) {
	s := openEvents(t)
	ctx := context.Background()
	b := baseTime()
	outcomes := func(since int64) (int64, int64) {
		t.Helper()
		a, f, err := s.Outcomes(ctx, evApp, "production", "1.0.1", "", since)
		if err != nil {
			t.Fatal(err)
		}
		return a, f
	}
	// Device 1 fails, then (later, another segment) installs: a success.
	mustIngest(t, s, edgeA, 1, []events.Event{ev(b, 1, "update_fail", "1.0.1", "production")})
	if a, f := outcomes(0); a != 1 || f != 1 {
		t.Fatalf("after a failure: %d attempts %d failures, want 1 1", a, f)
	}
	mustIngest(t, s, edgeA, 2, []events.Event{ev(b+1000, 1, "set", "1.0.1", "production")})
	if a, f := outcomes(0); a != 1 || f != 0 {
		t.Fatalf("fail then set: %d attempts %d failures, want 1 0", a, f)
	}
	// Device 2 installs, then fails: a failure.
	mustIngest(t, s, edgeA, 3, []events.Event{ev(b+2000, 2, "set", "1.0.1", "production")})
	mustIngest(t, s, edgeA, 4, []events.Event{ev(b+3000, 2, "download_fail", "1.0.1", "production")})
	if a, f := outcomes(0); a != 2 || f != 1 {
		t.Fatalf("device 2 set then fail: %d attempts %d failures, want 2 1", a, f)
	}
	// Within one segment, fail then set: a success.
	mustIngest(t, s, edgeA, 5, []events.Event{
		ev(b+4000, 3, "unzip_fail", "1.0.1", "production"),
		ev(b+4001, 3, "set", "1.0.1", "production"),
	})
	if a, f := outcomes(0); a != 3 || f != 1 {
		t.Fatalf("device 3 fail then set in one segment: %d attempts %d failures, want 3 1", a, f)
	}
	// Segments arriving out of order: device 4's later failure arrives
	// first, its earlier success after it. The later report (by edge time)
	// still wins.
	mustIngest(t, s, edgeB, 1, []events.Event{ev(b+9000, 4, "update_fail", "1.0.1", "production")})
	mustIngest(t, s, edgeB, 0, []events.Event{ev(b+5000, 4, "set", "1.0.1", "production")})
	if a, f := outcomes(0); a != 4 || f != 2 {
		t.Fatalf("device 4 out-of-order: %d attempts %d failures, want 4 2", a, f)
	}
	// Events that are not install outcomes count for nothing; other
	// versions, channels and apps neither.
	other := ev(b+6000, 9, "update_fail", "1.0.1", "production")
	other.AppID = "com.example.other"
	mustIngest(t, s, edgeA, 6, []events.Event{
		ev(b+6000, 5, "get", "1.0.1", "production"),
		ev(b+6000, 6, "download_complete", "1.0.1", "production"),
		ev(b+6000, 7, "update_fail", "1.0.0", "production"),
		ev(b+6000, 8, "update_fail", "1.0.1", "beta"),
		other,
	})
	if a, f := outcomes(0); a != 4 || f != 2 {
		t.Fatalf("unrelated events counted: %d attempts %d failures, want 4 2", a, f)
	}
	if a, f, _ := s.Outcomes(ctx, evApp, "beta", "1.0.1", "", 0); a != 1 || f != 1 {
		t.Fatalf("beta: %d attempts %d failures, want 1 1", a, f)
	}
	// The window: since excludes older reports. Device 1's latest report is
	// at b+1000, device 2's at b+3000, device 3's at b+4001, device 4's at
	// b+9000.
	for _, tc := range []struct {
		since          int64
		attempts, fail int64
	}{
		{b + 1000, 4, 2}, {b + 1001, 3, 2}, {b + 3001, 2, 1}, {b + 4002, 1, 1}, {b + 9001, 0, 0},
	} {
		if a, f := outcomes(tc.since); a != tc.attempts || f != tc.fail {
			t.Errorf("since b+%d: %d attempts %d failures, want %d %d", tc.since-b, a, f, tc.attempts, tc.fail)
		}
	}
}

// rawSegments lists the retained raw segments received in [from, to).
func rawSegments(t *testing.T, s *EventStore, from, to int64) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := s.RawSegments(context.Background(), from, to, func(edge string, seq uint64, seg []byte) error {
		k := fmt.Sprintf("%s/%d", edge, seq)
		if _, dup := out[k]; dup {
			return fmt.Errorf("segment %s listed twice", k)
		}
		out[k] = bytes.Clone(seg)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRawSegmentsRoundTrip(t *testing.T) {
	s := openEvents(t)
	b := baseTime()
	seg1 := []events.Event{ev(b, 1, "set", "1.0.1", "production"), ev(b+1, 2, "get", "1.0.1", "production")}
	big := make([]events.Event, 450) // three records
	for i := range big {
		big[i] = ev(b+int64(i), 100+i, "download_complete", "1.0.1", "production")
		big[i].Metadata = `{"k":"v"}`
		big[i].CustomID = fmt.Sprintf("user-%d", i)
	}
	start := time.Now().UnixMilli()
	mustIngest(t, s, edgeA, 1, seg1)
	mustIngest(t, s, edgeB, 9, big)
	mustIngest(t, s, edgeA, 1, seg1) // a re-send: the first data is kept once
	end := time.Now().UnixMilli() + 1
	got := rawSegments(t, s, start, end)
	want := map[string][]byte{edgeA + "/1": encodeSegment(seg1), edgeB + "/9": encodeSegment(big)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("raw segments: got %d (%v), want %d", len(got), keys(got), len(want))
	}
	// The stored bytes decode to the events ingested.
	var decoded []events.Event
	if err := events.DecodeSegment(got[edgeB+"/9"], func(e *events.Event) error { decoded = append(decoded, *e); return nil }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(decoded, big) {
		t.Fatalf("raw segment decodes to %d events, not the %d ingested", len(decoded), len(big))
	}
	if _, raw := totals(t, s); raw != 452 {
		t.Fatalf("RawEvents = %d, want 452", raw)
	}
	// The range is by origin receive time, [from, to).
	if got := rawSegments(t, s, end, end+60000); len(got) != 0 {
		t.Fatalf("segments received after the ingests: %v", keys(got))
	}
	if got := rawSegments(t, s, 0, start); len(got) != 0 {
		t.Fatalf("segments received before the ingests: %v", keys(got))
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestPruneKeepsCounts(t *testing.T) {
	s := openEvents(t)
	ctx := context.Background()
	now := time.Now().UnixMilli()
	old := now - 10*24*time.Hour.Milliseconds()
	seg1 := []events.Event{
		ev(old, 1, "set", "1.0.0", "production"),
		ev(old+1, 2, "get", "1.0.0", "production"),
		ev(old+2, 3, "update_fail", "1.0.0", "production"),
	}
	mustIngest(t, s, edgeA, 1, seg1)
	mustIngest(t, s, edgeA, 2, []events.Event{ev(now, 4, "set", "1.0.1", "production"), ev(now, 5, "get", "1.0.1", "production")})
	countsBefore, err := s.Counts(ctx, EventFilter{AppID: evApp, From: old - minuteM})
	if err != nil {
		t.Fatal(err)
	}
	sortCounts(countsBefore)
	adoptionBefore := netAdoption(t, s, EventFilter{AppID: evApp})

	// Retention is by when the origin received a segment: both were
	// received just now, so a cut-off a week ago drops nothing (even
	// though seg1's events are from ten days ago by edge time).
	if n, err := s.Prune(ctx, now-7*24*time.Hour.Milliseconds()); err != nil || n != 0 {
		t.Fatalf("Prune(a week ago) = %d (%v), want 0", n, err)
	}
	if total, raw := totals(t, s); total != 5 || raw != 5 {
		t.Fatalf("after a no-op prune: total %d raw %d, want 5 and 5", total, raw)
	}

	// A cut-off after both segments drops all raw events, keeps aggregates.
	cut := time.Now().UnixMilli() + 1
	n, err := s.Prune(ctx, cut)
	if err != nil || n != 5 {
		t.Fatalf("Prune = %d (%v), want 5 raw events dropped", n, err)
	}
	if total, raw := totals(t, s); total != 5 || raw != 0 {
		t.Fatalf("after prune: total %d raw %d, want 5 (aggregates kept) and 0", total, raw)
	}
	if got := rawSegments(t, s, 0, cut+60000); len(got) != 0 {
		t.Fatalf("raw segments after prune: %v", keys(got))
	}
	countsAfter, err := s.Counts(ctx, EventFilter{AppID: evApp, From: old - minuteM})
	if err != nil {
		t.Fatal(err)
	}
	sortCounts(countsAfter)
	if !reflect.DeepEqual(countsBefore, countsAfter) || len(countsAfter) != 5 {
		t.Fatalf("prune changed counts:\nbefore %+v\nafter  %+v", countsBefore, countsAfter)
	}
	if got := netAdoption(t, s, EventFilter{AppID: evApp}); !reflect.DeepEqual(got, adoptionBefore) {
		t.Fatalf("prune changed adoption: %v, was %v", got, adoptionBefore)
	}
	// The ingest records outlive the raw data: re-sending a pruned segment
	// is still a duplicate.
	if res := mustIngest(t, s, edgeA, 1, seg1); !res.Duplicate {
		t.Fatalf("re-sent segment after prune: %+v, want a duplicate", res)
	}
	// Pruning again drops nothing more.
	if n, err := s.Prune(ctx, cut); err != nil || n != 0 {
		t.Fatalf("second Prune = %d (%v), want 0", n, err)
	}
	if total, _ := totals(t, s); total != 5 {
		t.Fatalf("total %d after re-send and prune, want 5", total)
	}
	// Only past IngestRecordGrace are the ingest records dropped too (from
	// then on a re-sent segment is no longer recognised).
	if n, err := s.Prune(ctx, cut+IngestRecordGrace.Milliseconds()+1); err != nil || n != 0 {
		t.Fatalf("Prune past the grace = %d (%v), want 0 raw events", n, err)
	}
	if res := mustIngest(t, s, edgeA, 1, seg1); res.Duplicate {
		t.Fatalf("re-sent segment after its ingest record was pruned: %+v, want ingested", res)
	}
}

func TestEventsReopen(t *testing.T) {
	ctx := context.Background()
	path := eventsPath(t)
	s, err := reopenEvents(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	b := baseTime()
	if _, err := s.Ingest(ctx, edgeA, 7, encodeSegment([]events.Event{ev(b, 1, "set", "1.0.1", "production")}), []events.Event{ev(b, 1, "set", "1.0.1", "production")}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = reopenEvents(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if res, err := s.Ingest(ctx, edgeA, 7, encodeSegment([]events.Event{ev(b, 1, "set", "1.0.1", "production")}), []events.Event{ev(b, 1, "set", "1.0.1", "production")}); err != nil || !res.Duplicate {
		t.Fatalf("re-sent segment after reopen: %+v (%v), want a duplicate", res, err)
	}
	if n, err := s.TotalEvents(ctx, evApp); err != nil || n != 1 {
		t.Fatalf("TotalEvents after reopen = %d (%v), want 1", n, err)
	}
}

// guardStore opens a metadata store with app com.example.app, bundles
// 1.0.0 and 1.0.1 and channels production and beta.
func guardStore(t *testing.T) (*Store, string) {
	t.Helper()
	ctx := context.Background()
	s, path := open(t)
	if _, err := s.CreateApp(ctx, evApp, ""); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.0.0", "1.0.1"} {
		if _, err := s.CreateBundle(ctx, Bundle{AppID: evApp, Version: v, SHA256: "ab", Size: 10}); err != nil {
			t.Fatal(err)
		}
	}
	for _, ch := range []string{"production", "beta"} {
		if _, _, _, err := s.PutChannel(ctx, evApp, ch, ChannelPatch{Bundle: ptr("1.0.0")}, false); err != nil {
			t.Fatal(err)
		}
	}
	return s, path
}

func TestDefaultGuard(t *testing.T) {
	g := DefaultGuard(Guard{})
	want := Guard{WindowSeconds: 600, MinAttempts: 50, MinFailures: 5, ThresholdBPS: 1000, Confidence: 0.95, Action: GuardPause, CooldownSeconds: 300,
		MinPrefixes: 5, MaxDevicesPerPrefix: 25}
	if g != want {
		t.Fatalf("DefaultGuard(zero) = %+v, want %+v", g, want)
	}
	if err := g.Validate(); err != nil {
		t.Fatalf("default guard invalid: %v", err)
	}
	set := Guard{WindowSeconds: 60, MinAttempts: 10, MinFailures: 2, ThresholdBPS: 500, Confidence: 0.99, Action: GuardNotify, CooldownSeconds: 10,
		MinPrefixes: 1, MaxDevicesPerPrefix: 1000, CountNewDevices: true}
	if got := DefaultGuard(set); got != set {
		t.Fatalf("DefaultGuard changed set fields: %+v, want %+v", got, set)
	}
}

func TestGuardValidate(t *testing.T) {
	valid := DefaultGuard(Guard{})
	with := func(fn func(g *Guard)) Guard {
		g := valid
		fn(&g)
		return g
	}
	good := []struct {
		name string
		g    Guard
	}{
		{"defaults", valid},
		{"window 1s", with(func(g *Guard) { g.WindowSeconds = 1 })},
		{"window 7 days", with(func(g *Guard) { g.WindowSeconds = 7 * 86400 })},
		{"min attempts 1, min failures 1", with(func(g *Guard) { g.MinAttempts, g.MinFailures = 1, 1 })},
		{"min failures = min attempts", with(func(g *Guard) { g.MinFailures = g.MinAttempts })},
		{"threshold 1", with(func(g *Guard) { g.ThresholdBPS = 1 })},
		{"threshold 10000", with(func(g *Guard) { g.ThresholdBPS = 10000 })},
		{"confidence 0.5", with(func(g *Guard) { g.Confidence = 0.5 })},
		{"confidence 0.999", with(func(g *Guard) { g.Confidence = 0.999 })},
		{"rollback", with(func(g *Guard) { g.Action = GuardRollback })},
		{"notify", with(func(g *Guard) { g.Action = GuardNotify })},
		{"cooldown 0", with(func(g *Guard) { g.CooldownSeconds = 0 })},
		{"cooldown 7 days", with(func(g *Guard) { g.CooldownSeconds = 7 * 86400 })},
		{"min prefixes 1", with(func(g *Guard) { g.MinPrefixes = 1 })},
		{"min prefixes 10000", with(func(g *Guard) { g.MinPrefixes = 10000 })},
		{"1 device per prefix", with(func(g *Guard) { g.MaxDevicesPerPrefix = 1 })},
		{"count new devices", with(func(g *Guard) { g.CountNewDevices = true })},
	}
	for _, tc := range good {
		if err := tc.g.Validate(); err != nil {
			t.Errorf("%s: Validate(%+v) = %v, want nil", tc.name, tc.g, err)
		}
	}
	bad := []struct {
		name string
		g    Guard
	}{
		{"window 0", with(func(g *Guard) { g.WindowSeconds = 0 })},
		{"window negative", with(func(g *Guard) { g.WindowSeconds = -1 })},
		{"window over 7 days", with(func(g *Guard) { g.WindowSeconds = 7*86400 + 1 })},
		{"min attempts 0", with(func(g *Guard) { g.MinAttempts = 0 })},
		{"min attempts negative", with(func(g *Guard) { g.MinAttempts = -5 })},
		{"min failures 0", with(func(g *Guard) { g.MinFailures = 0 })},
		{"min failures over min attempts", with(func(g *Guard) { g.MinFailures = g.MinAttempts + 1 })},
		{"threshold 0", with(func(g *Guard) { g.ThresholdBPS = 0 })},
		{"threshold over 10000", with(func(g *Guard) { g.ThresholdBPS = 10001 })},
		{"confidence 0", with(func(g *Guard) { g.Confidence = 0 })},
		{"confidence below 0.5", with(func(g *Guard) { g.Confidence = 0.49 })},
		{"confidence 1", with(func(g *Guard) { g.Confidence = 1 })},
		{"confidence 95 (percent)", with(func(g *Guard) { g.Confidence = 95 })},
		{"confidence +Inf", with(func(g *Guard) { g.Confidence = math.Inf(1) })},
		{"confidence -Inf", with(func(g *Guard) { g.Confidence = math.Inf(-1) })},
		{"action empty", with(func(g *Guard) { g.Action = "" })},
		{"action unknown", with(func(g *Guard) { g.Action = "explode" })},
		{"action upper case", with(func(g *Guard) { g.Action = "Pause" })},
		{"cooldown negative", with(func(g *Guard) { g.CooldownSeconds = -1 })},
		{"cooldown over 7 days", with(func(g *Guard) { g.CooldownSeconds = 7*86400 + 1 })},
		{"min prefixes 0", with(func(g *Guard) { g.MinPrefixes = 0 })},
		{"min prefixes over 10000", with(func(g *Guard) { g.MinPrefixes = 10001 })},
		{"max devices per prefix 0", with(func(g *Guard) { g.MaxDevicesPerPrefix = 0 })},
		{"max devices per prefix negative", with(func(g *Guard) { g.MaxDevicesPerPrefix = -1 })},
	}
	for _, tc := range bad {
		err := tc.g.Validate()
		var inv *InvalidError
		if !errors.As(err, &inv) || inv.Code != CodeInvalidGuard {
			t.Errorf("%s: Validate(%+v) = %v, want *InvalidError with code %s", tc.name, tc.g, err, CodeInvalidGuard)
		}
	}
}

// TestGuardValidateRefusesNaNConfidence_BUG documents a bug: Validate
// accepts a NaN confidence (both range comparisons are false for NaN).
// SetGuard then stores it: json.Marshal fails on NaN, its error is ignored
// and the empty config is stored, after which Guards fails to decode it —
// for every app, which stops the rollout guard loop (evaluateAll returns
// the error) for all guarded channels.
// Not reachable through the HTTP API (JSON has no NaN), only through the
// Go API.
func TestGuardValidateRefusesNaNConfidence_BUG(t *testing.T) {
	g := DefaultGuard(Guard{})
	g.Confidence = math.NaN()
	var inv *InvalidError
	if err := g.Validate(); !errors.As(err, &inv) || inv.Code != CodeInvalidGuard {
		t.Errorf("BUG: Validate accepts confidence NaN: got %v, want *InvalidError %s", err, CodeInvalidGuard)
	}
	ctx := context.Background()
	s, _ := guardStore(t)
	if err := s.SetGuard(ctx, evApp, "beta", ptr(DefaultGuard(Guard{}))); err != nil {
		t.Fatal(err)
	}
	setErr := s.SetGuard(ctx, evApp, "production", &g)
	if _, err := s.Guards(ctx, ""); err != nil {
		t.Errorf("BUG: after SetGuard with confidence NaN (SetGuard returned %v), Guards fails for every channel: %v", setErr, err)
	}
}

func TestGuardStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, path := guardStore(t)
	rev0, _ := s.Rev(ctx)

	gs, err := s.Guards(ctx, "")
	if err != nil || len(gs) != 0 {
		t.Fatalf("Guards on a new store = %v (%v), want none", gs, err)
	}
	g := Guard{WindowSeconds: 600, MinAttempts: 50, MinFailures: 5, ThresholdBPS: 1000, Confidence: 0.95, Action: GuardPause, CooldownSeconds: 300,
		MinPrefixes: 5, MaxDevicesPerPrefix: 25}
	if err := s.SetGuard(ctx, evApp, "production", &g); err != nil {
		t.Fatal(err)
	}
	g2 := g
	g2.Action, g2.MinAttempts = GuardNotify, 20
	if err := s.SetGuard(ctx, evApp, "beta", &g2); err != nil {
		t.Fatal(err)
	}
	gs, err = s.Guards(ctx, evApp)
	if err != nil {
		t.Fatal(err)
	}
	want := []GuardedChannel{{AppID: evApp, Channel: "beta", Guard: g2}, {AppID: evApp, Channel: "production", Guard: g}}
	if !reflect.DeepEqual(gs, want) {
		t.Fatalf("Guards = %+v, want %+v", gs, want)
	}
	if all, err := s.Guards(ctx, ""); err != nil || !reflect.DeepEqual(all, want) {
		t.Fatalf("Guards(all) = %+v (%v), want %+v", all, err, want)
	}
	if other, err := s.Guards(ctx, "com.example.other"); err != nil || len(other) != 0 {
		t.Fatalf("Guards of another app = %+v (%v), want none", other, err)
	}
	// Guards are not part of the snapshot: no new revision.
	if rev, _ := s.Rev(ctx); rev != rev0 {
		t.Fatalf("SetGuard bumped the revision %d → %d", rev0, rev)
	}

	// Refusals store nothing.
	var inv *InvalidError
	bad := g
	bad.ThresholdBPS = 0
	if err := s.SetGuard(ctx, evApp, "production", &bad); !errors.As(err, &inv) || inv.Code != CodeInvalidGuard {
		t.Fatalf("invalid guard: %v, want %s", err, CodeInvalidGuard)
	}
	if err := s.SetGuard(ctx, evApp, "nightly", &g); !errors.As(err, &inv) || inv.Code != CodeUnknownChannel {
		t.Fatalf("guard of unknown channel: %v, want %s", err, CodeUnknownChannel)
	}
	if err := s.SetGuard(ctx, "com.missing.app", "production", &g); !errors.Is(err, ErrNotFound) {
		t.Fatalf("guard of unknown app: %v, want ErrNotFound", err)
	}
	if gs, _ := s.Guards(ctx, ""); !reflect.DeepEqual(gs, want) {
		t.Fatalf("refused changes changed guards: %+v", gs)
	}

	// Actions: newest first, limited, and they start the cooldown.
	if as, err := s.GuardActions(ctx, evApp, "production", 10); err != nil || as == nil || len(as) != 0 {
		t.Fatalf("GuardActions before any = %#v (%v), want an empty, non-nil list", as, err)
	}
	t1 := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	t2 := t1.Add(30 * time.Second)
	a1 := GuardAction{AppID: evApp, Channel: "production", At: t1, Action: GuardPause, Bundle: "1.0.1",
		Attempts: 100, Failures: 30, FailureRate: 0.3, LowerBound: 0.2307}
	a2 := GuardAction{AppID: evApp, Channel: "production", At: t2, Action: GuardPause, Bundle: "1.0.1",
		Attempts: 60, Failures: 12, FailureRate: 0.2, LowerBound: 0.12, Error: "store: channel production has no rollout to pause"}
	for _, a := range []GuardAction{a1, a2} {
		if err := s.RecordGuardAction(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	as, err := s.GuardActions(ctx, evApp, "production", 10)
	if err != nil || !reflect.DeepEqual(as, []GuardAction{a2, a1}) {
		t.Fatalf("GuardActions = %+v (%v), want [a2 a1]", as, err)
	}
	if as, _ := s.GuardActions(ctx, evApp, "production", 1); !reflect.DeepEqual(as, []GuardAction{a2}) {
		t.Fatalf("GuardActions limit 1 = %+v, want [a2]", as)
	}
	if as, _ := s.GuardActions(ctx, evApp, "beta", 10); len(as) != 0 {
		t.Fatalf("beta has actions %+v, want none", as)
	}
	gs, _ = s.Guards(ctx, evApp)
	if !gs[1].LastAt.Equal(t2) || !gs[0].LastAt.IsZero() {
		t.Fatalf("last actions: beta %v production %v, want zero and %v", gs[0].LastAt, gs[1].LastAt, t2)
	}
	// Changing the configuration keeps the cooldown running.
	g3 := g
	g3.ThresholdBPS = 2000
	if err := s.SetGuard(ctx, evApp, "production", &g3); err != nil {
		t.Fatal(err)
	}
	gs, _ = s.Guards(ctx, evApp)
	if gs[1].Guard != g3 || !gs[1].LastAt.Equal(t2) {
		t.Fatalf("after reconfiguring: %+v, want guard %+v and last action %v", gs[1], g3, t2)
	}

	// Everything survives a reopen (migration 6 is applied once).
	s.Close()
	s, err = reopen(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	gs2, err := s.Guards(ctx, "")
	if err != nil || !reflect.DeepEqual(gs2, gs) {
		t.Fatalf("guards after reopen = %+v (%v), want %+v", gs2, err, gs)
	}
	var applied int
	table, wantN := "schema_migrations", sqlite.Meta.Len()
	if s.Engine() == "postgres" {
		table, wantN = postgres.Meta.MigrationsTable(), postgres.Meta.Len()
	}
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM `+table).Scan(&applied); err != nil || applied != wantN {
		t.Fatalf("%d migrations recorded (%v), want %d", applied, err, wantN)
	}
	if as, _ := s.GuardActions(ctx, evApp, "production", 10); len(as) != 2 {
		t.Fatalf("actions after reopen: %+v, want 2", as)
	}

	// Removing a guard; removing it again is harmless.
	for range 2 {
		if err := s.SetGuard(ctx, evApp, "production", nil); err != nil {
			t.Fatal(err)
		}
	}
	gs, _ = s.Guards(ctx, evApp)
	if len(gs) != 1 || gs[0].Channel != "beta" {
		t.Fatalf("after removing production's guard: %+v, want only beta", gs)
	}
}

func TestCountsByPlatform(t *testing.T) {
	s := openEvents(t)
	b := baseTime()
	var evs []events.Event
	for i := 0; i < 10; i++ {
		e := ev(b, i, "set", "1.0.0", "production")
		e.Platform = []string{"ios", "android"}[i%3%2] // counted below
		evs = append(evs, e)
	}
	want := map[string]int64{}
	for _, e := range evs {
		want[e.Platform]++
	}
	mustIngest(t, s, "00000000000000000000000000000001", 1, evs)
	for _, p := range []string{"ios", "android"} {
		cs, err := s.Counts(context.Background(), EventFilter{AppID: evApp, Platform: p})
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, c := range cs {
			if c.Platform != p {
				t.Fatalf("platform filter %s returned %+v", p, c)
			}
			n += c.N
		}
		if n != want[p] || n == 0 {
			t.Fatalf("platform %s: %d events, want %d", p, n, want[p])
		}
		adopt := netAdoption(t, s, EventFilter{AppID: evApp, Platform: p})
		if adopt["1.0.0"] != want[p] {
			t.Fatalf("platform %s adoption %v, want %d", p, adopt, want[p])
		}
	}
}

// An install reported late (a delayed segment from another edge) does not
// move the device back; a device that changes channel on the same version
// moves its adoption to the new channel.
func TestAdoptionOutOfOrderAndChannelMove(t *testing.T) {
	s := openEvents(t)
	b := baseTime()
	mustIngest(t, s, "00000000000000000000000000000002", 1, []events.Event{ev(b+120_000, 1, "set", "1.0.2", "production")})
	mustIngest(t, s, "00000000000000000000000000000001", 1, []events.Event{ev(b+60_000, 1, "set", "1.0.1", "production")})
	if got := netAdoption(t, s, EventFilter{AppID: evApp}); got["1.0.2"] != 1 || got["1.0.1"] != 0 {
		t.Fatalf("adoption after a late older install: %v, want the device on 1.0.2", got)
	}
	mustIngest(t, s, "00000000000000000000000000000001", 2, []events.Event{ev(b+180_000, 1, "set", "1.0.2", "beta")})
	if got := netAdoption(t, s, EventFilter{AppID: evApp, Channel: "beta"}); got["1.0.2"] != 1 {
		t.Fatalf("beta adoption %v, want the device there", got)
	}
	if got := netAdoption(t, s, EventFilter{AppID: evApp, Channel: "production"}); got["1.0.2"] != 0 {
		t.Fatalf("production adoption %v, want the device gone", got)
	}
}

// Made-up platforms are aggregated as "other": they cannot multiply rows.
func TestPlatformNormalized(t *testing.T) {
	s := openEvents(t)
	b := baseTime()
	var evs []events.Event
	for i := 0; i < 50; i++ {
		e := ev(b, i, "get", "1.0.0", "production")
		e.Platform = fmt.Sprintf("plat%d", i)
		evs = append(evs, e)
	}
	mustIngest(t, s, "00000000000000000000000000000001", 1, evs)
	cs, err := s.Counts(context.Background(), EventFilter{AppID: evApp})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Platform != "other" || cs[0].N != 50 {
		t.Fatalf("counts %+v, want one row of 50 for platform other", cs)
	}
}

// The guard's count can be limited to one arm.
func TestOutcomesByArm(t *testing.T) {
	s := openEvents(t)
	b := baseTime()
	in := ev(b, 1, "update_fail", "1.0.1", "production")
	out := ev(b, 2, "update_fail", "1.0.1", "production")
	out.Arm = "base"
	mustIngest(t, s, "00000000000000000000000000000001", 1, []events.Event{in, out})
	if a, f, err := s.Outcomes(context.Background(), evApp, "production", "1.0.1", "rollout", 0); err != nil || a != 1 || f != 1 {
		t.Fatalf("rollout arm: %d attempts %d failures (%v), want 1 and 1", a, f, err)
	}
	if a, _, _ := s.Outcomes(context.Background(), evApp, "production", "1.0.1", "", 0); a != 2 {
		t.Fatalf("all arms: %d attempts, want 2", a)
	}
}

// A device that installs the same version again is only re-stamped; a late
// install older than that does not move it back.
func TestAdoptionReinstallRestamps(t *testing.T) {
	s := openEvents(t)
	b := baseTime()
	mustIngest(t, s, "00000000000000000000000000000001", 1, []events.Event{ev(b, 1, "set", "2.0.0", "production")})
	mustIngest(t, s, "00000000000000000000000000000001", 2, []events.Event{ev(b+20*60_000, 1, "set", "2.0.0", "production")})
	mustIngest(t, s, "00000000000000000000000000000002", 1, []events.Event{ev(b+10*60_000, 1, "set", "1.0.0", "production")})
	if got := netAdoption(t, s, EventFilter{AppID: evApp}); got["2.0.0"] != 1 || got["1.0.0"] != 0 {
		t.Fatalf("adoption %v, want the device on 2.0.0", got)
	}
}
