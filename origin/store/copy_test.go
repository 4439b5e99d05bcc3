package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/native"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store/postgres"
	"github.com/updraft-cdn/updraft/origin/store/sqlite"
)

// copyInstallation is one origin's pair of stores, for the copy tests.
type copyInstallation struct {
	url    string
	meta   *Store
	events *EventStore
}

// openCopyInstallation opens (creating) the stores at url ("": SQLite in a
// fresh folder).
func openCopyInstallation(t *testing.T, url string) copyInstallation {
	t.Helper()
	m, e, err := OpenStores(context.Background(), url, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); e.Close() })
	return copyInstallation{url: url, meta: m, events: e}
}

// otherCopyEngineURL is a store URL on the engine the test run is not about:
// the copy tests copy from the engine under test (testenv.StoreEngine) to
// the other one, so the two runs of the package cover both directions.
func otherCopyEngineURL(t *testing.T) string {
	t.Helper()
	if testenv.StoreEngine() == "postgres" {
		return ""
	}
	return testenv.PostgresURL(t)
}

// Device ids whose bytes span 0x00…0xff (device_overrides.device_id is a
// BLOB / BYTEA).
var copyDevices = []string{"00000000-0000-4000-8000-000000000000", "ffffffff-ffff-4fff-bfff-ffffffffffff", "0a0d0009-5c27-4022-8000-7f80fe01ff00"}

