// Package native records which native Capacitor packages a web bundle was
// built against and compares two such records: the most common cause of a
// crash after an over-the-air update is a bundle that calls a native plugin
// (or a plugin version) that the installed app binary does not contain.
//
// The CLI scans the app's package.json and node_modules at upload (Scan);
// the origin stores the list with the bundle and compares it with the
// bundle a channel serves (Compare) before it lets a bundle in front of
// that channel's devices. The rule is Capgo's (`bundle compatibility`):
// every native package of the new bundle must be present, at the same
// version, in the bundle the devices run; a package the new bundle no
// longer uses is harmless.
package native

import (
	"fmt"
	"sort"
	"strings"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// Package is one native dependency of a bundle: its npm name and version
// (the installed version when node_modules has it, else the range the
// app's package.json declares).
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Limits on a stored list, checked by the origin at upload.
const (
	MaxPackages    = 500
	MaxNameLen     = 214 // npm's limit
	MaxVersionLen  = 128
	MaxEncodedSize = 64 << 10
)

// Validate checks a list sent with an upload.
func Validate(pkgs []Package) error {
	if len(pkgs) > MaxPackages {
		return fmt.Errorf("%d native packages: at most %d", len(pkgs), MaxPackages)
	}
	seen := make(map[string]bool, len(pkgs))
	for _, p := range pkgs {
		if p.Name == "" || len(p.Name) > MaxNameLen || strings.ContainsAny(p.Name, " \t\r\n") {
			return fmt.Errorf("native package name %q: want an npm package name", p.Name)
		}
		if p.Version == "" || len(p.Version) > MaxVersionLen {
			return fmt.Errorf("native package %s: version %q: want 1-%d bytes", p.Name, p.Version, MaxVersionLen)
		}
		if seen[p.Name] {
			return fmt.Errorf("native package %s listed twice", p.Name)
		}
		seen[p.Name] = true
	}
	return nil
}

// Sorted returns pkgs ordered by name (a copy).
func Sorted(pkgs []Package) []Package {
	out := append([]Package(nil), pkgs...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Change kinds of a package between the channel's bundle and the new one.
const (
	Same    = "same"
	Added   = "added"   // in the new bundle only: the installed binary lacks it
	Removed = "removed" // in the channel's bundle only: harmless
	Changed = "changed" // versions differ
)

// Verdicts.
const (
	Compatible   = "compatible"
	Incompatible = "incompatible"
	// Unknown: one of the two bundles was uploaded without its native
	// packages (an older CLI, --no-native-check, or the channel serves no
	// bundle yet): nothing to compare; assignment is allowed.
	Unknown = "unknown"
)

// Diff is one package's comparison.
type Diff struct {
	Name string `json:"name"`
	// Change is same, added, removed or changed.
	Change string `json:"change"`
	// Current is the version in the channel's bundle, New in the new one.
	Current string `json:"current,omitempty"`
	New     string `json:"new,omitempty"`
	// Bump, for a change: major, minor, patch, prerelease or downgrade when
	// both versions read as semver (a range's operator ignored), else
	// "other".
	Bump string `json:"bump,omitempty"`
	// Compatible: this package does not stop the new bundle.
	Compatible bool `json:"compatible"`
}

// Report compares a bundle's native packages with the channel's bundle's.
type Report struct {
	Verdict string `json:"verdict"`
	Reason  string `json:"reason,omitempty"` // for unknown
	Diffs   []Diff `json:"packages"`
}

// Compatible reports whether the verdict lets the bundle through
// (compatible or unknown).
func (r Report) Compatible() bool { return r.Verdict != Incompatible }

// Blocking lists the packages that make the report incompatible.
func (r Report) Blocking() []Diff {
	var out []Diff
	for _, d := range r.Diffs {
		if !d.Compatible {
			out = append(out, d)
		}
	}
	return out
}

// Summary is a one-line description of the blocking packages.
func (r Report) Summary() string {
	var parts []string
	for _, d := range r.Blocking() {
		switch d.Change {
		case Added:
			parts = append(parts, fmt.Sprintf("%s %s added", d.Name, d.New))
		case Changed:
			parts = append(parts, fmt.Sprintf("%s %s → %s (%s)", d.Name, d.Current, d.New, d.Bump))
		}
	}
	return strings.Join(parts, "; ")
}

// Compare compares the native packages of a new bundle (next) with those
// of the bundle the channel serves (current). A nil list is unknown.
func Compare(next, current []Package) Report {
	switch {
	case next == nil:
		return Report{Verdict: Unknown, Reason: "the bundle was uploaded without its native packages", Diffs: []Diff{}}
	case current == nil:
		return Report{Verdict: Unknown, Reason: "the channel's bundle has no native packages recorded", Diffs: []Diff{}}
	}
	cur := make(map[string]string, len(current))
	for _, p := range current {
		cur[p.Name] = p.Version
	}
	r := Report{Verdict: Compatible, Diffs: []Diff{}}
	inNext := make(map[string]bool, len(next))
	for _, p := range next {
		inNext[p.Name] = true
		d := Diff{Name: p.Name, New: p.Version}
		cv, ok := cur[p.Name]
		switch {
		case !ok:
			d.Change = Added
		case cv == p.Version:
			d.Change, d.Current, d.Compatible = Same, cv, true
		default:
			d.Change, d.Current, d.Bump = Changed, cv, Bump(cv, p.Version)
		}
		if !d.Compatible {
			r.Verdict = Incompatible
		}
		r.Diffs = append(r.Diffs, d)
	}
	for _, p := range current {
		if !inNext[p.Name] {
			r.Diffs = append(r.Diffs, Diff{Name: p.Name, Change: Removed, Current: p.Version, Compatible: true})
		}
	}
	sort.Slice(r.Diffs, func(i, j int) bool { return r.Diffs[i].Name < r.Diffs[j].Name })
	return r
}

// Bump classifies the change from version a to b.
func Bump(a, b string) string {
	va, oka := snapshot.ParseVersion(stripRange(a))
	vb, okb := snapshot.ParseVersion(stripRange(b))
	switch {
	case !oka || !okb:
		return "other"
	case vb.Compare(va) < 0:
		return "downgrade"
	case va.Major != vb.Major:
		return "major"
	case va.Minor != vb.Minor:
		return "minor"
	case va.Patch != vb.Patch:
		return "patch"
	case va.Pre != vb.Pre:
		return "prerelease"
	}
	return "other" // same precedence, different text (build metadata, range operator)
}

// stripRange drops a simple range's operator: "^6.0.2" → "6.0.2".
func stripRange(v string) string {
	v = strings.TrimSpace(v)
	return strings.TrimLeft(v, "^~=>< ")
}
