package bench

// The cohort-fleet scenario (issue 19): a fleet with activity patterns
// checks in through the edge and reports installs and install failures;
// once the origin has ingested all of it, behaviour cohorts computed
// through the operator API must hold exactly the devices the pattern puts
// in them, and a segment on the power cohort must route exactly its
// members, through the edge.

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/valyala/fastjson"
)

// Cohort-fleet defaults.
const (
	DefaultPower       = 5.0    // percent of the fleet in the heavy set
	DefaultHeavyChecks = 20     // check-ins of a heavy device
	DefaultCohortRate  = 10_000 // check-ins per second at most
	DefaultCohortRoute = "power"
	// The light devices check in 1 to maxLightChecks times: a heavy device
	// must check in more often for the power cut to fall exactly on the
	// heavy set.
	maxLightChecks = 3
	// Shares of the fleet that report an install failure (update_fail) and
	// an install (set), in basis points; disjoint sets.
	failingBPS = 200
	installBPS = 200
)

// CohortFleetReport is what a cohorts phase found: the pattern's figures,
// each step's time, each cohort's exact comparison and the routing.
type CohortFleetReport struct {
	Power       string `json:"power_rule"`
	HeavyChecks int    `json:"heavy_checks"`
	Rounds      int    `json:"rounds"`
	// CheckIns and Events the devices sent in the activity step (events
	// accepted by the edge: failures and installs).
	CheckIns       int64   `json:"check_ins"`
	CheckInsPerSec float64 `json:"check_ins_per_sec"`
	// The last round, where every device checks in, at most the phase's
	// rate a second: how long it took and its check-ins a second.
	LastRoundSeconds float64 `json:"last_round_seconds"`
	LastRoundPerSec  float64 `json:"last_round_per_sec"`
	Events           int64   `json:"events"`
	EventsAccepted   int64   `json:"events_accepted"`
	// Steps are the scenario's steps in order with their time.
	Steps []CohortStep `json:"steps"`
	// IngestComplete: the origin held every device's last check-in and
	// every event before the deadline.
	IngestComplete bool          `json:"ingest_complete"`
	Cohorts        []CohortCheck `json:"cohorts"`
	Routing        CohortRouting `json:"routing"`
	// Mismatches counts the members missing or extra in every cohort, the
	// devices routed wrong, and an incomplete ingest.
	Mismatches int64 `json:"mismatches"`
}

// CohortStep is one step's wall time.
type CohortStep struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
	Note    string  `json:"note,omitempty"`
}

// CohortCheck compares a computed cohort with the pattern's set.
type CohortCheck struct {
	Name     string `json:"name"`
	Rule     string `json:"rule"`
	Expected int    `json:"expected"`
	Got      int    `json:"got"`
	Missing  int    `json:"missing"`
	Extra    int    `json:"extra"`
	// A few of the missing and extra device ids, to look up.
	MissingIDs     []string `json:"missing_ids,omitempty"`
	ExtraIDs       []string `json:"extra_ids,omitempty"`
	ComputeSeconds float64  `json:"compute_seconds"`
}

// CohortRouting is the last step: every device checks once; the power
// members must be offered the segment's bundle, the others the default.
type CohortRouting struct {
	Segment       string `json:"segment"`
	SegmentBundle string `json:"segment_bundle"`
	DefaultBundle string `json:"default_bundle"`
	Members       int64  `json:"members"`
	MembersRight  int64  `json:"members_routed_right"`
	Others        int64  `json:"others"`
	OthersRight   int64  `json:"others_routed_right"`
	Wrong         int64  `json:"routed_wrong"`
	// WrongExample is one wrong answer: device, what it got.
	WrongExample string `json:"wrong_example,omitempty"`
}

// Mismatches sums the cohort phases' mismatches of a report.
func (rep *Report) Mismatches() int64 {
	var n int64
	for _, p := range rep.Phases {
		if p.Cohorts != nil {
			n += p.Cohorts.Mismatches
		}
	}
	return n
}

