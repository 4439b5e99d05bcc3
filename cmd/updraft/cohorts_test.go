package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin"
	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/store"
)

// waitAnswer polls the edge until the device gets version (the edge follows
// the origin's publications), failing after a generous deadline.
func waitAnswer(t *testing.T, r *running, body, version string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		a := answer(t, r, body)
		if a.Version == version {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("device never got %s: %+v", version, a)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCohortSegmentEndToEnd imports cohorts through the CLI into a real
// origin, routes them with segment add --cohort, and checks through the
// edge's POST /updates that exactly the members get the segment's channel;
// re-importing the same file changes nothing, a changed file exactly its
// difference.
func TestCohortSegmentEndToEnd(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	const app = "com.example.app"
	cli(t, r, data, "app", "create", app)
	for _, v := range []string{"1.0.1", "1.0.2"} {
		cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, v)), "--app", app, "--version", v)
	}
	cli(t, r, data, "channel", "set", "production", "--app", app, "--bundle", "1.0.1", "--default")
	cli(t, r, data, "channel", "set", "beta", "--app", app, "--bundle", "1.0.2")

	dev := func(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", i*2654435761%(1<<32), i) }
	// Members: devices 0..299 (CSV with a header) and custom ids vip-0..49
	// (JSON lines, in a second cohort routed by a second segment).
	var csv strings.Builder
	csv.WriteString("device_id\n")
	for i := 0; i < 300; i++ {
		fmt.Fprintf(&csv, "%s\n", strings.ToUpper(dev(i)))
	}
	csv.WriteString(dev(0) + "\n") // a duplicate (other case): one member
	file := filepath.Join(t.TempDir(), "power.csv")
	if err := os.WriteFile(file, []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := cli(t, r, data, "cohort", "import", "power", "--app", app, file); !strings.Contains(out, "cohort power created: 300 members (+300, -0)") {
		t.Fatalf("import: %s", out)
	}
	var jl strings.Builder
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&jl, "{\"custom_id\":\"vip-%d\"}\n", i)
	}
	jfile := filepath.Join(t.TempDir(), "vip.jsonl")
	os.WriteFile(jfile, []byte(jl.String()), 0o644)
	cli(t, r, data, "cohort", "import", "vip", "--app", app, jfile)

	// Same file again: nothing changes.
	if out := cli(t, r, data, "cohort", "import", "power", "--app", app, file); !strings.Contains(out, "cohort power updated: 300 members (+0, -0)") {
		t.Fatalf("re-import: %s", out)
	}
	cli(t, r, data, "segment", "add", "power-users", "--app", app, "--channel", "beta", "--cohort", "power")
	cli(t, r, data, "segment", "add", "vips", "--app", app, "--channel", "beta", "--cohort", "vip", "--platform", "android")

	waitAnswer(t, r, device(dev(0), "1.0.0", ""), "1.0.2")
	for i := 0; i < 400; i += 7 {
		want := "1.0.1"
		if i < 300 {
			want = "1.0.2"
		}
		if a := answer(t, r, device(dev(i), "1.0.0", "")); a.Version != want {
			t.Fatalf("device %d: %+v, want %s", i, a, want)
		}
	}
	for i := 40; i < 60; i++ {
		want := "1.0.1"
		if i < 50 {
			want = "1.0.2"
		}
		if a := answer(t, r, device(dev(1000+i), "1.0.0", fmt.Sprintf(`,"custom_id":"vip-%d"`, i))); a.Version != want {
			t.Fatalf("custom id vip-%d: %+v, want %s", i, a, want)
		}
	}
	res := cli(t, r, data, "resolve", "--app", app, "--device", dev(5), "--platform", "android", "--version-build", "1.0.0", "--version-name", "1.0.0")
	if !strings.Contains(res, "(segment power-users, cohort power)") || !strings.Contains(res, "cohorts: power") {
		t.Fatalf("resolve:\n%s", res)
	}

	// A changed file: devices 0..99 leave, 300..349 join.
	csv.Reset()
	for i := 100; i < 350; i++ {
		fmt.Fprintf(&csv, "%s\n", dev(i))
	}
	os.WriteFile(file, []byte(csv.String()), 0o644)
	var ch struct {
		Members, Added, Removed int64
		Created                 bool
	}
	out := cli(t, r, data, "cohort", "import", "power", "--app", app, file, "--json")
	if err := json.Unmarshal([]byte(out), &ch); err != nil || ch.Members != 250 || ch.Added != 50 || ch.Removed != 100 || ch.Created {
		t.Fatalf("changed import: %s %v", out, err)
	}
	waitAnswer(t, r, device(dev(0), "1.0.0", ""), "1.0.1")
	for i := 0; i < 400; i += 3 {
		want := "1.0.1"
		if i >= 100 && i < 350 {
			want = "1.0.2"
		}
		if a := answer(t, r, device(dev(i), "1.0.0", "")); a.Version != want {
			t.Fatalf("after the change, device %d: %+v, want %s", i, a, want)
		}
	}
	if out := cli(t, r, data, "cohort", "list", "--app", app); !strings.Contains(out, "power") || !strings.Contains(out, "250") || !strings.Contains(out, "+50 -100") {
		t.Fatalf("cohort list:\n%s", out)
	}
	if msg := cliErr(t, r, data, "cohort", "remove", "power", "--app", app); !strings.Contains(msg, "cohort_in_use") {
		t.Fatalf("remove in use: %s", msg)
	}
	if msg := cliErr(t, r, data, "segment", "add", "x", "--app", app, "--channel", "beta", "--cohort", "ghost"); !strings.Contains(msg, "cohort_not_found") {
		t.Fatalf("segment on unknown cohort: %s", msg)
	}
	bad := filepath.Join(t.TempDir(), "bad.csv")
	os.WriteFile(bad, []byte("device_id\nnot-a-uuid\n"), 0o644)
	if msg := cliErr(t, r, data, "cohort", "import", "power", "--app", app, bad); !strings.Contains(msg, "invalid_cohort") || !strings.Contains(msg, "line 2") {
		t.Fatalf("bad file: %s", msg)
	}
	cli(t, r, data, "segment", "remove", "power-users", "--app", app)
	cli(t, r, data, "cohort", "remove", "power", "--app", app)
	waitAnswer(t, r, device(dev(200), "1.0.0", ""), "1.0.1")
}

