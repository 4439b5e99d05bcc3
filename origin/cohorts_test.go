package origin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/internal/testenv"

	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// TestComputedCohortRecompute: a failing:7d cohort computed from ingested
// events routes exactly the failing devices; a new failure joins it at the
// next recomputation, which reports the churn and publishes it.
func TestComputedCohortRecompute(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	const app = "com.example.app"
	if _, err := o.client.CreateApp(ctx, app, ""); err != nil {
		t.Fatal(err)
	}
	pub := true
	for _, ch := range []string{"production", "beta"} {
		p := store.ChannelPatch{}
		if ch == "production" {
			p.Public = &pub
		}
		if _, err := o.client.SetChannel(ctx, app, ch, p); err != nil {
			t.Fatal(err)
		}
	}
	dev := func(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i) }
	seq := uint64(0)
	ingest := func(evs ...events.Event) {
		t.Helper()
		seq++
		if _, err := o.srv.events.IngestAll(ctx, tailEdge, seq, events.AppendRecord([]byte(events.Magic), evs), evs, nil); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UnixMilli()
	var evs []events.Event
	for i := 0; i < 10; i++ {
		action := "set"
		if i%3 == 0 {
			action = "download_fail"
		}
		evs = append(evs, events.Event{Timestamp: now, Received: now, AppID: app, DeviceID: dev(i), Action: action, VersionName: "1.0.1",
			Platform: "android", Channel: "production"})
	}
	ingest(evs...)
	c, err := o.client.AddCohort(ctx, app, "failing", "failing:7d")
	if err != nil || !c.Created || c.Members != 4 || c.Rule != "failing:7d" {
		t.Fatalf("add: %+v %v", c, err)
	}
	if _, err := o.client.AddSegment(ctx, app, snapshot.Rule{Name: "failing-devices", Channel: "beta", Cohort: "failing"}, nil); err != nil {
		t.Fatal(err)
	}
	routed := func(n int) []int {
		t.Helper()
		var in []int
		for i := 0; i < n; i++ {
			res, err := o.client.Resolve(ctx, app, api.DeviceRequest{DeviceID: dev(i), VersionName: "1.0.0", VersionBuild: "1.0.0",
				Platform: "android", PluginVersion: "7.1.0", IsProd: true})
			if err != nil {
				t.Fatal(err)
			}
			if res.Channel == "beta" {
				if res.Cohort != "failing" || !slices.Equal(res.Cohorts, []string{"failing"}) {
					t.Fatalf("device %d: %+v", i, res)
				}
				in = append(in, i)
			} else if res.Channel != "production" || len(res.Cohorts) != 0 {
				t.Fatalf("device %d: %+v", i, res)
			}
		}
		return in
	}
	if got := routed(12); !slices.Equal(got, []int{0, 3, 6, 9}) {
		t.Fatalf("routed %v, want the failing devices 0 3 6 9", got)
	}
	// Device 11 fails; device 3 installs fine later (still failed within 7
	// days on 1.0.1: its outcome per version is the latest, "set" now).
	ingest(events.Event{Timestamp: now + 1, Received: now + 1, AppID: app, DeviceID: dev(11), Action: "install_fail", VersionName: "1.0.1", Platform: "android", Channel: "production"},
		events.Event{Timestamp: now + 1, Received: now + 1, AppID: app, DeviceID: dev(3), Action: "set", VersionName: "1.0.1", Platform: "android", Channel: "production"})
	o.srv.recomputeCohortsOnce(store.WithWho(ctx, store.Who{Actor: "cohorts"}))
	o.srv.awaitPublished(ctx)
	list, err := o.client.ListCohorts(ctx, app)
	if err != nil || len(list) != 1 || list[0].Members != 4 || list[0].Added != 1 || list[0].Removed != 1 {
		t.Fatalf("after recompute: %+v %v", list, err)
	}
	if got := routed(12); !slices.Equal(got, []int{0, 6, 9, 11}) {
		t.Fatalf("routed %v after recompute, want 0 6 9 11", got)
	}
	// The members, as the API lists them: exactly those device ids, sorted.
	m, err := o.client.CohortMembers(ctx, app, "failing")
	if err != nil || m.Name != "failing" || m.Rule != "failing:7d" || m.Members != 4 ||
		!slices.Equal(m.Keys, []string{dev(0), dev(6), dev(9), dev(11)}) {
		t.Fatalf("members %+v %v", m, err)
	}
	if code, e := apiStatus(t, o, "/api/v1/apps/"+app+"/cohorts/nope/members"); code != 404 || e != store.CodeCohortNotFound {
		t.Fatalf("unknown cohort's members: HTTP %d %s", code, e)
	}
	if code, e := apiStatus(t, o, "/api/v1/apps/com.example.other/cohorts/failing/members"); code != 404 || e != "app_not_found" {
		t.Fatalf("unknown app's cohort members: HTTP %d %s", code, e)
	}
	recs, err := o.srv.store.Audit(ctx, store.AuditQuery{App: app, Actions: []string{"cohort.computed"}})
	if err != nil || len(recs) != 2 || recs[1].Actor != "cohorts" {
		t.Fatalf("audit %+v %v", recs, err)
	}
}

