package origin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/store"
)

// startOriginCfg starts an origin like startLifecycleOrigin, its
// configuration changed by mut first.
func startOriginCfg(t *testing.T, mut func(*config.Origin)) (*testOrigin, *logRecorder) {
	t.Helper()
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.MaxBundleSize = 64 * config.MiB
	cfg.GCInterval = 0
	if mut != nil {
		mut(&cfg)
	}
	logs := &logRecorder{}
	srv, err := Open(context.Background(), cfg, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); srv.Close() })
	key, err := os.ReadFile(filepath.Join(dir, "api-key"))
	if err != nil {
		t.Fatal(err)
	}
	return &testOrigin{srv: srv, http: hs, client: client.New(hs.URL, strings.TrimSpace(string(key))), dir: dir}, logs
}

// setBuildHook makes fn run at the start of every build of o.
func setBuildHook(o *testOrigin, fn func(ctx context.Context, app, version string) error) {
	o.srv.deltas.hook.Store(&fn)
}

// holdBuild holds the build of version until release is closed; held
// receives once the build is held.
func holdBuild(version string) (hook func(ctx context.Context, app, v string) error, held chan struct{}, release chan struct{}) {
	held, release = make(chan struct{}, 1), make(chan struct{})
	return func(ctx context.Context, app, v string) error {
		if v != version {
			return nil
		}
		select {
		case held <- struct{}{}:
		default:
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, held, release
}

// waitStatus waits until every listed version's build is in state (or
// any is failed, unless state is failed), and returns the bundles.
func waitStatus(t *testing.T, c *client.Client, app, state string, versions ...string) []BundleInfo {
	t.Helper()
	deadline := time.Now().Add(testenv.Patience(3 * time.Minute))
	for {
		bs, err := c.ListBundles(context.Background(), app)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{}
		for _, v := range versions {
			want[v] = true
		}
		for _, b := range bs {
			st := b.DeltaStatus
			if !want[b.Version] || st == nil {
				continue
			}
			if st.State == "failed" && state != "failed" {
				t.Fatalf("build of %s failed: %s", b.Version, st.Error)
			}
			if st.State == state {
				delete(want, b.Version)
			}
		}
		if len(want) == 0 {
			return bs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d builds not %s within 3 minutes, e.g. %v", len(want), state, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func statusOf(bs []BundleInfo, version string) *DeltaStatus {
	for _, b := range bs {
		if b.Version == version {
			return b.DeltaStatus
		}
	}
	return nil
}

// Finding 5: 80 quick uploads behind one slow build all get built; none
// is refused or failed for lack of room in a queue.
func TestBuildsNotStranded(t *testing.T) {
	if testing.Short() {
		t.Skip("81 uploads and builds")
	}
	// Manifests and canonical archives only: the test is about the queue.
	o, logs := startOriginCfg(t, func(c *config.Origin) { c.MaxDeltaBundle = 0 })
	ctx := context.Background()
	hook, held, release := holdBuild("1.0.0")
	setBuildHook(o, hook)
	o.client.CreateApp(ctx, lcApp, "")
	if _, err := o.client.UploadBundle(ctx, lcApp, "1.0.0", bytes.NewReader(makeZip(t, map[string]string{"index.html": "slow"})), client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	<-held // the slow build occupies the worker
	versions := []string{"1.0.0"}
	for i := 1; i <= 80; i++ {
		v := fmt.Sprintf("1.0.%d", i)
		versions = append(versions, v)
		if _, err := o.client.UploadBundle(ctx, lcApp, v, bytes.NewReader(makeZip(t, map[string]string{"index.html": v})), client.UploadOptions{}); err != nil {
			t.Fatalf("upload %s: %v", v, err)
		}
	}
	bs, _ := o.client.ListBundles(ctx, lcApp)
	for _, b := range bs {
		if want := map[bool]string{true: "building", false: "queued"}[b.Version == "1.0.0"]; b.DeltaStatus == nil || b.DeltaStatus.State != want {
			t.Fatalf("%s while the slow build runs: %+v, want %s", b.Version, b.DeltaStatus, want)
		}
	}
	close(release)
	bs = waitStatus(t, o.client, lcApp, "ready", versions...)
	for _, b := range bs {
		if b.Canonical == "" || b.ManifestFiles != 1 {
			t.Fatalf("%s built without its canonical archive or manifest: %+v", b.Version, b.Bundle)
		}
	}
	logs.assertNoErrors(t)
}

// A failing build is retried with backoff, then failed with its error
// (shown in the bundle list); rebuild queues it again.
func TestBuildRetriedThenFailed(t *testing.T) {
	a, b := buildAttempts, buildBackoff
	t.Cleanup(func() { buildAttempts, buildBackoff = a, b }) // after the origin's Close
	buildAttempts, buildBackoff = 3, time.Millisecond
	o, logs := startLifecycleOrigin(t)
	ctx := context.Background()
	var calls, failing atomic.Int32
	failing.Store(1)
	setBuildHook(o, func(ctx context.Context, app, v string) error {
		calls.Add(1)
		if failing.Load() == 1 {
			return errors.New("disk on fire")
		}
		return nil
	})
	uploadReleases(t, o, "1.0.0")
	bs := waitStatus(t, o.client, lcApp, "failed", "1.0.0")
	st := statusOf(bs, "1.0.0")
	if st.Attempts != 3 || calls.Load() != 3 || !strings.Contains(st.Error, "disk on fire") {
		t.Fatalf("status %+v after %d calls, want failed after 3 attempts with the error", st, calls.Load())
	}
	if n := logs.count(slog.LevelWarn, "origin: bundle build failed; retrying", "version=1.0.0"); n != 2 {
		t.Fatalf("%d retries logged, want 2", n)
	}
	if n := logs.count(slog.LevelError, "origin: bundle build failed", "version=1.0.0", "disk on fire"); n != 1 {
		t.Fatalf("%d failures logged, want 1", n)
	}
	// The CLI's table shows it too (cmd/updraft), from the same status.
	failing.Store(0)
	info, err := o.client.RebuildBundle(ctx, lcApp, "1.0.0", false)
	if err != nil || info.Version != "1.0.0" || info.DeltaStatus == nil {
		t.Fatalf("rebuild: %+v %v", info, err)
	}
	bs = waitStatus(t, o.client, lcApp, "ready", "1.0.0")
	if b := bs[0]; b.Canonical == "" || b.ManifestFiles != 2 || b.DeltaStatus.Attempts != 1 {
		t.Fatalf("after rebuild: %+v %+v", b.Bundle, b.DeltaStatus)
	}
}

// rebuild --force clears the bundle's manifest, canonical archive and
// deltas and builds them again; refused while the build runs, for unknown
// bundles, and 404 for unknown apps.
func TestRebuildForce(t *testing.T) {
	o, logs := startLifecycleOrigin(t)
	ctx := context.Background()
	c := o.client
	uploadReleases(t, o, "1.0.0", "1.0.1")
	before := waitStatus(t, c, lcApp, "ready", "1.0.0", "1.0.1")[0]
	if len(before.Deltas) != 2 {
		t.Fatalf("deltas before: %+v", before.Deltas)
	}
	hook, held, release := holdBuild("1.0.1")
	setBuildHook(o, hook)
	if _, err := c.RebuildBundle(ctx, lcApp, "1.0.1", true); err != nil {
		t.Fatal(err)
	}
	<-held
	bs, _ := c.ListBundles(ctx, lcApp)
	if b := bs[0]; b.Canonical != "" || b.ManifestFiles != 0 || len(b.Deltas) != 0 || b.DeltaStatus.State != "building" {
		t.Fatalf("during the forced rebuild: %+v %+v", b.Bundle, b.DeltaStatus)
	}
	if _, err := c.RebuildBundle(ctx, lcApp, "1.0.1", true); apiCode(err) != "409 build_running" {
		t.Fatalf("force while running: %v", apiCode(err))
	}
	close(release)
	after := waitStatus(t, c, lcApp, "ready", "1.0.1")[0]
	if after.Canonical != before.Canonical || after.ManifestFiles != before.ManifestFiles || len(after.Deltas) != 2 {
		t.Fatalf("rebuilt %+v, was %+v", after.Bundle, before.Bundle)
	}
	for _, tc := range []struct {
		app, version, want string
	}{{lcApp, "9.9.9", "404 bundle_not_found"}, {"com.missing.app", "1.0.0", "404 app_not_found"}} {
		if _, err := c.RebuildBundle(ctx, tc.app, tc.version, false); apiCode(err) != tc.want {
			t.Fatalf("rebuild %s %s: %v, want %s", tc.app, tc.version, apiCode(err), tc.want)
		}
	}
	logs.assertNoErrors(t)
}

// reopen closes o's server and opens another on the same data folder.
func reopen(t *testing.T, o *testOrigin, logs *logRecorder) {
	t.Helper()
	o.http.Close()
	o.srv.Close()
	cfg := testConfig(t, o.dir)
	cfg.MaxBundleSize = 64 * config.MiB
	cfg.GCInterval = 0
	srv, err := Open(context.Background(), cfg, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	o.srv, o.http = srv, httptest.NewServer(srv.Handler())
	o.client = client.New(o.http.URL, o.client.APIKey)
	t.Cleanup(func() { o.http.Close(); srv.Close() })
}

// Finding 4, existing bundles: a bundle stored before the upload check
// refused what the builder refuses fails its build once (no retries: the
// zip will not change), later uploads build (it is skipped as a delta
// base), and a restart does not try it again.
func TestBadBundleFailsOnceAndIsSkipped(t *testing.T) {
	o, logs := startLifecycleOrigin(t)
	ctx := context.Background()
	uploadReleases(t, o, "1.0.0")
	waitStatus(t, o.client, lcApp, "ready", "1.0.0")
	// Stored as the old upload check let it through: "./index.html".
	bad := zipWith(t, entry("./index.html", 0, []byte("<html></html>")))
	info, err := o.srv.blobs.Put(bytes.NewReader(bad), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.srv.store.CreateBundle(ctx, store.Bundle{AppID: lcApp, Version: "1.0.1", SHA256: info.SHA256, Size: info.Size}); err != nil {
		t.Fatal(err)
	}
	o.srv.deltas.notify()
	st := statusOf(waitStatus(t, o.client, lcApp, "failed", "1.0.1"), "1.0.1")
	if st.Attempts != 1 || !strings.Contains(st.Error, `unsafe path "./index.html"`) {
		t.Fatalf("bad bundle: %+v", st)
	}
	shared := randomBytes(t, 64<<10)
	for _, v := range []string{"1.0.2", "1.0.3"} {
		if _, err := o.client.UploadBundle(ctx, lcApp, v, bytes.NewReader(releaseZip(t, shared, v)), client.UploadOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	bs := waitStatus(t, o.client, lcApp, "ready", "1.0.2", "1.0.3")
	if len(bs[0].Deltas) == 0 {
		t.Fatalf("1.0.3 has no delta from 1.0.2: %+v", bs[0])
	}
	if n := logs.count(slog.LevelWarn, "origin: delta base cannot be built; skipped", "base=1.0.1"); n != 2 {
		t.Fatalf("bad base skipped %d times, want 2 (by 1.0.2 and 1.0.3)", n)
	}
	failures := len(logs.errors())
	reopen(t, o, logs)
	bs = waitStatus(t, o.client, lcApp, "ready", "1.0.0", "1.0.2", "1.0.3")
	if st := statusOf(bs, "1.0.1"); st.State != "failed" || st.Attempts != 1 {
		t.Fatalf("after restart: %+v", st)
	}
	if len(logs.errors()) != failures {
		t.Fatalf("the restart logged errors: %v", logs.errors()[failures:])
	}
}

// A job whose bundle is gone is dropped, never failed: one queued for a
// bundle that does not exist, and one whose bundle is deleted mid-build.
func TestJobOfDeletedBundleDropped(t *testing.T) {
	o, logs := startLifecycleOrigin(t)
	ctx := context.Background()
	uploadReleases(t, o)
	if err := o.srv.store.EnqueueJob(ctx, store.JobBuild, lcApp, "9.9.9"); err != nil {
		t.Fatal(err)
	}
	o.srv.deltas.notify()
	waitJobGone(t, o, "9.9.9")
	hook, held, release := holdBuild("1.0.0")
	setBuildHook(o, hook)
	if _, err := o.client.UploadBundle(ctx, lcApp, "1.0.0", bytes.NewReader(makeZip(t, map[string]string{"index.html": "x"})), client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	<-held
	if _, err := o.client.DeleteBundle(ctx, lcApp, "1.0.0"); err != nil {
		t.Fatal(err)
	}
	close(release)
	waitJobGone(t, o, "1.0.0")
	waitIdle(t, o)
	logs.assertNoErrors(t)
}

func waitJobGone(t *testing.T, o *testOrigin, version string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := o.srv.store.GetJob(context.Background(), store.JobBuild, lcApp, version)
		if errors.Is(err, store.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job of %s still there: %v", version, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
