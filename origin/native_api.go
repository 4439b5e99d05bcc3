package origin

// Native compatibility (issue 20): the compatibility report of a bundle
// against a channel, and the check that refuses to put an incompatible
// bundle in front of a channel's devices (channel set, upload --channel,
// rollout set, A/B arms) unless it is forced or restricted to devices with
// a native build that carries what it needs (min_native_build).

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/native"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// CodeIncompatibleNative is the 409 of an assignment refused by the check.
const CodeIncompatibleNative = "incompatible_native"

// nativeReport compares pkgs, the native packages of bundle version, with
// those of the bundle channel serves. A missing channel is the store's
// error (unknown_channel).
func (s *Server) nativeReport(ctx context.Context, appID, channel, version string, pkgs []native.Package) (api.Compatibility, error) {
	out := api.Compatibility{App: appID, Bundle: version, Channel: channel}
	ch, err := s.store.GetChannel(ctx, appID, channel)
	if err != nil {
		return out, err
	}
	out.ChannelBundle = ch.Bundle
	if ch.NativeGate != nil {
		out.MinNativeBuild = ch.NativeGate.MinBuild
	}
	switch ch.Bundle {
	case "":
		out.Report = native.Report{Verdict: native.Unknown, Reason: "the channel serves no bundle yet", Diffs: []native.Diff{}}
		return out, nil
	case snapshot.BuiltinVersion:
		out.Report = native.Report{Verdict: native.Unknown, Reason: "the channel serves the store build (builtin): its native packages are the binary's", Diffs: []native.Diff{}}
		return out, nil
	}
	cur, err := s.store.GetBundle(ctx, appID, ch.Bundle)
	if err != nil {
		return out, err
	}
	out.Report = native.Compare(pkgs, cur.NativePackages)
	return out, nil
}

// checkNative refuses (409 incompatible_native, with the report as
// details) to put bundle version, whose native packages are pkgs, in front
// of channel's devices when they are incompatible with the channel's
// bundle. It passes when forced, when the assignment is restricted by a
// min native build, when the channel does not exist yet (nothing runs
// there), and when either side's packages are unknown.
func (s *Server) checkNative(ctx context.Context, appID, channel, version string, pkgs []native.Package, force bool, minNative *string) error {
	if force || version == "" || version == snapshot.BuiltinVersion || minNative != nil && *minNative != "" {
		return nil
	}
	rep, err := s.nativeReport(ctx, appID, channel, version, pkgs)
	var inv *store.InvalidError
	if errors.As(err, &inv) && inv.Code == store.CodeUnknownChannel {
		return nil
	}
	if err != nil {
		return storeErr(err, appID)
	}
	if rep.ChannelBundle == version || rep.Compatible() {
		return nil
	}
	e := errf(http.StatusConflict, CodeIncompatibleNative,
		"bundle %s needs native code that channel %s's bundle %s lacks: %s. Ship it in a native build first, then restrict the bundle to that build with --min-native-build BUILD (API: min_native_build), or override with --force",
		version, channel, rep.ChannelBundle, rep.Summary())
	e.Details = rep
	return e
}

// checkNativeVersion is checkNative for a stored bundle.
func (s *Server) checkNativeVersion(ctx context.Context, appID, channel, version string, force bool, minNative *string) error {
	if force || version == "" || version == snapshot.BuiltinVersion || minNative != nil && *minNative != "" {
		return nil
	}
	b, err := s.store.GetBundle(ctx, appID, version)
	if err != nil {
		return nil // the change itself reports a missing bundle
	}
	return s.checkNative(ctx, appID, channel, version, b.NativePackages, false, nil)
}

// getCompatibility is GET /api/v1/apps/{app}/bundles/{version}/compatibility?channel=C.
func (s *Server) getCompatibility(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	channel := r.URL.Query().Get("channel")
	if !snapshot.ValidChannelName(channel) {
		return errf(http.StatusBadRequest, "invalid_channel_name", "channel %q: pass ?channel=NAME (1-64 letters, digits, '.', '_' or '-')", channel)
	}
	ctx := r.Context()
	b, err := s.store.GetBundle(ctx, appID, r.PathValue("version"))
	if err != nil {
		return lifecycleErr(err, appID)
	}
	rep, err := s.nativeReport(ctx, appID, channel, b.Version, b.NativePackages)
	if err != nil {
		return storeErr(err, appID)
	}
	gate := rep.MinNativeBuild
	if v := r.URL.Query().Get("min_native_build"); v != "" {
		if !snapshot.ValidMinNativeBuild(v) {
			return errf(http.StatusBadRequest, "invalid_min_native_build", "min_native_build %q: want a semantic version like 1.5.0", v)
		}
		gate = v
	}
	if rep.Devices, err = s.deviceBuilds(ctx, appID, channel, gate); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

// compatibilityWindow: the devices a compatibility report counts checked
// in within it (the device inventory keeps them for --device-retention).
const compatibilityWindow = 30 * 24 * time.Hour

// deviceBuilds counts the native builds channel's devices run and how many
// of them a bundle gated at gate would reach (the edge's comparison). Only
// the 1,000 most common builds are judged (device ids and builds are
// whatever devices send): the devices of rarer ones count in Total only.
func (s *Server) deviceBuilds(ctx context.Context, appID, channel, gate string) (*api.DeviceBuilds, error) {
	since := time.Now().Add(-compatibilityWindow)
	builds, total, err := s.events.NativeBuilds(ctx, appID, channel, since.UnixMilli(), 1000)
	if err != nil {
		return nil, err
	}
	out := &api.DeviceBuilds{SinceDays: int(compatibilityWindow / (24 * time.Hour)), Total: total, MinNativeBuild: gate, Builds: []api.BuildShare{}}
	for _, b := range builds {
		reached := snapshot.MeetsNativeBuild(b.Build, gate)
		if reached {
			out.Reached += b.Devices
		}
		if len(out.Builds) < 20 {
			out.Builds = append(out.Builds, api.BuildShare{Build: b.Build, Devices: b.Devices, Reached: reached})
		}
	}
	return out, nil
}

// parseNativePackages reads an upload's native_packages query parameter:
// absent is unknown (nil), else a JSON array of {name, version}.
func parseNativePackages(v string, present bool) ([]native.Package, error) {
	if !present {
		return nil, nil
	}
	if len(v) > native.MaxEncodedSize {
		return nil, errf(http.StatusBadRequest, "invalid_native_packages", "native_packages: at most %d bytes", native.MaxEncodedSize)
	}
	pkgs := []native.Package{}
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pkgs); err != nil {
		return nil, errf(http.StatusBadRequest, "invalid_native_packages", "native_packages: want a JSON array of {\"name\", \"version\"}: %v", err)
	}
	if err := native.Validate(pkgs); err != nil {
		return nil, errf(http.StatusBadRequest, "invalid_native_packages", "native_packages: %v", err)
	}
	return native.Sorted(pkgs), nil
}

// minNativeParam reads an optional min_native_build query parameter.
func minNativeParam(q map[string][]string) (*string, error) {
	vs, ok := q["min_native_build"]
	if !ok {
		return nil, nil
	}
	v := vs[0]
	if v != "" && !snapshot.ValidMinNativeBuild(v) {
		return nil, errf(http.StatusBadRequest, store.CodeInvalidMinNativeBuild, "min_native_build %q: want the semantic version of a native build, like 2.1.0", v)
	}
	return &v, nil
}

func boolParam(q map[string][]string, name string) bool {
	vs := q[name]
	return len(vs) > 0 && (vs[0] == "1" || vs[0] == "true")
}
