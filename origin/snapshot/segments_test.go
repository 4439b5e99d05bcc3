package snapshot

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
)

func randomDevice() string {
	var u [16]byte
	rand.Read(u[:])
	return FormatDeviceID(u)
}

func ptrBool(b bool) *bool { return &b }

// segmented builds an app with production (default), beta (self-set),
// enterprise (private) channels and the given rules, overrides, rollout.
func segmented(t testing.TB, mod func(a *App)) *Snapshot {
	t.Helper()
	ch := func(id int64, name, bundle string, public, selfSet bool) *Channel {
		return &Channel{ID: id, Name: name, Bundle: bundle, Public: public, IOS: true, Android: true, Electron: true,
			AllowDeviceSelfSet: selfSet, AllowEmulator: true, AllowDev: true, AllowProd: true, AllowDevice: true, DisableAutoUpdate: DisableNone}
	}
	app := &App{ID: "com.example.app",
		Bundles:  []*Bundle{{Version: "1.0.0", SHA256: "a"}, {Version: "1.1.0", SHA256: "b"}, {Version: "1.2.0", SHA256: "c"}, {Version: "2.0.0", SHA256: "d"}},
		Channels: []*Channel{ch(1, "production", "1.1.0", true, false), ch(2, "beta", "1.2.0", false, true), ch(3, "enterprise", "1.0.0", false, false)},
	}
	if mod != nil {
		mod(app)
	}
	s := &Snapshot{Format: FormatVersion, Rev: 1, Apps: []*App{app}}
	if err := s.Index(testShards); err != nil {
		t.Fatal(err)
	}
	return s
}

// testShards holds every override shard tests build.
var testShards = MapShards{}

// pin sets the app's overrides to the given device → channel pairs.
func pin(a *App, entries map[[16]byte]string) {
	hashes, shards, _ := ShardOverrides(entries)
	for h, sh := range shards {
		testShards[h] = sh
	}
	a.OverrideShards = hashes
}

func pinOne(channel string, id string) func(a *App) {
	return func(a *App) {
		u, _ := ParseDeviceID(id)
		pin(a, map[[16]byte]string{u: channel})
	}
}

