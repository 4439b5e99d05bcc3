package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/internal/testenv"
)

func TestSecrets(t *testing.T) {
	ctx := context.Background()
	s, path := open(t)
	if _, ok, err := s.Secret(ctx, "k"); ok || err != nil {
		t.Fatalf("secret before any: ok %v err %v", ok, err)
	}
	v, err := s.InitSecret(ctx, "k", "first")
	if err != nil || v != "first" {
		t.Fatalf("InitSecret = %q, %v", v, err)
	}
	// A second origin starting later adopts the first one's secret.
	s2, err := reopen(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if v, err := s2.InitSecret(ctx, "k", "second"); err != nil || v != "first" {
		t.Fatalf("InitSecret on a store that has one = %q, %v; want first", v, err)
	}
	if err := s2.SetSecret(ctx, "k", "rotated"); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Secret(ctx, "k"); !ok || err != nil || v != "rotated" {
		t.Fatalf("after SetSecret: %q %v %v", v, ok, err)
	}
}

// Two origins on one PostgreSQL store: a change committed through one is
// announced to the other's listener, and a lease is held by one at a time,
// passing to the other when its holder lets go.
func TestSharedStoreListenAndLease(t *testing.T) {
	if testenv.StoreEngine() != "postgres" {
		s, _ := open(t)
		if s.Shared() {
			t.Fatal("an SQLite store says it is shared")
		}
		l, err := s.AcquireLease(context.Background(), "guard", time.Second)
		if l != nil || err != nil {
			t.Fatalf("SQLite lease = %v, %v; want nil, nil (held for good)", l, err)
		}
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, path := open(t)
	b, err := reopen(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !a.Shared() || !b.Shared() {
		t.Fatal("PostgreSQL store not shared")
	}
	heard := make(chan struct{}, 16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.Listen(ctx, func() {
			select {
			case heard <- struct{}{}:
			default:
			}
		}, func(err error) { t.Log("listen:", err) })
	}()
	<-heard // the listener announces itself once connected
	if _, err := a.CreateApp(ctx, "com.example.shared", "Shared"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-heard:
	case <-time.After(30 * time.Second):
		t.Fatal("origin B never heard of origin A's change")
	}
	if rb, _ := b.Rev(ctx); rb == 0 {
		t.Fatal("origin B reads revision 0 after the change")
	}
	// A key rotation moves no revision, but the other origins must
	// reload their keys: it is announced too.
	if err := a.RotateAPIKey(ctx, "ab12", FileAdminKey, ScopeAdmin, time.Now().Add(time.Hour).Unix()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-heard:
	case <-time.After(30 * time.Second):
		t.Fatal("origin B never heard of origin A's key rotation")
	}
	// Creating and revoking a key are announced too: every origin refuses
	// a revoked key at once.
	if _, err := a.CreateAPIKey(ctx, APIKey{Hash: "cd34", Label: "ci", Scope: ScopeUpload}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-heard:
	case <-time.After(30 * time.Second):
		t.Fatal("origin B never heard of origin A's key creation")
	}
	if _, err := a.RevokeAPIKey(ctx, "ci", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-heard:
	case <-time.After(30 * time.Second):
		t.Fatal("origin B never heard of origin A's key revocation")
	}
	if ks, _ := b.APIKeys(ctx); len(ks) == 0 || ks[len(ks)-1].Label != "ci" || ks[len(ks)-1].RevokedAt == 0 {
		t.Fatalf("origin B reads the keys %+v after the revocation", ks)
	}

	la, err := a.AcquireLease(ctx, "guard", 50*time.Millisecond)
	if err != nil || la == nil {
		t.Fatalf("A's lease: %v %v", la, err)
	}
	got := make(chan Lease, 1)
	go func() {
		lb, err := b.AcquireLease(ctx, "guard", 50*time.Millisecond)
		if err == nil {
			got <- lb
		}
	}()
	// B waits while A holds it (checked twice over B's retry period).
	for range 4 {
		select {
		case <-got:
			t.Fatal("B acquired a lease A holds")
		case <-time.After(50 * time.Millisecond):
		}
	}
	la.Release()
	select {
	case <-la.Lost():
	default:
		t.Fatal("released lease not reported lost")
	}
	select {
	case lb := <-got:
		lb.Release()
	case <-time.After(30 * time.Second):
		t.Fatal("B never took the lease A released")
	}
	tctx, tcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer tcancel()
	if _, err := a.AcquireLease(tctx, "other", 10*time.Millisecond); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	cancel()
	wg.Wait()
}

// A running job untouched for JobStaleAfter belonged to an origin that
// died: another claims it; a touched one stays with its worker.
func TestStaleRunningJobClaimedAgain(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	if _, err := s.CreateApp(ctx, "com.example.app", "x"); err != nil {
		t.Fatal(err)
	}
	if err := s.EnqueueJob(ctx, JobBuild, "com.example.app", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	j, ok, err := s.ClaimJob(ctx, JobBuild, now)
	if !ok || err != nil {
		t.Fatalf("claim: %v %v", ok, err)
	}
	if _, ok, _ := s.ClaimJob(ctx, JobBuild, now.Add(JobStaleAfter/2)); ok {
		t.Fatal("a fresh running job was claimed twice")
	}
	if err := s.TouchJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	j2, ok, err := s.ClaimJob(ctx, JobBuild, time.Now().Add(JobStaleAfter+time.Second))
	if !ok || err != nil || j2.ID != j.ID || j2.Attempts != 2 {
		t.Fatalf("stale claim: %+v %v %v", j2, ok, err)
	}
	// The first worker's late outcome changes nothing.
	if err := s.FinishJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	if g, _ := s.GetJob(ctx, JobBuild, "com.example.app", "1.0.0"); g.State != JobRunning || g.Attempts != 2 {
		t.Fatalf("after the first worker's late finish: %+v", g)
	}
}
