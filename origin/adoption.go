package origin

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/store"
)

// The adoption report (issue 19): how fast and how well each release was
// taken, per segment, computed from the aggregates the origin keeps
// anyway: adoption_changes (net devices moving onto a version, per minute,
// channel, segment), event_counts (installs and failures) and, for the
// denominator, the count of active devices (store.ActiveWindow) in the
// device inventory. The release's start is its first offer on the channel
// in the audit trail or the first minute a device reported about it,
// whichever is earlier (the offer when both fall in the same minute). See
// docs/architecture.md.

// AdoptionQuery selects the releases of an adoption report.
type AdoptionQuery struct {
	AppID, Channel, Segment, Version string
	At                               time.Time // zero: now
}

// adoptionCurvePoints bounds the points of a release's curve.
const adoptionCurvePoints = 120

// offerActions are the audit actions that may start offering a bundle on a
// channel.
var offerActions = []string{"channel.created", "channel.changed", "rollout.set", "ab.set"}

// maxOfferRecords bounds the audit records an adoption report reads.
const maxOfferRecords = 20000

// releaseOffers returns when each (channel, bundle) of the app was first
// offered, by the audit trail (Unix ms).
func (s *Server) releaseOffers(ctx context.Context, appID, channel string) (map[[2]string]int64, error) {
	out := map[[2]string]int64{}
	var after int64
	for read := 0; read < maxOfferRecords; {
		recs, err := s.store.Audit(ctx, store.AuditQuery{App: appID, AfterID: after, Actions: offerActions, Target: channel, Limit: 1000})
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			after = r.ID
			var st struct {
				Bundle  string `json:"bundle"`
				Rollout *struct {
					Bundle string `json:"bundle"`
				} `json:"rollout"`
				AB []struct {
					Bundle string `json:"bundle"`
				} `json:"ab"`
			}
			if json.Unmarshal(r.After, &st) != nil {
				continue
			}
			bundles := []string{st.Bundle}
			if st.Rollout != nil {
				bundles = append(bundles, st.Rollout.Bundle)
			}
			for _, a := range st.AB {
				bundles = append(bundles, a.Bundle)
			}
			for _, b := range bundles {
				k := [2]string{r.Target, b}
				if _, ok := out[k]; !ok && b != "" {
					out[k] = r.At
				}
			}
		}
		read += len(recs)
		if len(recs) < 1000 {
			break
		}
	}
	return out, nil
}

// slowResult and slowTTL: a count of active devices, or a whole report,
// that took longer than slowResult to compute (active devices: about 150k
// on SQLite; 1M take about 1.8 s, see store.BenchmarkActiveDevices) is
// reused for slowTTL, so that a large fleet or a long history costs one
// pass per app and query every slowTTL however often the report is asked
// for (adoption over a 30-day window barely moves in minutes). Faster
// results are not kept: always exact.
const (
	slowResult = 250 * time.Millisecond
	slowTTL    = 5 * time.Minute
)

// slowCache keeps the results that were slow to compute (see slowResult).
type slowCache[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]slowEntry[V]
}

type slowEntry[V any] struct {
	at time.Time
	v  V
}

func (c *slowCache[K, V]) get(k K, now time.Time, compute func() (V, error)) (V, error) {
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if ok && !now.Before(e.at) && now.Sub(e.at) < slowTTL {
		return e.v, nil
	}
	start := time.Now()
	v, err := compute()
	if err != nil || time.Since(start) < slowResult {
		return v, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) > 10000 {
		c.m = map[K]slowEntry[V]{}
	}
	c.m[k] = slowEntry[V]{now, v}
	return v, nil
}

// adoptionCaches are the server's slow results (Server.adoptionCache).
type adoptionCaches struct {
	active  slowCache[[2]string, []store.ActiveCount]
	reports slowCache[AdoptionQuery, *AdoptionReport]
}

// adoptionReport is Adoption now, reusing a slow report (slowResult).
func (s *Server) adoptionReport(ctx context.Context, q AdoptionQuery) (*AdoptionReport, error) {
	q.At = time.Time{}
	return s.adoptionCache.reports.get(q, time.Now(), func() (*AdoptionReport, error) { return s.Adoption(ctx, q) })
}