func resolve(t testing.TB, s *Snapshot, mod func(r *Request)) Decision {
	t.Helper()
	r := Request{AppID: "com.example.app", DeviceID: dev, VersionName: "1.0.0", VersionBuild: "1.0.0",
		Platform: "android", PluginVersion: "7.1.0", IsProd: true, CustomID: "acme-42"}
	if mod != nil {
		mod(&r)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	return Resolve(s, &r)
}

func TestResolutionOrder(t *testing.T) {
	enterpriseRule := &Rule{Name: "acme", Channel: "enterprise", CustomIDPrefix: "acme-"}
	cases := []struct {
		name    string
		mod     func(a *App)
		req     func(r *Request)
		rule    string
		channel string
		segment string
	}{
		{"default", nil, nil, RuleDefault, "production", ""},
		{"self-assigned beats segment", func(a *App) { a.Rules = []*Rule{enterpriseRule} }, func(r *Request) { r.DefaultChannel = "beta" }, RuleSelfAssigned, "beta", ""},
		{"override beats self-assigned", pinOne("enterprise", dev), func(r *Request) { r.DefaultChannel = "beta" }, RuleOverride, "enterprise", ""},
		{"override with upper-case device id", pinOne("enterprise", dev), func(r *Request) { r.DeviceID = "00009A6B-EEFE-490A-9C60-8E965132AE51" }, RuleOverride, "enterprise", ""},
		{"segment by custom id prefix", func(a *App) { a.Rules = []*Rule{enterpriseRule} }, nil, RuleSegment, "enterprise", "acme"},
		// A current plugin keeps what getChannel reported (the default
		// channel) as its defaultChannel: that is no choice, segments apply.
		{"defaultChannel naming the default channel is no choice", func(a *App) { a.Rules = []*Rule{enterpriseRule} }, func(r *Request) { r.DefaultChannel = "production" }, RuleSegment, "enterprise", "acme"},
		{"defaultChannel naming the default channel, no segment", nil, func(r *Request) { r.DefaultChannel = "production" }, RuleDefault, "production", ""},
		{"segment miss falls to default", func(a *App) { a.Rules = []*Rule{enterpriseRule} }, func(r *Request) { r.CustomID = "other" }, RuleDefault, "production", ""},
		{"first matching segment wins", func(a *App) {
			a.Rules = []*Rule{{Name: "ios-only", Channel: "beta", Platforms: []string{"ios"}}, {Name: "old-native", Channel: "enterprise", VersionBuild: "<2.0.0"}}
		}, nil, RuleSegment, "enterprise", "old-native"},
		{"platform predicate", func(a *App) { a.Rules = []*Rule{{Name: "ios", Channel: "beta", Platforms: []string{"ios"}}} }, func(r *Request) { r.Platform = "ios" }, RuleSegment, "beta", "ios"},
		{"native range miss", func(a *App) { a.Rules = []*Rule{{Name: "new", Channel: "beta", VersionBuild: ">=2.0.0"}} }, nil, RuleDefault, "production", ""},
		{"plugin range", func(a *App) { a.Rules = []*Rule{{Name: "p7", Channel: "beta", PluginVersion: "^7"}} }, nil, RuleSegment, "beta", "p7"},
		{"custom id list", func(a *App) { a.Rules = []*Rule{{Name: "vip", Channel: "beta", CustomIDs: []string{"x", "acme-42"}}} }, nil, RuleSegment, "beta", "vip"},
		{"emulator flag", func(a *App) { a.Rules = []*Rule{{Name: "emu", Channel: "beta", IsEmulator: ptrBool(true)}} }, func(r *Request) { r.IsEmulator = true }, RuleSegment, "beta", "emu"},
		{"prod flag miss", func(a *App) { a.Rules = []*Rule{{Name: "dev", Channel: "beta", IsProd: ptrBool(false)}} }, nil, RuleDefault, "production", ""},
		{"device id list", func(a *App) { a.Rules = []*Rule{{Name: "qa", Channel: "beta", DeviceIDs: []string{dev}}} }, nil, RuleSegment, "beta", "qa"},
		{"all predicates must hold", func(a *App) {
			a.Rules = []*Rule{{Name: "both", Channel: "beta", Platforms: []string{"android"}, CustomIDPrefix: "zzz"}}
		}, nil, RuleDefault, "production", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := resolve(t, segmented(t, c.mod), c.req)
			if d.Channel == nil || d.Channel.Name != c.channel || d.Rule != c.rule || d.Segment != c.segment {
				t.Fatalf("got channel=%v rule=%q segment=%q code=%q; want %s %s %s", d.Channel, d.Rule, d.Segment, d.Code, c.channel, c.rule, c.segment)
			}
		})
	}
}

// Operator-routed devices (override, segment) may land on a private channel.
func TestPrivateChannelViaOverride(t *testing.T) {
	s := segmented(t, pinOne("enterprise", dev))
	d := resolve(t, s, func(r *Request) { r.VersionName = "0.9.0" })
	if !d.OK() || d.Bundle.Version != "1.0.0" {
		t.Fatalf("%+v", d)
	}
}

func withRollout(bps int, paused bool) func(a *App) {
	return func(a *App) { a.Channels[0].Rollout = &Rollout{ID: "r1", Bundle: "1.2.0", BPS: bps, Paused: paused} }
}