func cohortDefaults(p Phase) Phase {
	if p.Power == 0 {
		p.Power = DefaultPower
	}
	if p.HeavyChecks == 0 {
		p.HeavyChecks = DefaultHeavyChecks
	}
	if p.Rate == 0 {
		p.Rate = DefaultCohortRate
	}
	if p.Channel == "" {
		p.Channel = DefaultCohortRoute
	}
	return p
}

// mix is splitmix64's finaliser: the pattern's seeded hash.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// cohortPlan is the fleet's activity pattern, a function of the seed and
// each device's index (membership is scattered over the fleet).
type cohortPlan struct {
	heavy, failing, installing []bool
	first                      []int     // the round of a device's first check-in
	rounds                     [][]int32 // devices per round, in their arrival order
	at                         []float64 // a device's place in every round it is in, [0, 1)
	checkIns                   int
	bps                        int
}

// firstByHash marks the k devices (of n) whose hash with salt is lowest,
// skipping those already in skip.
func firstByHash(n, k int, seed, salt uint64, skip []bool) []bool {
	idx := make([]int32, 0, n)
	for i := 0; i < n; i++ {
		if skip == nil || !skip[i] {
			idx = append(idx, int32(i))
		}
	}
	h := func(i int32) uint64 { return mix(seed ^ salt<<40 ^ uint64(i)) }
	slices.SortFunc(idx, func(a, b int32) int { return cmp.Compare(h(a), h(b)) })
	out := make([]bool, n)
	for _, i := range idx[:min(k, len(idx))] {
		out[i] = true
	}
	return out
}

// share is ceil(n × bps / 10000): the power rule's cut over n devices.
func share(n, bps int) int { return (n*bps + snapshot.BucketCount - 1) / snapshot.BucketCount }

func planCohorts(n int, seed uint64, p Phase) *cohortPlan {
	bps := int(math.Round(p.Power * 100))
	pl := &cohortPlan{bps: bps, first: make([]int, n), at: make([]float64, n)}
	pl.heavy = firstByHash(n, share(n, bps), seed, 1, nil)
	pl.failing = firstByHash(n, max(1, share(n, failingBPS)), seed, 2, nil)
	pl.installing = firstByHash(n, max(1, share(n, installBPS)), seed, 3, pl.failing)
	R := p.HeavyChecks
	pl.rounds = make([][]int32, R)
	order := make([]int32, n)
	for i := range order {
		order[i] = int32(i)
		pl.at[i] = float64(mix(seed^4<<40^uint64(i))>>11) / (1 << 53)
	}
	slices.SortFunc(order, func(a, b int32) int { return cmp.Compare(pl.at[a], pl.at[b]) })
	for _, i := range order {
		if pl.heavy[i] {
			for r := range R {
				pl.rounds[r] = append(pl.rounds[r], i)
			}
			pl.first[i] = 0
			pl.checkIns += R
			continue
		}
		// A light device: the last round (every device checks in then),
		// and 0 to 2 distinct earlier rounds.
		h := mix(seed ^ 5<<40 ^ uint64(i))
		k := 1 + int(h%maxLightChecks)
		rs := []int{R - 1}
		r1 := int(h>>8) % (R - 1)
		if k >= 2 {
			rs = append(rs, r1)
		}
		if k >= 3 {
			rs = append(rs, (r1+1+int(h>>24)%(R-2))%(R-1))
		}
		slices.Sort(rs)
		for _, r := range rs {
			pl.rounds[r] = append(pl.rounds[r], i)
		}
		pl.first[i] = rs[0]
		pl.checkIns += len(rs)
	}
	return pl
}

// cohortRun is the state of one cohorts phase.
type cohortRun struct {
	r        *runner
	p        Phase
	pl       *cohortPlan
	op       *client.Client
	rec      *recorder
	rep      *CohortFleetReport
	attempts atomic.Int64 // checks sent (recorded ones)
	checkIns atomic.Int64
	events   atomic.Int64
	accepted atomic.Int64
}

