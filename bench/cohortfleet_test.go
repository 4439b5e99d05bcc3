package bench

import "testing"

// TestPlanCohorts: the cohort-fleet pattern has exactly the sizes the
// report promises, scatters its sets over the fleet, and gives every light
// device 1 to 3 check-ins including the last round's, every heavy device
// one per round.
func TestPlanCohorts(t *testing.T) {
	const n = 10_000
	p := cohortDefaults(Phase{Kind: KindCohorts, Power: 2.5})
	pl := planCohorts(n, 7, p)
	count := func(s []bool) (c int) {
		for _, v := range s {
			if v {
				c++
			}
		}
		return c
	}
	if h, f, i := count(pl.heavy), count(pl.failing), count(pl.installing); h != 250 || f != 200 || i != 200 {
		t.Fatalf("heavy %d, failing %d, installing %d; want 250, 200, 200", h, f, i)
	}
	// Scattered: the heavy set is not a block of indexes.
	if first := count(pl.heavy[:n/10]); first < 10 || first > 45 {
		t.Fatalf("%d heavy devices among the first tenth", first)
	}
	checks := make([]int, n)
	for r, devs := range pl.rounds {
		seen := map[int32]bool{}
		for j, i := range devs {
			if seen[i] {
				t.Fatalf("round %d holds device %d twice", r, i)
			}
			seen[i] = true
			if j > 0 && pl.at[devs[j-1]] > pl.at[i] {
				t.Fatalf("round %d out of arrival order at %d", r, j)
			}
			checks[i]++
		}
		if r == len(pl.rounds)-1 && len(devs) != n {
			t.Fatalf("last round: %d devices, want all %d", len(devs), n)
		}
	}
	total := 0
	for i, c := range checks {
		total += c
		switch {
		case pl.failing[i] && pl.installing[i]:
			t.Fatalf("device %d both fails and installs", i)
		case pl.heavy[i] && c != p.HeavyChecks:
			t.Fatalf("heavy device %d checks in %d times", i, c)
		case !pl.heavy[i] && (c < 1 || c > maxLightChecks):
			t.Fatalf("light device %d checks in %d times", i, c)
		}
	}
	if total != pl.checkIns {
		t.Fatalf("%d check-ins planned, %d counted", pl.checkIns, total)
	}
	// Another seed, other members.
	if other := planCohorts(n, 8, p); count(other.heavy) != 250 || equal(other.heavy, pl.heavy) {
		t.Fatal("the seed does not move the heavy set")
	}
}

func equal(a, b []bool) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestReportMismatches: a report's mismatches are its cohorts phases'
// (the command exits 1 on any).
func TestReportMismatches(t *testing.T) {
	rep := &Report{Phases: []PhaseReport{{Kind: KindStorm}, {Kind: KindCohorts, Cohorts: &CohortFleetReport{Mismatches: 3}},
		{Kind: KindCohorts, Cohorts: &CohortFleetReport{}}}}
	if n := rep.Mismatches(); n != 3 {
		t.Fatalf("mismatches %d, want 3", n)
	}
}