func TestRolloutStates(t *testing.T) {
	b := Bucket("r1", dev)
	cases := []struct {
		name    string
		bps     int
		paused  bool
		current string
		want    string // bundle, or "" for a refusal
		variant string
	}{
		{"in", b + 1, false, "1.0.0", "1.2.0", VariantRollout},
		{"out", b, false, "1.0.0", "1.1.0", VariantChannel},
		{"zero", 0, false, "1.0.0", "1.1.0", VariantChannel},
		{"full", 10000, false, "1.0.0", "1.2.0", VariantRollout},
		{"paused, in bucket, not yet on it: no new device", b + 1, true, "1.0.0", "1.1.0", VariantChannel},
		{"paused, already on rollout bundle: kept", b + 1, true, "1.2.0", "", VariantRolloutKept},
		{"in, already on it", b + 1, false, "1.2.0", "", VariantRollout},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := resolve(t, segmented(t, withRollout(c.bps, c.paused)), func(r *Request) { r.VersionName = c.current })
			if d.Variant != c.variant || d.Bucket != b {
				t.Fatalf("variant %q bucket %d, want %q %d", d.Variant, d.Bucket, c.variant, b)
			}
			if c.want == "" {
				if d.Code != CodeNoNewVersion {
					t.Fatalf("want no_new_version_available, got %+v", d)
				}
				return
			}
			if !d.OK() || d.Bundle.Version != c.want {
				t.Fatalf("got %+v, want %s", d, c.want)
			}
		})
	}
	// Rollback (rollout cleared) and promote (channel bundle = rollout bundle).
	if d := resolve(t, segmented(t, nil), func(r *Request) { r.VersionName = "1.2.0" }); !d.OK() || d.Bundle.Version != "1.1.0" {
		t.Fatalf("after rollback a device on the rollout bundle goes back: %+v", d)
	}
	promoted := segmented(t, func(a *App) { a.Channels[0].Bundle = "1.2.0" })
	if d := resolve(t, promoted, func(r *Request) { r.VersionName = "1.2.0" }); d.Code != CodeNoNewVersion {
		t.Fatalf("after promote: %+v", d)
	}
}

func TestRolloutProperties(t *testing.T) {
	const n = 1000000
	devices := make([]string, n)
	for i := range devices {
		devices[i] = randomDevice()
	}
	// Determinism.
	for _, d := range devices[:1000] {
		if Bucket("r1", d) != Bucket("r1", d) {
			t.Fatal("bucket not deterministic")
		}
	}
	// Distribution at 10.00% and of a 3-arm split; independence of two rollouts.
	var in, both int
	arms := [3]int{}
	for _, d := range devices {
		b1 := Bucket("rollout-a", d)
		if b1 < 1000 {
			in++
			if Bucket("rollout-b", d) < 1000 {
				both++
			}
		}
		switch b := Bucket("split", d); {
		case b < 2000:
			arms[0]++
		case b < 5000:
			arms[1]++
		case b < 10000:
			arms[2]++
		}
	}
	pct := func(k int) float64 { return 100 * float64(k) / n }
	if math.Abs(pct(in)-10) > 0.3 {
		t.Fatalf("10%% rollout took %.3f%%", pct(in))
	}
	for i, want := range []float64{20, 30, 50} {
		if math.Abs(pct(arms[i])-want) > 0.3 {
			t.Fatalf("arm %d took %.3f%%, want %.0f%%", i, pct(arms[i]), want)
		}
	}
	// Independent rollouts: P(in both) ≈ 1% of devices.
	if math.Abs(pct(both)-1) > 0.1 {
		t.Fatalf("devices in two independent 10%% rollouts: %.3f%%, want ~1%%", pct(both))
	}
	// Monotonicity: raising bps never removes a device.
	s5 := segmented(t, withRollout(500, false))
	s25 := segmented(t, withRollout(2500, false))
	for _, d := range devices[:20000] {
		r5 := resolve(t, s5, func(r *Request) { r.DeviceID = d })
		r25 := resolve(t, s25, func(r *Request) { r.DeviceID = d })
		if r5.Variant == VariantRollout && r25.Variant != VariantRollout {
			t.Fatalf("device %s left the rollout when it grew", d)
		}
	}
}