func (r *runner) cohortsPhase(ctx context.Context, p Phase, rec *recorder) (*CohortFleetReport, int64) {
	p = cohortDefaults(p)
	c := &cohortRun{r: r, p: p, op: r.o.Operator, rec: rec, pl: planCohorts(len(r.devices), r.o.Seed, p)}
	rep := &CohortFleetReport{HeavyChecks: p.HeavyChecks, Rounds: p.HeavyChecks, Routing: CohortRouting{Segment: "power"}}
	rep.Power = "power:" + fmt.Sprint(float64(c.pl.bps)/100) + "%"
	c.rep = rep
	step := func(name string, t0 time.Time, note string) {
		rep.Steps = append(rep.Steps, CohortStep{Name: name, Seconds: time.Since(t0).Seconds(), Note: note})
	}
	// 1. Activity: rounds spread over the phase's duration; every device
	// checks in in the last one, after since is taken.
	round := time.Duration(p.Duration) / time.Duration(p.HeavyChecks)
	var since time.Time
	t0 := time.Now()
	for i, devs := range c.pl.rounds {
		if ctx.Err() != nil {
			break
		}
		if i == len(c.pl.rounds)-1 {
			// Every check-in so far was stamped by the edge before since,
			// every later one after (same clock: the bench runs on loopback
			// or a synchronised host).
			since = time.Now().Add(clockSkew)
			sleepCtx(ctx, 2*clockSkew)
		}
		rs := time.Now()
		d := max(round, time.Duration(float64(len(devs))/p.Rate*float64(time.Second)))
		c.activityRound(ctx, i, devs, rs, d)
		if i == len(c.pl.rounds)-1 {
			rep.LastRoundSeconds = time.Since(rs).Seconds()
			rep.LastRoundPerSec = float64(len(devs)) / rep.LastRoundSeconds
		}
		if i < len(c.pl.rounds)-1 {
			sleepCtx(ctx, time.Until(rs.Add(d)))
		}
	}
	rep.CheckIns, rep.Events, rep.EventsAccepted = c.checkIns.Load(), c.events.Load(), c.accepted.Load()
	rep.CheckInsPerSec = float64(rep.CheckIns) / time.Since(t0).Seconds()
	step("activity", t0, fmt.Sprintf("%d check-ins (%.0f/s) in %d rounds, %d events; the last round (every device) in %.2fs, %.0f/s",
		rep.CheckIns, rep.CheckInsPerSec, len(c.pl.rounds), rep.EventsAccepted, rep.LastRoundSeconds, rep.LastRoundPerSec))
	if ctx.Err() != nil { // cut short: nothing was checked, which is a failure
		rep.Mismatches += int64(len(r.devices))
		step("cut short", t0, "by the phase's deadline or an interrupt: no cohort or routing checked")
		return rep, c.attempts.Load()
	}
	// 2. The origin has ingested everything: every device's last check-in
	// (taken after since) and every event.
	t0 = time.Now()
	devs, evs, err := c.waitIngested(ctx, since, int64(len(r.devices)), rep.EventsAccepted)
	rep.IngestComplete = err == nil
	note := fmt.Sprintf("%d of %d devices' last check-ins, %d of %d events", devs, len(r.devices), evs, rep.EventsAccepted)
	if err != nil {
		note += ": " + err.Error()
		rep.Mismatches++
	}
	step("ingest", t0, note)
	// 3. The cohorts, computed by the origin, against the pattern.
	all := make([]bool, len(r.devices))
	for i := range all {
		all[i] = true
	}
	powerDone := false
	for _, cc := range []struct {
		name, rule string
		want       []bool
	}{
		{"power", rep.Power, c.pl.heavy},
		{"failing", "failing:7d", c.pl.failing},
		{"active", "active:1/1d", all},
	} {
		t0 = time.Now()
		chk, err := c.cohort(ctx, cc.name, cc.rule, cc.want)
		if err != nil {
			step("cohort "+cc.name, t0, "error: "+err.Error())
			rep.Mismatches += int64(max(1, chk.Expected))
			rep.Cohorts = append(rep.Cohorts, chk)
			continue
		}
		rep.Cohorts = append(rep.Cohorts, chk)
		rep.Mismatches += int64(chk.Missing + chk.Extra)
		step("cohort "+cc.name, t0, fmt.Sprintf("%d members, computed in %.2fs", chk.Got, chk.ComputeSeconds))
		powerDone = powerDone || cc.name == "power"
	}
	if !powerDone || ctx.Err() != nil { // the routing was not checked: a failure
		rep.Mismatches += int64(len(r.devices))
		return rep, c.attempts.Load()
	}
	// 4. A segment on the power cohort; wait until the edge routes by it.
	t0 = time.Now()
	if err := c.addSegment(ctx); err != nil {
		step("segment", t0, "error: "+err.Error())
		rep.Mismatches += int64(len(r.devices))
		return rep, c.attempts.Load()
	}
	step("segment", t0, fmt.Sprintf("segment power → channel %s (%s) served by the edge", p.Channel, rep.Routing.SegmentBundle))
	// 5. Every device checks once: members get the segment's bundle.
	t0 = time.Now()
	c.route(ctx)
	rt := &rep.Routing
	rep.Mismatches += rt.Wrong + (int64(len(r.devices)) - rt.Members - rt.Others)
	step("routing", t0, fmt.Sprintf("%d checks, %d routed wrong", rt.Members+rt.Others, rt.Wrong))
	return rep, c.attempts.Load()
}

