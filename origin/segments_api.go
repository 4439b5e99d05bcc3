package origin

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// storeErr maps a store refusal onto an API error.
func storeErr(err error, appID string) error {
	var inv *store.InvalidError
	switch {
	case errors.Is(err, store.ErrNotFound):
		return notFoundApp(appID)
	case errors.As(err, &inv):
		status := http.StatusBadRequest
		switch inv.Code {
		case store.CodeUnknownChannel, store.CodeUnknownSegment, store.CodeCohortNotFound:
			status = http.StatusNotFound
		case store.CodeCohortTooLarge:
			status = http.StatusRequestEntityTooLarge
		case store.CodeCohortInUse, store.CodeABActive, store.CodeRolloutActive, store.CodeCannotOverride, store.CodeSelfSetNotAllowed, store.CodeOverrideNotAllowed:
			status = http.StatusConflict
		}
		return errf(status, inv.Code, "%s", inv.Msg)
	}
	return err
}

func (s *Server) rollout(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	var in RolloutRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.Action == "" {
		in.Action = store.RolloutSet
	}
	bps := 0
	if in.Action == store.RolloutSet {
		if in.Bundle == "" || in.BPS == nil {
			return errf(http.StatusBadRequest, "invalid_rollout", "a rollout needs bundle and bps (0..10000)")
		}
		bps = *in.BPS
		// A rollout of another bundle than the one running is checked
		// (native_api.go); re-weighting it keeps its min native build.
		cur, err := s.store.GetChannel(r.Context(), appID, r.PathValue("name"))
		if err != nil {
			return storeErr(err, appID)
		}
		if cur.Rollout == nil || cur.Rollout.Bundle != in.Bundle || in.MinNativeBuild != nil {
			if err := s.checkNativeVersion(r.Context(), appID, cur.Name, in.Bundle, in.Force, in.MinNativeBuild); err != nil {
				return err
			}
		}
	} else if in.MinNativeBuild != nil || in.Force {
		return errf(http.StatusBadRequest, "invalid_rollout", "min_native_build and force go with action set")
	}
	ch, err := s.store.SetRolloutNative(r.Context(), appID, r.PathValue("name"), in.Action, in.Bundle, bps, in.MinNativeBuild)
	if err != nil {
		return storeErr(err, appID)
	}
	attrs := []any{"app", appID, "channel", ch.Name, "action", in.Action, "bundle", ch.Bundle}
	if ro := ch.Rollout; ro != nil {
		attrs = append(attrs, "rollout_bundle", ro.Bundle, "rollout_bps", ro.BPS, "rollout_paused", ro.Paused, "rollout_id", ro.ID)
	}
	s.log.Info("origin: rollout", attrs...)
	s.awaitPublished(r.Context())
	writeJSON(w, http.StatusOK, ch)
	return nil
}

func (s *Server) putAB(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	var in struct {
		Arms  []snapshot.Arm `json:"arms"`
		Force bool           `json:"force,omitempty"` // skip the native compatibility check of the arms
	}
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if len(in.Arms) == 0 {
		return errf(http.StatusBadRequest, store.CodeInvalidAB, "an A/B split needs arms: [{name, bundle, bps}]; DELETE clears it")
	}
	// Each arm's bundle goes in front of its share of the channel's
	// devices: checked like a channel's (native_api.go), unless the arm
	// names its min native build.
	for _, a := range in.Arms {
		min := &a.MinNativeBuild
		if a.MinNativeBuild == "" {
			min = nil
		}
		if err := s.checkNativeVersion(r.Context(), appID, r.PathValue("name"), a.Bundle, in.Force, min); err != nil {
			return err
		}
	}
	return s.saveAB(w, r, appID, in.Arms)
}

func (s *Server) deleteAB(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	return s.saveAB(w, r, appID, nil)
}

func (s *Server) saveAB(w http.ResponseWriter, r *http.Request, appID string, arms []snapshot.Arm) error {
	ch, err := s.store.SetAB(r.Context(), appID, r.PathValue("name"), arms)
	if err != nil {
		return storeErr(err, appID)
	}
	s.log.Info("origin: A/B split", "app", appID, "channel", ch.Name, "arms", len(arms))
	s.awaitPublished(r.Context())
	writeJSON(w, http.StatusOK, ch)
	return nil
}

func (s *Server) listSegments(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	segs, err := s.store.ListSegments(r.Context(), appID)
	if err != nil {
		return storeErr(err, appID)
	}
	writeJSON(w, http.StatusOK, segs)
	return nil
}

func (s *Server) addSegment(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	var in struct {
		snapshot.Rule
		Position *int `json:"position,omitempty"`
	}
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	pos := -1
	if in.Position != nil {
		pos = *in.Position
	}
	seg, err := s.store.AddSegment(r.Context(), appID, in.Rule, pos)
	if errors.Is(err, store.ErrExists) {
		return errf(http.StatusConflict, "segment_exists", "app %s already has segment %q; remove it first", appID, in.Name)
	}
	if err != nil {
		return storeErr(err, appID)
	}
	s.log.Info("origin: segment added", "app", appID, "segment", seg.Name, "channel", seg.Channel, "position", seg.Position)
	s.awaitPublished(r.Context())
	writeJSON(w, http.StatusCreated, seg)
	return nil
}

