package origin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// wantRecord is an expected audit record: its actor, action, target and
// before and after JSON, compared exactly ("" : none).
type wantRecord struct {
	Actor, Action, Target, Before, After string
}

func (w wantRecord) String() string {
	return fmt.Sprintf("%s %s %q %s -> %s", w.Actor, w.Action, w.Target, w.Before, w.After)
}

// gotRecord is r as a wantRecord, its JSON compacted (the API indents it).
func gotRecord(r store.AuditRecord) wantRecord {
	compact := func(b json.RawMessage) string {
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil {
			return string(b)
		}
		return buf.String()
	}
	return wantRecord{r.Actor, r.Action, r.Target, compact(r.Before), compact(r.After)}
}

// operatorKeyName is the name of the origin's generated operator key, the
// actor of the test's API calls.
func operatorKeyName(t *testing.T, o *testOrigin) string {
	t.Helper()
	keys, err := o.srv.store.APIKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Scope == store.ScopeAdmin {
			return k.Label
		}
	}
	t.Fatal("no operator key")
	return ""
}

// auditSince reads every audit record after id through the API.
func auditSince(t *testing.T, o *testOrigin, app string, after int64) []store.AuditRecord {
	t.Helper()
	var out []store.AuditRecord
	for {
		page, err := o.client.Audit(context.Background(), app, url.Values{"after": {fmt.Sprint(after)}, "limit": {"3"}})
		if err != nil {
			t.Fatalf("GET audit: %v", err)
		}
		if len(page.Records) == 0 {
			if page.NextAfter != after {
				t.Fatalf("empty page: next_after %d, want %d (the after given)", page.NextAfter, after)
			}
			return out
		}
		out = append(out, page.Records...)
		after = page.NextAfter
	}
}

