package origin

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

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