// TestCohortStatsCLI: `stats --app` shows each cohort's kind, members now
// and churn (the window's and 7 days'), counted from its imports and
// recomputations: an import and a changed re-import, a behaviour cohort
// computed twice with different results; --json carries the same figures.
func TestCohortStatsCLI(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	const app = "com.example.app"
	cli(t, r, data, "app", "create", app)
	cli(t, r, data, "channel", "set", "production", "--app", app, "--default")
	cli(t, r, data, "channel", "set", "beta", "--app", app)
	dev := func(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", i*2654435761%(1<<32), i) }
	file := filepath.Join(t.TempDir(), "power.csv")
	write := func(from, to int) {
		var b strings.Builder
		for i := from; i < to; i++ {
			b.WriteString(dev(i) + "\n")
		}
		if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(0, 300)
	cli(t, r, data, "cohort", "import", "power", "--app", app, file)
	cli(t, r, data, "cohort", "import", "power", "--app", app, file) // the same: no change
	write(100, 350)
	if out := cli(t, r, data, "cohort", "import", "power", "--app", app, file); !strings.Contains(out, "250 members (+50, -100)") {
		t.Fatalf("changed import: %s", out)
	}
	cli(t, r, data, "segment", "add", "power-users", "--app", app, "--channel", "beta", "--cohort", "power")

	// Devices 400-402 fail an install; then 400 installs fine and 403 fails.
	seq := uint64(0)
	ingest := func(at int64, fails []int, ok ...int) {
		t.Helper()
		var evs []events.Event
		for _, i := range fails {
			evs = append(evs, events.Event{Timestamp: at, Received: at, AppID: app, DeviceID: dev(i), Action: "download_fail",
				VersionName: "1.0.1", Platform: "android", Channel: "production"})
		}
		for _, i := range ok {
			evs = append(evs, events.Event{Timestamp: at, Received: at, AppID: app, DeviceID: dev(i), Action: "set",
				VersionName: "1.0.1", Platform: "android", Channel: "production"})
		}
		seq++
		if err := r.Origin.IngestSegment(context.Background(), "0123456789abcdef0123456789abcdef", seq, events.AppendRecord([]byte(events.Magic), evs)); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UnixMilli()
	ingest(now, []int{400, 401, 402})
	if out := cli(t, r, data, "cohort", "add", "failing", "--app", app, "--rule", "failing:7d"); !strings.Contains(out, "3 members") {
		t.Fatalf("add: %s", out)
	}
	ingest(now+1, []int{403}, 400)
	if out := cli(t, r, data, "cohort", "add", "failing", "--app", app, "--rule", "failing:7d"); !strings.Contains(out, "3 members (+1, -1)") {
		t.Fatalf("recompute: %s", out)
	}

	out := cli(t, r, data, "stats", "--app", app)
	rows := map[string]string{}
	header := ""
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "COHORT" {
			header = strings.Join(f, " ")
		}
		if len(f) > 0 && (f[0] == "power" || f[0] == "failing") {
			rows[f[0]] = strings.Join(f, " ")
		}
	}
	if header != "COHORT KIND MEMBERS CHURN 24H CHURN 7D LAST CHANGE SEGMENTS" ||
		!strings.HasPrefix(rows["power"], "power imported 250 +350 -100 (2) +350 -100 (2) ") || !strings.HasSuffix(rows["power"], " power-users") ||
		!strings.HasPrefix(rows["failing"], "failing failing:7d 3 +4 -1 (2) +4 -1 (2) ") || !strings.HasSuffix(rows["failing"], " -") {
		t.Fatalf("stats:\n%s", out)
	}
	var rep origin.StatsReport
	if err := json.Unmarshal([]byte(cli(t, r, data, "stats", "--app", app, "--since", "1h", "--json")), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Cohorts) != 2 {
		t.Fatalf("json cohorts %+v", rep.Cohorts)
	}
	f, p := rep.Cohorts[0], rep.Cohorts[1]
	if f.Name != "failing" || f.Kind != "computed" || f.Rule != "failing:7d" || f.Members != 3 || f.Churn != (store.CohortChurn{Added: 4, Removed: 1, Changes: 2}) ||
		p.Name != "power" || p.Kind != "imported" || p.Members != 250 || p.Churn != (store.CohortChurn{Added: 350, Removed: 100, Changes: 2}) ||
		p.Churn7d != p.Churn || len(p.Segments) != 1 || p.Segments[0] != "power-users" || p.ChangedAt == nil {
		t.Fatalf("json cohorts %+v", rep.Cohorts)
	}
}