// Adoption builds the adoption report of q.
func (s *Server) Adoption(ctx context.Context, q AdoptionQuery) (*AdoptionReport, error) {
	if q.At.IsZero() {
		q.At = time.Now()
	}
	at := q.At.UnixMilli()
	rep := &AdoptionReport{AppID: q.AppID, Channel: q.Channel, Segment: q.Segment, Version: q.Version, At: q.At.UTC(),
		ActiveWindowSeconds: int64(store.ActiveWindow / time.Second), Releases: []ReleaseAdoption{}, Timing: []SegmentTiming{}}
	f := store.EventFilter{AppID: q.AppID, Channel: q.Channel, Version: q.Version}
	counts, err := s.events.ReleaseCounts(ctx, f)
	if err != nil {
		return nil, err
	}
	offers, err := s.releaseOffers(ctx, q.AppID, q.Channel)
	if err != nil {
		return nil, err
	}
	actives, err := s.adoptionCache.active.get([2]string{q.AppID, q.Channel}, q.At, func() ([]store.ActiveCount, error) {
		return s.events.ActiveDevices(ctx, q.AppID, q.Channel, at)
	})
	if err != nil {
		return nil, err
	}
	f.From, f.To = 0, at
	changes, err := s.events.AdoptionChanges(ctx, f)
	if err != nil {
		return nil, err
	}

	type relKey struct{ channel, version string }
	type segKey struct {
		relKey
		segment string
	}
	type release struct {
		start  int64 // Unix ms
		source string
		segs   map[string]bool
	}
	releases := map[relKey]*release{}
	rel := func(k relKey) *release {
		r := releases[k]
		if r == nil {
			r = &release{start: -1, segs: map[string]bool{}}
			releases[k] = r
		}
		return r
	}
	skip := func(version string) bool { return version == "" || version == "builtin" }
	type tally struct{ installs, failures int64 }
	tallies := map[segKey]*tally{}
	for _, c := range counts {
		if skip(c.Version) {
			continue
		}
		k := relKey{c.Channel, c.Version}
		r := rel(k)
		if ms := c.FirstMinute * 60000; r.start < 0 || ms < r.start {
			r.start, r.source = ms, "first_event"
		}
		if q.Segment != "" && c.Segment != q.Segment {
			continue
		}
		r.segs[c.Segment] = true
		sk := segKey{k, c.Segment}
		if tallies[sk] == nil {
			tallies[sk] = &tally{}
		}
		switch {
		case c.Action == "set":
			tallies[sk].installs += c.N
		case events.Failure(c.Action):
			tallies[sk].failures += c.N
		}
	}
	for k, ms := range offers {
		if skip(k[1]) || q.Version != "" && k[1] != q.Version {
			continue
		}
		// The audit time is exact, event minutes are truncated: an offer
		// in the minute of the first event is the start.
		r := rel(relKey{k[0], k[1]})
		if r.start < 0 || ms/60000 <= r.start/60000 {
			r.start, r.source = ms, "audit"
		}
	}
	active := map[string]map[string]int64{} // channel → segment → devices
	for _, a := range actives {
		if active[a.Channel] == nil {
			active[a.Channel] = map[string]int64{}
		}
		active[a.Channel][a.Segment] += a.N
	}
	byRelease := map[relKey][]store.AdoptionChange{} // sorted by minute, as read
	for _, c := range changes {
		k := relKey{c.Channel, c.Version}
		if r := releases[k]; r != nil {
			byRelease[k] = append(byRelease[k], c)
		}
	}
	for k, r := range releases {
		for seg := range active[k.channel] {
			if q.Segment == "" || seg == q.Segment {
				r.segs[seg] = true
			}
		}
		for _, c := range byRelease[k] {
			if q.Segment == "" || c.Segment == q.Segment {
				r.segs[c.Segment] = true
			}
		}
		ra := ReleaseAdoption{Channel: k.channel, Version: k.version, Start: time.UnixMilli(r.start).UTC(), StartSource: r.source}
		segs := make([]string, 0, len(r.segs))
		for seg := range r.segs {
			segs = append(segs, seg)
		}
		slices.Sort(segs)
		if q.Segment != "" && len(segs) == 0 {
			continue // the segment has no device nor event on this channel
		}
		if q.Segment == "" {
			segs = append([]string{""}, segs...)
		}
		for _, seg := range segs {
			var chs []store.AdoptionChange
			var n int64
			var t tally
			if seg == "" {
				chs = byRelease[k]
				for _, v := range active[k.channel] {
					n += v
				}
				for _, s2 := range segs[1:] {
					if tl := tallies[segKey{k, s2}]; tl != nil {
						t.installs += tl.installs
						t.failures += tl.failures
					}
				}
			} else {
				for _, c := range byRelease[k] {
					if c.Segment == seg {
						chs = append(chs, c)
					}
				}
				n = active[k.channel][seg]
				if tl := tallies[segKey{k, seg}]; tl != nil {
					t = *tl
				}
			}
			sa := adoptionFigures(chs, n, r.start, at)
			sa.Segment, sa.Installs, sa.Failures = seg, t.installs, t.failures
			if total := t.installs + t.failures; total > 0 {
				rate := float64(t.installs) / float64(total)
				sa.SuccessRate = &rate
			}
			ra.Segments = append(ra.Segments, sa)
		}
		rep.Releases = append(rep.Releases, ra)
	}
	slices.SortFunc(rep.Releases, func(a, b ReleaseAdoption) int {
		return cmp.Or(cmp.Compare(a.Channel, b.Channel), a.Start.Compare(b.Start), cmp.Compare(a.Version, b.Version))
	})

	// Release timing: installs and failures by hour and weekday.
	tf := store.EventFilter{AppID: q.AppID, Channel: q.Channel, Segment: q.Segment, Version: q.Version}
	timing, err := s.events.Timing(ctx, tf)
	if err != nil {
		return nil, err
	}
	bySeg := map[string]*SegmentTiming{}
	for _, c := range timing {
		st := bySeg[c.Segment]
		if st == nil {
			st = &SegmentTiming{Segment: c.Segment}
			bySeg[c.Segment] = st
		}
		if c.Failure {
			st.FailuresByHour[c.Hour] += c.N
			st.FailuresByDay[c.Weekday] += c.N
		} else {
			st.InstallsByHour[c.Hour] += c.N
			st.InstallsByDay[c.Weekday] += c.N
		}
	}
	for _, st := range bySeg {
		rep.Timing = append(rep.Timing, *st)
	}
	slices.SortFunc(rep.Timing, func(a, b SegmentTiming) int { return cmp.Compare(a.Segment, b.Segment) })
	return rep, nil
}

