package store

import (
	"context"
	"testing"
	"time"
)

// A rotation sets the expiry of the scope's valid keys (never lengthens an
// earlier one) and adds the new key without expiry; other scopes keep theirs.
func TestRotateAPIKey(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	s.AddAPIKey(ctx, "op1", "generated", ScopeOperator)
	s.AddAPIKey(ctx, "edge1", "generated", ScopeEdge)
	t1 := time.Now().Add(time.Hour).Unix()
	if err := s.RotateAPIKey(ctx, "op2", "rotated", ScopeOperator, t1); err != nil {
		t.Fatal(err)
	}
	t2 := time.Now().Add(2 * time.Hour).Unix()
	if err := s.RotateAPIKey(ctx, "op3", "rotated", ScopeOperator, t2); err != nil {
		t.Fatal(err)
	}
	ks, err := s.APIKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"op1": t1, "op2": t2, "op3": 0, "edge1": 0}
	for _, k := range ks {
		if exp, ok := want[k.Hash]; !ok || exp != k.ExpiresAt {
			t.Errorf("%s expires %d, want %d", k.Hash, k.ExpiresAt, exp)
		}
		delete(want, k.Hash)
	}
	if len(want) != 0 {
		t.Fatalf("missing keys %v", want)
	}
	if err := s.RotateAPIKey(ctx, "op3", "again", ScopeOperator, t2); err == nil {
		t.Fatal("duplicate key hash accepted")
	}
}
