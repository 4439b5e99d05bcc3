package store

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin/store/sqlite"
)

// A rotation sets the expiry of the live keys of its name and scope (never
// lengthens an earlier one) and adds the new key, of the same name, without
// expiry; keys of other names, of the same scope included, keep theirs.
func TestRotateAPIKey(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	s.AddAPIKey(ctx, "op1", FileAdminKey, ScopeAdmin)
	s.AddAPIKey(ctx, "edge1", FileEdgeKey, ScopeEdge)
	if _, err := s.CreateAPIKey(ctx, APIKey{Hash: "ops1", Label: "ops", Scope: ScopeAdmin}); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now().Add(time.Hour).Unix()
	rec := AuditRecord{Actor: "admin", Addr: "192.0.2.7", Action: "key.rotated", Target: FileAdminKey, After: []byte(`{"name":"admin"}`)}
	if err := s.RotateAPIKey(ctx, "op2", FileAdminKey, ScopeAdmin, t1, rec); err != nil {
		t.Fatal(err)
	}
	t2 := time.Now().Add(2 * time.Hour).Unix()
	if err := s.RotateAPIKey(ctx, "op3", FileAdminKey, ScopeAdmin, t2); err != nil {
		t.Fatal(err)
	}
	ks, err := s.APIKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"op1": t1, "op2": t2, "op3": 0, "edge1": 0, "ops1": 0}
	for _, k := range ks {
		if exp, ok := want[k.Hash]; !ok || exp != k.ExpiresAt {
			t.Errorf("%s expires %d, want %d", k.Hash, k.ExpiresAt, exp)
		}
		if k.Hash[:2] == "op" && k.Hash != "ops1" && k.Label != FileAdminKey {
			t.Errorf("%s named %q after rotations, want %q", k.Hash, k.Label, FileAdminKey)
		}
		delete(want, k.Hash)
	}
	if len(want) != 0 {
		t.Fatalf("missing keys %v", want)
	}
	if err := s.RotateAPIKey(ctx, "op3", FileAdminKey, ScopeAdmin, t2); err == nil {
		t.Fatal("duplicate key hash accepted")
	}
	recs, err := s.Audit(ctx, AuditQuery{Actions: []string{"key.rotated"}})
	if err != nil || len(recs) != 1 || recs[0].Target != FileAdminKey || recs[0].Addr != "192.0.2.7" {
		t.Fatalf("audit after rotations: %+v %v", recs, err)
	}
}

