package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

func cohortKey(i int) [16]byte {
	var k [16]byte
	k[0], k[1], k[15] = byte(i*37), byte(i>>8), byte(i)
	return k
}

func keysOf(is ...int) [][16]byte {
	var out [][16]byte
	for _, i := range is {
		out = append(out, cohortKey(i))
	}
	return SortKeys(out)
}

func TestCohortImportDiff(t *testing.T) {
	ctx := WithWho(context.Background(), Who{Actor: "alice"})
	s, _ := open(t)
	const app = "com.example.app"
	if _, err := s.CreateApp(ctx, app, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.PutChannel(ctx, app, "production", ChannelPatch{}, false); err != nil {
		t.Fatal(err)
	}
	set := func(keys [][16]byte, created bool, added, removed int64) {
		t.Helper()
		rev0, _ := s.Rev(ctx)
		c, err := s.SetCohort(ctx, app, "power", "", keys)
		if err != nil {
			t.Fatal(err)
		}
		if c.Created != created || c.Added != added || c.Removed != removed || c.Members != int64(len(keys)) {
			t.Fatalf("got %+v, want created %v +%d -%d of %d", c, created, added, removed, len(keys))
		}
		rev1, _ := s.Rev(ctx)
		if changed := added+removed > 0 || created; changed != (rev1 != rev0) {
			t.Errorf("revision %d → %d with %d changes", rev0, rev1, added+removed)
		}
		got, err := s.CohortMembers(ctx, app, "power")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(keys) {
			t.Fatalf("%d members stored, want %d", len(got), len(keys))
		}
		for i := range got {
			if got[i] != keys[i] {
				t.Fatalf("member %d: %x, want %x", i, got[i], keys[i])
			}
		}
	}
	set(keysOf(1, 2, 3, 4), true, 4, 0)
	set(keysOf(1, 2, 3, 4), false, 0, 0) // same file again: nothing
	set(keysOf(2, 3, 5, 6, 7), false, 3, 2)
	recs, err := s.Audit(ctx, AuditQuery{App: app, Actions: []string{"cohort.imported"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || string(recs[1].After) != `{"added":3,"removed":2,"members":5}` || recs[1].Actor != "alice" {
		t.Errorf("audit: %+v", recs)
	}

	// Shard content: each key with the cohort's bit.
	bits, err := s.CohortBitsInShard(ctx, app, -1)
	if err != nil || len(bits) != 5 || bits[cohortKey(5)] != 1 {
		t.Errorf("bits %v %v", bits, err)
	}
	one, err := s.CohortBitsInShard(ctx, app, int(cohortKey(7)[0]))
	if err != nil || len(one) != 1 || one[cohortKey(7)] != 1 {
		t.Errorf("shard bits %v %v", one, err)
	}

	// A second cohort takes the next bit; both share the bound.
	old := MaxCohortMembers
	MaxCohortMembers = 7
	defer func() { MaxCohortMembers = old }()
	c2, err := s.SetCohort(ctx, app, "new", "", keysOf(2, 9))
	if err != nil || c2.Bit != 1 {
		t.Fatalf("second cohort: %+v %v", c2, err)
	}
	if bits, _ := s.CohortBitsInShard(ctx, app, -1); bits[cohortKey(2)] != 3 {
		t.Errorf("key in both cohorts: bits %b", bits[cohortKey(2)])
	}
	var ie *InvalidError
	if _, err := s.SetCohort(ctx, app, "new", "", keysOf(2, 9, 10)); !errors.As(err, &ie) || ie.Code != CodeCohortTooLarge {
		t.Errorf("over the bound: %v", err)
	}
	if _, err := s.SetCohort(ctx, app, "bad name", "", nil); !errors.As(err, &ie) || ie.Code != CodeInvalidCohort {
		t.Errorf("bad name: %v", err)
	}

	// Segments name existing cohorts; a cohort in use cannot be removed.
	if _, err := s.AddSegment(ctx, app, snapshot.Rule{Name: "x", Channel: "production", Cohort: "ghost"}, -1); !errors.As(err, &ie) || ie.Code != CodeCohortNotFound {
		t.Errorf("segment on unknown cohort: %v", err)
	}
	if _, err := s.AddSegment(ctx, app, snapshot.Rule{Name: "power-users", Channel: "production", Cohort: "power"}, -1); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveCohort(ctx, app, "power"); !errors.As(err, &ie) || ie.Code != CodeCohortInUse {
		t.Errorf("remove in use: %v", err)
	}
	snap, err := s.Snapshot(ctx)
	if err != nil || len(snap.Apps[0].Cohorts) != 2 || snap.Apps[0].Cohorts[1] != (snapshot.CohortRef{Name: "power", Bit: 0}) {
		t.Errorf("snapshot cohorts %+v %v", snap.Apps[0].Cohorts, err)
	}
	if err := s.RemoveSegment(ctx, app, "power-users"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveCohort(ctx, app, "power"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveCohort(ctx, app, "power"); !errors.As(err, &ie) || ie.Code != CodeCohortNotFound {
		t.Errorf("remove twice: %v", err)
	}
	list, err := s.Cohorts(ctx, app)
	if err != nil || len(list) != 1 || list[0].Name != "new" || list[0].Members != 2 {
		t.Errorf("list %+v %v", list, err)
	}
	// The freed bit is reused.
	if c, err := s.SetCohort(ctx, app, "again", "", keysOf(1)); err != nil || c.Bit != 0 {
		t.Errorf("reuse bit: %+v %v", c, err)
	}

	// Deleting the app deletes its cohorts and members.
	if _, err := s.DeleteApp(ctx, app); err != nil {
		t.Fatal(err)
	}
	if list, err := s.Cohorts(ctx, app); err != nil || len(list) != 0 {
		t.Errorf("after app delete: %+v %v", list, err)
	}
	if bits, err := s.CohortBitsInShard(ctx, app, -1); err != nil || len(bits) != 0 {
		t.Errorf("members after app delete: %d %v", len(bits), err)
	}
}

// TestCohortChurn: the churn of a cohort over a range is the sum of the
// added and removed counts of its audit records in the range (after from,
// up to to), at fixed times: an imported cohort re-imported with a changed
// file, a computed one recomputed with another result, a change after the
// range and one exactly at its start left out, and a cohort removed and
// made again counts only its new records.
func TestCohortChurn(t *testing.T) {
	ctx := WithWho(context.Background(), Who{Actor: "alice"})
	s, _ := open(t)
	const app = "com.example.app"
	if _, err := s.CreateApp(ctx, app, ""); err != nil {
		t.Fatal(err)
	}
	to := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC).UnixMilli()
	hour, day := time.Hour.Milliseconds(), 24*time.Hour.Milliseconds()
	// set changes a cohort and moves the audit record it wrote to at.
	set := func(c context.Context, name, rule string, at int64, keys [][16]byte) {
		t.Helper()
		if _, err := s.SetCohort(c, app, name, rule, keys); err != nil {
			t.Fatal(err)
		}
		recs, err := s.Audit(ctx, AuditQuery{App: app, Target: name, Newest: true, Limit: 1})
		if err != nil || len(recs) != 1 || recs[0].Action == "cohort.removed" {
			t.Fatalf("audit of %s: %+v %v", name, recs, err)
		}
		if _, err := s.db.ExecContext(ctx, `UPDATE audit_log SET at = ? WHERE id = ?`, at, recs[0].ID); err != nil {
			t.Fatal(err)
		}
	}
	created := func(name string, at int64) {
		t.Helper()
		if _, err := s.db.ExecContext(ctx, `UPDATE cohorts SET created_at = ? WHERE app_id = ? AND name = ?`, at/1000, app, name); err != nil {
			t.Fatal(err)
		}
	}
	// Imported: 4 members 8 days before to, then +3 -2 exactly a day
	// before, the same file again (no record), and -3 after to.
	set(ctx, "vip", "", to-8*day, keysOf(1, 2, 3, 4))
	created("vip", to-30*day)
	set(ctx, "vip", "", to-day, keysOf(2, 3, 5, 6, 7))
	if _, err := s.SetCohort(ctx, app, "vip", "", keysOf(2, 3, 5, 6, 7)); err != nil {
		t.Fatal(err)
	}
	set(ctx, "vip", "", to+1, keysOf(2, 3))
	// Computed (by the origin: no Who, recorded all the same): +2 just
	// inside the day, then +2 -1 at to.
	set(context.Background(), "new", "new:7d", to-day+1, keysOf(1, 2))
	created("new", to-30*day)
	set(context.Background(), "new", "new:7d", to, keysOf(2, 3, 4))
	// Removed and made again: only the new cohort's record counts.
	set(ctx, "old", "", to-3*hour, keysOf(1, 2, 3))
	created("old", to-30*day)
	if err := s.RemoveCohort(ctx, app, "old"); err != nil {
		t.Fatal(err)
	}
	set(ctx, "old", "", to-hour, keysOf(9))
	created("old", to-2*hour)

	recs, err := s.Audit(ctx, AuditQuery{App: app, Target: "new"})
	if err != nil || len(recs) != 2 || recs[0].Actor != "origin" || recs[0].Action != "cohort.computed" ||
		string(recs[1].After) != `{"added":2,"removed":1,"members":3}` {
		t.Fatalf("computed cohort's records: %+v %v", recs, err)
	}
	check := func(from, to int64, want map[string]CohortChurn) {
		t.Helper()
		got, err := s.CohortChurn(ctx, app, from, to)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Errorf("(%d, %d]: churn %+v, want %+v", from, to, got, want)
		}
		for name, w := range want {
			if got[name] != w {
				t.Errorf("(%d, %d]: cohort %s churn %+v, want %+v", from, to, name, got[name], w)
			}
		}
	}
	check(to-day, to, map[string]CohortChurn{"new": {Added: 4, Removed: 1, Changes: 2}, "old": {Added: 1, Changes: 1}})
	check(to-7*day, to, map[string]CohortChurn{"vip": {Added: 3, Removed: 2, Changes: 1}, "new": {Added: 4, Removed: 1, Changes: 2}, "old": {Added: 1, Changes: 1}})
	check(to-30*day, to+1, map[string]CohortChurn{"vip": {Added: 7, Removed: 5, Changes: 3}, "new": {Added: 4, Removed: 1, Changes: 2}, "old": {Added: 1, Changes: 1}})
	check(to, to+day, map[string]CohortChurn{"vip": {Removed: 3, Changes: 1}})

	at, err := s.CohortsChangedAt(ctx, app)
	if err != nil || len(at) != 3 || at["vip"] != to+1 || at["new"] != to || at["old"] != to-hour {
		t.Errorf("changed at %v %v", at, err)
	}
	list, err := s.Cohorts(ctx, app)
	if err != nil || len(list) != 3 || list[0].Name != "new" || list[0].Members != 3 || list[2].Name != "vip" || list[2].Members != 2 {
		t.Errorf("cohorts %+v %v", list, err)
	}
}

// BenchmarkSetCohort imports 100,000 new members, then replaces a tenth of
// them: the writes an import holds the store's write lock for.
func BenchmarkSetCohort(b *testing.B) {
	ctx := WithWho(context.Background(), Who{Actor: "bench"})
	s, _ := open(b)
	const app = "com.example.app"
	if _, err := s.CreateApp(ctx, app, ""); err != nil {
		b.Fatal(err)
	}
	first := make([][16]byte, 100_000)
	for i := range first {
		first[i] = cohortKey(i)
		first[i][2], first[i][3] = byte(i>>16), byte(i>>24)
	}
	first = SortKeys(first)
	second := append([][16]byte{}, first[10_000:]...)
	for i := range 10_000 {
		k := cohortKey(i)
		k[4] = 0xff
		second = append(second, k)
	}
	second = SortKeys(second)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		name := "c" + string(rune('a'+i%26))
		if _, err := s.SetCohort(ctx, app, name, "", first); err != nil {
			b.Fatal(err)
		}
		if _, err := s.SetCohort(ctx, app, name, "", second); err != nil {
			b.Fatal(err)
		}
		if err := s.RemoveCohort(ctx, app, name); err != nil {
			b.Fatal(err)
		}
	}
}
