package store

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/internal/testenv"
)

func TestMain(m *testing.M) { testenv.MainWithStores(m) }

// testURLs remembers the store URL of each test path, for reopening.
var testURLs sync.Map

// open opens a fresh store for a test on the engine under test
// (testenv.StoreEngine); it returns a path that reopen reopens.
func open(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "meta.db")
	testURLs.Store(path, testenv.StoreURL(t))
	s, err := reopen(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// reopen opens the store a test's open made again.
func reopen(ctx context.Context, path string) (*Store, error) {
	u, _ := testURLs.Load(path)
	url, _ := u.(string)
	return OpenURL(ctx, url, path)
}

// eventsPath is a fresh events store location for a test.
func eventsPath(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	testURLs.Store(path, testenv.StoreURL(t))
	return path
}

// reopenEvents opens the events store at a path from eventsPath.
func reopenEvents(ctx context.Context, path string) (*EventStore, error) {
	u, _ := testURLs.Load(path)
	url, _ := u.(string)
	return OpenEventsURL(ctx, url, path)
}

func ptr[T any](v T) *T { return &v }

func TestAppsBundlesChannels(t *testing.T) {
	ctx := context.Background()
	s, path := open(t)
	if _, err := s.CreateApp(ctx, "com.example.app", "Example"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateApp(ctx, "com.example.app", "again"); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate app: %v", err)
	}
	b := Bundle{AppID: "com.example.app", Version: "1.0.0", SHA256: "ab", Size: 10}
	if _, err := s.CreateBundle(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateBundle(ctx, b); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate bundle: %v", err)
	}
	b.AppID = "com.missing"
	if _, err := s.CreateBundle(ctx, b); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bundle of unknown app: %v", err)
	}

	ch, created, _, err := s.PutChannel(ctx, "com.example.app", "production", ChannelPatch{Bundle: ptr("1.0.0"), Public: ptr(true)}, false)
	if err != nil || !created {
		t.Fatalf("put channel: %v created=%v", err, created)
	}
	if !ch.IOS || !ch.AllowProd || ch.DisableAutoUpdate != "major" || !ch.DisableAutoUpdateUnderNative || ch.AllowDeviceSelfSet {
		t.Fatalf("Capgo defaults not applied: %+v", ch)
	}
	if _, _, _, err := s.PutChannel(ctx, "com.example.app", "production", ChannelPatch{}, true); !errors.Is(err, ErrExists) {
		t.Fatalf("strict create of existing channel: %v", err)
	}
	var inv *InvalidError
	if _, _, _, err := s.PutChannel(ctx, "com.example.app", "beta", ChannelPatch{Bundle: ptr("9.9.9")}, false); !errors.As(err, &inv) || inv.Code != "unknown_bundle" {
		t.Fatalf("unknown bundle: %v", err)
	}
	if _, _, _, err := s.PutChannel(ctx, "com.example.app", "beta", ChannelPatch{DisableAutoUpdate: ptr("sometimes")}, false); !errors.As(err, &inv) || inv.Code != "invalid_disable_auto_update" {
		t.Fatalf("bad disable_auto_update: %v", err)
	}
	// An android-only default demotes production (which also served android)
	// as a whole, and reports it.
	_, _, demoted, err := s.PutChannel(ctx, "com.example.app", "android-beta", ChannelPatch{Public: ptr(true), IOS: ptr(false), Electron: ptr(false)}, false)
	if err != nil || len(demoted) != 1 || demoted[0] != "production" {
		t.Fatalf("demotion: %v %v", demoted, err)
	}

	rev0, _ := s.Rev(ctx)
	// Patch keeps other fields.
	ch, created, _, err = s.PutChannel(ctx, "com.example.app", "production", ChannelPatch{AllowEmulator: ptr(false)}, false)
	if err != nil || created || ch.Bundle != "1.0.0" || ch.AllowEmulator || ch.Public {
		t.Fatalf("patch: %+v %v", ch, err)
	}
	if rev1, _ := s.Rev(ctx); rev1 != rev0+1 {
		t.Fatalf("rev %d → %d, want +1", rev0, rev1)
	}

	// Everything survives a reopen and lands in the snapshot.
	s.Close()
	s2, err := reopen(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	snap, err := s2.Snapshot(ctx)
	if err == nil {
		err = snap.Index(nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	app := snap.App("com.example.app")
	if app == nil || app.Bundle("1.0.0") == nil || app.Channel("production") == nil {
		t.Fatalf("snapshot incomplete: %+v", snap)
	}
	if d := app.DefaultChannel("android"); d == nil || d.Name != "android-beta" {
		t.Fatalf("android default = %v", d)
	}
	if d := app.DefaultChannel("ios"); d != nil {
		t.Fatalf("ios default = %v, want none", d.Name)
	}
	if snap.Rev != rev0+1 {
		t.Fatalf("snapshot rev %d, want %d", snap.Rev, rev0+1)
	}
}

func TestAPIKeys(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	if n, _ := s.CountAPIKeys(ctx, FileAdminKey, ScopeAdmin); n != 0 {
		t.Fatal(n)
	}
	if err := s.AddAPIKey(ctx, "h1", FileAdminKey, ScopeAdmin); err != nil {
		t.Fatal(err)
	}
	if err := s.AddAPIKey(ctx, "h2", FileEdgeKey, ScopeEdge); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.CountAPIKeys(ctx, FileEdgeKey, ScopeEdge); n != 1 {
		t.Fatal(n)
	}
	if n, _ := s.CountAPIKeys(ctx, FileAdminKey, ScopeEdge); n != 0 {
		t.Fatal(n)
	}
	ks, err := s.APIKeys(ctx)
	if err != nil || len(ks) != 2 || ks[0].CreatedAt == 0 {
		t.Fatalf("%v %v", ks, err)
	}
	ks[0].CreatedAt = 0
	if ks[0] != (APIKey{Hash: "h1", Label: FileAdminKey, Scope: ScopeAdmin}) {
		t.Fatalf("%v %v", ks, err)
	}
}

// A rollout action naming a bundle applies only to the rollout of that
// bundle (the guard names the rollout it judged).
func TestRolloutActionNamesItsRollout(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	s.CreateApp(ctx, "com.example.app", "")
	for _, v := range []string{"1.0.0", "1.0.1", "1.0.2"} {
		if _, err := s.CreateBundle(ctx, Bundle{AppID: "com.example.app", Version: v, SHA256: v, Size: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, _, err := s.PutChannel(ctx, "com.example.app", "production", ChannelPatch{Bundle: ptr("1.0.0"), Public: ptr(true)}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetRollout(ctx, "com.example.app", "production", RolloutSet, "1.0.2", 1000); err != nil {
		t.Fatal(err)
	}
	var inv *InvalidError
	if _, err := s.SetRollout(ctx, "com.example.app", "production", RolloutPause, "1.0.1", 0); !errors.As(err, &inv) || inv.Code != CodeRolloutChanged {
		t.Fatalf("pause naming another bundle: %v, want %s", err, CodeRolloutChanged)
	}
	ch, err := s.SetRollout(ctx, "com.example.app", "production", RolloutPause, "1.0.2", 0)
	if err != nil || ch.Rollout == nil || !ch.Rollout.Paused {
		t.Fatalf("pause naming its bundle: %+v, %v", ch.Rollout, err)
	}
}

// GuardAct pauses and records in one transaction; on another bundle's
// rollout it changes nothing and records nothing.
func TestGuardAct(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	s.CreateApp(ctx, "com.example.app", "")
	for _, v := range []string{"1.0.0", "1.0.1"} {
		if _, err := s.CreateBundle(ctx, Bundle{AppID: "com.example.app", Version: v, SHA256: v, Size: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, _, err := s.PutChannel(ctx, "com.example.app", "production", ChannelPatch{Bundle: ptr("1.0.0"), Public: ptr(true)}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetRollout(ctx, "com.example.app", "production", RolloutSet, "1.0.1", 5000); err != nil {
		t.Fatal(err)
	}
	if err := s.SetGuard(ctx, "com.example.app", "production", ptr(DefaultGuard(Guard{}))); err != nil {
		t.Fatal(err)
	}
	a := GuardAction{AppID: "com.example.app", Channel: "production", At: time.Now(), Action: GuardPause, Bundle: "1.0.0", Attempts: 100, Failures: 30}
	var inv *InvalidError
	if err := s.GuardAct(ctx, a); !errors.As(err, &inv) || inv.Code != CodeRolloutChanged {
		t.Fatalf("GuardAct on another bundle's rollout: %v", err)
	}
	if acts, _ := s.GuardActions(ctx, "com.example.app", "production", 10); len(acts) != 0 {
		t.Fatalf("a refused act was recorded: %+v", acts)
	}
	a.Bundle = "1.0.1"
	if err := s.GuardAct(ctx, a); err != nil {
		t.Fatal(err)
	}
	chs, _ := s.ListChannels(ctx, "com.example.app")
	if len(chs) != 1 || chs[0].Rollout == nil || !chs[0].Rollout.Paused {
		t.Fatalf("channel after GuardAct: %+v", chs)
	}
	if acts, _ := s.GuardActions(ctx, "com.example.app", "production", 10); len(acts) != 1 || acts[0].Action != GuardPause {
		t.Fatalf("actions after GuardAct: %+v", acts)
	}
}