func TestABSplit(t *testing.T) {
	s := segmented(t, func(a *App) {
		a.Channels[0].AB = &ABSplit{ID: "ab1", Arms: []Arm{{Name: "a", Bundle: "1.2.0", BPS: 5000}, {Name: "b", Bundle: "2.0.0", BPS: 5000}}}
	})
	seen := map[string]int{}
	for i := 0; i < 2000; i++ {
		d := resolve(t, s, func(r *Request) { r.DeviceID = randomDevice(); r.VersionBuild = "2.0.0" })
		if d.Variant != VariantAB || !d.OK() {
			t.Fatalf("%+v", d)
		}
		if want := map[string]string{"a": "1.2.0", "b": "2.0.0"}[d.Arm]; d.Bundle.Version != want {
			t.Fatalf("arm %s got %s", d.Arm, d.Bundle.Version)
		}
		seen[d.Arm]++
	}
	if seen["a"] < 800 || seen["b"] < 800 {
		t.Fatalf("arms: %v", seen)
	}
	bad := &Snapshot{Format: FormatVersion, Rev: 1, Apps: []*App{{ID: "com.x.y", Bundles: []*Bundle{{Version: "1.0.0"}},
		Channels: []*Channel{{Name: "p", AB: &ABSplit{ID: "x", Arms: []Arm{{Name: "a", Bundle: "1.0.0", BPS: 6000}, {Name: "b", Bundle: "1.0.0", BPS: 6000}}}}}}}}
	if err := bad.Index(nil); err == nil {
		t.Fatal("arms over 100% accepted")
	}
}

func TestIndexRefusesBadSegments(t *testing.T) {
	for name, mod := range map[string]func(a *App){
		"rule unknown channel":   func(a *App) { a.Rules = []*Rule{{Name: "x", Channel: "nope"}} },
		"rule bad range":         func(a *App) { a.Rules = []*Rule{{Name: "x", Channel: "beta", VersionBuild: ">=banana"}} },
		"rule bad platform":      func(a *App) { a.Rules = []*Rule{{Name: "x", Channel: "beta", Platforms: []string{"windows"}}} },
		"rule bad device":        func(a *App) { a.Rules = []*Rule{{Name: "x", Channel: "beta", DeviceIDs: []string{"nope"}}} },
		"rollout bps":            func(a *App) { a.Channels[0].Rollout = &Rollout{ID: "r", Bundle: "1.2.0", BPS: 10001} },
		"rollout unknown bundle": func(a *App) { a.Channels[0].Rollout = &Rollout{ID: "r", Bundle: "9.9.9", BPS: 1} },
		"override unknown chan":  pinOne("nope", dev),
		"override shard missing": func(a *App) { a.OverrideShards = make([]string, ShardCount); a.OverrideShards[3] = "ab" },
		"override shard count":   func(a *App) { a.OverrideShards = []string{""} },
	} {
		app := segmented(t, nil).Apps[0]
		mod(app)
		s := &Snapshot{Rev: 2, Apps: []*App{app}}
		if err := s.Index(testShards); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// bigSnapshot has n overrides and 50 rules that do not match the benchmark
// device, so Resolve walks all of them.
func bigSnapshot(tb testing.TB, n int) (*Snapshot, []string) {
	ids := make([]string, 0, 1000)
	entries := randomOverrides(n, "beta")
	for d := range entries {
		if len(ids) == 1000 {
			break
		}
		ids = append(ids, FormatDeviceID(d))
	}
	mod := func(a *App) {
		pin(a, entries)
		for i := 0; i < 50; i++ {
			a.Rules = append(a.Rules, &Rule{Name: fmt.Sprintf("r%d", i), Channel: "enterprise",
				Platforms: []string{"ios"}, VersionBuild: ">=3.0.0 <4.0.0", CustomIDPrefix: fmt.Sprintf("tenant-%d-", i)})
		}
		a.Channels[0].Rollout = &Rollout{ID: "r1", Bundle: "1.2.0", BPS: 1000}
	}
	return segmented(tb, mod), ids
}

func BenchmarkResolveSegmented(b *testing.B) {
	s, ids := bigSnapshot(b, 1000000)
	miss := Request{AppID: "com.example.app", DeviceID: dev, VersionName: "1.0.0", VersionBuild: "1.0.0",
		Platform: "android", PluginVersion: "7.1.0", IsProd: true, CustomID: "acme-42"}
	miss.Validate()
	b.Run("default-after-50-rules", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r := miss
			Resolve(s, &r)
		}
	})
	b.Run("override-hit", func(b *testing.B) {
		hit := miss
		hit.DeviceID = ids[7]
		b.ReportAllocs()
		for b.Loop() {
			r := hit
			if d := Resolve(s, &r); d.Rule != RuleOverride {
				b.Fatal(d.Rule)
			}
		}
	})
}

