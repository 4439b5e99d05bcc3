package store

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/updraft-cdn/updraft/origin/native"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

func gateOf(t *testing.T, s *Store, ch string) *snapshot.NativeGate {
	t.Helper()
	c, err := s.GetChannel(context.Background(), "com.example.app", ch)
	if err != nil {
		t.Fatal(err)
	}
	return c.NativeGate
}

// TestNativeGateTransitions: how channel set, rollouts and promotion carry
// a channel's native-build gate, that its earlier bundles count as in use,
// and that the snapshot publishes it.
func TestNativeGateTransitions(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	const app = "com.example.app"
	s.CreateApp(ctx, app, "")
	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"} {
		b := Bundle{AppID: app, Version: v, SHA256: v, Size: 1}
		if v == "1.1.0" {
			b.NativePackages = []native.Package{{Name: "@capacitor/camera", Version: "7.0.1"}}
		}
		if _, err := s.CreateBundle(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	put := func(p ChannelPatch) {
		t.Helper()
		if _, _, _, err := s.PutChannel(ctx, app, "production", p, false); err != nil {
			t.Fatal(err)
		}
	}
	want := func(g *snapshot.NativeGate) {
		t.Helper()
		if got := gateOf(t, s, "production"); !reflect.DeepEqual(got, g) {
			t.Fatalf("gate %+v, want %+v", got, g)
		}
	}
	put(ChannelPatch{Bundle: ptr("1.0.0"), Public: ptr(true)})
	want(nil)
	put(ChannelPatch{Bundle: ptr("1.1.0"), MinNativeBuild: ptr("2.0.0")})
	want(&snapshot.NativeGate{MinBuild: "2.0.0", Below: []snapshot.NativeStep{{Bundle: "1.0.0"}}})
	// A compatible bundle keeps the gate; other options keep it too.
	put(ChannelPatch{Bundle: ptr("1.2.0")})
	put(ChannelPatch{AllowDev: ptr(false)})
	want(&snapshot.NativeGate{MinBuild: "2.0.0", Below: []snapshot.NativeStep{{Bundle: "1.0.0"}}})
	// A second gate stacks: below 3.0.0, 1.2.0 (for 2.0.0+), then 1.0.0.
	put(ChannelPatch{Bundle: ptr("1.3.0"), MinNativeBuild: ptr("3.0.0")})
	want(&snapshot.NativeGate{MinBuild: "3.0.0", Below: []snapshot.NativeStep{{Bundle: "1.2.0", MinBuild: "2.0.0"}, {Bundle: "1.0.0"}}})
	// The gate's earlier bundles are in use.
	var iu *InUseError
	if _, err := s.DeleteBundle(ctx, app, "1.0.0"); !errors.As(err, &iu) {
		t.Fatalf("deleting a gate's earlier bundle: %v", err)
	}
	// A rollout on a gated channel takes the gate; a gated rollout, promoted, gates the channel.
	ch, err := s.SetRolloutNative(ctx, app, "production", RolloutSet, "1.4.0", 1000, nil)
	if err != nil || ch.Rollout.MinNativeBuild != "3.0.0" {
		t.Fatalf("rollout: %v %+v", err, ch.Rollout)
	}
	if _, err := s.SetRolloutNative(ctx, app, "production", RolloutSet, "1.4.0", 2000, ptr("4.0.0")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetRollout(ctx, app, "production", RolloutPromote, "", 0); err != nil {
		t.Fatal(err)
	}
	want(&snapshot.NativeGate{MinBuild: "4.0.0", Below: []snapshot.NativeStep{{Bundle: "1.3.0", MinBuild: "3.0.0"}, {Bundle: "1.2.0", MinBuild: "2.0.0"}, {Bundle: "1.0.0"}}})
	// Going back to an earlier bundle restores its gate.
	put(ChannelPatch{Bundle: ptr("1.2.0")})
	want(&snapshot.NativeGate{MinBuild: "2.0.0", Below: []snapshot.NativeStep{{Bundle: "1.0.0"}}})
	// The snapshot carries it, and indexes.
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Index(nil); err != nil {
		t.Fatal(err)
	}
	if g := snap.App(app).Channel("production").NativeGate; g == nil || g.MinBuild != "2.0.0" {
		t.Fatalf("snapshot gate %+v", g)
	}
	// "" removes it; a bad build is refused; native packages round-trip.
	put(ChannelPatch{MinNativeBuild: ptr("")})
	want(nil)
	var inv *InvalidError
	if _, _, _, err := s.PutChannel(ctx, app, "production", ChannelPatch{Bundle: ptr("1.3.0"), MinNativeBuild: ptr("two")}, false); !errors.As(err, &inv) || inv.Code != CodeInvalidMinNativeBuild {
		t.Fatalf("bad min native build: %v", err)
	}
	b, err := s.GetBundle(ctx, app, "1.1.0")
	if err != nil || len(b.NativePackages) != 1 || b.NativePackages[0].Version != "7.0.1" {
		t.Fatalf("native packages: %v %+v", err, b.NativePackages)
	}
	if b, _ := s.GetBundle(ctx, app, "1.0.0"); b.NativePackages != nil {
		t.Fatalf("unrecorded native packages read as %+v", b.NativePackages)
	}
}
