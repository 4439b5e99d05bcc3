package snapshot

import (
	"testing"
)

// nativeSnapshot: production serves 2.0.0, gated at native build 2.0.0;
// devices below get 1.2.0, itself gated at 1.1.0, then 1.0.0.
func nativeSnapshot(t testing.TB, mod func(a *App)) *Snapshot {
	return testSnapshot(t, func(a *App) {
		ch := a.Channels[0]
		ch.Bundle = "2.0.0"
		ch.NativeGate = &NativeGate{MinBuild: "2.0.0", Below: []NativeStep{{Bundle: "1.2.0", MinBuild: "1.1.0"}, {Bundle: "1.0.0"}}}
		if mod != nil {
			mod(a)
		}
	})
}

func TestNativeGate(t *testing.T) {
	s := nativeSnapshot(t, nil)
	for _, c := range []struct {
		build, name string
		want        string // bundle, or "" for no new version
		variant     string
	}{
		{"2.0.0", "1.0.0", "2.0.0", VariantChannel},
		{"3.1.0", "1.0.0", "2.0.0", VariantChannel},
		{"1.9.9", "1.0.0", "1.2.0", VariantBelowNative},
		{"1.1.0", "1.0.0", "1.2.0", VariantBelowNative},
		{"1.0.5", "0.9.0", "1.0.0", VariantBelowNative},
		{"1.0.5", "1.0.0", "", VariantBelowNative}, // already on its fallback
	} {
		r := baseReq()
		r.VersionBuild, r.VersionName = c.build, c.name
		if err := r.Validate(); err != nil {
			t.Fatal(err)
		}
		d := Resolve(s, &r)
		got := ""
		if d.OK() {
			got = d.Bundle.Version
		} else if d.Code != CodeNoNewVersion {
			t.Fatalf("build %s: %s %s", c.build, d.Code, d.Message)
		}
		if got != c.want || d.Variant != c.variant {
			t.Fatalf("build %s on %s: got %q variant %q, want %q %q", c.build, c.name, got, d.Variant, c.want, c.variant)
		}
		if c.variant == VariantBelowNative && d.NativeMin != "2.0.0" {
			t.Fatalf("build %s: NativeMin %q", c.build, d.NativeMin)
		}
	}
	// No earlier bundle at all: a device below is up to date, not failed.
	s = nativeSnapshot(t, func(a *App) { a.Channels[0].NativeGate.Below = nil })
	r := baseReq()
	r.VersionBuild = "1.5.0"
	r.Validate()
	if d := Resolve(s, &r); d.Code != CodeNoNewVersion || d.Kind != KindUpToDate || d.Variant != VariantBelowNative {
		t.Fatalf("no earlier bundle: %+v", d)
	}
}

// TestNativeGateRolloutAndArm: a device in a gated rollout's (or arm's)
// share but below its min native build gets the channel's bundle.
func TestNativeGateRolloutAndArm(t *testing.T) {
	for _, mod := range []func(a *App){
		func(a *App) {
			a.Channels[0].Rollout = &Rollout{ID: "r1", Bundle: "2.0.0", BPS: BucketCount, MinNativeBuild: "2.0.0"}
		},
		func(a *App) {
			a.Channels[0].AB = &ABSplit{ID: "ab1", Arms: []Arm{{Name: "new", Bundle: "2.0.0", BPS: BucketCount, MinNativeBuild: "2.0.0"}}}
		},
	} {
		s := testSnapshot(t, mod)
		for _, c := range []struct{ build, want, variant string }{
			{"2.0.0", "2.0.0", ""}, {"1.9.0", "1.2.0", VariantBelowNative},
		} {
			r := baseReq()
			r.VersionBuild = c.build
			r.Validate()
			d := Resolve(s, &r)
			if !d.OK() || d.Bundle.Version != c.want {
				t.Fatalf("build %s: %+v", c.build, d)
			}
			if c.variant != "" && (d.Variant != c.variant || d.NativeMin != "2.0.0") {
				t.Fatalf("build %s: variant %q native %q", c.build, d.Variant, d.NativeMin)
			}
		}
	}
}

func TestNativeGateIndexErrors(t *testing.T) {
	for _, g := range []*NativeGate{
		{MinBuild: "x"},
		{MinBuild: "2.0.0", Below: []NativeStep{{Bundle: "9.9.9"}}},
		{MinBuild: "2.0.0", Below: []NativeStep{{Bundle: "1.0.0", MinBuild: "nope"}}},
	} {
		app := &App{ID: "com.example.app", Bundles: []*Bundle{{Version: "1.0.0", SHA256: "a"}, {Version: "2.0.0", SHA256: "b"}},
			Channels: []*Channel{{Name: "p", Bundle: "2.0.0", NativeGate: g}}}
		s := &Snapshot{Format: FormatVersion, Rev: 1, Apps: []*App{app}}
		if err := s.Index(nil); err == nil {
			t.Fatalf("gate %+v accepted", g)
		}
	}
}

func BenchmarkResolveNativeGate(b *testing.B) {
	s := nativeSnapshot(b, nil)
	r := baseReq()
	r.VersionBuild = "1.1.0"
	r.Validate()
	b.ReportAllocs()
	for b.Loop() {
		if d := Resolve(s, &r); !d.OK() {
			b.Fatal(d.Code)
		}
	}
}