// adoptionFigures computes a release's adoption among active devices from
// its adoption changes (sorted by minute), started at start, as of at
// (Unix ms). A threshold is reached at the end of the first minute whose
// running count of devices is at least that share of active (minute
// resolution, from start's minute); the 24-hour share is the running count
// at the end of the minute 24 h after start's.
func adoptionFigures(chs []store.AdoptionChange, active, start, at int64) SegmentAdoption {
	sa := SegmentAdoption{Active: active, Curve: []float64{}}
	startMin := start / 60000
	span := max(at-startMin*60000, 60000)
	span = min(span, store.ActiveWindow.Milliseconds())
	stepMin := max((span/60000+adoptionCurvePoints-1)/adoptionCurvePoints, 1)
	sa.CurveStepSeconds = stepMin * 60
	points := int((span/60000 + stepMin - 1) / stepMin)
	curve := make([]int64, points+1) // [0]: at start; [i]: at the end of step i
	var running, at24 int64
	thresholds := []struct {
		pct int64
		out **int64
	}{{50, &sa.TimeTo50}, {90, &sa.TimeTo90}, {95, &sa.TimeTo95}}
	for i, c := range chs {
		running += c.Delta
		if i+1 < len(chs) && chs[i+1].Minute == c.Minute {
			continue // the minute's other changes first
		}
		elapsed := max(c.Minute-startMin, 0)
		if elapsed <= 24*60 {
			at24 = running
		}
		if b := int(elapsed/stepMin) + 1; b <= points {
			for j := b; j <= points; j++ {
				curve[j] = running
			}
		}
		for _, th := range thresholds {
			if *th.out == nil && active > 0 && running*100 >= th.pct*active {
				secs := elapsed * 60
				*th.out = &secs
			}
		}
	}
	sa.Devices = running
	if active > 0 {
		sa.Share = float64(running) / float64(active)
		sa.Share24h = float64(at24) / float64(active)
		for _, n := range curve {
			sa.Curve = append(sa.Curve, float64(n)/float64(active))
		}
	} else {
		for range curve {
			sa.Curve = append(sa.Curve, 0)
		}
	}
	return sa
}

// getAdoption is GET /api/v1/apps/{app}/adoption?channel=&segment=&version=.
func (s *Server) getAdoption(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	rep, err := s.adoptionReport(r.Context(), AdoptionQuery{AppID: appID, Channel: q.Get("channel"), Segment: q.Get("segment"), Version: q.Get("version")})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}
