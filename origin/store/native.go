package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// CodeInvalidMinNativeBuild refuses a min native build that is not semver.
const CodeInvalidMinNativeBuild = "invalid_min_native_build"

func checkMinNative(v *string) error {
	if v != nil && *v != "" && !snapshot.ValidMinNativeBuild(*v) {
		return invalid(CodeInvalidMinNativeBuild, "min native build %q: want the semantic version of a native build, like 2.1.0", *v)
	}
	return nil
}

// nextGate is a channel's native-build gate once its bundle moves from
// prev (gated by prevGate) to next, with min the requested min native
// build (nil: not given).
//
//   - The store build, or no bundle, runs on every binary: no gate.
//   - min "" removes the gate.
//   - min given: next needs that build; devices below it get prev (with
//     prev's own gate), then what prev's gate gave them.
//   - min not given, same bundle: the gate stays.
//   - min not given, another bundle: it was found compatible with prev (or
//     the operator forced it), so it needs what prev needed: the gate
//     stays — unless next is one of the gate's earlier bundles, whose own
//     gate comes back.
func nextGate(prev string, prevGate *snapshot.NativeGate, next string, min *string) (*snapshot.NativeGate, error) {
	if err := checkMinNative(min); err != nil {
		return nil, err
	}
	if next == "" || next == snapshot.BuiltinVersion {
		return nil, nil
	}
	switch {
	case min != nil && *min == "":
		return nil, nil
	case min == nil && next == prev:
		return prevGate, nil
	case min == nil:
		if prevGate == nil {
			return nil, nil
		}
		for i, st := range prevGate.Below {
			if st.Bundle == next {
				if st.MinBuild == "" {
					return nil, nil
				}
				return &snapshot.NativeGate{MinBuild: st.MinBuild, Below: append([]snapshot.NativeStep(nil), prevGate.Below[i+1:]...)}, nil
			}
		}
		return prevGate, nil
	case next == prev:
		g := &snapshot.NativeGate{MinBuild: *min}
		if prevGate != nil {
			g.Below = prevGate.Below
		}
		return trimGate(g), nil
	}
	g := &snapshot.NativeGate{MinBuild: *min}
	if prev != "" {
		st := snapshot.NativeStep{Bundle: prev}
		if prevGate != nil {
			st.MinBuild = prevGate.MinBuild
		}
		g.Below = append(g.Below, st)
		if prevGate != nil {
			g.Below = append(g.Below, prevGate.Below...)
		}
	}
	return trimGate(g), nil
}

// trimGate drops the steps no device below the gate can reach (gated at
// or above the gate's own build, or after an ungated step, or naming the
// same bundle twice) and keeps at most MaxNativeSteps.
func trimGate(g *snapshot.NativeGate) *snapshot.NativeGate {
	min, _ := snapshot.ParseVersion(g.MinBuild)
	var out []snapshot.NativeStep
	seen := map[string]bool{}
	for _, st := range g.Below {
		if seen[st.Bundle] {
			continue
		}
		if st.MinBuild != "" {
			if v, ok := snapshot.ParseVersion(st.MinBuild); ok && v.Compare(min) >= 0 {
				continue
			}
		}
		seen[st.Bundle] = true
		out = append(out, st)
		if st.MinBuild == "" || len(out) == snapshot.MaxNativeSteps {
			break
		}
	}
	g.Below = out
	return g
}

func gateJSON(g *snapshot.NativeGate) any {
	if g == nil {
		return nil
	}
	b, _ := json.Marshal(g)
	return string(b)
}

func saveGate(ctx context.Context, tx *Tx, appID, name string, g *snapshot.NativeGate) error {
	_, err := tx.ExecContext(ctx, `UPDATE channels SET native_gate = ?, updated_at = ? WHERE app_id = ? AND name = ?`,
		gateJSON(g), time.Now().Unix(), appID, name)
	return err
}

// GetBundle returns one bundle; an *InvalidError with CodeBundleNotFound
// when the app has no such bundle, ErrNotFound when there is no app.
func (s *Store) GetBundle(ctx context.Context, appID, version string) (Bundle, error) {
	if _, err := s.GetApp(ctx, appID); err != nil {
		return Bundle{}, err
	}
	bs, err := listBundles(ctx, s.db, `WHERE app_id = ? AND version = ?`, appID, version)
	if err != nil {
		return Bundle{}, err
	}
	if len(bs) == 0 {
		return Bundle{}, invalid(CodeBundleNotFound, "app %s has no bundle %q", appID, version)
	}
	return bs[0], nil
}

// GetChannel returns one channel; an *InvalidError with
// CodeUnknownChannel when the app has no such channel.
func (s *Store) GetChannel(ctx context.Context, appID, name string) (Channel, error) {
	if _, err := s.GetApp(ctx, appID); err != nil {
		return Channel{}, err
	}
	chs, err := listChannels(ctx, s.db, `WHERE app_id = ? AND name = ?`, appID, name)
	if err != nil {
		return Channel{}, err
	}
	if len(chs) == 0 {
		return Channel{}, invalid(CodeUnknownChannel, "app %s has no channel %q", appID, name)
	}
	return chs[0], nil
}
