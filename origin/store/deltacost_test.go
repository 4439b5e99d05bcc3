package store

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// A delta's measured decode cost (decode_ns) round-trips through the store
// and reaches the snapshot; a replaced delta takes the new cost; a row
// written without it (as before the migration) reads 0, "not measured".
func TestDeltaDecodeNsRoundTripStore(t *testing.T) {
	ctx := context.Background()
	s, path := open(t)
	lifecycleApp(t, s, 3)
	const app = "com.example.app"
	dcz := snapshot.Delta{From: "1.0.0", Base: "canonical-1.0.0", Encoding: "dcz", SHA256: "delta-dcz", Size: 50, DecodeNs: 3_500_000_000} // > 2^31
	dcb := snapshot.Delta{From: "1.0.0", Base: "canonical-1.0.0", Encoding: "dcb", SHA256: "delta-dcb", Size: 40, DecodeNs: 42}
	if err := s.AddDeltaChecked(ctx, app, "1.0.2", dcz); err != nil {
		t.Fatal(err)
	}
	if err := s.AddDelta(ctx, app, "1.0.2", dcb); err != nil {
		t.Fatal(err)
	}
	deltasOf := func(s *Store, version string) []snapshot.Delta {
		t.Helper()
		bs, err := s.ListBundles(ctx, app)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			if b.Version == version {
				return b.Deltas
			}
		}
		t.Fatalf("bundle %s not listed", version)
		return nil
	}
	want := []snapshot.Delta{dcb, dcz} // listed by encoding
	if got := deltasOf(s, "1.0.2"); !reflect.DeepEqual(got, want) {
		t.Fatalf("deltas: %+v, want %+v", got, want)
	}
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Apps[0].Bundles[2].Deltas; !reflect.DeepEqual(got, want) {
		t.Fatalf("snapshot deltas: %+v, want %+v", got, want)
	}

	// Rebuilt: the new measurement replaces the old one.
	dcz.DecodeNs, dcz.Size = 7_000_000, 45
	if err := s.AddDeltaChecked(ctx, app, "1.0.2", dcz); err != nil {
		t.Fatal(err)
	}
	want = []snapshot.Delta{dcb, dcz}
	if got := deltasOf(s, "1.0.2"); !reflect.DeepEqual(got, want) {
		t.Fatalf("replaced: %+v, want %+v", got, want)
	}

	// A row inserted without the column, as every row was before it.
	if err := s.write(ctx, true, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO deltas (app_id, from_version, to_version, encoding, base_sha256, sha256, size, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, app, "1.0.0", "1.0.1", "dcz", "canonical-1.0.0", "delta-old", 60, time.Now().Unix())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	old := []snapshot.Delta{{From: "1.0.0", Base: "canonical-1.0.0", Encoding: "dcz", SHA256: "delta-old", Size: 60}}
	if got := deltasOf(s, "1.0.1"); !reflect.DeepEqual(got, old) {
		t.Fatalf("row without decode_ns: %+v, want %+v", got, old)
	}

	// And all of it survives a reopen.
	s.Close()
	s2, err := reopen(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := deltasOf(s2, "1.0.2"); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopen: %+v, want %+v", got, want)
	}
}
