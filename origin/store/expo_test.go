package store

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store/sqlite"
)

func testExpoUpdate() *snapshot.ExpoUpdate {
	return &snapshot.ExpoUpdate{
		Platforms: map[string]snapshot.ExpoPlatform{
			"ios": {RuntimeVersion: "1.0.0", Launch: "_expo/static/js/ios/index-0a.hbc",
				Assets: []snapshot.ExpoAsset{{Path: "assets/0b", Ext: "png"}, {Path: "assets/0c", Ext: "ttf"}}},
			"android": {RuntimeVersion: "exposdk:52.0.0", Launch: "_expo/static/js/android/index-0d.js", Assets: []snapshot.ExpoAsset{}},
		},
		Extra: json.RawMessage(`{"expoClient":{"name":"Example","runtimeVersion":"1.0.0"}}`),
	}
}

// bundleExpo returns version's Expo update as ListBundles and the snapshot
// read it.
func bundleExpo(t *testing.T, s *Store, version string) (listed, snap *snapshot.ExpoUpdate) {
	t.Helper()
	ctx := context.Background()
	bs, err := s.ListBundles(ctx, "com.example.app")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, b := range bs {
		if b.Version == version {
			listed, found = b.Expo, true
		}
	}
	if !found {
		t.Fatalf("bundle %s not listed", version)
	}
	sn, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range sn.Apps {
		for _, b := range a.Bundles {
			if b.Version == version {
				return listed, b.Expo
			}
		}
	}
	t.Fatalf("bundle %s not in the snapshot", version)
	return nil, nil
}

// A bundle's Expo update round-trips through the store (bundles.expo) to
// the bundle list and the snapshot, survives a reopen, and every other
// bundle reads none (NULL).
func TestExpoRoundTripStore(t *testing.T) {
	ctx := context.Background()
	s, path := open(t)
	if _, err := s.CreateApp(ctx, "com.example.app", ""); err != nil {
		t.Fatal(err)
	}
	want := testExpoUpdate()
	if _, err := s.CreateBundle(ctx, Bundle{AppID: "com.example.app", Version: "1.0.0", SHA256: "zip-1", Size: 10}); err != nil {
		t.Fatal(err)
	}
	saved, err := s.CreateBundle(ctx, Bundle{AppID: "com.example.app", Version: "1.0.1", SHA256: "zip-2", Size: 10, Expo: want})
	if err != nil || !reflect.DeepEqual(saved.Expo, want) {
		t.Fatalf("create: %+v %v", saved.Expo, err)
	}
	check := func(s *Store, when string) {
		t.Helper()
		if listed, snap := bundleExpo(t, s, "1.0.0"); listed != nil || snap != nil {
			t.Fatalf("%s: a plain bundle reads an Expo update: %+v %+v", when, listed, snap)
		}
		listed, snap := bundleExpo(t, s, "1.0.1")
		if !reflect.DeepEqual(listed, want) || !reflect.DeepEqual(snap, want) {
			t.Fatalf("%s: listed %+v, snapshot %+v, want %+v", when, listed, snap, want)
		}
	}
	check(s, "stored")
	// A build's manifest and archive leave it as it is.
	if err := s.SetManifest(ctx, "com.example.app", "1.0.1", []snapshot.ManifestEntry{{Name: "assets/0b", Hash: "h", Blob: "b", Size: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCanonical(ctx, "com.example.app", "1.0.1", "canonical", 20); err != nil {
		t.Fatal(err)
	}
	check(s, "built")
	s.Close()
	s2, err := reopen(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	check(s2, "reopened")
}

// An SQLite database from before the expo column: the migration adds it,
// the bundles already there read no Expo update, and new ones store theirs.
func TestExpoMigrationSQLite(t *testing.T) {
	if testenv.StoreEngine() != "sqlite" {
		t.Skip("a migration of an SQLite database written before bundles.expo")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meta.db")
	e, err := sqlite.Open(ctx, path, sqlite.Meta.Upto(sqlite.Meta.Index("ADD COLUMN expo")))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO apps (id, name, created_at) VALUES ('com.example.app', 'Example', ?)`,
		`INSERT INTO bundles (app_id, version, sha256, size, created_at) VALUES ('com.example.app', '1.0.0', 'zip-1', 10, ?)`,
	} {
		if _, err := e.DB().ExecContext(ctx, q, time.Now().Unix()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.DB().ExecContext(ctx, `SELECT expo FROM bundles`); err == nil {
		t.Fatal("the schema before the migration already has bundles.expo")
	}
	e.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if listed, snap := bundleExpo(t, s, "1.0.0"); listed != nil || snap != nil {
		t.Fatalf("a bundle from before the migration reads an Expo update: %+v %+v", listed, snap)
	}
	want := testExpoUpdate()
	if _, err := s.CreateBundle(ctx, Bundle{AppID: "com.example.app", Version: "1.0.1", SHA256: "zip-2", Size: 10, Expo: want}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if listed, snap := bundleExpo(t, s, "1.0.1"); !reflect.DeepEqual(listed, want) || !reflect.DeepEqual(snap, want) {
		t.Fatalf("after the migration: listed %+v, snapshot %+v, want %+v", listed, snap, want)
	}
}
