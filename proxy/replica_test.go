package proxy

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

func signed(t *testing.T, rev int64, key ed25519.PrivateKey) []byte {
	t.Helper()
	return signedAt(t, rev, time.Now(), key)
}

// signedAt signs a snapshot as issued at the given time.
func signedAt(t *testing.T, rev int64, issued time.Time, key ed25519.PrivateKey) []byte {
	t.Helper()
	s := &snapshot.Snapshot{Format: snapshot.FormatVersion, Rev: rev, Issued: issued.UnixMilli(), Apps: []*snapshot.App{{ID: "com.example.app"}}}
	b, err := snapshot.Encode(s, key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReplicaRefusesTampering(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	e := New(config.NewEdge(dir), nil, nil)
	r := NewReplica(e, "http://127.0.0.1:1", "k", pub)

	first := signed(t, 5, priv)
	if err := r.Accept(first, true); err != nil {
		t.Fatal(err)
	}
	flipped := signed(t, 6, priv)
	flipped[len(flipped)/2] ^= 1
	cases := []struct {
		name   string
		wire   []byte
		reason string
	}{
		{"flipped byte", flipped, "bad_signature"},
		{"wrong key", signed(t, 7, other), "bad_signature"},
		{"replayed older rev", signed(t, 4, priv), "older_rev"},
		{"same snapshot again", first, "older_rev"},
		{"same rev issued earlier", signedAt(t, 5, time.Now().Add(-time.Hour), priv), "older_rev"},
		// A later revision issued before the current one: signed before
		// the origin was restored to an older revision, replayed now.
		{"newer rev issued earlier", signedAt(t, 6, time.Now().Add(-time.Hour), priv), "older_rev"},
		{"truncated", signed(t, 8, priv)[:20], "malformed"},
	}
	for _, c := range cases {
		before := testutil.ToFloat64(e.metrics.refusals.WithLabelValues(c.reason))
		if err := r.Accept(c.wire, true); err == nil {
			t.Fatalf("%s: accepted", c.name)
		}
		if got := testutil.ToFloat64(e.metrics.refusals.WithLabelValues(c.reason)); got != before+1 {
			t.Fatalf("%s: refusals{%s} = %v, want %v", c.name, c.reason, got, before+1)
		}
		if e.Snapshot().Rev != 5 {
			t.Fatalf("%s: current rev %d, want last good 5", c.name, e.Snapshot().Rev)
		}
	}

	// The persisted file is the last good snapshot; a new edge loads it.
	e2 := New(config.NewEdge(dir), nil, nil)
	r2 := NewReplica(e2, "http://127.0.0.1:1", "k", pub)
	if err := r2.LoadPersisted(); err != nil || e2.Snapshot() == nil || e2.Snapshot().Rev != 5 {
		t.Fatalf("persisted: %v %+v", err, e2.Snapshot())
	}
	// A persisted file signed by another key is refused at start-up.
	os.WriteFile(filepath.Join(dir, "snapshot.bin"), signed(t, 9, other), 0o644)
	e3 := New(config.NewEdge(dir), nil, nil)
	if err := NewReplica(e3, "http://127.0.0.1:1", "k", pub).LoadPersisted(); !errors.Is(err, snapshot.ErrBadSignature) || e3.Snapshot() != nil {
		t.Fatalf("foreign persisted snapshot: %v", err)
	}
}

// Override shards are served to child edges, never to devices.
func TestShardsHiddenFromDevices(t *testing.T) {
	te := startEdge(t, func(c *config.Edge) { c.EdgeKey = "edge-secret" })
	hashes, _, encoded := snapshot.ShardOverrides(map[[16]byte]string{{1}: "production"})
	var sha string
	for h, b := range encoded {
		if got := te.put(t, b); got != h {
			t.Fatal("shard hash")
		}
		sha = h
	}
	s := testSnapshot(t, 2, fakeSHA("x"))
	s.Apps[0].OverrideShards = hashes
	if err := s.Index(snapshot.MapShards{sha: mustShard(t, encoded[sha])}); err != nil {
		t.Fatal(err)
	}
	te.edge.SetSnapshot(s)
	if a := te.do(t, "GET", "/b/"+sha, nil); a.status != 404 {
		t.Fatalf("device GET of a shard: HTTP %d", a.status)
	}
	if a := te.do(t, "GET", "/v1/blobs/"+sha, nil, "Authorization", "Bearer edge-secret"); a.status != 200 {
		t.Fatalf("child GET of a shard: HTTP %d %s", a.status, a.body)
	}
	if a := te.do(t, "GET", "/v1/blobs/"+sha, nil, "Authorization", "Bearer wrong"); a.status != 401 {
		t.Fatalf("child GET with a wrong key: HTTP %d", a.status)
	}
}

func mustShard(t *testing.T, b []byte) *snapshot.OverrideShard {
	sh, err := snapshot.DecodeOverrideShard(b)
	if err != nil {
		t.Fatal(err)
	}
	return sh
}
