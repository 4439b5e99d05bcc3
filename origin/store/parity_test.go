package store

import (
	"context"
	"errors"
	"testing"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// parityApp creates com.example.app with bundles 1.0.0 and 1.1.0, a
// default production channel on 1.0.0, a self-assignable beta on 1.1.0 and
// a locked (not self-assignable) private channel.
func parityApp(t *testing.T) *Store {
	t.Helper()
	ctx := context.Background()
	s, _ := open(t)
	if _, err := s.CreateApp(ctx, "com.example.app", ""); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		if _, err := s.CreateBundle(ctx, Bundle{AppID: "com.example.app", Version: v, SHA256: v, Size: 1}); err != nil {
			t.Fatal(err)
		}
	}
	for name, p := range map[string]ChannelPatch{
		"production": {Bundle: ptr("1.0.0"), Public: ptr(true)},
		"beta":       {Bundle: ptr("1.1.0"), AllowDeviceSelfSet: ptr(true)},
		"locked":     {Bundle: ptr("1.1.0")},
	} {
		if _, _, _, err := s.PutChannel(ctx, "com.example.app", name, p, false); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func channelOf(t *testing.T, s *Store, name string) Channel {
	t.Helper()
	chs, err := s.ListChannels(context.Background(), "com.example.app")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no channel %s", name)
	return Channel{}
}

func snapChannel(t *testing.T, s *Store, name string) *snapshot.Channel {
	t.Helper()
	snap, err := s.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Index(nil); err != nil {
		t.Fatalf("snapshot does not index: %v", err)
	}
	return snap.App("com.example.app").Channel(name)
}

// A builtin channel (Capgo: channels.version NULL, pg.ts:474 "CASE WHEN
// channel.version IS NULL THEN 'builtin'") is stored as builtin = 1 with no
// bundle, listed and published as bundle "builtin"; rollouts of real bundles
// on it keep working (promote makes it a bundle channel again), and a
// rollout or A/B arm cannot target builtin.
func TestBuiltinChannelStore(t *testing.T) {
	ctx := context.Background()
	s := parityApp(t)
	ch, _, _, err := s.PutChannel(ctx, "com.example.app", "production", ChannelPatch{Bundle: ptr("builtin")}, false)
	if err != nil || ch.Bundle != "builtin" {
		t.Fatalf("set builtin: %+v %v", ch, err)
	}
	var bundle any
	var builtin int
	if err := s.db.QueryRowContext(context.Background(), `SELECT bundle_version, builtin FROM channels WHERE name = 'production'`).Scan(&bundle, &builtin); err != nil || bundle != nil || builtin != 1 {
		t.Fatalf("stored bundle_version %v builtin %d (%v), want NULL and 1", bundle, builtin, err)
	}
	if c := channelOf(t, s, "production"); c.Bundle != "builtin" || !c.Public {
		t.Fatalf("listed %+v", c)
	}
	if c := snapChannel(t, s, "production"); c.Bundle != "builtin" {
		t.Fatalf("snapshot %+v", c)
	}
	// Rollout of a real bundle on the builtin channel, pause, rollback: the
	// channel stays builtin.
	for _, a := range []RolloutAction{RolloutSet, RolloutPause, RolloutRollback} {
		if _, err := s.SetRollout(ctx, "com.example.app", "production", a, "1.1.0", 5000); err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		if c := channelOf(t, s, "production"); c.Bundle != "builtin" {
			t.Fatalf("after %s: bundle %q, want builtin", a, c.Bundle)
		}
	}
	// Promote: the channel serves the rollout's bundle, builtin = 0.
	if _, err := s.SetRollout(ctx, "com.example.app", "production", RolloutSet, "1.1.0", 5000); err != nil {
		t.Fatal(err)
	}
	if c, err := s.SetRollout(ctx, "com.example.app", "production", RolloutPromote, "", 0); err != nil || c.Bundle != "1.1.0" {
		t.Fatalf("promote: %+v %v", c, err)
	}
	if err := s.db.QueryRowContext(context.Background(), `SELECT bundle_version, builtin FROM channels WHERE name = 'production'`).Scan(&bundle, &builtin); err != nil || builtin != 0 {
		t.Fatalf("after promote: bundle_version %v builtin %d (%v)", bundle, builtin, err)
	}
	if c := snapChannel(t, s, "production"); c.Bundle != "1.1.0" {
		t.Fatalf("snapshot after promote %+v", c)
	}
	// Back to builtin, then to a bundle again with channel set.
	if _, _, _, err := s.PutChannel(ctx, "com.example.app", "production", ChannelPatch{Bundle: ptr("builtin")}, false); err != nil {
		t.Fatal(err)
	}
	if c, _, _, err := s.PutChannel(ctx, "com.example.app", "production", ChannelPatch{Bundle: ptr("1.0.0")}, false); err != nil || c.Bundle != "1.0.0" {
		t.Fatalf("builtin → 1.0.0: %+v %v", c, err)
	}
	// Rollouts and A/B arms cannot target the store build.
	var inv *InvalidError
	if _, err := s.SetRollout(ctx, "com.example.app", "beta", RolloutSet, "builtin", 100); !errors.As(err, &inv) || inv.Code != CodeBuiltinTarget {
		t.Fatalf("rollout of builtin: %v", err)
	}
	if _, err := s.SetAB(ctx, "com.example.app", "beta", []snapshot.Arm{{Name: "a", Bundle: "1.0.0", BPS: 10}, {Name: "b", Bundle: "builtin", BPS: 10}}); !errors.As(err, &inv) || inv.Code != CodeBuiltinTarget {
		t.Fatalf("A/B arm of builtin: %v", err)
	}
}

// Issue 16: `updraft device list` was always empty — ListOverrides bound a
// nil blob for "after", and device_id > NULL matches nothing. The list also
// shows who pinned each device.
func TestListOverridesFromStart(t *testing.T) {
	ctx := context.Background()
	s := parityApp(t)
	devs := []string{"00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002", "ffffffff-0000-4000-8000-000000000003"}
	if err := s.SetOverrides(ctx, "com.example.app", "beta", devs[:2]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetDeviceChannel(ctx, "com.example.app", devs[2], "beta"); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListOverrides(ctx, "com.example.app", "", 10)
	if err != nil || len(got) != 3 {
		t.Fatalf("list from the start: %+v %v, want 3", got, err)
	}
	for i, o := range got {
		want := SourceOperator
		if i == 2 {
			want = SourceDevice
		}
		if o.DeviceID != devs[i] || o.Channel != "beta" || o.Source != want {
			t.Errorf("override %d: %+v, want %s on beta by %s", i, o, devs[i], want)
		}
	}
	page, err := s.ListOverrides(ctx, "com.example.app", devs[0], 1)
	if err != nil || len(page) != 1 || page[0].DeviceID != devs[1] {
		t.Fatalf("page after %s: %+v %v", devs[0], page, err)
	}
	// An operator override replaces a device's own and takes its source.
	if err := s.SetOverrides(ctx, "com.example.app", "production", devs[2:]); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ListOverrides(ctx, "com.example.app", devs[1], 10); len(got) != 1 || got[0].Source != SourceOperator || got[0].Channel != "production" {
		t.Fatalf("operator over device: %+v", got)
	}
}

// SetDeviceChannel enforces Capgo's legacy /channel_self rules
// (channel_self.ts:285-415, 493-549) whatever the edge's snapshot said.
func TestSetDeviceChannel(t *testing.T) {
	ctx := context.Background()
	s := parityApp(t)
	const dev = "00009a6b-eefe-490a-9c60-8e965132ae51"
	rev0, _ := s.Rev(ctx)
	var inv *InvalidError
	code := func(err error) string {
		if errors.As(err, &inv) {
			return inv.Code
		}
		if err != nil {
			return err.Error()
		}
		return ""
	}
	// Removing nothing changes nothing (and moves no revision).
	if changed, err := s.SetDeviceChannel(ctx, "com.example.app", dev, ""); err != nil || changed {
		t.Fatalf("remove nothing: %v %v", changed, err)
	}
	if rev, _ := s.Rev(ctx); rev != rev0 {
		t.Fatalf("rev moved %d → %d for nothing", rev0, rev)
	}
	for _, c := range []struct{ channel, code string }{
		{"nope", CodeUnknownChannel},
		{"locked", CodeSelfSetNotAllowed},
		{"production", CodeSelfSetNotAllowed},
	} {
		if _, err := s.SetDeviceChannel(ctx, "com.example.app", dev, c.channel); code(err) != c.code {
			t.Errorf("pin to %s: %v, want %s", c.channel, err, c.code)
		}
	}
	if _, err := s.SetDeviceChannel(ctx, "com.missing.app", dev, "beta"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown app: %v", err)
	}
	if changed, err := s.SetDeviceChannel(ctx, "com.example.app", dev, "beta"); err != nil || !changed {
		t.Fatalf("pin to beta: %v %v", changed, err)
	}
	if changed, _ := s.SetDeviceChannel(ctx, "com.example.app", dev, "beta"); changed {
		t.Fatal("pinning again changed something")
	}
	if changed, err := s.SetDeviceChannel(ctx, "com.example.app", dev, ""); err != nil || !changed {
		t.Fatalf("remove: %v %v", changed, err)
	}
	// An operator pin on a channel that does not allow self-assignment
	// cannot be moved or removed by the device.
	if err := s.SetOverrides(ctx, "com.example.app", "locked", []string{dev}); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{"beta", ""} {
		if _, err := s.SetDeviceChannel(ctx, "com.example.app", dev, ch); code(err) != CodeCannotOverride {
			t.Errorf("device moves off a locked pin to %q: %v", ch, err)
		}
	}
	if m, _ := s.OverridesInShard(ctx, "com.example.app", -1); len(m) != 1 {
		t.Fatalf("overrides %v", m)
	}
	// An operator pin on a channel that DOES allow self-assignment is the
	// operator's too: a device (or anyone knowing its id) neither moves
	// nor removes it.
	if err := s.SetOverrides(ctx, "com.example.app", "beta", []string{dev}); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{"locked", ""} {
		if _, err := s.SetDeviceChannel(ctx, "com.example.app", dev, ch); code(err) != CodeCannotOverride {
			t.Errorf("device moves off an operator pin to %q: %v", ch, err)
		}
	}
	// Devices' own overrides are bounded per app (unauthenticated writes);
	// moving an existing one and operator pins are not limited.
	defer func(n int) { MaxDeviceOverrides = n }(MaxDeviceOverrides)
	MaxDeviceOverrides = 2
	devs := []string{"11111111-2222-4333-8444-000000000001", "11111111-2222-4333-8444-000000000002", "11111111-2222-4333-8444-000000000003"}
	for i, d := range devs {
		_, err := s.SetDeviceChannel(ctx, "com.example.app", d, "beta")
		if want := map[bool]string{true: CodeOverrideNotAllowed, false: ""}[i == 2]; code(err) != want {
			t.Fatalf("device override %d: %v, want %q", i, err, want)
		}
	}
	if _, err := s.SetDeviceChannel(ctx, "com.example.app", devs[0], ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetDeviceChannel(ctx, "com.example.app", devs[2], "beta"); err != nil {
		t.Fatalf("room after a removal: %v", err)
	}
}

// Per-app protocol options reach the snapshot (Capgo apps.expose_metadata,
// default off; apps.allow_device_custom_id, default on) and the app list.
func TestSetAppProtocol(t *testing.T) {
	ctx := context.Background()
	s := parityApp(t)
	app := func() (*snapshot.App, App) {
		snap, err := s.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		a, err := s.GetApp(ctx, "com.example.app")
		if err != nil {
			t.Fatal(err)
		}
		return snap.Apps[0], a
	}
	if sa, a := app(); sa.ExposeMetadata || sa.IgnoreCustomID || a.ExposeMetadata || !a.AllowDeviceCustomID {
		t.Fatalf("defaults: %+v %+v", sa, a)
	}
	if err := s.SetAppProtocol(ctx, "com.example.app", ptr(true), nil); err != nil {
		t.Fatal(err)
	}
	if sa, a := app(); !sa.ExposeMetadata || sa.IgnoreCustomID || !a.AllowDeviceCustomID {
		t.Fatalf("expose only: %+v %+v", sa, a)
	}
	if err := s.SetAppProtocol(ctx, "com.example.app", nil, ptr(false)); err != nil {
		t.Fatal(err)
	}
	if sa, a := app(); !sa.ExposeMetadata || !sa.IgnoreCustomID || a.AllowDeviceCustomID {
		t.Fatalf("custom ids off: %+v %+v", sa, a)
	}
	if apps, err := s.ListApps(ctx); err != nil || len(apps) != 1 || !apps[0].ExposeMetadata || apps[0].AllowDeviceCustomID {
		t.Fatalf("list: %+v %v", apps, err)
	}
	if err := s.SetAppProtocol(ctx, "com.missing.app", ptr(true), nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown app: %v", err)
	}
}