// TestCohortStats: GET /stats reports each cohort's kind, members now and
// churn, summed from its imports and recomputations: an import re-imported
// with a changed file, a behaviour cohort computed twice with different
// results; changes before from and after to are left out, exactly.
func TestCohortStats(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	const app = "com.example.app"
	if _, err := o.client.CreateApp(ctx, app, ""); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{"production", "beta"} {
		if _, err := o.client.SetChannel(ctx, app, ch, store.ChannelPatch{}); err != nil {
			t.Fatal(err)
		}
	}
	dev := func(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i) }
	file := func(from, to int) io.Reader {
		var b strings.Builder
		for i := from; i < to; i++ {
			b.WriteString(dev(i) + "\n")
		}
		return strings.NewReader(b.String())
	}
	// last returns the time of the newest audit record of a cohort, once
	// the clock is past it: a change made next is recorded later.
	last := func(name string) int64 {
		t.Helper()
		recs, err := o.srv.store.Audit(ctx, store.AuditQuery{App: app, Target: name, Newest: true, Limit: 1})
		if err != nil || len(recs) != 1 {
			t.Fatalf("audit of %s: %+v %v", name, recs, err)
		}
		deadline := time.Now().Add(testenv.Patience(10 * time.Second))
		for time.Now().UnixMilli() <= recs[0].At {
			if time.Now().After(deadline) {
				t.Fatal("the clock does not move")
			}
			time.Sleep(time.Millisecond)
		}
		return recs[0].At
	}
	importVIP := func(from, to int, added, removed int64) {
		t.Helper()
		c, err := o.client.ImportCohort(ctx, app, "vip", file(from, to), "text/csv")
		if err != nil || c.Added != added || c.Removed != removed {
			t.Fatalf("import: %+v %v", c, err)
		}
	}
	importVIP(0, 10, 10, 0)
	first := last("vip")
	importVIP(5, 15, 5, 5)
	importVIP(5, 15, 0, 0) // the same file: no change, no record
	if _, err := o.client.AddSegment(ctx, app, snapshot.Rule{Name: "vips", Channel: "beta", Cohort: "vip"}, nil); err != nil {
		t.Fatal(err)
	}

	seq := uint64(0)
	ingest := func(evs ...events.Event) {
		t.Helper()
		seq++
		if _, err := o.srv.events.IngestAll(ctx, tailEdge, seq, events.AppendRecord([]byte(events.Magic), evs), evs, nil); err != nil {
			t.Fatal(err)
		}
	}
	ev := func(at int64, i int, action string) events.Event {
		return events.Event{Timestamp: at, Received: at, AppID: app, DeviceID: dev(i), Action: action, VersionName: "1.0.1",
			Platform: "android", Channel: "production"}
	}
	now := time.Now().UnixMilli()
	ingest(ev(now, 20, "download_fail"), ev(now, 21, "install_fail"), ev(now, 22, "update_fail"), ev(now, 30, "set"))
	if c, err := o.client.AddCohort(ctx, app, "failing", "failing:7d"); err != nil || c.Members != 3 || c.Added != 3 {
		t.Fatalf("add: %+v %v", c, err)
	}
	computed := last("failing")
	// Device 20 installs fine, device 23 fails: +1 -1 at the recomputation.
	ingest(ev(now+1, 20, "set"), ev(now+1, 23, "download_fail"))
	if c, err := o.client.AddCohort(ctx, app, "failing", "failing:7d"); err != nil || c.Members != 3 || c.Added != 1 || c.Removed != 1 {
		t.Fatalf("recompute: %+v %v", c, err)
	}
	recomputed := last("failing")

	stats := func(q url.Values) map[string]CohortStats {
		t.Helper()
		var rep StatsReport
		if err := o.client.DoJSON(ctx, http.MethodGet, "/api/v1/apps/"+app+"/stats?"+q.Encode(), nil, &rep); err != nil {
			t.Fatal(err)
		}
		out := map[string]CohortStats{}
		for _, c := range rep.Cohorts {
			out[c.Name] = c
		}
		if len(out) != 2 || rep.Cohorts[0].Name != "failing" {
			t.Fatalf("cohorts %+v", rep.Cohorts)
		}
		return out
	}
	type churn = store.CohortChurn
	check := func(what string, got CohortStats, kind, rule string, members int64, window, week churn, segments ...string) {
		t.Helper()
		if got.Kind != kind || got.Rule != rule || got.Members != members || got.Churn != window || got.Churn7d != week ||
			!slices.Equal(got.Segments, segments) {
			t.Errorf("%s: %s %+v, want %s %q, %d members, churn %+v, 7 days %+v, segments %v", what, got.Name, got, kind, rule, members, window, week, segments)
		}
	}
	vipAll, failingAll := churn{Added: 15, Removed: 5, Changes: 2}, churn{Added: 4, Removed: 1, Changes: 2}
	all := stats(url.Values{})
	check("last 24 h", all["vip"], "imported", "", 10, vipAll, vipAll, "vips")
	check("last 24 h", all["failing"], "computed", "failing:7d", 3, failingAll, failingAll)
	if c := all["failing"].ChangedAt; c == nil || c.UnixMilli() != recomputed {
		t.Errorf("failing changed at %v, want %d", c, recomputed)
	}

	ms := func(at int64) string { return time.UnixMilli(at).UTC().Format(time.RFC3339Nano) }
	// From the first import (excluded: after from) to now.
	since := stats(url.Values{"from": {ms(first)}})
	check("after the first import", since["vip"], "imported", "", 10, churn{Added: 5, Removed: 5, Changes: 1}, vipAll, "vips")
	check("after the first import", since["failing"], "computed", "failing:7d", 3, failingAll, failingAll)
	// Up to just before the recomputation: the 7 days end at to too.
	before := stats(url.Values{"from": {ms(first)}, "to": {ms(recomputed - 1)}})
	check("before the recomputation", before["vip"], "imported", "", 10, churn{Added: 5, Removed: 5, Changes: 1}, vipAll, "vips")
	check("before the recomputation", before["failing"], "computed", "failing:7d", 3, churn{Added: 3, Changes: 1}, churn{Added: 3, Changes: 1})
	// Only the computation: after the imports, up to it.
	only := stats(url.Values{"from": {ms(computed - 1)}, "to": {ms(computed)}})
	check("the computation", only["vip"], "imported", "", 10, churn{}, vipAll, "vips")
	check("the computation", only["failing"], "computed", "failing:7d", 3, churn{Added: 3, Changes: 1}, churn{Added: 3, Changes: 1})
}