// check sends one update check of dev, recorded in rec (the phase's, or a
// probe's), and returns the answer's outcome, the version it offers (""
// when none) and whether the edge answered it (HTTP 200: it recorded the
// check-in).
func (c *cohortRun) check(ctx context.Context, dev *device, due time.Time, rec *recorder) (outcome, version string, answered bool) {
	r := c.r
	r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	bufp := bufs.Get().(*[]byte)
	defer bufs.Put(bufp)
	status, body, err := r.t.do(ctx, "POST", r.o.Target+"/updates", dev.body, *bufp)
	*bufp = body
	done := time.Now()
	if rec == c.rec {
		c.attempts.Add(1)
	}
	switch {
	case err != nil:
		rec.checked(due, done, "transport_error", true)
		return "transport_error", "", false
	case status != 200:
		outcome = fmt.Sprintf("http_%d", status)
		rec.checked(due, done, outcome, true)
		return outcome, "", false
	}
	outcome = "update"
	if !r.checkAnswer(due, done, body, rec, func(v *fastjson.Value) { version = string(v.GetStringBytes("version")) }) {
		return "refused", "", true
	}
	rec.checked(due, done, outcome, false)
	return outcome, version, true
}

// activityRound runs one round: each device at its place in the round
// (open loop), then waits for the answers. A device that reports an event
// does so after its first check-in, as the plugin after an install.
func (c *cohortRun) activityRound(ctx context.Context, round int, devs []int32, start time.Time, d time.Duration) {
	r := c.r
	sem := make(chan struct{}, r.o.MaxInFlight)
	var wg sync.WaitGroup
	for _, i := range devs {
		due := start.Add(time.Duration(c.pl.at[i] * float64(d)))
		sleepCtx(ctx, time.Until(due))
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			dev := &r.devices[i]
			_, version, ok := c.check(ctx, dev, due, c.rec)
			if !ok {
				return
			}
			c.checkIns.Add(1)
			if c.pl.first[i] != round || !c.pl.failing[i] && !c.pl.installing[i] {
				return
			}
			action := "set"
			if c.pl.failing[i] {
				action = "update_fail"
			}
			c.event(ctx, dev, action, cmp.Or(version, r.o.VersionName))
		}()
	}
	wg.Wait()
}

// event posts one device event through the edge's /stats, as the plugin:
// version_name the bundle installed (or that failed), old_version_name the
// one the device ran.
func (c *cohortRun) event(ctx context.Context, dev *device, action, version string) {
	r := c.r
	c.events.Add(1)
	base := dev.body[:len(dev.body)-1]
	from := fmt.Appendf(nil, `"version_name":%q`, r.o.VersionName)
	to := fmt.Appendf(nil, `"version_name":%q,"old_version_name":%q`, version, r.o.VersionName)
	body := append([]byte{'['}, strings.Replace(string(base), string(from), string(to), 1)...)
	body = fmt.Appendf(body, `,"action":%q,"timestamp":%d}]`, action, time.Now().UnixMilli())
	status, answer, err := r.t.do(ctx, "POST", r.o.Target+"/stats", body, nil)
	if err == nil && status == 200 && strings.HasPrefix(string(answer), `{"status":"ok"`) {
		c.accepted.Add(1)
	}
}

