package store

import (
	"context"
	"errors"
	"testing"

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
