package snapshot

import (
	"crypto/rand"
	"fmt"
	"testing"
)

// cohortApp gives the app cohorts "power" (bit 3) and "new" (bit 0) with
// the given members, overrides pinned, and a segment on each cohort.
func cohortApp(overrides map[[16]byte]string, members map[[16]byte]uint64) func(a *App) {
	return func(a *App) {
		hashes, shards, enc := ShardEntries(overrides, members)
		for h, sh := range shards {
			// Round trip through the encoding, as an edge does.
			d, err := DecodeOverrideShard(enc[h])
			if err != nil {
				panic(err)
			}
			if d.Len() != sh.Len() {
				panic("pinned count changed by decoding")
			}
			testShards[h] = d
		}
		a.OverrideShards = hashes
		a.Cohorts = []CohortRef{{Name: "new", Bit: 0}, {Name: "power", Bit: 3}}
		a.Rules = []*Rule{
			{Name: "power-users", Channel: "beta", Cohort: "power", Platforms: []string{"android"}},
			{Name: "newcomers", Channel: "enterprise", Cohort: "new"},
		}
	}
}

func TestCohortSegments(t *testing.T) {
	devPower, _ := ParseDeviceID("11111111-0000-4000-8000-000000000001")
	devBoth, _ := ParseDeviceID("22222222-0000-4000-8000-000000000002")
	devPinned, _ := ParseDeviceID("33333333-0000-4000-8000-000000000003")
	members := map[[16]byte]uint64{
		devPower:                     1 << 3,
		devBoth:                      1<<3 | 1,
		devPinned:                    1 << 3,
		CohortKeyOfCustomID("alice"): 1,
	}
	s := segmented(t, cohortApp(map[[16]byte]string{devPinned: "production"}, members))
	cases := []struct {
		dev, custom, platform string
		rule, seg, ch         string
	}{
		{FormatDeviceID(devPower), "", "android", RuleSegment, "power-users", "beta"},
		{FormatDeviceID(devPower), "", "ios", RuleDefault, "", "production"}, // cohort AND platform
		{FormatDeviceID(devBoth), "", "ios", RuleSegment, "newcomers", "enterprise"},
		{FormatDeviceID(devPinned), "", "android", RuleOverride, "", "production"}, // override first
		{dev, "alice", "android", RuleSegment, "newcomers", "enterprise"},          // by custom id
		{dev, "bob", "android", RuleDefault, "", "production"},
	}
	for _, c := range cases {
		d := resolve(t, s, func(r *Request) { r.DeviceID, r.CustomID, r.Platform = c.dev, c.custom, c.platform })
		if d.Rule != c.rule || d.Segment != c.seg || d.Channel == nil || d.Channel.Name != c.ch {
			t.Errorf("%s/%s/%s: got %s %q %v, want %s %q %s", c.dev, c.custom, c.platform, d.Rule, d.Segment, d.Channel, c.rule, c.seg, c.ch)
		}
	}
	app := s.App("com.example.app")
	if app.OverrideCount() != 1 {
		t.Errorf("override count %d, want 1 (cohort entries are not overrides)", app.OverrideCount())
	}
	if !app.InCohort("power", FormatDeviceID(devPower), "") || app.InCohort("new", FormatDeviceID(devPower), "") ||
		!app.InCohort("new", dev, "alice") || app.InCohort("power", dev, "alice") {
		t.Error("InCohort wrong")
	}

	// A rule naming a cohort the app does not have is refused.
	bad := &Snapshot{Format: FormatVersion, Rev: 1, Apps: []*App{{ID: "x", Channels: []*Channel{{Name: "c", IOS: true}},
		Rules: []*Rule{{Name: "r", Channel: "c", Cohort: "ghost"}}}}}
	if err := bad.Index(testShards); err == nil {
		t.Error("unknown cohort accepted")
	}
}

// BenchmarkResolveCohort resolves against an app with a 1,000,000-member
// cohort: the segment naming it is the app's rule; the device sends a custom
// id, so both its keys are looked up.
func BenchmarkResolveCohort(b *testing.B) {
	const n = 1000000
	members := make(map[[16]byte]uint64, n)
	var member [16]byte
	for i := 0; i < n; i++ {
		var u [16]byte
		rand.Read(u[:])
		members[u] = 1 << 5
		member = u
	}
	s := segmented(b, func(a *App) {
		hashes, shards, _ := ShardEntries(nil, members)
		for h, sh := range shards {
			testShards[h] = sh
		}
		a.OverrideShards = hashes
		a.Cohorts = []CohortRef{{Name: "power", Bit: 5}}
		a.Rules = append(a.Rules, &Rule{Name: "power-users", Channel: "beta", Cohort: "power"})
	})
	base := Request{AppID: "com.example.app", DeviceID: FormatDeviceID(member), VersionName: "1.0.0", VersionBuild: "1.0.0",
		Platform: "android", PluginVersion: "7.1.0", IsProd: true, CustomID: "acme-42"}
	base.Validate()
	b.Run("member", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r := base
			if d := Resolve(s, &r); d.Segment != "power-users" {
				b.Fatal(d.Rule, d.Segment)
			}
		}
	})
	b.Run("non-member", func(b *testing.B) {
		miss := base
		miss.DeviceID = dev
		b.ReportAllocs()
		for b.Loop() {
			r := miss
			if d := Resolve(s, &r); d.Rule != RuleDefault {
				b.Fatal(d.Rule)
			}
		}
	})
}

// TestCohortRoutesFleet: in a fleet of 100,000 devices, a segment on a
// cohort of 4,500 of them (the heavy users of store's
// TestCohortRulesFleet) routes exactly its members, through the signed
// override shards the edge fetches, and nobody else.
func TestCohortRoutesFleet(t *testing.T) {
	const fleet = 100_000
	id := func(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i) }
	heavy := func(i int) bool { return i%20 == 0 && i < 90_000 }
	members := map[[16]byte]uint64{}
	for i := 0; i < fleet; i++ {
		if heavy(i) {
			u, ok := ParseDeviceID(id(i))
			if !ok {
				t.Fatal(id(i))
			}
			members[u] = 1 << 3
		}
	}
	s := segmented(t, func(a *App) {
		hashes, shards, _ := ShardEntries(nil, members)
		for h, sh := range shards {
			testShards[h] = sh
		}
		a.OverrideShards = hashes
		a.Cohorts = []CohortRef{{Name: "power", Bit: 3}}
		a.Rules = append(a.Rules, &Rule{Name: "power-users", Channel: "beta", Cohort: "power"})
	})
	routed := 0
	for i := 0; i < fleet; i++ {
		r := Request{AppID: "com.example.app", DeviceID: id(i), VersionName: "1.0.0", VersionBuild: "1.0.0",
			Platform: "android", PluginVersion: "7.1.0", IsProd: true}
		if err := r.Validate(); err != nil {
			t.Fatal(err)
		}
		d := Resolve(s, &r)
		if got := d.Segment == "power-users"; got != heavy(i) {
			t.Fatalf("device %d (%s): segment %q, rule %s; member %v", i, id(i), d.Segment, d.Rule, heavy(i))
		}
		if d.Segment == "power-users" {
			routed++
		}
	}
	if routed != len(members) {
		t.Fatalf("%d devices routed by the cohort, want %d", routed, len(members))
	}
}
