package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// insertDevices writes n inventory rows directly: device i last seen at
// lastSeen(i), on channel production, segment segment(i).
func insertDevices(tb testing.TB, s *EventStore, n int, lastSeen func(i int) int64, segment func(i int) string) {
	tb.Helper()
	ctx := context.Background()
	for from := 0; from < n; from += 50000 {
		tx, err := s.db.beginWrite(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		var rows [][]any
		for i := from; i < min(n, from+50000); i++ {
			rows = append(rows, []any{evApp, devID(i), lastSeen(i), lastSeen(i), edgeA, "ios", "1.0", "1.0.0", "7.0.0", "", "production", segment(i), "", "update", "1.0.1"})
		}
		if err := insertRows(ctx, tx, `INSERT INTO devices (app_id, device_id, last_seen, checked_in, edge_id, platform, version_build, version_name,
			plugin_version, custom_id, channel, reason, arm, outcome, bundle) VALUES `, rows, ``); err != nil {
			tb.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			tb.Fatal(err)
		}
	}
}

// ActiveDevices counts exactly the devices Active accepts (the one
// definition), by channel and segment, on both sides of the window's edge.
func TestActiveDevicesMatchesActive(t *testing.T) {
	s := openEvents(t)
	at := time.Now().UnixMilli()
	day := 24 * time.Hour.Milliseconds()
	ages := []int64{0, 1, day, 29 * day, 30*day - 1, 30 * day, 30*day + 1, 40 * day, 89 * day}
	seg := func(i int) string { return []string{"default", "segment:beta"}[i%2] }
	insertDevices(t, s, len(ages), func(i int) int64 { return at - ages[i] }, seg)
	want := map[string]int64{}
	for i, a := range ages {
		if Active(at-a, at) {
			want[seg(i)]++
		}
	}
	got, err := s.ActiveDevices(context.Background(), evApp, "production", at)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]int64{}
	for _, c := range got {
		if c.Channel != "production" {
			t.Fatalf("channel %q", c.Channel)
		}
		have[c.Segment] += c.N
	}
	if len(have) != len(want) || have["default"] != want["default"] || have["segment:beta"] != want["segment:beta"] || want["default"]+want["segment:beta"] != 5 {
		t.Fatalf("active by segment %v, want %v (5 in all)", have, want)
	}
	if none, _ := s.ActiveDevices(context.Background(), evApp, "beta", at); len(none) != 0 {
		t.Fatalf("other channel: %v", none)
	}
}

// The cost of the adoption report's only per-device read: counting an
// app's active devices (SQLite; 1M devices: go test -bench ActiveDevices
// -benchtime 5x ./origin/store/).
func BenchmarkActiveDevices(b *testing.B) {
	s, err := OpenEvents(context.Background(), filepath.Join(b.TempDir(), "events.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const n = 1_000_000
	at := time.Now().UnixMilli()
	insertDevices(b, s, n, func(i int) int64 { return at - int64(i)*3000 }, func(i int) string { return []string{"default", "segment:beta", "override"}[i%3] })
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.ActiveDevices(context.Background(), evApp, "", at); err != nil {
			b.Fatal(err)
		}
	}
}