// TestOverrideMemory reports the heap cost of one override.
func TestOverrideMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a million overrides")
	}
	const n = 1000000
	entries := randomOverrides(n, "beta")
	encoded := make([][]byte, 0, ShardCount)
	hashes, _, enc := ShardOverrides(entries)
	for _, b := range enc {
		encoded = append(encoded, b)
	}
	entries = nil
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	shards := MapShards{}
	for _, b := range encoded {
		sh, err := DecodeOverrideShard(b)
		if err != nil {
			t.Fatal(err)
		}
		shards[sha256Hex(b)] = sh
	}
	app := segmented(t, nil).Apps[0]
	app.OverrideShards = hashes
	s := &Snapshot{Format: FormatVersion, Rev: 3, Apps: []*App{app}}
	if err := s.Index(shards); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perOverride := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("edge memory for %d decoded overrides: %.1f bytes per override", app.OverrideCount(), perOverride)
	if app.OverrideCount() != n {
		t.Fatal("overrides lost")
	}
	runtime.KeepAlive(encoded)
}

func randomOverrides(n int, channel string) map[[16]byte]string {
	m := make(map[[16]byte]string, n)
	buf := make([]byte, 16*n)
	rand.Read(buf)
	for i := 0; i < n; i++ {
		m[[16]byte(buf[16*i:])] = channel
	}
	return m
}

func TestShardRoundTrip(t *testing.T) {
	entries := randomOverrides(3000, "beta")
	for d := range entries {
		entries[d] = "enterprise"
		break
	}
	hashes, shards, enc := ShardOverrides(entries)
	total := 0
	for i, h := range hashes {
		if h == "" {
			continue
		}
		sh, err := DecodeOverrideShard(enc[h])
		if err != nil {
			t.Fatal(err)
		}
		if sha256Hex(sh.Encode()) != h || sh.Len() != shards[h].Len() {
			t.Fatalf("shard %d does not round-trip", i)
		}
		total += sh.Len()
	}
	if total != 3000 {
		t.Fatalf("%d devices in shards, want 3000", total)
	}
	for d, ch := range entries {
		h := hashes[ShardOf(d)]
		if got, ok := shards[h].Channel(d); !ok || got != ch {
			t.Fatalf("device %x: %q", d, got)
		}
	}
}

func FuzzDecodeOverrideShard(f *testing.F) {
	_, _, enc := ShardOverrides(randomOverrides(10, "beta"))
	for _, b := range enc {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if sh, err := DecodeOverrideShard(b); err == nil {
			sh.Encode()
		}
	})
}

// FuzzParseDeviceID: the one-pass parse agrees with the plain reading of a
// UUID: 36 bytes, dashes at 8, 13, 18 and 23, hex digits (either case)
// elsewhere, decoded.
func FuzzParseDeviceID(f *testing.F) {
	for _, s := range []string{"00009a6b-eefe-490a-9c60-8e965132ae51", "00009A6B-EEFE-490A-9C60-8E965132AE51",
		"00009a6b-eefe-490a-9c60-8e965132ae5g", "00009a6beefe-490a-9c60-8e965132ae51-", "", "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, ok := ParseDeviceID(s)
		want := len(s) == 36
		var hexText strings.Builder
		for i := 0; want && i < 36; i++ {
			c := s[i]
			if i == 8 || i == 13 || i == 18 || i == 23 {
				want = c == '-'
				continue
			}
			want = strings.IndexByte("0123456789abcdefABCDEF", c) >= 0
			hexText.WriteByte(c)
		}
		if ok != want || ValidDeviceID(s) != want {
			t.Fatalf("%q: ok %v, want %v", s, ok, want)
		}
		if !ok {
			return
		}
		ref, err := hex.DecodeString(hexText.String())
		if err != nil || !bytes.Equal(u[:], ref) {
			t.Fatalf("%q: %x, want %x (%v)", s, u, ref, err)
		}
	})
}
