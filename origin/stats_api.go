package origin

import (
	"context"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/store"
)

// Report builds the analytics of f (From 0: the last 24 hours). step 0
// picks one that gives at most 120 points (at least a minute).
func (s *Server) Report(ctx context.Context, f store.EventFilter, step time.Duration) (*StatsReport, error) {
	now := time.Now()
	if f.To == 0 {
		f.To = now.UnixMilli()
	}
	if f.From == 0 {
		f.From = f.To - 24*time.Hour.Milliseconds()
	}
	span := f.To - f.From
	if step <= 0 {
		step = time.Duration(span/120) * time.Millisecond
	}
	if step < time.Minute {
		step = time.Minute
	}
	stepMs := step.Milliseconds()
	buckets := int((span + stepMs - 1) / stepMs)
	if buckets < 1 {
		buckets = 1
	}
	rep := &StatsReport{AppID: f.AppID, Channel: f.Channel, Segment: f.Segment, Platform: f.Platform, From: time.UnixMilli(f.From).UTC(), To: time.UnixMilli(f.To).UTC(),
		StepSeconds: stepMs / 1000}
	counts, err := s.events.Counts(ctx, f)
	if err != nil {
		return nil, err
	}
	changes, err := s.events.AdoptionChanges(ctx, f)
	if err != nil {
		return nil, err
	}
	byVersion := map[string]*VersionStats{}
	bySegment := map[[2]string]*VersionStats{}
	get := func(m map[string]*VersionStats, v string) *VersionStats {
		if m[v] == nil {
			m[v] = &VersionStats{Version: v}
		}
		return m[v]
	}
	getSeg := func(seg, v string) *VersionStats {
		k := [2]string{seg, v}
		if bySegment[k] == nil {
			bySegment[k] = &VersionStats{Version: v, Segment: seg}
		}
		return bySegment[k]
	}
	type rate struct{ ok, fail []int64 }
	rates := map[string]*rate{}
	bucketOf := func(minute int64) int {
		b := int((minute*60000 - f.From) / stepMs)
		return min(max(b, 0), buckets-1)
	}
	for _, c := range counts {
		rep.Events += c.N
		for _, vs := range []*VersionStats{get(byVersion, c.Version), getSeg(c.Segment, c.Version)} {
			vs.Events += c.N
			switch {
			case c.Action == "download_complete":
				vs.Downloads += c.N
			case c.Action == "set":
				vs.Installs += c.N
			case events.Failure(c.Action):
				vs.Failures += c.N
				if vs.FailuresByAction == nil {
					vs.FailuresByAction = map[string]int64{}
				}
				vs.FailuresByAction[c.Action] += c.N
			}
		}
		if c.Action == "set" || events.Failure(c.Action) {
			r := rates[c.Version]
			if r == nil {
				r = &rate{make([]int64, buckets), make([]int64, buckets)}
				rates[c.Version] = r
			}
			if c.Action == "set" {
				r.ok[bucketOf(c.Minute)] += c.N
			} else {
				r.fail[bucketOf(c.Minute)] += c.N
			}
		}
	}
	// Adoption: running sum of changes, sampled at the end of each bucket.
	adopt := map[string][]float64{}
	running := map[string]int64{}
	i := 0
	for b := 0; b < buckets; b++ {
		end := f.From + int64(b+1)*stepMs
		for ; i < len(changes) && changes[i].Minute*60000 < end; i++ {
			running[changes[i].Version] += changes[i].Delta
		}
		for v, n := range running {
			if adopt[v] == nil {
				adopt[v] = make([]float64, buckets)
			}
			adopt[v][b] = float64(n)
		}
	}
	for ; i < len(changes); i++ {
		running[changes[i].Version] += changes[i].Delta
	}
	segDevices := map[[2]string]int64{}
	for _, c := range changes {
		segDevices[[2]string{c.Segment, c.Version}] += c.Delta
	}
	for v, n := range running {
		get(byVersion, v).Devices = n
	}
	for k, n := range segDevices {
		getSeg(k[0], k[1]).Devices = n
	}
	finish := func(vs *VersionStats) {
		if t := vs.Installs + vs.Failures; t > 0 {
			vs.FailureRate = float64(vs.Failures) / float64(t)
			vs.FailureRateLower = WilsonLower(vs.Failures, t, 0.95)
		}
	}
	for _, vs := range byVersion {
		finish(vs)
		rep.Bundles = append(rep.Bundles, *vs)
	}
	for _, vs := range bySegment {
		finish(vs)
		rep.Segments = append(rep.Segments, *vs)
	}
	sort.Slice(rep.Bundles, func(i, j int) bool { return rep.Bundles[i].Version < rep.Bundles[j].Version })
	sort.Slice(rep.Segments, func(i, j int) bool {
		a, b := rep.Segments[i], rep.Segments[j]
		return a.Segment < b.Segment || a.Segment == b.Segment && a.Version < b.Version
	})
	for _, vs := range rep.Bundles {
		if pts := adopt[vs.Version]; pts != nil {
			rep.Adoption = append(rep.Adoption, Series{Version: vs.Version, Points: pts})
		}
		if r := rates[vs.Version]; r != nil {
			pts := make([]float64, buckets)
			for b := range pts {
				if t := r.ok[b] + r.fail[b]; t > 0 {
					pts[b] = float64(r.fail[b]) / float64(t)
				} else {
					pts[b] = -1 // no data in this bucket
				}
			}
			rep.FailureRate = append(rep.FailureRate, Series{Version: vs.Version, Points: pts})
		}
	}
	if f.AppID != "" {
		if rep.Cohorts, err = s.cohortStats(ctx, f.AppID, f.From, f.To); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// cohortStats returns the app's cohorts with their churn after from and
// up to to (Unix ms), and over the 7 days up to to.
func (s *Server) cohortStats(ctx context.Context, appID string, from, to int64) ([]CohortStats, error) {
	cohorts, err := s.store.Cohorts(ctx, appID)
	if err != nil || len(cohorts) == 0 {
		return []CohortStats{}, err
	}
	churn, err := s.store.CohortChurn(ctx, appID, from, to)
	if err != nil {
		return nil, err
	}
	week, err := s.store.CohortChurn(ctx, appID, to-7*24*time.Hour.Milliseconds(), to)
	if err != nil {
		return nil, err
	}
	changed, err := s.store.CohortsChangedAt(ctx, appID)
	if err != nil {
		return nil, err
	}
	segs, err := s.store.ListSegments(ctx, appID)
	if err != nil {
		return nil, err
	}
	out := make([]CohortStats, 0, len(cohorts))
	for _, c := range cohorts {
		cs := CohortStats{Name: c.Name, Kind: "imported", Rule: c.Rule, Members: c.Members, Churn: churn[c.Name], Churn7d: week[c.Name],
			UpdatedAt: c.UpdatedAt.UTC()}
		if c.Rule != "" {
			cs.Kind = "computed"
		}
		if at, ok := changed[c.Name]; ok {
			t := time.UnixMilli(at).UTC()
			cs.ChangedAt = &t
		}
		for _, sg := range segs {
			if sg.Rule.Cohort == c.Name {
				cs.Segments = append(cs.Segments, sg.Rule.Name)
			}
		}
		out = append(out, cs)
	}
	return out, nil
}

// getStats is GET /api/v1/apps/{app}/stats?channel=&segment=&platform=&from=&to=&step= (times
// as RFC 3339 or Unix seconds, step as a Go duration like 5m).
func (s *Server) getStats(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	f, step, err := statsQuery(r, appID)
	if err != nil {
		return err
	}
	rep, err := s.Report(r.Context(), f, step)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

func statsQuery(r *http.Request, appID string) (store.EventFilter, time.Duration, error) {
	q := r.URL.Query()
	f := store.EventFilter{AppID: appID, Channel: q.Get("channel"), Segment: q.Get("segment")}
	if p := q.Get("platform"); p != "" {
		f.Platform = events.NormalizePlatform(strings.ToLower(p)) // as aggregated
	}
	parseTime := func(name string) (int64, error) {
		v := q.Get(name)
		if v == "" {
			return 0, nil
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			if n < 0 || n > math.MaxInt64/1000 {
				return 0, errf(http.StatusBadRequest, "invalid_time", "%s=%q: out of range", name, v)
			}
			return n * 1000, nil
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return 0, errf(http.StatusBadRequest, "invalid_time", "%s=%q: want RFC 3339 (2026-11-28T12:00:00Z) or Unix seconds", name, v)
		}
		return t.UnixMilli(), nil
	}
	var err error
	if f.From, err = parseTime("from"); err != nil {
		return f, 0, err
	}
	if f.To, err = parseTime("to"); err != nil {
		return f, 0, err
	}
	effectiveTo := f.To
	if effectiveTo == 0 {
		effectiveTo = time.Now().UnixMilli()
	}
	if f.From != 0 && f.From >= effectiveTo {
		return f, 0, errf(http.StatusBadRequest, "invalid_time", "from must be before to")
	}
	var step time.Duration
	if v := q.Get("step"); v != "" {
		if step, err = time.ParseDuration(v); err != nil || step < time.Minute {
			return f, 0, errf(http.StatusBadRequest, "invalid_step", "step=%q: want a duration of at least 1m, like 5m or 1h", v)
		}
	}
	if f.To != 0 || f.From != 0 {
		to := f.To
		if to == 0 {
			to = time.Now().UnixMilli()
		}
		from := f.From
		if from == 0 {
			from = to - 24*time.Hour.Milliseconds()
		}
		if step > 0 && (to-from)/step.Milliseconds() > 10000 {
			return f, 0, errf(http.StatusBadRequest, "invalid_step", "at most 10000 points: widen step")
		}
	}
	return f, step, nil
}

func (s *Server) guardInfo(ctx context.Context, appID, channel string) (*GuardInfo, error) {
	gs, err := s.store.Guards(ctx, appID)
	if err != nil {
		return nil, err
	}
	for _, gc := range gs {
		if gc.Channel != channel {
			continue
		}
		info := &GuardInfo{GuardedChannel: gc}
		if st, ok := s.guard.status(appID, channel); ok {
			info.Status = &st
		}
		if info.Actions, err = s.store.GuardActions(ctx, appID, channel, 20); err != nil {
			return nil, err
		}
		return info, nil
	}
	return nil, errf(http.StatusNotFound, "guard_not_found", "channel %s of app %s has no rollout guard", channel, appID)
}

func (s *Server) getGuard(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	info, err := s.guardInfo(r.Context(), appID, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (s *Server) putGuard(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	var g store.Guard
	if err := decodeJSON(r, &g); err != nil {
		return err
	}
	g = store.DefaultGuard(g)
	if err := s.store.SetGuard(r.Context(), appID, r.PathValue("name"), &g); err != nil {
		return storeErr(err, appID)
	}
	s.log.Info("origin: rollout guard set", "app", appID, "channel", r.PathValue("name"), "guard", g)
	s.guard.nudge()
	info, err := s.guardInfo(r.Context(), appID, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (s *Server) deleteGuard(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	if err := s.store.SetGuard(r.Context(), appID, r.PathValue("name"), nil); err != nil {
		return storeErr(err, appID)
	}
	s.log.Info("origin: rollout guard removed", "app", appID, "channel", r.PathValue("name"))
	w.WriteHeader(http.StatusNoContent)
	return nil
}