// Keys by name: a name is unique among live keys (a revoked or expired
// key's name may be taken again); revoking a name revokes all its live
// keys at once, records the audit given in the same transaction, and a
// second revocation finds nothing. Every field survives the round trip.
func TestCreateRevokeAPIKey(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	exp := time.Now().Add(90 * 24 * time.Hour).Unix()
	audit := func(action, name string) AuditRecord {
		return AuditRecord{Actor: "admin", Addr: "192.0.2.1", Action: action, Target: name, After: []byte(`{"name":"` + name + `"}`)}
	}
	ci, err := s.CreateAPIKey(ctx, APIKey{Hash: "c1", Label: "ci", Scope: ScopeUpload, App: "com.example.app", ExpiresAt: exp}, audit("key.created", "ci"))
	if err != nil || ci.CreatedAt == 0 {
		t.Fatalf("create: %+v %v", ci, err)
	}
	if _, err := s.CreateAPIKey(ctx, APIKey{Hash: "c2", Label: "ci", Scope: ScopeRead}); !errors.Is(err, ErrExists) {
		t.Fatalf("second live key named ci: %v, want ErrExists", err)
	}
	// An expired key's name is free again.
	if _, err := s.CreateAPIKey(ctx, APIKey{Hash: "o1", Label: "old", Scope: ScopeRead, ExpiresAt: time.Now().Unix() - 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateAPIKey(ctx, APIKey{Hash: "o2", Label: "old", Scope: ScopeDeploy}); err != nil {
		t.Fatalf("name of an expired key: %v", err)
	}
	ks, _ := s.APIKeys(ctx)
	if len(ks) != 3 || ks[0] != (APIKey{Hash: "c1", Label: "ci", Scope: ScopeUpload, App: "com.example.app", CreatedAt: ci.CreatedAt, ExpiresAt: exp}) {
		t.Fatalf("keys: %+v", ks)
	}
	got, err := s.RevokeAPIKey(ctx, "ci", func(k APIKey) []AuditRecord { return []AuditRecord{audit("key.revoked", k.Label)} })
	if err != nil || got.Hash != "c1" || got.Scope != ScopeUpload || got.App != "com.example.app" {
		t.Fatalf("revoke: %+v %v", got, err)
	}
	if _, err := s.RevokeAPIKey(ctx, "ci", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke twice: %v, want ErrNotFound", err)
	}
	if _, err := s.RevokeAPIKey(ctx, "nobody", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke unknown: %v, want ErrNotFound", err)
	}
	now := time.Now().Unix()
	for _, k := range mustKeys(t, s) {
		switch k.Hash {
		case "c1":
			if k.RevokedAt == 0 || k.Live(now) {
				t.Errorf("revoked key %+v", k)
			}
		case "o2":
			if !k.Live(now) {
				t.Errorf("key %+v not live", k)
			}
		}
	}
	if _, err := s.CreateAPIKey(ctx, APIKey{Hash: "c3", Label: "ci", Scope: ScopeRead}); err != nil {
		t.Fatalf("name of a revoked key: %v", err)
	}
	recs, err := s.Audit(ctx, AuditQuery{Actions: []string{"key.created", "key.revoked"}})
	if err != nil || len(recs) != 2 || recs[0].Action != "key.created" || recs[1].Action != "key.revoked" || recs[1].Target != "ci" {
		t.Fatalf("audit: %+v %v", recs, err)
	}
	// A failed change records nothing.
	if _, err := s.CreateAPIKey(ctx, APIKey{Hash: "c4", Label: "ci", Scope: ScopeRead}, audit("key.created", "ci")); !errors.Is(err, ErrExists) {
		t.Fatal(err)
	}
	if recs, _ := s.Audit(ctx, AuditQuery{}); len(recs) != 2 {
		t.Fatalf("audit after a refused creation: %+v", recs)
	}
}

func mustKeys(t *testing.T, s *Store) []APIKey {
	t.Helper()
	ks, err := s.APIKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// An SQLite database from before scopes: its operator key and the keys its
// rotations replaced become admin keys named "admin" (expiries kept), its
// edge key is named "edge", all for every app and not revoked.
func TestKeyScopesMigrationSQLite(t *testing.T) {
	if testenv.StoreEngine() != "sqlite" {
		t.Skip("a migration of an SQLite database written before key scopes")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meta.db")
	e, err := sqlite.Open(ctx, path, sqlite.Meta.Upto(sqlite.Meta.Index("ADD COLUMN revoked_at")))
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	for _, k := range []struct {
		hash, label, scope string
		expires            int64
	}{{"h1", "generated", "operator", exp}, {"h2", "rotated 2026-01-02T03:04:05Z", "operator", 0}, {"h3", "generated", "edge", 0}} {
		if _, err := e.DB().ExecContext(ctx, `INSERT INTO api_keys (hash, label, scope, created_at, expires_at) VALUES (?, ?, ?, 1, ?)`,
			k.hash, k.label, k.scope, k.expires); err != nil {
			t.Fatal(err)
		}
	}
	e.Close()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := []APIKey{{Hash: "h1", Label: FileAdminKey, Scope: ScopeAdmin, CreatedAt: 1, ExpiresAt: exp},
		{Hash: "h2", Label: FileAdminKey, Scope: ScopeAdmin, CreatedAt: 1}, {Hash: "h3", Label: FileEdgeKey, Scope: ScopeEdge, CreatedAt: 1}}
	if got := mustKeys(t, s); !slices.Equal(got, want) {
		t.Fatalf("after the migration:\n got %+v\nwant %+v", got, want)
	}
}

// Deleting an app revokes the live keys limited to it, and no other.
func TestRevokeAppKeys(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	for _, k := range []APIKey{{Hash: "a1", Label: "a-ci", Scope: ScopeUpload, App: "com.example.a"},
		{Hash: "a2", Label: "a-read", Scope: ScopeRead, App: "com.example.a"},
		{Hash: "b1", Label: "b-ci", Scope: ScopeUpload, App: "com.example.b"}, {Hash: "all", Label: "ops", Scope: ScopeAdmin}} {
		if _, err := s.CreateAPIKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.RevokeAppKeys(ctx, "com.example.a", func(k APIKey) []AuditRecord {
		return []AuditRecord{{Actor: "admin", Action: "key.revoked", Target: k.Label, App: k.App}}
	})
	if err != nil || len(got) != 2 || got[0].Label != "a-ci" || got[1].Label != "a-read" {
		t.Fatalf("revoked %+v %v", got, err)
	}
	now := time.Now().Unix()
	for _, k := range mustKeys(t, s) {
		if k.Live(now) != (k.App != "com.example.a") {
			t.Errorf("after the revocation of com.example.a's keys: %+v", k)
		}
	}
	if recs, _ := s.Audit(ctx, AuditQuery{App: "com.example.a"}); len(recs) != 2 {
		t.Fatalf("audit: %+v", recs)
	}
	if again, err := s.RevokeAppKeys(ctx, "com.example.a", nil); err != nil || len(again) != 0 {
		t.Fatalf("second revocation: %+v %v", again, err)
	}
}
