package snapshot

import (
	"testing"

	"github.com/Masterminds/semver/v3"
)

func TestParseVersion(t *testing.T) {
	good := map[string]Version{
		"1.2.3":             {Major: 1, Minor: 2, Patch: 3},
		"v1.2.3":            {Major: 1, Minor: 2, Patch: 3},
		"2":                 {Major: 2},
		"2.1":               {Major: 2, Minor: 1},
		"1.0.0-beta.1":      {Major: 1, Pre: "beta.1"},
		"1.0.0-rc.1+build5": {Major: 1, Pre: "rc.1", Build: "build5"},
		"1.0.0+meta":        {Major: 1, Build: "meta"},
		"10.20.30":          {Major: 10, Minor: 20, Patch: 30},
	}
	for in, want := range good {
		got, ok := ParseVersion(in)
		if !ok || got != want {
			t.Errorf("ParseVersion(%q) = %+v %v, want %+v", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "builtin", "1.2.3.4", "01.2.3", "1..2", "1.2.", "1.2.3-", "1.2.3+", "1.2.3-01", "1.2.3-a..b", "1.2.x", "1.2.3-é", "-1.2.3"} {
		if v, ok := ParseVersion(bad); ok {
			t.Errorf("ParseVersion(%q) = %+v, want failure", bad, v)
		}
	}
}

// TestCompareAgainstMasterminds checks precedence against a well-kept semver
// library on every pair of a list ordered by hand.
func TestCompareAgainstMasterminds(t *testing.T) {
	list := []string{"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0", "10.0.0"}
	for i, a := range list {
		for j, b := range list {
			va, _ := ParseVersion(a)
			vb, _ := ParseVersion(b)
			want := semver.MustParse(a).Compare(semver.MustParse(b))
			got := va.Compare(vb)
			if got != want || got != cmpInt(i, j) {
				t.Errorf("Compare(%s, %s) = %d, masterminds %d, order %d", a, b, got, want, cmpInt(i, j))
			}
		}
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"1.2.3", "v1", "1.0.0-rc.1+b", "x", "1.2.3-0a"} {
		f.Add(s, "1.0.0")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		va, oka := ParseVersion(a)
		vb, okb := ParseVersion(b)
		if !oka || !okb {
			return
		}
		if va.Compare(vb) != -vb.Compare(va) {
			t.Fatalf("asymmetric: %q %q", a, b)
		}
		if va.Compare(va) != 0 {
			t.Fatalf("not reflexive: %q", a)
		}
	})
}

func BenchmarkParseVersion(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ParseVersion("1.22.333-beta.4+build")
	}
}
