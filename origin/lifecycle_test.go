package origin

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// logRecorder keeps every log record, to check what was logged and at which
// level.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}

func (h *logRecorder) text(r slog.Record) string {
	s := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool { s += " " + a.String(); return true })
	return s
}

// errors returns the records at level Error and above.
func (h *logRecorder) errors() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.recs {
		if r.Level >= slog.LevelError {
			out = append(out, h.text(r))
		}
	}
	return out
}

// count returns how many records have this message and contain every one
// of the given attribute texts (like "version=1.0.1").
func (h *logRecorder) count(level slog.Level, msg string, attrs ...string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.recs {
		if r.Level != level || r.Message != msg {
			continue
		}
		t, ok := h.text(r), true
		for _, a := range attrs {
			ok = ok && strings.Contains(t, a)
		}
		if ok {
			n++
		}
	}
	return n
}

func (h *logRecorder) assertNoErrors(t *testing.T) {
	t.Helper()
	if errs := h.errors(); len(errs) > 0 {
		t.Fatalf("logged at Error:\n%s", strings.Join(errs, "\n"))
	}
}

// startLifecycleOrigin starts an origin like startOrigin, with bundles up
// to 64 MiB, no periodic blob GC (tests run it) and a log recorder.
func startLifecycleOrigin(t *testing.T) (*testOrigin, *logRecorder) {
	t.Helper()
	return startOriginCfg(t, nil)
}

const lcApp = "com.example.app"

