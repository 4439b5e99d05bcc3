package snapshot

import "fmt"

// Native-build gates (issue 20, native compatibility). A bundle that needs
// a native plugin, or a native plugin version, that an installed app binary
// lacks crashes that binary; the operator may still put such a bundle on a
// channel by naming the first native build that carries what it needs
// (--min-native-build). Devices whose version_build is below it keep what
// they had: the channel's earlier bundle, or "no new version".
//
// The gate of the channel's own bundle is Channel.NativeGate; a rollout or
// an A/B arm carries its own MinNativeBuild, and a device below it gets the
// channel's bundle (itself subject to the channel's gate).

// NativeGate restricts the channel's bundle to devices whose native build
// (version_build) is at least MinBuild.
type NativeGate struct {
	MinBuild string `json:"min_build"`
	// Below is what a device under MinBuild gets: the first step whose
	// MinBuild the device meets (empty: every device), newest first — the
	// bundles the channel served before, each with its own gate. No step
	// matching: the device is told there is no new version.
	Below []NativeStep `json:"below,omitempty"`

	min Version
}

// NativeStep is one earlier bundle of a gated channel.
type NativeStep struct {
	Bundle   string `json:"bundle"`
	MinBuild string `json:"min_build,omitempty"`

	min    Version
	gated  bool
	bundle *Bundle
}

// MaxNativeSteps bounds NativeGate.Below: older steps are dropped.
const MaxNativeSteps = 8

// VariantBelowNative: the device's native build is below the min native
// build of the bundle it would have got (Decision.NativeMin names it); it
// got the channel's earlier bundle, or no new version.
const VariantBelowNative = "below_native_build"

// ValidMinNativeBuild reports whether v can be a min native build: a
// semantic version, as devices report version_build.
func ValidMinNativeBuild(v string) bool {
	_, ok := ParseVersion(v)
	return ok && len(v) <= 64
}

func (g *NativeGate) index(a *App) error {
	var ok bool
	if g.min, ok = ParseVersion(g.MinBuild); !ok {
		return fmt.Errorf("native gate: min_build %q is not a semantic version", g.MinBuild)
	}
	for i := range g.Below {
		st := &g.Below[i]
		if st.Bundle == BuiltinVersion {
			st.bundle = builtinBundle
		} else if st.bundle = a.bundles[st.Bundle]; st.bundle == nil {
			return fmt.Errorf("native gate: unknown bundle %q", st.Bundle)
		}
		st.gated = st.MinBuild != ""
		if st.gated {
			if st.min, ok = ParseVersion(st.MinBuild); !ok {
				return fmt.Errorf("native gate: bundle %s: min_build %q is not a semantic version", st.Bundle, st.MinBuild)
			}
		}
	}
	return nil
}

// below returns the bundle for a device whose build is under the gate
// (nil: none of the earlier bundles suits it either).
func (g *NativeGate) below(build Version) *Bundle {
	for i := range g.Below {
		st := &g.Below[i]
		if !st.gated || build.Compare(st.min) >= 0 {
			return st.bundle
		}
	}
	return nil
}

// parseMinNative parses an optional min native build of a rollout or arm.
func parseMinNative(what, v string) (Version, bool, error) {
	if v == "" {
		return Version{}, false, nil
	}
	m, ok := ParseVersion(v)
	if !ok {
		return Version{}, false, fmt.Errorf("%s: min_native_build %q is not a semantic version", what, v)
	}
	return m, true, nil
}

// MeetsNativeBuild reports whether a device reporting version_build build
// gets a bundle gated at minBuild ("" : no gate), as the edge decides:
// a build that does not parse is below every gate.
func MeetsNativeBuild(build, minBuild string) bool {
	if minBuild == "" {
		return true
	}
	min, ok := ParseVersion(minBuild)
	if !ok {
		return false
	}
	v, ok := ParseVersion(coerceBuild(build))
	return ok && v.Compare(min) >= 0
}