func compareRecords(t *testing.T, got []store.AuditRecord, want []wantRecord) {
	t.Helper()
	n := max(len(got), len(want))
	bad := false
	var b strings.Builder
	for i := range n {
		var g, w wantRecord
		if i < len(got) {
			g = gotRecord(got[i])
		}
		if i < len(want) {
			w = want[i]
		}
		mark := "  "
		if g != w {
			mark, bad = "✗ ", true
		}
		fmt.Fprintf(&b, "%s%2d got  %v\n     want %v\n", mark, i, g, w)
	}
	if bad {
		t.Fatalf("audit records (%d) differ from the %d expected:\n%s", len(got), len(want), b.String())
	}
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// TestAuditTrailSession is issue 20's "done when": a scripted session of
// writes through the API produces exactly the expected audit records, in
// order, with the key's name and address, the state before and after, ids
// increasing and plausible times.
func TestAuditTrailSession(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	c := o.client
	me := operatorKeyName(t, o)
	const app = "com.example.audit"
	start := time.Now()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	var want []wantRecord
	add := func(actor, action, target, before, after string) {
		want = append(want, wantRecord{actor, action, target, before, after})
	}

	_, err := c.CreateApp(ctx, app, "Audit")
	must("create app", err)
	add(me, "app.created", app, "", `{"id":"com.example.audit","name":"Audit"}`)

	zips := map[string][]byte{}
	for i, v := range []string{"1.0.0", "1.0.1", "1.0.2", "1.0.3"} {
		zips[v] = makeZip(t, map[string]string{"index.html": "<html>" + v + "</html>"})
		opt := client.UploadOptions{}
		if v == "1.0.2" {
			opt.Channel = "beta" // creates the channel, pointing at the bundle
		}
		_, err := c.UploadBundle(ctx, app, v, bytes.NewReader(zips[v]), opt)
		must("upload "+v, err)
		add(me, "bundle.uploaded", v, "", fmt.Sprintf(`{"version":%q,"sha256":%q,"size":%d}`, v, sha(zips[v]), len(zips[v])))
		if i == 2 {
			add(me, "channel.created", "beta", "", `{"bundle":"1.0.2"}`)
		}
	}

	must("create channel", c.DoJSON(ctx, http.MethodPost, "/api/v1/apps/"+app+"/channels", map[string]any{"name": "production", "public": true}, nil))
	add(me, "channel.created", "production", "", `{"bundle":"","public":true}`)
	_, err = c.SetChannel(ctx, app, "production", store.ChannelPatch{Bundle: ptrTo("1.0.0")})
	must("set channel bundle", err)
	add(me, "channel.changed", "production", `{"bundle":""}`, `{"bundle":"1.0.0"}`)

	bps := 1000
	_, err = c.Rollout(ctx, app, "production", RolloutRequest{Bundle: "1.0.1", BPS: &bps})
	must("rollout 10%", err)
	add(me, "rollout.set", "production", `{"rollout":null}`, `{"rollout":{"bundle":"1.0.1","bps":1000,"paused":false}}`)
	_, err = c.Rollout(ctx, app, "production", RolloutRequest{Action: store.RolloutPause})
	must("pause", err)
	add(me, "rollout.paused", "production", `{"rollout":{"bundle":"1.0.1","bps":1000,"paused":false}}`, `{"rollout":{"bundle":"1.0.1","bps":1000,"paused":true}}`)
	_, err = c.Rollout(ctx, app, "production", RolloutRequest{Action: store.RolloutResume})
	must("resume", err)
	add(me, "rollout.resumed", "production", `{"rollout":{"bundle":"1.0.1","bps":1000,"paused":true}}`, `{"rollout":{"bundle":"1.0.1","bps":1000,"paused":false}}`)
	_, err = c.Rollout(ctx, app, "production", RolloutRequest{Action: store.RolloutPromote})
	must("promote", err)
	add(me, "rollout.promoted", "production", `{"bundle":"1.0.0","rollout":{"bundle":"1.0.1","bps":1000,"paused":false}}`, `{"bundle":"1.0.1","rollout":null}`)

	_, err = c.SetAB(ctx, app, "production", []snapshot.Arm{{Name: "a", Bundle: "1.0.1", BPS: 5000}, {Name: "b", Bundle: "1.0.2", BPS: 5000}})
	must("A/B set", err)
	arms := `[{"name":"a","bundle":"1.0.1","bps":5000},{"name":"b","bundle":"1.0.2","bps":5000}]`
	add(me, "ab.set", "production", `{"ab":null}`, `{"ab":`+arms+`}`)
	must("A/B delete", c.DoJSON(ctx, http.MethodDelete, "/api/v1/apps/"+app+"/channels/production/ab", nil, nil))
	add(me, "ab.deleted", "production", `{"ab":`+arms+`}`, `{"ab":null}`)

	_, err = c.AddSegment(ctx, app, snapshot.Rule{Name: "testers", Channel: "beta", CustomIDs: []string{"alice"}}, nil)
	must("segment add", err)
	rule := `{"position":0,"rule":{"name":"testers","channel":"beta","custom_ids":["alice"]}}`
	add(me, "segment.added", "testers", "", rule)
	must("segment remove", c.RemoveSegment(ctx, app, "testers"))
	add(me, "segment.removed", "testers", rule, "")

	devs := []string{"00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"}
	must("overrides put", c.SetOverrides(ctx, app, "beta", devs))
	add(me, "overrides.changed", "beta", "", `{"channel":"beta","devices":2}`)

	_, err = c.SetGuard(ctx, app, "production", store.Guard{Action: store.GuardPause, MinAttempts: 100})
	must("guard set", err)
	g, _ := json.Marshal(store.DefaultGuard(store.Guard{Action: store.GuardPause, MinAttempts: 100}))
	add(me, "guard.set", "production", "", string(g))

	// keep 1: 1.0.3 is the newest, 1.0.2 (beta) and 1.0.1 (production)
	// are in use, 1.0.0 goes.
	keep := 1
	set, err := c.SetAppOptions(ctx, app, AppOptions{KeepBundles: &keep})
	must("app set --keep 1", err)
	if len(set.Deleted) != 1 || set.Deleted[0] != "1.0.0" {
		t.Fatalf("--keep 1 deleted %v, want [1.0.0]", set.Deleted)
	}
	add(me, "app.changed", app, `{"keep_bundles":0}`, `{"keep_bundles":1}`)
	add(ActorRetention, "bundle.deleted", "1.0.0", fmt.Sprintf(`{"version":"1.0.0","sha256":%q,"size":%d}`, sha(zips["1.0.0"]), len(zips["1.0.0"])), "")

	_, err = c.DeleteBundle(ctx, app, "1.0.3")
	must("bundle delete", err)
	add(me, "bundle.deleted", "1.0.3", fmt.Sprintf(`{"version":"1.0.3","sha256":%q,"size":%d}`, sha(zips["1.0.3"]), len(zips["1.0.3"])), "")

	// A collection that deletes nothing records nothing: collect until one
	// does (on S3 a blob's Last-Modified has whole seconds, so one touched
	// by the deletions is older than "grace 0" only in the next second).
	zero := time.Duration(0)
	var res GCResult
	waitUntil(t, "a collection with grace 0 deletes the deleted bundles' blobs", func() bool {
		res, err = c.GC(ctx, &zero)
		must("gc", err)
		return res.Deleted > 0
	}, func() string { return fmt.Sprintf("%+v", res) })
	add(me, "gc.run", "", "", fmt.Sprintf(`{"deleted":%d,"bytes":%d}`, res.Deleted, res.Bytes))

	_, err = c.RebuildBundle(ctx, app, "1.0.2", false)
	must("bundle rebuild", err)
	add(me, "bundle.rebuilt", "1.0.2", "", `{"force":false}`)
	_, err = c.DeleteApp(ctx, app)
	must("app delete", err)
	add(me, "app.deleted", app, `{"bundles":2,"channels":2}`, "")

	end := time.Now()
	all := auditSince(t, o, "", 0)
	compareRecords(t, all, want)
	for i, r := range all {
		if i > 0 && r.ID <= all[i-1].ID {
			t.Fatalf("record %d: id %d after %d, want increasing", i, r.ID, all[i-1].ID)
		}
		if at := time.UnixMilli(r.At); at.Before(start.Add(-time.Second)) || at.After(end.Add(time.Second)) {
			t.Fatalf("record %d at %v, want within the session (%v .. %v)", i, at, start, end)
		}
		wantApp, wantAddr := app, "127.0.0.1"
		if r.Action == "gc.run" {
			wantApp = ""
		}
		if r.Actor == ActorRetention {
			wantAddr = ""
		}
		if r.App != wantApp || r.Addr != wantAddr {
			t.Fatalf("record %d (%s): app %q addr %q, want %q and %q", i, r.Action, r.App, r.Addr, wantApp, wantAddr)
		}
	}
	// The app's own trail is the same without the installation's gc.run.
	if got := auditSince(t, o, app, 0); len(got) != len(all)-1 {
		t.Fatalf("GET /apps/%s/audit: %d records, want %d", app, len(got), len(all)-1)
	}
	// Filters: action list, target, since.
	page, err := c.Audit(ctx, "", url.Values{"action": {"rollout.paused,rollout.resumed"}})
	must("audit ?action", err)
	if len(page.Records) != 2 || page.Records[0].Action != "rollout.paused" || page.Records[1].Action != "rollout.resumed" {
		t.Fatalf("?action=rollout.paused,rollout.resumed: %+v", page.Records)
	}
	page, err = c.Audit(ctx, app, url.Values{"target": {"beta"}, "since": {"1h"}})
	must("audit ?target", err)
	if len(page.Records) != 2 || page.Records[0].Action != "channel.created" || page.Records[1].Action != "overrides.changed" {
		t.Fatalf("?target=beta: %+v", page.Records)
	}
	page, err = c.Audit(ctx, "", url.Values{"since": {end.Add(time.Hour).UTC().Format(time.RFC3339)}})
	must("audit ?since future", err)
	if len(page.Records) != 0 || page.Records == nil {
		t.Fatalf("?since in the future: %+v, want an empty list", page.Records)
	}
	for _, q := range []string{"limit=0", "limit=1001", "since=yesterday", "after=-1", "app=bad"} {
		err := c.DoJSON(ctx, http.MethodGet, "/api/v1/audit?"+q, nil, nil)
		if code := apiCode(err); !strings.HasPrefix(code, "400 invalid_") {
			t.Fatalf("GET /api/v1/audit?%s: %s, want 400 invalid_…", q, code)
		}
	}

	// The channel's history: newest first, paged.
	var hist []store.AuditRecord
	q := url.Values{"limit": {"2"}}
	for {
		p, err := c.ChannelHistory(ctx, app, "production", q)
		must("channel history", err)
		hist = append(hist, p.Records...)
		if p.NextBefore == 0 {
			break
		}
		q.Set("before", fmt.Sprint(p.NextBefore))
	}
	var wantHist []wantRecord
	for i := len(want) - 1; i >= 0; i-- {
		if w := want[i]; w.Target == "production" {
			wantHist = append(wantHist, w)
		}
	}
	compareRecords(t, hist, wantHist)
}

// TestAuditNothingForFailedOrNoopWrites: a refused write, or one that
// changes nothing, adds no record.
func TestAuditNothingForFailedOrNoopWrites(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	c := o.client
	const app = "com.example.noop"
	if _, err := c.CreateApp(ctx, app, ""); err != nil {
		t.Fatal(err)
	}
	z := makeZip(t, map[string]string{"index.html": "x"})
	if _, err := c.UploadBundle(ctx, app, "1.0.0", bytes.NewReader(z), client.UploadOptions{Channel: "production"}); err != nil {
		t.Fatal(err)
	}
	bps := 500
	if _, err := c.Rollout(ctx, app, "production", RolloutRequest{Bundle: "1.0.0", BPS: &bps}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetGuard(ctx, app, "production", store.Guard{}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetOverrides(ctx, app, "production", []string{"00000000-0000-4000-8000-000000000001"}); err != nil {
		t.Fatal(err)
	}
	keep := 3
	if _, err := c.SetAppOptions(ctx, app, AppOptions{KeepBundles: &keep}); err != nil {
		t.Fatal(err)
	}
	before := auditSince(t, o, "", 0)
	var acts []string
	for _, r := range before {
		acts = append(acts, r.Action)
	}
	if got := strings.Join(acts, " "); got != "app.created bundle.uploaded channel.created rollout.set guard.set overrides.changed app.changed" {
		t.Fatalf("records before the no-ops: %s", got)
	}
	last := before[len(before)-1].ID

	fails := map[string]error{}
	_, fails["create existing app"] = c.CreateApp(ctx, app, "")
	_, fails["upload existing version"] = c.UploadBundle(ctx, app, "1.0.0", bytes.NewReader(z), client.UploadOptions{})
	_, fails["channel to an unknown bundle"] = c.SetChannel(ctx, app, "production", store.ChannelPatch{Bundle: ptrTo("9.9.9")})
	_, fails["channel of an unknown app"] = c.SetChannel(ctx, "com.missing.app", "production", store.ChannelPatch{Bundle: ptrTo("1.0.0")})
	_, fails["A/B during a rollout"] = c.SetAB(ctx, app, "production", []snapshot.Arm{{Name: "a", Bundle: "1.0.0", BPS: 10000}})
	_, fails["rollout of an unknown channel"] = c.Rollout(ctx, app, "nope", RolloutRequest{Action: store.RolloutPause})
	fails["remove an unknown segment"] = c.RemoveSegment(ctx, app, "nope")
	_, fails["segment of an unknown channel"] = c.AddSegment(ctx, app, snapshot.Rule{Name: "s", Channel: "nope"}, nil)
	fails["overrides to an unknown channel"] = c.SetOverrides(ctx, app, "nope", []string{"00000000-0000-4000-8000-000000000002"})
	_, fails["invalid guard"] = c.SetGuard(ctx, app, "production", store.Guard{Action: "explode"})
	_, fails["delete an in-use bundle"] = c.DeleteBundle(ctx, app, "1.0.0")
	_, fails["negative keep"] = c.SetAppOptions(ctx, app, AppOptions{KeepBundles: ptrTo(-1)})
	_, fails["rebuild an unknown bundle"] = c.RebuildBundle(ctx, app, "9.9.9", false)
	fails["delete app without confirm"] = c.DoJSON(ctx, http.MethodDelete, "/api/v1/apps/"+app, nil, nil)
	for what, err := range fails {
		if err == nil {
			t.Errorf("%s: accepted, want refused", what)
		}
	}
	// A device's own channel choice (legacy /channel_self, relayed by an
	// edge) is device traffic: not audited.
	if _, err := c.SetChannel(ctx, app, "beta", store.ChannelPatch{AllowDeviceSelfSet: ptrTo(true)}); err != nil {
		t.Fatal(err)
	}
	before = auditSince(t, o, "", 0)
	last = before[len(before)-1].ID
	if last <= before[len(before)-2].ID || before[len(before)-1].Action != "channel.created" {
		t.Fatalf("channel beta: %+v", before[len(before)-1])
	}
	edge := client.New(o.http.URL, readKeyFile(t, o.dir, "edge-key"))
	if err := edge.DoJSON(ctx, http.MethodPost, "/v1/device-channel",
		DeviceChannelRequest{AppID: app, DeviceID: "00000000-0000-4000-8000-000000000005", Channel: "beta"}, nil); err != nil {
		t.Fatalf("device-channel: %v", err)
	}
	if ov, err := c.ListOverrides(ctx, app, "", 10); err != nil || len(ov) != 2 {
		t.Fatalf("overrides after the device's choice: %+v %v", ov, err)
	}
	noops := map[string]error{}
	_, noops["same channel bundle"] = c.SetChannel(ctx, app, "production", store.ChannelPatch{Bundle: ptrTo("1.0.0")})
	_, noops["empty channel patch"] = c.SetChannel(ctx, app, "production", store.ChannelPatch{})
	_, noops["same rollout share"] = c.Rollout(ctx, app, "production", RolloutRequest{Bundle: "1.0.0", BPS: &bps})
	_, noops["resume a running rollout"] = c.Rollout(ctx, app, "production", RolloutRequest{Action: store.RolloutResume})
	_, noops["same guard"] = c.SetGuard(ctx, app, "production", store.Guard{})
	noops["same overrides"] = c.SetOverrides(ctx, app, "production", []string{"00000000-0000-4000-8000-000000000001"})
	noops["clear overrides of unpinned devices"] = c.SetOverrides(ctx, app, "", []string{"00000000-0000-4000-8000-000000000009"})
	_, noops["same keep"] = c.SetAppOptions(ctx, app, AppOptions{KeepBundles: &keep})
	_, noops["gc with nothing to collect"] = c.GC(ctx, nil)
	noops["delete the guard of a channel without one"] = c.DoJSON(ctx, http.MethodDelete, "/api/v1/apps/"+app+"/channels/beta/guard", nil, nil)
	for what, err := range noops {
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	if got := auditSince(t, o, "", last); len(got) != 0 {
		for _, r := range got {
			t.Log(gotRecord(r))
		}
		t.Fatalf("%d records after refused and no-op writes, want none", len(got))
	}
}

// TestAuditGuardActions: the rollout guard's pause is recorded as the
// guard's (actor "guard"): guard.acted with what it saw, then
// rollout.paused with the rollout before and after, in the pause's
// transaction; a rollback likewise records rollout.rolled_back.
func TestAuditGuardActions(t *testing.T) {
	for _, tc := range []struct {
		action, audit, after string
	}{
		{store.GuardPause, "rollout.paused", `{"rollout":{"bundle":"1.0.1","bps":5000,"paused":true}}`},
		{store.GuardRollback, "rollout.rolled_back", `{"rollout":null}`},
	} {
		t.Run(tc.action, func(t *testing.T) {
			o := guardOrigin(t, tc.action)
			last := auditSince(t, o, "", 0)
			from := last[len(last)-1].ID
			ingest(t, o, 1, outcomes(0, 100, thirtyPercent, time.Now().UnixMilli()))
			waitUntil(t, "the guard acts", func() bool { return len(getGuard(t, o).Actions) == 1 }, describeGuard(t, o))
			a := getGuard(t, o).Actions[0]
			var got []store.AuditRecord
			waitUntil(t, "two audit records", func() bool { got = auditSince(t, o, "", from); return len(got) >= 2 },
				func() string { return fmt.Sprint(got) })
			rate, _ := json.Marshal(a.FailureRate)
			lower, _ := json.Marshal(a.LowerBound)
			compareRecords(t, got, []wantRecord{
				{ActorGuard, "guard.acted", "production", "",
					fmt.Sprintf(`{"action":%q,"bundle":"1.0.1","attempts":100,"failures":30,"failure_rate":%s,"failure_rate_lower":%s}`, tc.action, rate, lower)},
				{ActorGuard, tc.audit, "production", `{"rollout":{"bundle":"1.0.1","bps":5000,"paused":false}}`, tc.after},
			})
			for _, r := range got {
				if r.App != guardApp || r.Addr != "" {
					t.Fatalf("guard record %+v: want app %s and no address", r, guardApp)
				}
			}
			// The history of the channel shows them first.
			h, err := o.client.ChannelHistory(context.Background(), guardApp, "production", url.Values{"limit": {"2"}})
			if err != nil || len(h.Records) != 2 || h.Records[0].Action != tc.audit || h.Records[1].Action != "guard.acted" || h.NextBefore != h.Records[1].ID {
				t.Fatalf("history: %+v, %v", h, err)
			}
		})
	}
}

// TestUIDeploymentHistory: the app page of /ui shows each channel's
// deployment history, newest first, at most 20 entries, escaped (an
// actor's name or a value is text, never markup).
func TestUIDeploymentHistory(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	c := o.client
	const app = "com.example.ui"
	if _, err := c.CreateApp(ctx, app, ""); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.0.0", "1.0.1"} {
		if _, err := c.UploadBundle(ctx, app, v, bytes.NewReader(makeZip(t, map[string]string{"index.html": v})), client.UploadOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.SetChannel(ctx, app, "production", store.ChannelPatch{Bundle: ptrTo("1.0.0")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetChannel(ctx, app, "beta", store.ChannelPatch{Bundle: ptrTo("1.0.1")}); err != nil {
		t.Fatal(err)
	}
	// 25 changes of production: the page shows the last 20.
	for i := range 25 {
		v := []string{"1.0.1", "1.0.0"}[i%2]
		if _, err := c.SetChannel(ctx, app, "production", store.ChannelPatch{Bundle: &v}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := o.srv.store.AppendAudit(ctx, store.AuditRecord{App: app, Actor: `<script>alert("x")</script>`, Action: "channel.changed",
		Target: "beta", Before: json.RawMessage(`{"bundle":"</code><b>1.0.0"}`), After: json.RawMessage(`{"bundle":"1.0.1"}`)}); err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(must(os.ReadFile(filepath.Join(o.dir, "api-key")))))
	req, _ := http.NewRequest("GET", o.http.URL+"/ui/apps/"+app, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	page := string(b)
	if resp.StatusCode != 200 || !strings.Contains(page, "<h2>Deployment history</h2>") {
		t.Fatalf("/ui app page: HTTP %d\n%.2000s", resp.StatusCode, page)
	}
	_, hist, _ := strings.Cut(page, "<h2>Deployment history</h2>")
	beta, prod, ok := strings.Cut(hist, `<h3 id="history-production">`)
	if !ok || !strings.Contains(beta, `<h3 id="history-beta">`) {
		t.Fatalf("no history per channel:\n%s", hist)
	}
	if strings.Contains(beta, "<script>") || strings.Contains(beta, "<b>") ||
		!strings.Contains(beta, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") || !strings.Contains(beta, "&lt;/code&gt;&lt;b&gt;1.0.0") {
		t.Fatalf("beta's history not escaped:\n%s", beta)
	}
	if n := strings.Count(beta, "<tr><td>"); n != 2 {
		t.Fatalf("beta: %d entries, want 2 (created, then the forged record)\n%s", n, beta)
	}
	if n := strings.Count(prod, "<tr><td>"); n != uiHistoryLen {
		t.Fatalf("production: %d entries, want the last %d\n%s", n, uiHistoryLen, prod)
	}
	// Newest first: the last change (i = 24) moved production from 1.0.0
	// to 1.0.1.
	first := prod[strings.Index(prod, "<tr><td>"):]
	first = first[:strings.Index(first, "</tr>")]
	if !strings.Contains(first, "channel.changed") ||
		!strings.Contains(first, `<td><code>{&#34;bundle&#34;:&#34;1.0.0&#34;}</code></td><td><code>{&#34;bundle&#34;:&#34;1.0.1&#34;}</code></td>`) {
		t.Fatalf("production's newest entry: %s", first)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
