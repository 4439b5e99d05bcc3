package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// lifecycleApp makes an app with bundles 1.0.0 … 1.0.(n-1), uploaded in
// that order, each with a manifest file and zip/canonical blobs named after
// it.
func lifecycleApp(t *testing.T, s *Store, n int) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.CreateApp(ctx, "com.example.app", ""); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		v := fmt.Sprintf("1.0.%d", i)
		if _, err := s.CreateBundle(ctx, Bundle{AppID: "com.example.app", Version: v, SHA256: "zip-" + v, Size: 100}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetCanonical(ctx, "com.example.app", v, "canonical-"+v, 200); err != nil {
			t.Fatal(err)
		}
		if err := s.SetManifest(ctx, "com.example.app", v, []snapshot.ManifestEntry{
			{Name: "index.html", Hash: "h-" + v, Blob: "file-" + v, Size: 10},
			{Name: "shared.js", Hash: "h-shared", Blob: "file-shared", Size: 10},
		}); err != nil {
			t.Fatal(err)
		}
	}
}

func bundleVersions(t *testing.T, s *Store) []string {
	t.Helper()
	bs, err := s.ListBundles(context.Background(), "com.example.app")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range bs {
		out = append(out, b.Version)
	}
	return out
}

func TestDeleteBundleRefusedWhileInUseStore(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	lifecycleApp(t, s, 4)
	const app = "com.example.app"
	if _, _, _, err := s.PutChannel(ctx, app, "production", ChannelPatch{Bundle: ptr("1.0.0")}, false); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.PutChannel(ctx, app, "beta", ChannelPatch{Bundle: ptr("1.0.0")}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetRollout(ctx, app, "production", RolloutSet, "1.0.1", 1000); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetAB(ctx, app, "beta", []snapshot.Arm{{Name: "a", Bundle: "1.0.0", BPS: 5000}, {Name: "b", Bundle: "1.0.2", BPS: 5000}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		version string
		want    []string
	}{
		{"1.0.0", []string{`channel "beta"`, `A/B arm "a" of channel "beta"`, `channel "production"`}},
		{"1.0.1", []string{`the rollout of channel "production"`}},
		{"1.0.2", []string{`A/B arm "b" of channel "beta"`}},
	} {
		rev0, _ := s.Rev(ctx)
		_, err := s.DeleteBundle(ctx, app, tc.version)
		var iu *InUseError
		if !errors.As(err, &iu) || !reflect.DeepEqual(iu.Referrers, tc.want) {
			t.Fatalf("delete %s: %v, want referrers %q", tc.version, err, tc.want)
		}
		for _, r := range tc.want {
			if !strings.Contains(err.Error(), r) {
				t.Fatalf("message %q does not name %s", err, r)
			}
		}
		if rev1, _ := s.Rev(ctx); rev1 != rev0 {
			t.Fatalf("refused delete moved the revision %d → %d", rev0, rev1)
		}
	}
	var inv *InvalidError
	if _, err := s.DeleteBundle(ctx, app, "9.9.9"); !errors.As(err, &inv) || inv.Code != CodeBundleNotFound {
		t.Fatalf("delete absent bundle: %v", err)
	}
	if _, err := s.DeleteBundle(ctx, "com.missing.app", "1.0.0"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete in absent app: %v", err)
	}
	if got := bundleVersions(t, s); len(got) != 4 {
		t.Fatalf("bundles after refusals: %v", got)
	}
}

func TestDeleteBundleRemovesRowsAndDeltasStore(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	lifecycleApp(t, s, 3)
	const app = "com.example.app"
	// Deltas 1.0.0→1.0.1, 1.0.0→1.0.2, 1.0.1→1.0.2 (two encodings each).
	for _, p := range [][2]string{{"1.0.0", "1.0.1"}, {"1.0.0", "1.0.2"}, {"1.0.1", "1.0.2"}} {
		for _, enc := range []string{"dcz", "dcb"} {
			if err := s.AddDelta(ctx, app, p[1], snapshot.Delta{From: p[0], Base: "canonical-" + p[0], Encoding: enc,
				SHA256: "delta-" + p[0] + "-" + p[1] + "-" + enc, Size: 5}); err != nil {
				t.Fatal(err)
			}
		}
	}
	rev0, _ := s.Rev(ctx)
	d, err := s.DeleteBundle(ctx, app, "1.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if d.Deltas != 4 || d.ManifestFiles != 2 {
		t.Fatalf("deleted %+v, want 4 deltas (2 to, 2 from) and 2 manifest files", d)
	}
	wantBlobs := []string{"zip-1.0.1", "canonical-1.0.1", "file-1.0.1", "file-shared",
		"delta-1.0.0-1.0.1-dcz", "delta-1.0.0-1.0.1-dcb", "delta-1.0.1-1.0.2-dcz", "delta-1.0.1-1.0.2-dcb"}
	for _, w := range wantBlobs {
		found := false
		for _, b := range d.Blobs {
			found = found || b == w
		}
		if !found {
			t.Fatalf("deleted blobs %v lack %s", d.Blobs, w)
		}
	}
	if rev1, _ := s.Rev(ctx); rev1 != rev0+1 {
		t.Fatalf("rev %d → %d, want one bump", rev0, rev1)
	}
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := snap.Apps[0]
	if len(a.Bundles) != 2 || a.Bundles[0].Version != "1.0.0" || a.Bundles[1].Version != "1.0.2" {
		t.Fatalf("snapshot bundles: %+v", a.Bundles)
	}
	if ds := a.Bundles[1].Deltas; len(ds) != 2 || ds[0].From != "1.0.0" || ds[1].From != "1.0.0" {
		t.Fatalf("deltas of 1.0.2 after deleting 1.0.1: %+v", ds)
	}
	refs, err := s.ReferencedBlobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"zip-1.0.1", "canonical-1.0.1", "file-1.0.1", "delta-1.0.1-1.0.2-dcz", "delta-1.0.0-1.0.1-dcb"} {
		if refs[gone] {
			t.Fatalf("%s still referenced", gone)
		}
	}
	for _, kept := range []string{"zip-1.0.0", "canonical-1.0.2", "file-shared", "file-1.0.2", "delta-1.0.0-1.0.2-dcb"} {
		if !refs[kept] {
			t.Fatalf("%s no longer referenced", kept)
		}
	}
	if len(refs) != 2*3+1+2 { // zip, canonical, file per bundle; shared file; two deltas
		t.Fatalf("referenced blobs: %v", refs)
	}
	// The version can be uploaded again.
	if _, err := s.CreateBundle(ctx, Bundle{AppID: app, Version: "1.0.1", SHA256: "zip-new", Size: 1}); err != nil {
		t.Fatal(err)
	}
}

func TestAddDeltaCheckedRefusesDeletedBundlesStore(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	lifecycleApp(t, s, 3)
	const app = "com.example.app"
	d := snapshot.Delta{From: "1.0.0", Base: "canonical-1.0.0", Encoding: "dcz", SHA256: "delta", Size: 5}
	if _, err := s.DeleteBundle(ctx, app, "1.0.0"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddDeltaChecked(ctx, app, "1.0.2", d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delta from a deleted bundle: %v", err)
	}
	d.From = "1.0.1"
	if _, err := s.DeleteBundle(ctx, app, "1.0.2"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddDeltaChecked(ctx, app, "1.0.2", d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delta to a deleted bundle: %v", err)
	}
	if _, err := s.CreateBundle(ctx, Bundle{AppID: app, Version: "1.0.3", SHA256: "zip-1.0.3", Size: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddDeltaChecked(ctx, app, "1.0.3", d); err != nil {
		t.Fatalf("delta between existing bundles: %v", err)
	}
	refs, _ := s.ReferencedBlobs(ctx)
	if !refs["delta"] {
		t.Fatal("recorded delta not referenced")
	}
}

func TestRetentionKeepsNewestAndInUseStore(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	lifecycleApp(t, s, 6) // 1.0.0 (oldest) … 1.0.5 (newest)
	const app = "com.example.app"
	if n, err := s.KeepBundles(ctx, app); err != nil || n != 0 {
		t.Fatalf("default keep: %d %v", n, err)
	}
	// keep 0 (the default) deletes nothing.
	if d, err := s.PruneBundles(ctx, app); err != nil || len(d) != 0 {
		t.Fatalf("prune with keep 0: %v %v", d, err)
	}
	if _, _, _, err := s.PutChannel(ctx, app, "production", ChannelPatch{Bundle: ptr("1.0.0")}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetRollout(ctx, app, "production", RolloutSet, "1.0.4", 500); err != nil {
		t.Fatal(err)
	}
	if err := s.SetKeepBundles(ctx, app, 2); err != nil {
		t.Fatal(err)
	}
	rev0, _ := s.Rev(ctx)
	deleted, err := s.PruneBundles(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	var gone []string
	for _, d := range deleted {
		gone = append(gone, d.Version)
	}
	// Newest two (1.0.5, 1.0.4: the rollout's, counted among them) kept;
	// 1.0.0 kept, in use by production; the rest deleted, oldest first.
	if !reflect.DeepEqual(gone, []string{"1.0.1", "1.0.2", "1.0.3"}) {
		t.Fatalf("pruned %v", gone)
	}
	if got := bundleVersions(t, s); !reflect.DeepEqual(got, []string{"1.0.5", "1.0.4", "1.0.0"}) {
		t.Fatalf("bundles left: %v", got)
	}
	if rev1, _ := s.Rev(ctx); rev1 != rev0+1 {
		t.Fatalf("prune moved rev %d → %d, want one bump", rev0, rev1)
	}
	// Nothing more to do: no revision.
	if d, err := s.PruneBundles(ctx, app); err != nil || len(d) != 0 {
		t.Fatalf("second prune: %v %v", d, err)
	}
	if rev2, _ := s.Rev(ctx); rev2 != rev0+1 {
		t.Fatalf("empty prune moved rev to %d", rev2)
	}
	var inv *InvalidError
	if err := s.SetKeepBundles(ctx, app, -1); !errors.As(err, &inv) {
		t.Fatalf("negative keep: %v", err)
	}
	if err := s.SetKeepBundles(ctx, "com.missing.app", 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("keep of absent app: %v", err)
	}
	if _, err := s.PruneBundles(ctx, "com.missing.app"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("prune of absent app: %v", err)
	}
}
