package snapshot

import (
	"testing"

	"github.com/Masterminds/semver/v3"
)

func TestConstraint(t *testing.T) {
	cases := []struct {
		rng string
		in  []string
		out []string
	}{
		{">=1.2.0 <2.0.0", []string{"1.2.0", "1.9.9"}, []string{"1.1.9", "2.0.0"}},
		{">= 1.2.0, < 2.0.0", []string{"1.2.0"}, []string{"2.0.0"}},
		{"^1.4", []string{"1.4.0", "1.99.0"}, []string{"1.3.9", "2.0.0"}},
		{"^0.2.3", []string{"0.2.3", "0.2.9"}, []string{"0.3.0", "0.2.2"}},
		{"~2.1.3", []string{"2.1.3", "2.1.9"}, []string{"2.2.0", "2.1.2"}},
		{"1.x", []string{"1.0.0", "1.5.2"}, []string{"2.0.0", "0.9.0"}},
		{"1.2", []string{"1.2.0", "1.2.7"}, []string{"1.3.0"}},
		{"*", []string{"0.0.1", "9.9.9"}, nil},
		{"<1.0.0 || >=3.0.0", []string{"0.5.0", "3.0.0"}, []string{"1.0.0", "2.9.9"}},
		{"!=1.2.3", []string{"1.2.4"}, []string{"1.2.3"}},
		{">1.2", []string{"1.3.0"}, []string{"1.2.9"}},
		{"<=1.2", []string{"1.2.9"}, []string{"1.3.0"}},
		{"=1.0.0", []string{"1.0.0"}, []string{"1.0.1"}},
	}
	for _, c := range cases {
		k, err := ParseConstraint(c.rng)
		if err != nil {
			t.Fatalf("%q: %v", c.rng, err)
		}
		for _, v := range c.in {
			pv, _ := ParseVersion(v)
			if !k.Check(pv) {
				t.Errorf("%q should contain %s", c.rng, v)
			}
		}
		for _, v := range c.out {
			pv, _ := ParseVersion(v)
			if k.Check(pv) {
				t.Errorf("%q should not contain %s", c.rng, v)
			}
		}
	}
	for _, bad := range []string{"", ">=", "1.2.3.4", ">=abc", "~>1", "1.2.3 ||", "!=1.x", "@1.0.0",
		// Wildcard forms: at most three parts, each a number or a wildcard
		// ("....X" used to panic, found by FuzzParseConstraint).
		"....X", "1.2.3.x", "1.2.3.4.x", ".x", "1..x", "a.x", "01.x", "1.x.foo", "^1.2.3.*", "~a.b.x"} {
		if _, err := ParseConstraint(bad); err == nil {
			t.Errorf("ParseConstraint(%q) accepted", bad)
		}
	}
}

// TestConstraintAgainstMasterminds compares release-version ranges with a
// well-kept library on a grid of versions.
func TestConstraintAgainstMasterminds(t *testing.T) {
	ranges := []string{">=1.2.0 <2.0.0", "^1.4", "^0.2.3", "~2.1.3", "1.x", "<1.0.0 || >=3.0.0", ">1.2", "<=1.2", "~1", "^0.0.3"}
	for _, r := range ranges {
		ours, err := ParseConstraint(r)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := semver.NewConstraint(r)
		if err != nil {
			t.Fatal(err)
		}
		for maj := uint64(0); maj < 4; maj++ {
			for min := uint64(0); min < 5; min++ {
				for pat := uint64(0); pat < 5; pat++ {
					v := Version{Major: maj, Minor: min, Patch: pat}
					mv := semver.New(maj, min, pat, "", "")
					if ours.Check(v) != theirs.Check(mv) {
						t.Errorf("%q on %d.%d.%d: ours %v, masterminds %v", r, maj, min, pat, ours.Check(v), theirs.Check(mv))
					}
				}
			}
		}
	}
}

func FuzzParseConstraint(f *testing.F) {
	for _, s := range []string{">=1.2.0 <2.0.0", "^1", "1.x || 3.*", "~0.0.1"} {
		f.Add(s, "1.2.3")
	}
	f.Fuzz(func(t *testing.T, rng, ver string) {
		c, err := ParseConstraint(rng)
		if err != nil {
			return
		}
		if v, ok := ParseVersion(ver); ok {
			c.Check(v)
		}
	})
}