// copySegment is an event segment's bytes: every byte value, NUL and
// invalid UTF-8 included.
func copySegment(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

// populateForCopy fills an copyInstallation through the store API with a row in every
// table: encrypted bundle fields, channels with a rollout and an A/B
// split, segments, overrides (operator and device-set), deltas, manifests,
// guards and their actions, jobs, keys, secrets, and events (segments of
// arbitrary bytes, an empty one included) with their aggregates.
func populateForCopy(t *testing.T, in copyInstallation) {
	t.Helper()
	ctx := context.Background()
	s := in.meta
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.AddAPIKey(ctx, strings.Repeat("a1", 32), FileAdminKey, ScopeAdmin))
	must(s.AddAPIKey(ctx, strings.Repeat("e2", 32), FileEdgeKey, ScopeEdge))
	must(s.RotateAPIKey(ctx, strings.Repeat("b3", 32), FileAdminKey, ScopeAdmin, time.Now().Add(time.Hour).Unix()))
	var err error
	_, err = s.CreateAPIKey(ctx, APIKey{Hash: strings.Repeat("c5", 32), Label: "ci", Scope: ScopeUpload, App: evApp, ExpiresAt: time.Now().Add(time.Hour).Unix()})
	must(err)
	_, err = s.RevokeAPIKey(ctx, "ci", nil)
	must(err)
	// A webhook with a delivery queued (the audit records below) and one
	// removed afterwards (its audit record stays).
	wh, werr := s.AddWebhook(ctx, Webhook{App: evApp, URL: "https://hooks.example/ü", Events: []string{"bundle.*", "key.created"},
		Secret: "s3cret", Format: WebhookJSON, CreatedBy: "admin"}, AuditRecord{Actor: "admin", Addr: "192.0.2.9"})
	must(werr)
	gone, werr := s.AddWebhook(ctx, Webhook{URL: "https://hooks.example/gone", Events: []string{"*"}, Format: WebhookSlack}, AuditRecord{Actor: "admin"})
	must(werr)
	_, werr = s.RemoveWebhook(ctx, gone.ID, AuditRecord{Actor: "admin"})
	must(werr)
	for _, r := range []AuditRecord{
		{App: evApp, Actor: "ci", Addr: "192.0.2.1", Action: "bundle.uploaded", Target: "1.0.0", After: []byte(`{"version":"1.0.0","ü":"é"}`)},
		{Actor: "admin", Action: "key.created", Target: "ci"},
	} {
		_, err := s.AppendAudit(ctx, r)
		must(err)
	}
	uid := 0
	n, _, werr := s.EnqueueWebhookDeliveries(ctx, time.Now(), 100, func() string { uid++; return fmt.Sprintf("uid-%d", uid) },
		func(w Webhook, rec AuditRecord, uid string) (string, error) {
			return `{"id":"` + uid + `","ü":1}`, nil
		})
	must(werr)
	if n != 1 {
		t.Fatalf("%d deliveries queued for webhook %d, want 1 (bundle.uploaded of %s)", n, wh.ID, evApp)
	}
	for _, app := range []string{evApp, "com.example.zeta", "com.example.ümlaut"} {
		_, err := s.CreateApp(ctx, app, "App "+app)
		must(err)
	}
	must(s.SetAppProtocol(ctx, evApp, ptr(true), ptr(false)))
	for i, v := range []string{"1.0.0", "1.0.1", "1.0.2", "0.9.0"} { // created out of version order: listings go by creation
		b := Bundle{AppID: evApp, Version: v, SHA256: fmt.Sprintf("%064x", i+1), Size: int64(100 + i), Comment: "c'" + v, Link: "https://x/" + v}
		if v == "1.0.2" {
			b.SessionKey, b.Checksum, b.KeyID = "iv:"+strings.Repeat("k", 40), "sum-of-plain", "keyid01"
		}
		if v == "1.0.1" {
			b.NativePackages = []native.Package{{Name: "@capacitor/core", Version: "7.2.0"}, {Name: "@capacitor/camera", Version: "7.0.1"}}
		}
		_, err := s.CreateBundleWithManifest(ctx, b, []snapshot.ManifestEntry{{Name: "index.html", Hash: "h" + v, Blob: fmt.Sprintf("%064x", 100+i), Size: 12}})
		must(err)
	}
	_, err = s.CreateBundle(ctx, Bundle{AppID: "com.example.zeta", Version: "2.0.0", SHA256: fmt.Sprintf("%064x", 50), Size: 5})
	must(err)
	must(s.SetCanonical(ctx, evApp, "1.0.1", fmt.Sprintf("%064x", 200), 300))
	must(s.AddDelta(ctx, evApp, "1.0.1", snapshot.Delta{From: "1.0.0", Base: fmt.Sprintf("%064x", 201), Encoding: "dcz", SHA256: fmt.Sprintf("%064x", 202), Size: 7, DecodeNs: 3_000_000_123}))
	for _, ch := range []string{"production", "beta", "dev"} {
		_, _, _, err := s.PutChannel(ctx, evApp, ch, ChannelPatch{Bundle: ptr("1.0.0"), AllowDeviceSelfSet: ptr(ch != "production")}, false)
		must(err)
	}
	_, _, _, err = s.PutChannel(ctx, "com.example.zeta", "production", ChannelPatch{Bundle: ptr("builtin")}, false)
	must(err)
	_, err = s.CreatePreview(ctx, evApp, "pv-copy", "1.0.2", time.Unix(4102444800, 0), AuditRecord{Actor: "ci"})
	must(err)
	_, _, _, err = s.PutChannel(ctx, evApp, "dev", ChannelPatch{Bundle: ptr("1.0.2"), MinNativeBuild: ptr("2.0.0"),
		Windows: &snapshot.Windows{Weekly: []snapshot.Window{{Day: "sat", Start: "01:00", End: "05:00", TZ: "Europe/Rome"}},
			Blackouts: []snapshot.Blackout{{Date: "2026-12-24"}}}}, false)
	must(err)
	_, err = s.SetRollout(ctx, evApp, "production", RolloutSet, "1.0.1", 2500)
	must(err)
	_, err = s.SetAB(ctx, evApp, "beta", []snapshot.Arm{{Name: "a", Bundle: "1.0.1", BPS: 5000}, {Name: "b", Bundle: "1.0.2", BPS: 5000}})
	must(err)
	_, err = s.AddSegment(ctx, evApp, snapshot.Rule{Name: "testers", Channel: "beta", Platforms: []string{"ios"}, CustomIDPrefix: "qa-"}, 0)
	must(err)
	must(s.SetOverrides(ctx, evApp, "dev", copyDevices))
	{
		k, _ := snapshot.ParseDeviceID(copyDevices[0])
		_, err = s.SetCohort(ctx, evApp, "power", "", SortKeys([][16]byte{k, snapshot.CohortKeyOfCustomID("acme-1")}))
		must(err)
		_, err = s.AddSegment(ctx, evApp, snapshot.Rule{Name: "power-users", Channel: "beta", Cohort: "power"}, -1)
		must(err)
	}
	_, err = s.SetDeviceChannel(ctx, evApp, "12345678-1234-4234-8234-123456789abc", "beta")
	must(err)
	g := DefaultGuard(Guard{})
	must(s.SetGuard(ctx, evApp, "production", &g))
	must(s.RecordGuardAction(ctx, GuardAction{AppID: evApp, Channel: "production", At: time.Now(), Action: "pause", Bundle: "1.0.1",
		Attempts: 60, Failures: 9, FailureRate: 0.15, LowerBound: 1.0 / 3}))
	must(s.EnqueueJob(ctx, JobBuild, evApp, "1.0.2"))
	_, err = s.InitSecret(ctx, "snapshot_signing_key", "c2VjcmV0")
	must(err)

	base := baseTime()
	evs := []events.Event{ev(base, 1, "set", "1.0.1", "production"), ev(base+minuteM, 2, "update_fail", "1.0.1", "production"), ev(base+2*minuteM, 3, "download_complete", "1.0.0", "beta")}
	cis := []events.CheckIns{{AppID: evApp, At: base, Devices: [][16]byte{{1, 2, 3}, {0xff}}}}
	if _, err := in.events.IngestAll(ctx, edgeA, 1, encodeSegment(evs), evs, cis); err != nil {
		t.Fatal(err)
	}
	if _, err := in.events.IngestAll(ctx, edgeA, 2, copySegment(1000), evs[:1], nil); err != nil {
		t.Fatal(err)
	}
	if _, err := in.events.IngestAll(ctx, edgeB, 1, []byte{}, nil, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ { // enough rows for several batches
		e := ev(base+int64(i)*minuteM, 100+i, "get", "1.0.0", "dev")
		if _, err := in.events.IngestAll(ctx, edgeB, uint64(10+i), copySegment(i), []events.Event{e}, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func copyBoth(t *testing.T, dst, src copyInstallation, opt CopyOptions) error {
	t.Helper()
	ctx := context.Background()
	if _, err := CopyMeta(ctx, dst.meta, src.meta, opt); err != nil {
		return err
	}
	_, err := CopyEvents(ctx, dst.events, src.events, opt)
	return err
}

// verifyCopyClean checks that dst holds what src holds, table by table.
func verifyCopyClean(t *testing.T, dst, src copyInstallation) {
	t.Helper()
	ctx := context.Background()
	mc, err := VerifyMeta(ctx, dst.meta, src.meta, CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ec, err := VerifyEvents(ctx, dst.events, src.events, CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checks := append(mc, ec...)
	if len(checks) != len(MetaTables())+len(EventTables()) {
		t.Fatalf("%d tables verified, want %d", len(checks), len(MetaTables())+len(EventTables()))
	}
	for _, c := range checks {
		if !c.OK() {
			t.Errorf("verify %s.%s: %+v", c.Schema, c.Table, c)
		}
		if c.Table != revisionTable && c.SourceRows == 0 {
			t.Errorf("verify %s.%s: no rows: populate should fill every table", c.Schema, c.Table)
		}
	}
}

// sameCopyContent compares what the origin reads of both copyInstallations: the
// snapshot, listings in their order, overrides, keys, secrets, the
// revision and the raw event segments.
func sameCopyContent(t *testing.T, a, b copyInstallation) {
	t.Helper()
	ctx := context.Background()
	snap := func(in copyInstallation) string {
		s, err := in.meta.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		j, _ := json.Marshal(s)
		return string(j)
	}
	if sa, sb := snap(a), snap(b); sa != sb {
		t.Errorf("snapshots differ:\n%s\n%s", sa, sb)
	}
	ra, _ := a.meta.Rev(ctx)
	rb, _ := b.meta.Rev(ctx)
	if ra != rb {
		t.Errorf("revisions %d and %d", ra, rb)
	}
	lists := func(in copyInstallation) string {
		var out []any
		for _, app := range []string{evApp, "com.example.zeta"} {
			bs, err := in.meta.ListBundles(ctx, app)
			if err != nil {
				t.Fatal(err)
			}
			cs, err := in.meta.ListChannels(ctx, app)
			if err != nil {
				t.Fatal(err)
			}
			os, err := in.meta.ListOverrides(ctx, app, "", 100)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, bs, cs, os)
		}
		apps, _ := in.meta.ListApps(ctx)
		keys, _ := in.meta.APIKeys(ctx)
		slices.SortFunc(keys, func(x, y APIKey) int { return strings.Compare(x.Hash, y.Hash) })
		guards, _ := in.meta.Guards(ctx, "")
		actions, _ := in.meta.GuardActions(ctx, evApp, "production", 10)
		jobs, _ := in.meta.ListJobs(ctx, JobBuild, evApp)
		sec, _, _ := in.meta.Secret(ctx, "snapshot_signing_key")
		out = append(out, apps, keys, guards, actions, jobs, sec)
		j, _ := json.Marshal(out)
		return string(j)
	}
	if la, lb := lists(a), lists(b); la != lb {
		t.Errorf("listings differ:\n%s\n%s", la, lb)
	}
	segs := func(in copyInstallation) map[string][]byte {
		m := map[string][]byte{}
		err := in.events.RawSegments(ctx, 0, time.Now().Add(time.Hour).UnixMilli(), func(edge string, seq uint64, seg []byte) error {
			m[fmt.Sprintf("%s/%d", edge, seq)] = bytes.Clone(seg)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	sa, sb := segs(a), segs(b)
	if len(sa) != len(sb) || len(sa) < 30 {
		t.Errorf("raw segments: %d and %d", len(sa), len(sb))
	}
	for k, v := range sa {
		if w, ok := sb[k]; !ok || !bytes.Equal(v, w) {
			t.Errorf("raw segment %s: %d bytes, and %d (%v)", k, len(v), len(w), ok)
		}
	}
	for _, dev := range []int{1, 2, 100} {
		da, oka, _ := a.events.Seen(ctx, evApp, devID(dev))
		db, okb, _ := b.events.Seen(ctx, evApp, devID(dev))
		if da != db || oka != okb || !oka {
			t.Errorf("device %d seen: %+v %v, %+v %v", dev, da, oka, db, okb)
		}
	}
}

// Issue 13: a copy to the other engine holds the same rows (blobs byte for
// byte, rowids and so listing orders, the revision), the destination works
// afterwards (its identity sequences are past the copied ids), and copying
// back gives the original again.
func TestMigrateCopyRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := openCopyInstallation(t, testenv.StoreURL(t))
	populateForCopy(t, src)
	dst := openCopyInstallation(t, otherCopyEngineURL(t))
	var seen []string
	opt := CopyOptions{BatchRows: 7, Progress: func(p TableCopy) {
		if p.Done {
			seen = append(seen, p.Schema+"."+p.Table)
		}
	}}
	if err := copyBoth(t, dst, src, opt); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, n := range MetaTables() {
		want = append(want, "meta."+n)
	}
	for _, n := range EventTables() {
		want = append(want, "events."+n)
	}
	if !slices.Equal(seen, want) {
		t.Fatalf("tables copied %v, want %v", seen, want)
	}
	verifyCopyClean(t, dst, src)
	sameCopyContent(t, src, dst)

	// Copying again changes nothing.
	res, err := CopyMeta(ctx, dst.meta, src.meta, CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Inserted != 0 || (r.Table != revisionTable && !r.Resumed) {
			t.Errorf("second copy of %s: %+v", r.Table, r)
		}
	}

	// Back to the engine under test, from the copy: the original again.
	back := openCopyInstallation(t, testenv.StoreURL(t))
	if err := copyBoth(t, back, dst, CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	verifyCopyClean(t, back, src)
	sameCopyContent(t, src, back)

	// The copy numbers new rows after the copied ones.
	for _, in := range []copyInstallation{dst, back} {
		if err := in.meta.AddAPIKey(ctx, strings.Repeat("c4", 32), "new", ScopeAdmin); err != nil {
			t.Fatalf("%s: new key: %v", in.meta.Engine(), err)
		}
		if _, err := in.meta.CreateBundle(ctx, Bundle{AppID: evApp, Version: "3.0.0", SHA256: fmt.Sprintf("%064x", 9), Size: 1}); err != nil {
			t.Fatalf("%s: new bundle: %v", in.meta.Engine(), err)
		}
		if _, _, _, err := in.meta.PutChannel(ctx, evApp, "canary", ChannelPatch{Bundle: ptr("3.0.0")}, false); err != nil {
			t.Fatalf("%s: new channel: %v", in.meta.Engine(), err)
		}
		if err := in.meta.RecordGuardAction(ctx, GuardAction{AppID: evApp, Channel: "production", At: time.Now(), Action: "notify"}); err != nil {
			t.Fatalf("%s: new guard action: %v", in.meta.Engine(), err)
		}
		if err := in.meta.EnqueueJob(ctx, JobBuild, evApp, "3.0.0"); err != nil {
			t.Fatalf("%s: new job: %v", in.meta.Engine(), err)
		}
		bs, _ := in.meta.ListBundles(ctx, evApp)
		if len(bs) == 0 || bs[0].Version != "3.0.0" {
			t.Fatalf("%s: newest bundle first: %+v", in.meta.Engine(), bs)
		}
		cs, _ := in.meta.ListChannels(ctx, evApp)
		for _, c := range cs {
			if c.Name != "canary" && c.ID >= cs[slices.IndexFunc(cs, func(c Channel) bool { return c.Name == "canary" })].ID {
				t.Fatalf("%s: the new channel's id is not past the copied ones: %+v", in.meta.Engine(), cs)
			}
		}
	}
}

// An interrupted copy resumes: the second run reads on from the
// destination's last key, inserts only what is missing, and the result
// verifies clean. A row removed from the destination in between is found
// again (a full pass when the destination stays short).
func TestMigrateCopyResumes(t *testing.T) {
	ctx := context.Background()
	src := openCopyInstallation(t, testenv.StoreURL(t))
	populateForCopy(t, src)
	dst := openCopyInstallation(t, otherCopyEngineURL(t))

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := 0
	opt := CopyOptions{BatchRows: 2, Progress: func(p TableCopy) {
		if !p.Done && p.Table == "bundles" {
			batches++
			if batches == 1 {
				cancel() // after the first batch of bundles
			}
		}
	}}
	if _, err := CopyMeta(cctx, dst.meta, src.meta, opt); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted copy: %v", err)
	}
	if n, _ := countRows(ctx, dst.meta.db, "bundles"); n != 2 {
		t.Fatalf("%d bundles after the interruption, want the first batch (2)", n)
	}
	cctx, cancel = context.WithCancel(ctx)
	events := 0
	opt.Progress = func(p TableCopy) {
		if !p.Done && p.Table == "event_segments" {
			if events++; events == 3 {
				cancel()
			}
		}
	}
	if _, err := CopyEvents(cctx, dst.events, src.events, opt); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted events copy: %v", err)
	}
	if n, _ := countRows(ctx, dst.events.db, "event_segments"); n != 6 {
		t.Fatalf("%d segments after the interruption, want 3 batches (6)", n)
	}

	// A row of the copied part goes missing in the destination.
	if _, err := dst.events.db.ExecContext(ctx, `DELETE FROM event_segments WHERE edge_id = ? AND seq = 2`, edgeA); err != nil {
		t.Fatal(err)
	}

	got := map[string]TableCopy{}
	opt.Progress = func(p TableCopy) {
		if p.Done {
			got[p.Table] = p
		}
	}
	if err := copyBoth(t, dst, src, opt); err != nil {
		t.Fatal(err)
	}
	verifyCopyClean(t, dst, src)
	sameCopyContent(t, src, dst)
	if b := got["bundles"]; !b.Resumed || b.Inserted != b.Source-2 || b.Read != b.Source-2 {
		t.Errorf("bundles resumed: %+v", b)
	}
	if e := got["event_segments"]; !e.Resumed || e.Inserted != e.Source-5 || e.Read <= e.Source {
		t.Errorf("event segments resumed with a full pass for the missing row: %+v", e)
	}
	if a := got["apps"]; !a.Resumed || a.Inserted != 0 { // copied before the interruption
		t.Errorf("apps: %+v", a)
	}
	if c := got["channels"]; c.Resumed || c.Inserted != c.Source { // not reached before it
		t.Errorf("channels: %+v", c)
	}
}

// Verification names what differs: a row removed, a value changed, a row
// added, the revision behind.
func TestMigrateVerifyFindsDifferences(t *testing.T) {
	ctx := context.Background()
	src := openCopyInstallation(t, testenv.StoreURL(t))
	populateForCopy(t, src)
	dst := openCopyInstallation(t, otherCopyEngineURL(t))
	if err := copyBoth(t, dst, src, CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	verifyCopyClean(t, dst, src)
	exec := func(d *db, q string, args ...any) {
		t.Helper()
		if _, err := d.ExecContext(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(dst.meta.db, `DELETE FROM segments WHERE name = 'testers'`)
	exec(dst.meta.db, `UPDATE channels SET ab = NULL WHERE name = 'beta'`)
	exec(dst.meta.db, `INSERT INTO secrets (name, value, created_at) VALUES ('extra', 'x', 1)`)
	exec(dst.meta.db, `UPDATE revision SET rev = 1`)
	exec(dst.events.db, `UPDATE event_segments SET data = ? WHERE edge_id = ? AND seq = 2`, append(copySegment(999), 1), edgeA)

	mc, err := VerifyMeta(ctx, dst.meta, src.meta, CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ec, err := VerifyEvents(ctx, dst.events, src.events, CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]TableCheck{}
	for _, c := range append(mc, ec...) {
		if !c.OK() {
			bad[c.Table] = c
		}
	}
	if len(bad) != 5 {
		t.Fatalf("tables with differences: %v", bad)
	}
	if c := bad["segments"]; c.Missing != 1 || c.DestRows != c.SourceRows-1 || !strings.Contains(c.Examples[0], `missing in the destination: (app_id="com.example.app", name="`) {
		t.Errorf("segments: %+v", c)
	}
	if c := bad["channels"]; c.Differ != 1 || c.SourceSum == c.DestSum || !strings.Contains(c.Examples[0], `name="beta") differs in ab`) {
		t.Errorf("channels: %+v", c)
	}
	if c := bad["secrets"]; c.Extra != 1 || !strings.Contains(c.Examples[0], `only in the destination: (name="extra")`) {
		t.Errorf("secrets: %+v", c)
	}
	if c := bad["revision"]; c.DestRev != 1 || c.SourceRev < 2 {
		t.Errorf("revision: %+v", c)
	}
	if c := bad["event_segments"]; c.Differ != 1 || !strings.Contains(c.Examples[0], "differs in data") {
		t.Errorf("event_segments: %+v", c)
	}
}

// A destination holding another copyInstallation (or one an origin already
// ran on) is refused; an empty one, or one a copy filled in part, is not.
func TestMigrateCheckDestination(t *testing.T) {
	ctx := context.Background()
	src := openCopyInstallation(t, testenv.StoreURL(t))
	populateForCopy(t, src)
	dst := openCopyInstallation(t, otherCopyEngineURL(t))
	if err := CheckDestination(ctx, dst.meta, src.meta, CopyOptions{}); err != nil {
		t.Fatalf("empty destination: %v", err)
	}
	if err := copyBoth(t, dst, src, CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := CheckDestination(ctx, dst.meta, src.meta, CopyOptions{}); err != nil {
		t.Fatalf("copied destination: %v", err)
	}
	// An extra secret the source keeps outside its store counts as the
	// source's.
	extra := CopyOptions{ExtraSecrets: []SecretRow{{Name: "other_secret", Value: "v", CreatedAt: 5}}}
	if _, err := CopyMeta(ctx, dst.meta, src.meta, extra); err != nil {
		t.Fatal(err)
	}
	if err := CheckDestination(ctx, dst.meta, src.meta, extra); err != nil {
		t.Fatalf("destination with the extra secret: %v", err)
	}
	if mc, _ := VerifyMeta(ctx, dst.meta, src.meta, extra); !mc[slices.IndexFunc(mc, func(c TableCheck) bool { return c.Table == "secrets" })].OK() {
		t.Fatalf("secrets with the extra one: %+v", mc)
	}
	err := CheckDestination(ctx, dst.meta, src.meta, CopyOptions{})
	var de *DifferentInstallationError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), `secret "other_secret" is not in the source`) {
		t.Fatalf("without the extra secret: %v", err)
	}

	// An extra secret replaces the source's row of its name (an embedded
	// origin's DATA/origin-key is the truth, not a secret its store may
	// hold from an earlier migration).
	fresh := openCopyInstallation(t, otherCopyEngineURL(t))
	over := CopyOptions{ExtraSecrets: []SecretRow{{Name: "snapshot_signing_key", Value: "b3ZlcmxheQ==", CreatedAt: 7}}}
	if err := copyBoth(t, fresh, src, over); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := fresh.meta.Secret(ctx, "snapshot_signing_key"); v != "b3ZlcmxheQ==" {
		t.Fatalf("secret copied: %q, want the extra one", v)
	}
	for _, o := range []CopyOptions{over, {}} {
		mc, err := VerifyMeta(ctx, fresh.meta, src.meta, o)
		if err != nil {
			t.Fatal(err)
		}
		sec := mc[slices.IndexFunc(mc, func(c TableCheck) bool { return c.Table == "secrets" })]
		if sec.OK() != (len(o.ExtraSecrets) > 0) {
			t.Fatalf("verify secrets with options %+v: %+v", o, sec)
		}
	}

	other := openCopyInstallation(t, otherCopyEngineURL(t))
	if _, err := other.meta.CreateApp(ctx, "com.other.app", ""); err != nil {
		t.Fatal(err)
	}
	if err := other.meta.AddAPIKey(ctx, strings.Repeat("ff", 32), FileAdminKey, ScopeAdmin); err != nil {
		t.Fatal(err)
	}
	err = CheckDestination(ctx, other.meta, src.meta, CopyOptions{})
	if !errors.As(err, &de) || !strings.Contains(err.Error(), `app "com.other.app" is not in the source`) || !strings.Contains(err.Error(), "API key #1 differs") {
		t.Fatalf("other copyInstallation: %v", err)
	}
}

// The copied tables and columns are every table and column of both
// engines' schemas (but the migration records): a migration adding one
// must add it to copy.go too.
func TestMigrateTablesCoverSchemas(t *testing.T) {
	ctx := context.Background()
	want := map[string][]string{}
	for _, ts := range [][]*copyTable{metaTables, eventTables} {
		for _, tb := range ts {
			cols := slices.Clone(tb.cols)
			slices.Sort(cols)
			want[tb.name] = cols
		}
	}
	want[revisionTable] = []string{"changed_at", "id", "rev"} // copyRevision

	// SQLite: the schema as its migrations built it; bundles and
	// channels have their rowid implicitly.
	got := map[string][]string{}
	for _, schema := range []sqlite.Schema{sqlite.Meta, sqlite.Events} {
		e, err := sqlite.Open(ctx, t.TempDir()+"/x.db", schema)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := e.DB().QueryContext(ctx, `SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' AND m.name NOT IN ('schema_migrations', 'sqlite_sequence')`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var tn, cn string
			rows.Scan(&tn, &cn)
			got[tn] = append(got[tn], cn)
		}
		rows.Close()
		e.Close()
	}
	got["bundles"] = append(got["bundles"], "rowid")
	got["channels"] = append(got["channels"], "rowid")
	for k := range got {
		slices.Sort(got[k])
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SQLite tables and columns:\n%v\ncopied:\n%v", got, want)
	}

	if testenv.StoreEngine() != "postgres" {
		return // the PostgreSQL run of the package checks that engine
	}
	url := testenv.PostgresURL(t)
	got = map[string][]string{}
	for _, schema := range []postgres.Schema{postgres.Meta, postgres.Events} {
		e, err := postgres.Open(ctx, url, schema)
		if err != nil {
			t.Fatal(err)
		}
		e.Close()
	}
	e, err := postgres.Open(ctx, url, postgres.Meta)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	rows, err := e.DB().QueryContext(ctx, `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = 'public' AND table_name NOT IN ($1, $2)`, postgres.Meta.MigrationsTable(), postgres.Events.MigrationsTable())
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var tn, cn string
		rows.Scan(&tn, &cn)
		got[tn] = append(got[tn], cn)
	}
	rows.Close()
	for k := range got {
		slices.Sort(got[k])
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("PostgreSQL tables and columns:\n%v\ncopied:\n%v", got, want)
	}
	// Every identity column is reset after a copy.
	rows, err = e.DB().QueryContext(ctx, `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' AND is_identity = 'YES'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var tn, cn string
		rows.Scan(&tn, &cn)
		i := slices.IndexFunc(metaTables, func(c *copyTable) bool { return c.name == tn })
		if i < 0 || metaTables[i].identity != cn {
			t.Errorf("identity column %s.%s: not reset after a copy", tn, cn)
		}
	}
}
