package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/updraft-cdn/updraft/bench"
)

// TestBenchCohortFleet runs the cohort-fleet scenario (issue 19) at 3,000
// devices against a real serve: the devices check in through the edge
// following their pattern, the origin ingests it, and the behaviour
// cohorts it computes hold exactly the pattern's devices: power:5% the 150
// heavy ones, failing:7d the 60 that reported update_fail (not the 60
// that reported an install), active:1/1d all of them; a segment on the
// power cohort then routes exactly its members to the segment's bundle.
func TestBenchCohortFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("3,000 devices over 8 seconds")
	}
	data := t.TempDir()
	r := startTestServe(t, data)
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"bench", "--scenario", "cohort-fleet", "--devices", "3000", "--power", "5%", "--duration", "8s",
		"--target", "http://" + r.EdgeAddr, "--origin", "http://" + r.OriginAddr, "--data", data, "--json"}, &out, &errb)
	if err != nil {
		t.Fatalf("bench: %v\n%s\n%s", err, errb.String(), out.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Phases) != 1 || rep.Phases[0].Cohorts == nil {
		t.Fatalf("report: %s", out.String())
	}
	p := rep.Phases[0]
	c := p.Cohorts
	t.Logf("%d check-ins (%.0f/s), steps %+v", c.CheckIns, c.CheckInsPerSec, c.Steps)
	if p.Failures != 0 || !c.IngestComplete || c.Mismatches != 0 || c.Power != "power:5%" {
		t.Fatalf("failures %d, ingest complete %v, mismatches %d, rule %s: %s", p.Failures, c.IngestComplete, c.Mismatches, c.Power, out.String())
	}
	// 150 heavy devices × 20 check-ins, 2,850 light ones × 1 to 3; 60
	// failures and 60 installs.
	if c.CheckIns < 150*20+2850 || c.CheckIns > 150*20+2850*3 || c.Events != 120 || c.EventsAccepted != 120 {
		t.Fatalf("check-ins %d, events %d (%d accepted)", c.CheckIns, c.Events, c.EventsAccepted)
	}
	want := map[string]int{"power": 150, "failing": 60, "active": 3000}
	if len(c.Cohorts) != len(want) {
		t.Fatalf("cohorts %+v", c.Cohorts)
	}
	for _, k := range c.Cohorts {
		if k.Expected != want[k.Name] || k.Got != k.Expected || k.Missing != 0 || k.Extra != 0 {
			t.Errorf("cohort %s (%s): expected %d (want %d), got %d, missing %d, extra %d", k.Name, k.Rule, k.Expected, want[k.Name], k.Got, k.Missing, k.Extra)
		}
	}
	rt := c.Routing
	if rt.SegmentBundle != benchSegmentVersion || rt.DefaultBundle != benchAppVersion || rt.Members != 150 || rt.MembersRight != 150 ||
		rt.Others != 2850 || rt.OthersRight != 2850 || rt.Wrong != 0 {
		t.Fatalf("routing %+v", rt)
	}
	var steps []string
	for _, s := range c.Steps {
		steps = append(steps, s.Name)
	}
	if got := strings.Join(steps, ","); got != "activity,ingest,cohort power,cohort failing,cohort active,segment,routing" {
		t.Fatalf("steps %s", got)
	}
	if !strings.Contains(errb.String(), "deleted app bench.") {
		t.Fatalf("the bench app was not deleted:\n%s", errb.String())
	}
}

// TestBenchCohortFleetUsage: --power belongs to cohort-fleet, and
// cohort-fleet runs on its own throwaway app only.
func TestBenchCohortFleetUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--scenario", "steady", "--power", "5%"}, "add --scenario cohort-fleet"},
		{[]string{"--scenario", "cohort-fleet", "--power", "80%"}, "0.01% to 50%"},
		{[]string{"--scenario", "cohort-fleet", "--power", "0.004%"}, "0.01% to 50%"},
		{[]string{"--scenario", "cohort-fleet", "--app", "com.example.app", "--i-know-this-is-production"}, "its own throwaway app"},
		{[]string{"--scenario", "cohort-fleet", "--link", "40ms/100mbit"}, "drop --app, --link"},
	} {
		err := run(context.Background(), append([]string{"bench", "--target", "http://127.0.0.1:1"}, c.args...), &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("bench %v: %v, want %q", c.args, err, c.want)
		}
	}
}