// releaseZip is a bundle whose releases share a 64 KiB file of random bytes
// (so that deltas between them are far smaller than the zip and kept) and
// differ in index.html.
func releaseZip(t *testing.T, shared []byte, marker string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range map[string][]byte{"index.html": []byte("<html>" + marker + "</html>"), "vendor.bin": shared} {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(body)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// uploadReleases creates the app and uploads the versions in order.
func uploadReleases(t *testing.T, o *testOrigin, versions ...string) {
	t.Helper()
	ctx := context.Background()
	if _, err := o.client.CreateApp(ctx, lcApp, ""); err != nil {
		t.Fatal(err)
	}
	shared := randomBytes(t, 64<<10)
	for _, v := range versions {
		if _, err := o.client.UploadBundle(ctx, lcApp, v, bytes.NewReader(releaseZip(t, shared, v)), client.UploadOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func versionsOf(t *testing.T, o *testOrigin) []string {
	t.Helper()
	bs, err := o.client.ListBundles(context.Background(), lcApp)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range bs {
		out = append(out, b.Version)
	}
	return out
}

// snapshotVersions lists the app's bundles in the published snapshot, and
// checks that every delta joins two of them.
func snapshotVersions(t *testing.T, o *testOrigin) []string {
	t.Helper()
	a := o.srv.Current().Snap.App(lcApp)
	var out []string
	for _, b := range a.Bundles {
		out = append(out, b.Version)
		for _, d := range b.Deltas {
			if a.Bundle(d.From) == nil {
				t.Fatalf("snapshot: delta of %s from deleted bundle %s", b.Version, d.From)
			}
		}
	}
	return out
}

func TestDeleteBundleRefusedWhileInUse(t *testing.T) {
	o, logs := startLifecycleOrigin(t)
	ctx := context.Background()
	c := o.client
	uploadReleases(t, o, "1.0.0", "1.0.1", "1.0.2", "1.0.3")
	if _, err := c.SetChannel(ctx, lcApp, "production", store.ChannelPatch{Bundle: ptrTo("1.0.0")}); err != nil {
		t.Fatal(err)
	}
	bps := 1000
	if _, err := c.Rollout(ctx, lcApp, "production", RolloutRequest{Bundle: "1.0.1", BPS: &bps}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetChannel(ctx, lcApp, "exp", store.ChannelPatch{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetAB(ctx, lcApp, "exp", []snapshot.Arm{{Name: "a", Bundle: "1.0.3", BPS: 5000}, {Name: "b", Bundle: "1.0.2", BPS: 5000}}); err != nil {
		t.Fatal(err)
	}
	// Overrides point at channels: pinning a device to exp changes nothing.
	if err := c.SetOverrides(ctx, lcApp, "exp", []string{"00009a6b-eefe-490a-9c60-8e965132ae51"}); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, o) // delta builds bump the revision too
	rev, _ := o.srv.store.Rev(ctx)
	for _, tc := range []struct{ version, referrer string }{
		{"1.0.0", `channel "production"`},
		{"1.0.1", `the rollout of channel "production"`},
		{"1.0.2", `A/B arm "b" of channel "exp"`},
		{"1.0.3", `A/B arm "a" of channel "exp"`},
	} {
		_, err := c.DeleteBundle(ctx, lcApp, tc.version)
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Code != "bundle_in_use" || !strings.Contains(ae.Message, tc.referrer) {
			t.Fatalf("delete %s: %v, want 409 bundle_in_use naming %s", tc.version, err, tc.referrer)
		}
	}
	if got := apiCode(deleteErr(c, lcApp, "9.9.9")); got != "404 bundle_not_found" {
		t.Fatalf("absent bundle: %s", got)
	}
	if got := apiCode(deleteErr(c, "com.missing.app", "1.0.0")); got != "404 app_not_found" {
		t.Fatalf("absent app: %s", got)
	}
	if rev2, _ := o.srv.store.Rev(ctx); rev2 != rev || !reflect.DeepEqual(versionsOf(t, o), []string{"1.0.3", "1.0.2", "1.0.1", "1.0.0"}) {
		t.Fatalf("a refused delete changed something: rev %d → %d, bundles %v", rev, rev2, versionsOf(t, o))
	}
	// Once the referrers are gone, the deletions go through.
	if _, err := c.Rollout(ctx, lcApp, "production", RolloutRequest{Action: store.RolloutRollback}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteBundle(ctx, lcApp, "1.0.1"); err != nil {
		t.Fatalf("delete after rollback: %v", err)
	}
	if _, err := c.SetAB(ctx, lcApp, "exp", nil); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.0.2", "1.0.3"} {
		if _, err := c.DeleteBundle(ctx, lcApp, v); err != nil {
			t.Fatalf("delete %s after clearing the split: %v", v, err)
		}
	}
	if got := snapshotVersions(t, o); !reflect.DeepEqual(got, []string{"1.0.0"}) {
		t.Fatalf("snapshot bundles %v, want [1.0.0]", got)
	}
	waitIdle(t, o)
	logs.assertNoErrors(t)
}

func ptrTo[T any](v T) *T { return &v }

func deleteErr(c *client.Client, app, version string) error {
	_, err := c.DeleteBundle(context.Background(), app, version)
	return err
}

// waitIdle waits until the delta builder has nothing queued or running.
func waitIdle(t *testing.T, o *testOrigin) {
	t.Helper()
	deadline := time.Now().Add(testenv.Patience(3 * time.Minute))
	for {
		n, err := o.srv.store.CountJobs(context.Background(), store.JobBuild)
		if err != nil {
			t.Fatal(err)
		}
		if n[store.JobQueued]+n[store.JobRetry]+n[store.JobRunning] == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("delta builder still busy after 60s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// blobsOnDisk maps every committed blob to its size.
func blobsOnDisk(t *testing.T, o *testOrigin) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	if err := o.srv.blobs.Walk(func(sha string, size int64, _ time.Time) error { out[sha] = size; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func referencedBlobs(t *testing.T, o *testOrigin) map[string]bool {
	t.Helper()
	refs, err := o.srv.store.ReferencedBlobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return refs
}

func metric(t *testing.T, o *testOrigin, line string) bool {
	t.Helper()
	resp, err := http.Get(o.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(b), line+"\n")
}

// Deleting an unused bundle removes it, its manifest and the deltas to it
// and from it from the next snapshot; its blobs stay for the grace period
// (an edge on the previous snapshot may still fetch them) and a collection
// with grace 0 frees exactly them.
func TestDeleteBundleRemovedFromSnapshotWithItsDeltas(t *testing.T) {
	o, logs := startLifecycleOrigin(t)
	ctx := context.Background()
	c := o.client
	uploadReleases(t, o, "1.0.0", "1.0.1", "1.0.2")
	waitDeltas(t, c, lcApp, "1.0.1")
	bs := waitDeltas(t, c, lcApp, "1.0.2")
	deltasOf := func(v string) (to, from int) {
		for _, b := range bs {
			for _, d := range b.Deltas {
				if b.Version == v {
					to++
				}
				if d.From == v {
					from++
				}
			}
		}
		return to, from
	}
	to, from := deltasOf("1.0.1")
	if to == 0 || from == 0 {
		t.Fatalf("want deltas to and from 1.0.1 to start with: %+v", bs)
	}
	if _, err := c.SetChannel(ctx, lcApp, "production", store.ChannelPatch{Bundle: ptrTo("1.0.2")}); err != nil {
		t.Fatal(err)
	}
	o.srv.awaitPublished(ctx)
	before := o.srv.Current().Snap
	if before.App(lcApp).Bundle("1.0.1") == nil {
		t.Fatal("1.0.1 not in the snapshot before its deletion")
	}
	refsBefore := referencedBlobs(t, o)
	onDisk := blobsOnDisk(t, o)
	// Everything was uploaded long ago.
	old := time.Now().Add(-2 * time.Hour)
	for sha := range onDisk {
		if err := os.Chtimes(blobPath(t, o.srv, sha), old, old); err != nil {
			t.Fatal(err)
		}
	}

	d, err := c.DeleteBundle(ctx, lcApp, "1.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != "1.0.1" || d.Deltas != to+from || d.ManifestFiles != 2 {
		t.Fatalf("deleted %+v, want %d deltas and 2 manifest files", d, to+from)
	}
	after := o.srv.Current().Snap // the API waited for its publication
	if after.Rev <= before.Rev {
		t.Fatalf("rev %d → %d", before.Rev, after.Rev)
	}
	a := after.App(lcApp)
	if a.Bundle("1.0.1") != nil {
		t.Fatal("deleted bundle still in the snapshot")
	}
	if got := snapshotVersions(t, o); !reflect.DeepEqual(got, []string{"1.0.0", "1.0.2"}) {
		t.Fatalf("snapshot bundles %v", got)
	}
	if n := len(a.Bundle("1.0.2").Deltas); n == 0 {
		t.Fatal("the deltas of 1.0.2 from 1.0.0 went too")
	}
	for _, b := range after.App(lcApp).Bundles {
		if b.DeltaFrom(before.App(lcApp).Bundle("1.0.1").Canonical, true, true, snapshot.DeltaCost{}) != nil {
			t.Fatalf("a delta from the deleted bundle's canonical archive is still offered on %s", b.Version)
		}
	}
	if before.App(lcApp).Bundle("1.0.1") == nil {
		t.Fatal("a published snapshot changed")
	}
	if got := versionsOf(t, o); !reflect.DeepEqual(got, []string{"1.0.2", "1.0.0"}) {
		t.Fatalf("bundle list %v", got)
	}
	if logs.count(slog.LevelInfo, "origin: bundle deleted", "version=1.0.1", "reason=operator") != 1 {
		t.Fatal("deletion not logged")
	}

	// The freed blobs: referenced before, not now.
	refsAfter := referencedBlobs(t, o)
	var freed []string
	var freedBytes int64
	for sha := range refsBefore {
		if !refsAfter[sha] {
			freed = append(freed, sha)
			freedBytes += onDisk[sha]
		}
	}
	if len(freed) < 3 { // zip, canonical archive, index.html, deltas
		t.Fatalf("freed blobs %v", freed)
	}
	// The deletion restarted its blobs' grace period (edges on the
	// snapshot before it may still fetch them): nothing goes yet.
	res, err := c.GC(ctx, nil)
	if err != nil || res.Deleted != 0 || res.Kept != len(onDisk) {
		t.Fatalf("gc within the grace period: %+v %v (blobs %d)", res, err, len(onDisk))
	}
	zero := time.Duration(0)
	res, err = c.GC(ctx, &zero)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != len(freed) || res.Bytes != freedBytes || res.Kept != len(onDisk)-len(freed) {
		t.Fatalf("gc with grace 0: %+v, want %d deleted (%d bytes), %d kept", res, len(freed), freedBytes, len(onDisk)-len(freed))
	}
	left := blobsOnDisk(t, o)
	for _, sha := range freed {
		if _, ok := left[sha]; ok {
			t.Fatalf("freed blob %s still stored", sha)
		}
	}
	for sha := range refsAfter {
		if _, ok := left[sha]; !ok {
			t.Fatalf("referenced blob %s deleted", sha)
		}
	}
	// Every blob of the current snapshot is still served.
	for _, b := range a.Bundles {
		if _, err := o.srv.blobs.Stat(b.SHA256); err != nil {
			t.Fatalf("zip of %s: %v", b.Version, err)
		}
	}
	if !metric(t, o, fmt.Sprintf("updraft_origin_gc_blobs_deleted_total %d", len(freed))) ||
		!metric(t, o, `updraft_origin_bundles_deleted_total{reason="operator"} 1`) {
		t.Fatal("gc and deletion metrics missing")
	}
	// The version can be uploaded again, and gets deltas again.
	uploadAgain := releaseZip(t, randomBytes(t, 64<<10), "again")
	if _, err := c.UploadBundle(ctx, lcApp, "1.0.1", bytes.NewReader(uploadAgain), client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	waitDeltas(t, c, lcApp, "1.0.1")
	logs.assertNoErrors(t)
}

// Retention keeps the N newest bundles and every bundle in use; it runs
// when the setting changes and after each upload, after the upload's
// channel moved.
func TestRetentionKeepsNewestNeverInUse(t *testing.T) {
	o, logs := startLifecycleOrigin(t)
	ctx := context.Background()
	c := o.client
	uploadReleases(t, o, "1.0.0", "1.0.1", "1.0.2", "1.0.3", "1.0.4")
	if _, err := c.SetChannel(ctx, lcApp, "production", store.ChannelPatch{Bundle: ptrTo("1.0.0"), Public: ptrTo(true)}); err != nil {
		t.Fatal(err)
	}
	bps := 500
	if _, err := c.Rollout(ctx, lcApp, "production", RolloutRequest{Bundle: "1.0.1", BPS: &bps}); err != nil {
		t.Fatal(err)
	}
	set := func(keep int) AppSettings {
		t.Helper()
		res, err := c.SetAppOptions(ctx, lcApp, AppOptions{KeepBundles: &keep})
		if err != nil || res.KeepBundles != keep {
			t.Fatalf("keep %d: %+v %v", keep, res, err)
		}
		return res
	}
	upload := func(v string, opt client.UploadOptions) {
		t.Helper()
		if _, err := c.UploadBundle(ctx, lcApp, v, bytes.NewReader(releaseZip(t, randomBytes(t, 1024), v)), opt); err != nil {
			t.Fatal(err)
		}
	}
	check := func(want ...string) {
		t.Helper()
		if got := versionsOf(t, o); !reflect.DeepEqual(got, want) {
			t.Fatalf("bundles %v, want %v", got, want)
		}
		var snap []string
		for i := len(want) - 1; i >= 0; i-- {
			snap = append(snap, want[i])
		}
		if got := snapshotVersions(t, o); !reflect.DeepEqual(got, snap) {
			t.Fatalf("snapshot bundles %v, want %v", got, snap)
		}
	}

	// The 2 newest stay (1.0.4, 1.0.3); 1.0.1 (rollout) and 1.0.0
	// (channel) are in use; 1.0.2 goes.
	if res := set(2); !reflect.DeepEqual(res.Deleted, []string{"1.0.2"}) {
		t.Fatalf("keep 2 deleted %v", res.Deleted)
	}
	check("1.0.4", "1.0.3", "1.0.1", "1.0.0")
	// An upload applies it: 1.0.3 falls out of the 2 newest.
	upload("1.0.5", client.UploadOptions{})
	check("1.0.5", "1.0.4", "1.0.1", "1.0.0")
	if res := set(1); !reflect.DeepEqual(res.Deleted, []string{"1.0.4"}) {
		t.Fatalf("keep 1 deleted %v", res.Deleted)
	}
	// Uploading with --channel production moves the channel off 1.0.0
	// before retention runs, so 1.0.0 goes with 1.0.5; the rollout keeps 1.0.1.
	upload("1.0.6", client.UploadOptions{Channel: "production"})
	check("1.0.6", "1.0.1")
	// 0 keeps everything from now on.
	if res := set(0); len(res.Deleted) != 0 {
		t.Fatalf("keep 0 deleted %v", res.Deleted)
	}
	upload("1.0.7", client.UploadOptions{})
	check("1.0.7", "1.0.6", "1.0.1")
	for _, v := range []string{"1.0.0", "1.0.2", "1.0.3", "1.0.4", "1.0.5"} {
		if logs.count(slog.LevelInfo, "origin: bundle deleted", "version="+v, "reason=retention") != 1 {
			t.Fatalf("retention deletion of %s not logged once", v)
		}
	}
	if !metric(t, o, `updraft_origin_bundles_deleted_total{reason="retention"} 5`) {
		t.Fatal("retention metric")
	}
	// Bad settings.
	neg := -1
	if _, err := c.SetAppOptions(ctx, lcApp, AppOptions{KeepBundles: &neg}); apiCode(err) != "400 invalid_keep" {
		t.Fatalf("keep -1: %v", err)
	}
	if _, err := c.SetAppOptions(ctx, "com.missing.app", AppOptions{KeepBundles: ptrTo(1)}); apiCode(err) != "404 app_not_found" {
		t.Fatalf("keep of absent app: %v", err)
	}
	if err := c.DoJSON(ctx, http.MethodPatch, "/api/v1/apps/"+lcApp, map[string]any{"keep": 1}, nil); apiCode(err) != "400 invalid_json" {
		t.Fatalf("unknown field: %v", err)
	}
	waitIdle(t, o)
	logs.assertNoErrors(t)
}

// Collection keeps every referenced blob (bundles, deltas, manifests,
// current and recently retired override shards) and every young blob, and
// deletes the old unreferenced ones.
func TestGCKeepsReferencedYoungAndShards(t *testing.T) {
	o, logs := startLifecycleOrigin(t)
	ctx := context.Background()
	c := o.client
	uploadReleases(t, o, "1.0.0", "1.0.1")
	waitDeltas(t, c, lcApp, "1.0.1")
	if _, err := c.SetChannel(ctx, lcApp, "production", store.ChannelPatch{Bundle: ptrTo("1.0.1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetChannel(ctx, lcApp, "beta", store.ChannelPatch{Bundle: ptrTo("1.0.0")}); err != nil {
		t.Fatal(err)
	}
	const dev = "00009a6b-eefe-490a-9c60-8e965132ae51"
	if err := c.SetOverrides(ctx, lcApp, "beta", []string{dev}); err != nil {
		t.Fatal(err)
	}
	retired := o.srv.Current().Snap.App(lcApp).OverrideShards[0]
	if err := c.SetOverrides(ctx, lcApp, "production", []string{dev}); err != nil {
		t.Fatal(err)
	}
	current := o.srv.Current().Snap.App(lcApp).OverrideShards[0]
	if retired == "" || current == "" || retired == current {
		t.Fatalf("shards: retired %q current %q", retired, current)
	}
	orphan, err := o.srv.blobs.Put(strings.NewReader("nothing refers to me"), 0)
	if err != nil {
		t.Fatal(err)
	}
	// Everything is two hours old but a young orphan.
	old := time.Now().Add(-2 * time.Hour)
	all := blobsOnDisk(t, o)
	for sha := range all {
		if err := os.Chtimes(blobPath(t, o.srv, sha), old, old); err != nil {
			t.Fatal(err)
		}
	}
	young, err := o.srv.blobs.Put(strings.NewReader("just uploaded, row not yet written"), 0)
	if err != nil {
		t.Fatal(err)
	}

	res, err := c.GC(ctx, nil) // the configured grace: 1h
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 1 || res.Bytes != orphan.Size || res.Kept != len(all) {
		t.Fatalf("gc: %+v, want the old orphan deleted (%d bytes) and %d kept", res, orphan.Size, len(all))
	}
	if _, err := o.srv.blobs.Stat(orphan.SHA256); err == nil {
		t.Fatal("old orphan kept")
	}
	for _, sha := range []string{young.SHA256, current, retired} {
		if _, err := o.srv.blobs.Stat(sha); err != nil {
			t.Fatalf("blob %s: %v", sha, err)
		}
	}
	for sha := range referencedBlobs(t, o) {
		if _, err := o.srv.blobs.Stat(sha); err != nil {
			t.Fatalf("referenced blob %s deleted", sha)
		}
	}
	// Old content committed again (an upload whose row is not written
	// yet) is young again: the commit refreshed its mtime.
	stale, _ := o.srv.blobs.Put(strings.NewReader("old content, uploaded again"), 0)
	os.Chtimes(blobPath(t, o.srv, stale.SHA256), old, old)
	os.Chtimes(blobPath(t, o.srv, young.SHA256), old, old)
	if _, err := o.srv.blobs.Put(strings.NewReader("old content, uploaded again"), 0); err != nil {
		t.Fatal(err)
	}
	if res, err := c.GC(ctx, nil); err != nil || res.Deleted != 1 {
		t.Fatalf("second gc: %+v %v, want only the young orphan, now old", res, err)
	}
	if _, err := o.srv.blobs.Stat(stale.SHA256); err != nil {
		t.Fatal("content committed again deleted")
	}
	if _, err := o.srv.blobs.Stat(young.SHA256); err == nil {
		t.Fatal("orphan aged past the grace period kept")
	}
	// The snapshot still resolves the device through its current shard.
	if ch := o.srv.Current().Snap.App(lcApp).Override(dev); ch == nil || ch.Name != "production" {
		t.Fatalf("override after gc: %+v", ch)
	}
	if err := c.Do(ctx, http.MethodPost, "/api/v1/gc?grace=soon", nil, "", nil); apiCode(err) != "400 invalid_grace" {
		t.Fatalf("bad grace: %v", err)
	}
	edge := client.New(o.http.URL, strings.TrimSpace(readFile(t, filepath.Join(o.dir, "edge-key"))))
	if _, err := edge.GC(ctx, nil); apiCode(err) != "401 unauthorized" {
		t.Fatalf("gc with the edge key: %v", err)
	}
	logs.assertNoErrors(t)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A bundle deleted and collected (grace 0) while an edge downloads its zip
// from the origin: the download completes with the right SHA-256 (the
// origin's open file outlives the unlink) and the next request is a 404.
func TestGCDeleteRacingEdgeDownload(t *testing.T) {
	o, logs := startLifecycleOrigin(t)
	ctx := context.Background()
	c := o.client
	if _, err := c.CreateApp(ctx, lcApp, ""); err != nil {
		t.Fatal(err)
	}
	// 16 MiB that does not compress: far more than the socket buffers hold
	// with the receiver's buffer capped, so the origin is mid-file while the
	// bundle is deleted and collected.
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	w, _ := zw.CreateHeader(&zip.FileHeader{Name: "index.html", Method: zip.Store})
	w.Write([]byte("<html>big</html>"))
	w, _ = zw.CreateHeader(&zip.FileHeader{Name: "big.bin", Method: zip.Store})
	w.Write(randomBytes(t, 16<<20))
	zw.Close()
	b, err := c.UploadBundle(ctx, lcApp, "1.0.0", bytes.NewReader(zbuf.Bytes()), client.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitDeltas(t, c, lcApp, "1.0.0")

	edgeKey := strings.TrimSpace(readFile(t, filepath.Join(o.dir, "edge-key")))
	slow := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				conn.(*net.TCPConn).SetReadBuffer(32 << 10)
			}
			return conn, err
		},
	}}
	req, _ := http.NewRequest(http.MethodGet, o.http.URL+"/v1/blobs/"+b.SHA256, nil)
	req.Header.Set("Authorization", "Bearer "+edgeKey)
	resp, err := slow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != b.Size {
		t.Fatalf("download: HTTP %d, %d bytes", resp.StatusCode, resp.ContentLength)
	}
	h := sha256.New()
	if _, err := io.CopyN(h, resp.Body, 64<<10); err != nil {
		t.Fatal(err)
	}

	// Delete and collect concurrently; if the collection looked before the
	// deletion committed, it kept the blob: collect again.
	zero := time.Duration(0)
	var wg sync.WaitGroup
	var delErr, gcErr error
	wg.Add(2)
	go func() { defer wg.Done(); _, delErr = c.DeleteBundle(ctx, lcApp, "1.0.0") }()
	go func() { defer wg.Done(); _, gcErr = c.GC(ctx, &zero) }()
	wg.Wait()
	if delErr != nil || gcErr != nil {
		t.Fatalf("delete: %v, gc: %v", delErr, gcErr)
	}
	if _, err := o.srv.blobs.Stat(b.SHA256); err == nil {
		if _, err := c.GC(ctx, &zero); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(blobPath(t, o.srv, b.SHA256)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("zip still stored after delete and gc: %v", err)
	}
	// The origin still reads the unlinked file for this download.
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		open := false
		for _, fd := range fds {
			if target, _ := os.Readlink("/proc/self/fd/" + fd.Name()); strings.HasSuffix(target, b.SHA256+" (deleted)") {
				open = true
			}
		}
		if !open {
			t.Fatal("the origin no longer had the zip open when it was collected: the race was not exercised")
		}
	}
	// Read the rest, a little at a time.
	n := int64(64 << 10)
	buf := make([]byte, 32<<10)
	for {
		k, err := resp.Body.Read(buf)
		h.Write(buf[:k])
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("download cut after %d bytes: %v", n, err)
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != b.Size || got != b.SHA256 {
		t.Fatalf("downloaded %d bytes hashing to %s, want %d bytes, %s", n, got, b.Size, b.SHA256)
	}
	err = c.Do(ctx, http.MethodGet, "/v1/blobs/"+b.SHA256, nil, "", nil)
	if apiCode(err) != "404 blob_not_found" {
		t.Fatalf("GET after delete and gc: %v", apiCode(err))
	}
	logs.assertNoErrors(t)
}

// The delta builder tolerates bundles deleted under it: a job for a
// bundle deleted while queued, a base deleted mid-build, and deletions
// racing real builds are logged at Info, never as failures, and leave no
// delta from or to a deleted bundle.
func TestDeleteDuringDeltaBuild(t *testing.T) {
	o, logs := startLifecycleOrigin(t)
	ctx := context.Background()
	c := o.client
	uploadReleases(t, o, "1.0.0", "1.0.1")
	waitDeltas(t, c, lcApp, "1.0.1")

	// A job whose bundle was deleted while it waited in the queue.
	if _, err := c.DeleteBundle(ctx, lcApp, "1.0.1"); err != nil {
		t.Fatal(err)
	}
	o.srv.deltas.run(ctx, deltaJob{lcApp, "1.0.1"})
	if logs.count(slog.LevelInfo, "origin: bundle deleted during its delta build; build stopped", "version=1.0.1") != 1 {
		t.Fatal("deleted target not logged at Info")
	}
	if st := o.srv.deltas.Status(lcApp, "1.0.1"); st != nil {
		t.Fatalf("status of a deleted bundle kept: %+v", st)
	}
	// A base deleted mid-build: skipped, not a failure.
	if _, err := c.UploadBundle(ctx, lcApp, "1.0.2", bytes.NewReader(makeZip(t, map[string]string{"index.html": "2"})), client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	waitDeltas(t, c, lcApp, "1.0.2")
	if _, err := c.DeleteBundle(ctx, lcApp, "1.0.0"); err != nil {
		t.Fatal(err)
	}
	job := deltaJob{lcApp, "1.0.2"}
	cause := errors.New("read bundle 1.0.0: no such file")
	if !o.srv.deltas.baseDeleted(ctx, job, "1.0.0", cause) || o.srv.deltas.baseDeleted(ctx, job, "1.0.0", nil) ||
		o.srv.deltas.baseDeleted(ctx, job, "1.0.2", cause) {
		t.Fatal("baseDeleted misjudges")
	}
	if logs.count(slog.LevelInfo, "origin: delta base deleted during the build; skipped", "base=1.0.0") != 1 {
		t.Fatal("deleted base not logged at Info")
	}

	// Deletions racing real builds: upload several releases and delete
	// some of them at once while the builder works through the queue.
	shared := randomBytes(t, 64<<10)
	for _, v := range []string{"2.0.0", "2.0.1", "2.0.2", "2.0.3"} {
		if _, err := c.UploadBundle(ctx, lcApp, v, bytes.NewReader(releaseZip(t, shared, v)), client.UploadOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range []string{"2.0.1", "2.0.2"} {
		if _, err := c.DeleteBundle(ctx, lcApp, v); err != nil {
			t.Fatal(err)
		}
	}
	waitDeltas(t, c, lcApp, "2.0.3")
	waitIdle(t, o)
	t.Logf("builds stopped by a deletion: %d; bases skipped: %d",
		logs.count(slog.LevelInfo, "origin: bundle deleted during its delta build; build stopped"),
		logs.count(slog.LevelInfo, "origin: delta base deleted during the build; skipped"))
	o.srv.awaitPublished(ctx)
	if got := snapshotVersions(t, o); !reflect.DeepEqual(got, []string{"1.0.2", "2.0.0", "2.0.3"}) {
		t.Fatalf("snapshot bundles %v", got)
	}
	refs := referencedBlobs(t, o)
	for sha := range refs {
		if _, err := o.srv.blobs.Stat(sha); err != nil {
			t.Fatalf("referenced blob %s missing", sha)
		}
	}
	logs.assertNoErrors(t)
}
