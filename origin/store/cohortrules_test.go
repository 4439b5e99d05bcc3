package store

import (
	"context"
	"slices"
	"testing"

	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// TestCohortRulesHistory computes each behaviour rule over a simulated
// history (rows as ingestion writes them, at chosen times) and checks the
// membership against sets worked out by hand.
func TestCohortRulesHistory(t *testing.T) {
	ctx := context.Background()
	e := openEvents(t)
	now := baseTime() + 3600_000
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := e.db.ExecContext(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	slot := map[int]int{}
	checkIn := func(dev int, at int64) {
		exec(`INSERT INTO device_log (app_id, device_id, slot, seq, at, edge_id, kind, action, version_name, target, channel, reason)
			VALUES (?, ?, ?, ?, ?, 'e', ?, 'update', '1.0.0', '', 'production', 'default')`, evApp, devID(dev), slot[dev], slot[dev]+1, at, LogCheckIn)
		slot[dev]++
	}
	for i := 0; i < 20; i++ {
		// First seen i days and an hour ago.
		exec(`INSERT INTO devices_seen (app_id, device_id, first_seen, checked_in, last_seen) VALUES (?, ?, ?, 1, ?)`,
			evApp, devID(i), now-int64(i)*day-3600_000, now-3600_000)
		// Active (inventory last_seen within ActiveWindow) unless i%8 == 0.
		last := now - 3600_000
		if i%8 == 0 {
			last = now - 40*day
		}
		exec(`INSERT INTO devices (app_id, device_id, last_seen, checked_in, edge_id, platform, version_build, version_name, plugin_version,
			custom_id, channel, reason, arm, outcome, bundle) VALUES (?, ?, ?, ?, 'e', 'android', '1.0', '1.0.0', '7.0.0', '', 'production', 'default', '', 'update', '')`,
			evApp, devID(i), last, last)
		// A check-in on each of the last i%8 days, and i%3 more today.
		for d := 0; d < i%8; d++ {
			checkIn(i, now-int64(d)*day-1000)
		}
		for k := 0; k < i%3; k++ {
			checkIn(i, now-2000-int64(k))
		}
	}
	// Device 8 (inactive by the inventory) checks in a lot today: never power.
	for k := 0; k < 10; k++ {
		checkIn(8, now-5000-int64(k))
	}
	// Events: device 11 reports app_moved_to_foreground 4 times, 19 three
	// times, 2 twice (and 13 once, 40 days ago); device 16 (inactive) 9
	// times and device 4 another event 9 times: neither counts.
	event := func(dev int, action string, n int, at int64) {
		for k := 0; k < n; k++ {
			exec(`INSERT INTO device_log (app_id, device_id, slot, seq, at, edge_id, kind, action, version_name, target, channel, reason)
				VALUES (?, ?, ?, ?, ?, 'e', ?, ?, '1.0.0', '', '', '')`, evApp, devID(dev), slot[dev], slot[dev]+1, at-int64(k), LogEvent, action)
			slot[dev]++
		}
	}
	event(11, "app_moved_to_foreground", 4, now-3000)
	event(19, "app_moved_to_foreground", 3, now-day)
	event(2, "app_moved_to_foreground", 2, now-5*day)
	event(13, "app_moved_to_foreground", 1, now-40*day)
	event(16, "app_moved_to_foreground", 9, now-3000)
	event(4, "app_moved_to_background", 9, now-3000)
	outcome := func(dev int, failed int, at int64) {
		exec(`INSERT INTO device_outcomes (app_id, version_name, device_id, channel, arm, failed, updated_at, prefix, first_seen)
			VALUES (?, '1.0.0', ?, 'production', '', ?, ?, '', 0)`, evApp, devID(dev), failed, at)
	}
	outcome(3, 1, now-2*day)
	outcome(9, 1, now-2*day)
	outcome(4, 1, now-8*day) // too old
	outcome(10, 0, now-day)  // a success

	check := func(rule string, want ...int) {
		t.Helper()
		r, err := ParseCohortRule(rule)
		if err != nil {
			t.Fatal(err)
		}
		if r.String() != rule {
			t.Errorf("rule %s prints as %s", rule, r)
		}
		got, err := e.CohortMembers(ctx, evApp, r, now)
		if err != nil {
			t.Fatal(err)
		}
		wantKeys := make([][16]byte, 0, len(want))
		for _, i := range want {
			wantKeys = append(wantKeys, cohortKeyOfDev(i))
		}
		wantKeys = SortKeys(wantKeys)
		if !slices.Equal(got, wantKeys) {
			t.Errorf("%s: %d members %x, want devices %v", rule, len(got), got, want)
		}
	}
	check("new:7d", 0, 1, 2, 3, 4, 5, 6)
	check("new:1d", 0)
	// Distinct days among the last 7: i%8 (capped at 7).
	check("active:5/7d", 5, 6, 7, 13, 14, 15)
	check("active:7/7d", 7, 15)
	// 17 active devices; 20% is 3.4, rounded up to 4. Check-ins i%8 + i%3:
	// 7 and 14 have 8, 5 and 15 have 7.
	check("power:20%", 5, 7, 14, 15)
	check("power:10%", 7, 14)
	// By a named event: 17 active devices, 10% → 2, 20% → 4 but only three
	// report it within the window.
	check("power:10%/app_moved_to_foreground", 11, 19)
	check("power:20%/app_moved_to_foreground", 2, 11, 19)
	check("power:5%/app_moved_to_background", 4)
	check("power:50%/never_reported")
	check("failing:7d", 3, 9)
	check("failing:9d", 3, 4, 9)

	for _, bad := range []string{"new", "new:0d", "new:7", "active:8/7d", "active:5", "power:0%", "power:101%", "power:10", "power:10%/", "power:10%/App", "power:10%/a b", "power:/x", "old:7d", "failing:91d"} {
		if _, err := ParseCohortRule(bad); err == nil {
			t.Errorf("rule %q accepted", bad)
		}
	}

	// Through real ingestion: a check-in logged now makes device 100 active
	// today; an install failure makes device 101 failing.
	at := baseTime() + 30*60_000
	ingestAll(t, e, 1, []events.Event{ev(at, 101, "download_fail", "1.0.1", "production")},
		detailed(100, events.CheckInDetail{At: at, Platform: "android", VersionName: "1.0.0", Channel: "production", Segment: "default", Outcome: "update"}))
	r, _ := ParseCohortRule("active:1/1d")
	got, err := e.CohortMembers(ctx, evApp, r, at+60_000)
	if err != nil || !slices.Contains(got, cohortKeyOfDev(100)) {
		t.Errorf("active:1/1d after a check-in: %x %v", got, err)
	}
	r, _ = ParseCohortRule("failing:1d")
	got, err = e.CohortMembers(ctx, evApp, r, at+60_000)
	if err != nil || !slices.Equal(got, [][16]byte{cohortKeyOfDev(101)}) {
		t.Errorf("failing:1d after a failure event: %x %v", got, err)
	}
}

func cohortKeyOfDev(i int) [16]byte {
	k, _ := snapshot.ParseDeviceID(devID(i))
	return k
}
