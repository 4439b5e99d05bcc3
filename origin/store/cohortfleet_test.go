package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestCohortRulesFleet is issue 19's fleet check: 100,000 devices with
// activity patterns (first seen 0-59 days ago; check-ins on 0-7 of the
// last 7 days; 4,500 heavy users with 30 check-ins today; 10% inactive for
// 40 days; install failures 2 or 8 days ago, and successes), written in
// bulk as ingestion stores them; every behaviour rule yields exactly the
// devices the pattern puts in it. The heavy users are exactly 5% of the
// 90,000 active devices, so power:5% has no tie at its cut.
func TestCohortRulesFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 devices")
	}
	const fleet = 100_000
	ctx := context.Background()
	e := openEvents(t)
	now := baseTime() + 3600_000
	inactive := func(i int) bool { return i%10 == 9 }
	heavy := func(i int) bool { return i%20 == 0 && i < 90_000 }
	days := func(i int) int {
		if inactive(i) {
			return 0
		}
		return i % 8
	}
	var seen, inv, logs, outs [][]any
	for i := 0; i < fleet; i++ {
		id := devID(i)
		seen = append(seen, []any{evApp, id, now - int64(i%60)*day - 3600_000, 1, now - 3600_000})
		last := now - 3600_000
		if inactive(i) {
			last = now - 40*day
		}
		inv = append(inv, []any{evApp, id, last, last, "e", "android", "1.0", "1.0.0", "7.0.0", "", "production", "default", "", "update", ""})
		slot := 0
		add := func(at int64) {
			logs = append(logs, []any{evApp, id, slot, slot + 1, at, "e", LogCheckIn, "update", "1.0.0", "", "production", "default"})
			slot++
		}
		for d := 0; d < days(i); d++ {
			add(now - int64(d)*day - 1000)
		}
		if heavy(i) {
			for k := 0; k < 30; k++ {
				add(now - 2000 - int64(k))
			}
		}
		if inactive(i) {
			add(now - 40*day) // checked in, but long ago
		}
		switch i % 50 {
		case 3:
			outs = append(outs, []any{evApp, "1.0.0", id, "production", "", 1, now - 2*day, "", 0})
		case 4:
			outs = append(outs, []any{evApp, "1.0.0", id, "production", "", 1, now - 8*day, "", 0}) // too old
		case 5:
			outs = append(outs, []any{evApp, "1.0.0", id, "production", "", 0, now - day, "", 0}) // a success
		}
	}
	start := time.Now()
	bulk := func(head string, rows [][]any) {
		t.Helper()
		const per = 400
		for len(rows) > 0 {
			n := min(len(rows), per)
			q, args := valuesQuery(head, rows[:n], "")
			if _, err := e.db.ExecContext(ctx, q, args...); err != nil {
				t.Fatal(err)
			}
			rows = rows[n:]
		}
	}
	bulk(`INSERT INTO devices_seen (app_id, device_id, first_seen, checked_in, last_seen) VALUES `, seen)
	bulk(`INSERT INTO devices (app_id, device_id, last_seen, checked_in, edge_id, platform, version_build, version_name, plugin_version,
		custom_id, channel, reason, arm, outcome, bundle) VALUES `, inv)
	bulk(`INSERT INTO device_log (app_id, device_id, slot, seq, at, edge_id, kind, action, version_name, target, channel, reason) VALUES `, logs)
	bulk(`INSERT INTO device_outcomes (app_id, version_name, device_id, channel, arm, failed, updated_at, prefix, first_seen) VALUES `, outs)
	t.Logf("%d devices, %d check-ins, %d outcomes written in %v", fleet, len(logs), len(outs), time.Since(start).Round(time.Millisecond))

	for _, c := range []struct {
		rule string
		in   func(i int) bool
	}{
		{"new:7d", func(i int) bool { return i%60 < 7 }},
		{"new:30d", func(i int) bool { return i%60 < 30 }},
		{"active:5/7d", func(i int) bool { return days(i) >= 5 }},
		{"active:7/7d", func(i int) bool { return days(i) == 7 }},
		{"active:1/7d", func(i int) bool { return days(i) >= 1 || heavy(i) }},
		{"power:5%", heavy},
		{"failing:7d", func(i int) bool { return i%50 == 3 }},
		{"failing:30d", func(i int) bool { return i%50 == 3 || i%50 == 4 }},
	} {
		r, err := ParseCohortRule(c.rule)
		if err != nil {
			t.Fatal(err)
		}
		started := time.Now()
		got, err := e.CohortMembers(ctx, evApp, r, now)
		if err != nil {
			t.Fatal(err)
		}
		var want [][16]byte
		for i := 0; i < fleet; i++ {
			if c.in(i) {
				want = append(want, cohortKeyOfDev(i))
			}
		}
		want = SortKeys(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: %d members, want %d%s", c.rule, len(got), len(want), firstDiff(got, want))
		}
		t.Logf("%s: %d members in %v", c.rule, len(got), time.Since(started).Round(time.Millisecond))
	}
}

// firstDiff names the first key one sorted list has and the other lacks.
func firstDiff(got, want [][16]byte) string {
	for i := 0; i < min(len(got), len(want)); i++ {
		if got[i] != want[i] {
			return fmt.Sprintf("; first difference at %d: %x, want %x", i, got[i], want[i])
		}
	}
	return ""
}