// ingestDeadline bounds the wait for the origin to ingest the activity.
func ingestDeadline(devices int) time.Duration {
	return time.Minute + time.Duration(devices)*time.Millisecond
}

// waitIngested polls the operator API until the inventory holds every
// device's check-in from since on, and the app's statistics every event
// accepted; it returns what it last saw.
func (c *cohortRun) waitIngested(ctx context.Context, since time.Time, devices, events int64) (int64, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, ingestDeadline(int(devices)))
	defer cancel()
	var devs, evs int64
	for {
		var err error
		if devs, err = c.op.CountDevices(ctx, c.r.o.AppID, client.DeviceQuery{}, since); err == nil {
			var st api.StatsReport
			st, err = c.op.Stats(ctx, c.r.o.AppID, nil)
			evs = st.Events
		}
		if err == nil && devs >= devices && evs >= events {
			return devs, evs, nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("not ingested after %s", ingestDeadline(int(devices)))
			}
			return devs, evs, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// cohort adds a behaviour cohort through the operator API, fetches its
// members and compares them with the pattern's set want.
func (c *cohortRun) cohort(ctx context.Context, name, rule string, want []bool) (CohortCheck, error) {
	chk := CohortCheck{Name: name, Rule: rule}
	for _, w := range want {
		if w {
			chk.Expected++
		}
	}
	t0 := time.Now()
	if _, err := c.op.AddCohort(ctx, c.r.o.AppID, name, rule); err != nil {
		return chk, err
	}
	chk.ComputeSeconds = time.Since(t0).Seconds()
	list, err := c.op.CohortMembers(ctx, c.r.o.AppID, name)
	if err != nil {
		return chk, err
	}
	got := make(map[string]bool, len(list.Keys))
	for _, k := range list.Keys {
		got[k] = true
	}
	chk.Got = len(got)
	expected := make(map[string]bool, chk.Expected)
	for i, w := range want {
		if !w {
			continue
		}
		id := c.r.devices[i].id
		expected[id] = true
		if !got[id] {
			chk.Missing++
			if len(chk.MissingIDs) < 5 {
				chk.MissingIDs = append(chk.MissingIDs, id)
			}
		}
	}
	for _, k := range list.Keys {
		if !expected[k] {
			chk.Extra++
			if len(chk.ExtraIDs) < 5 {
				chk.ExtraIDs = append(chk.ExtraIDs, k)
			}
		}
	}
	return chk, nil
}

// addSegment routes the power cohort to the phase's channel and waits
// until the edge offers its bundle to a member and the default channel's
// to a device outside the cohort.
func (c *cohortRun) addSegment(ctx context.Context) error {
	r, rt := c.r, &c.rep.Routing
	chans, err := c.op.ListChannels(ctx, r.o.AppID)
	if err != nil {
		return err
	}
	for _, ch := range chans {
		if ch.Name == c.p.Channel {
			rt.SegmentBundle = ch.Bundle
		}
		if ch.Public && rt.DefaultBundle == "" {
			rt.DefaultBundle = ch.Bundle
		}
	}
	if rt.SegmentBundle == "" || rt.DefaultBundle == "" || rt.SegmentBundle == rt.DefaultBundle {
		return fmt.Errorf("the app needs a default channel and a channel %s with another bundle (updraft bench creates them): %q and %q",
			c.p.Channel, rt.DefaultBundle, rt.SegmentBundle)
	}
	if _, err := c.op.AddSegment(ctx, r.o.AppID, snapshot.Rule{Name: rt.Segment, Channel: c.p.Channel, Cohort: "power"}, nil); err != nil {
		return err
	}
	member, other := -1, -1
	for i, h := range c.pl.heavy {
		if h && member < 0 {
			member = i
		}
		if !h && other < 0 {
			other = i
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	probe := newRecorder(time.Now()) // not the phase's figures
	for {
		_, mv, _ := c.check(ctx, &r.devices[member], time.Now(), probe)
		ov := rt.DefaultBundle
		if other >= 0 {
			_, ov, _ = c.check(ctx, &r.devices[other], time.Now(), probe)
		}
		if mv == rt.SegmentBundle && ov == rt.DefaultBundle {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the edge does not route the segment after a minute: a member is offered %q, another device %q", mv, ov)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// route has every device check once (open loop at the phase's rate) and
// counts who was offered what.
func (c *cohortRun) route(ctx context.Context) {
	r, rt := c.r, &c.rep.Routing
	n := len(r.devices)
	d := time.Duration(float64(n) / c.p.Rate * float64(time.Second))
	start := time.Now()
	sem := make(chan struct{}, r.o.MaxInFlight)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := 0; i < n && ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(float64(d) * float64(i) / float64(n)))
		sleepCtx(ctx, time.Until(due))
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			dev := &r.devices[i]
			outcome, v, _ := c.check(ctx, dev, due, c.rec)
			want := rt.DefaultBundle
			if c.pl.heavy[i] {
				want = rt.SegmentBundle
			}
			mu.Lock()
			defer mu.Unlock()
			if c.pl.heavy[i] {
				rt.Members++
			} else {
				rt.Others++
			}
			switch {
			case v != want:
				rt.Wrong++
				if rt.WrongExample == "" {
					rt.WrongExample = fmt.Sprintf("device %s (power member: %v) offered %q (%s), want %q", dev.id, c.pl.heavy[i], v, outcome, want)
				}
			case c.pl.heavy[i]:
				rt.MembersRight++
			default:
				rt.OthersRight++
			}
		}()
	}
	wg.Wait()
}

func (c *CohortFleetReport) writeText(w io.Writer) {
	fmt.Fprintf(w, "pattern: %s heavy devices checking in %d times, the others 1 to %d; %d check-ins (%.0f/s), %d events (%d accepted)\n",
		strings.TrimPrefix(c.Power, "power:"), c.HeavyChecks, maxLightChecks, c.CheckIns, c.CheckInsPerSec, c.Events, c.EventsAccepted)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "step\tseconds\t")
	for _, s := range c.Steps {
		fmt.Fprintf(tw, "%s\t%.2f\t%s\n", s.Name, s.Seconds, s.Note)
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "cohort\trule\texpected\tgot\tmissing\textra\tcompute (s)\t")
	for _, k := range c.Cohorts {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%.2f\t\n", k.Name, k.Rule, k.Expected, k.Got, k.Missing, k.Extra, k.ComputeSeconds)
	}
	tw.Flush()
	for _, k := range c.Cohorts {
		if len(k.MissingIDs)+len(k.ExtraIDs) > 0 {
			fmt.Fprintf(w, "cohort %s: missing e.g. %s; extra e.g. %s\n", k.Name, strings.Join(k.MissingIDs, " "), strings.Join(k.ExtraIDs, " "))
		}
	}
	rt := c.Routing
	if rt.SegmentBundle != "" {
		fmt.Fprintf(w, "routing (segment %s → %s, default %s): members %d of %d right, others %d of %d right, %d wrong\n",
			rt.Segment, rt.SegmentBundle, rt.DefaultBundle, rt.MembersRight, rt.Members, rt.OthersRight, rt.Others, rt.Wrong)
		if rt.WrongExample != "" {
			fmt.Fprintf(w, "routed wrong, e.g. %s\n", rt.WrongExample)
		}
	}
	if c.Mismatches == 0 {
		fmt.Fprintln(w, "cohorts and routing: exact (0 mismatches)")
	} else {
		fmt.Fprintf(w, "MISMATCHES: %d\n", c.Mismatches)
	}
}

// clockSkew is how far the bench host's clock and the edge's may differ:
// the activity's last round starts 2·clockSkew after the instant since
// which the origin must hold every device's check-in.
const clockSkew = 250 * time.Millisecond