func (s *Server) removeSegment(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	if err := s.store.RemoveSegment(r.Context(), appID, r.PathValue("name")); err != nil {
		return storeErr(err, appID)
	}
	s.awaitPublished(r.Context())
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// maxOverridesPerCall bounds one PUT of overrides.
const maxOverridesPerCall = 100000

func (s *Server) putOverrides(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	var in struct {
		Channel string   `json:"channel"` // "" clears
		Devices []string `json:"devices"`
	}
	if err := decodeJSONLimit(r, &in, 8<<20); err != nil {
		return err
	}
	if len(in.Devices) == 0 || len(in.Devices) > maxOverridesPerCall {
		return errf(http.StatusBadRequest, "invalid_devices", "want 1 to %d device ids per call", maxOverridesPerCall)
	}
	devs := make([][16]byte, 0, len(in.Devices))
	for _, d := range in.Devices {
		if u, ok := snapshot.ParseDeviceID(d); ok {
			devs = append(devs, u)
		}
	}
	err = s.shards.write(appID, devs, func() error { return s.store.SetOverrides(r.Context(), appID, in.Channel, in.Devices) })
	if err != nil {
		return storeErr(err, appID)
	}
	s.log.Info("origin: device overrides", "app", appID, "channel", in.Channel, "devices", len(in.Devices))
	s.awaitPublished(r.Context())
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "devices": len(in.Devices)})
	return nil
}

func (s *Server) listOverrides(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	limit := 1000
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 10000 {
			return errf(http.StatusBadRequest, "invalid_limit", "limit: want 1..10000")
		}
	}
	out, err := s.store.ListOverrides(r.Context(), appID, r.URL.Query().Get("after"), limit)
	if err != nil {
		return storeErr(err, appID)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) resolve(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	var in DeviceRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	req := snapshot.Request{AppID: appID, DeviceID: in.DeviceID, VersionName: in.VersionName, VersionBuild: in.VersionBuild,
		Platform: in.Platform, PluginVersion: in.PluginVersion, CustomID: in.CustomID, DefaultChannel: in.DefaultChannel,
		KeyID: in.KeyID, IsEmulator: in.IsEmulator, IsProd: in.IsProd}
	if rerr := req.Validate(); rerr != nil {
		msg := rerr.Message
		for _, is := range rerr.Issues {
			msg += "; " + is.Path + ": " + is.Message
		}
		return errf(http.StatusBadRequest, rerr.Code, "%s", msg)
	}
	req.Now = time.Now().UTC().Truncate(time.Second)
	if in.At != nil {
		req.Now = in.At.UTC()
	}
	cur := s.Current()
	d := snapshot.Resolve(cur.Snap, &req)
	out := Resolution{Rev: cur.Snap.Rev, Update: d.OK(), Code: d.Code, Message: d.Message, Kind: d.Kind,
		Rule: d.Rule, Segment: d.Segment, Variant: d.Variant, Arm: d.Arm, Bucket: d.Bucket, MinNativeBuild: d.NativeMin, At: req.Now}
	if d.Channel != nil {
		out.Channel = d.Channel.Name
	}
	if app := cur.Snap.App(appID); app != nil {
		for _, rule := range app.Rules {
			if d.Rule == snapshot.RuleSegment && rule.Name == d.Segment {
				out.Cohort = rule.Cohort
			}
		}
		customID := req.CustomID
		if app.IgnoreCustomID {
			customID = ""
		}
		for _, c := range app.Cohorts {
			if app.InCohort(c.Name, req.DeviceID, customID) {
				out.Cohorts = append(out.Cohorts, c.Name)
			}
		}
	}
	if d.Bundle != nil {
		out.Version = d.Bundle.Version
		if d.Bundle.Builtin() {
			out.RevertToBuiltin, out.Message = true, "revert to builtin: the device goes back to the store build"
		}
	}
	if d.Variant == snapshot.VariantBelowNative {
		// Why the device did not get the newer bundle.
		why := "the device's native build " + req.VersionBuild + " is below the min native build " + d.NativeMin
		if d.Bundle != nil {
			out.Message = why + "; it gets the channel's earlier bundle " + d.Bundle.Version
		} else {
			out.Message = why + "; it keeps what it runs (" + d.Message + ")"
		}
	}
	if d.Held != "" {
		out.Held, out.HeldVersion = d.Held, d.HeldBundle.Version
		why := "outside the maintenance windows"
		if d.Held == snapshot.HeldBlackout {
			why = "a blackout date"
		}
		out.Message = "held: " + d.HeldBundle.Version + " waits (" + why + ")"
		var segWindows *snapshot.Windows
		if d.Rule == snapshot.RuleSegment {
			for _, rule := range cur.Snap.App(appID).Rules {
				if rule.Name == d.Segment {
					segWindows = rule.Windows
				}
			}
		}
		if next, ok := snapshot.NextOpenAll(req.Now, d.Channel.Windows, segWindows); ok {
			out.NextWindow = &next
			out.Message += "; the next window opens at " + next.UTC().Format(time.RFC3339)
		} else {
			out.Message += "; no window opens within a year"
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
