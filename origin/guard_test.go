package origin

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// wilsonTextbook is the lower bound of the Wilson score interval written
// out from the textbook formula, with z given directly:
//
//	(p + z²/2n − z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n)
func wilsonTextbook(f, n, z float64) float64 {
	p := f / n
	return (p + z*z/(2*n) - z*math.Sqrt(p*(1-p)/n+z*z/(4*n*n))) / (1 + z*z/n)
}

func TestWilsonLower(t *testing.T) {
	const z95 = 1.6448536269514722 // one-sided 95%: Φ⁻¹(0.95)
	const z99 = 2.3263478740408408 // one-sided 99%
	cases := []struct {
		failures, attempts int64
		c                  float64
		want               float64
	}{
		// Hand-computed: 0 failures gives exactly 0 (p = 0: z²/2n − z·√(z²/4n²) = 0).
		{0, 100, 0.95, 0},
		{0, 1, 0.95, 0},
		// All failed (p = 1): the bound is n / (n + z²); 10/10 → 10/12.7055 = 0.78706.
		{10, 10, 0.95, 0.78706},
		// 30/100: p(1−p)/n = 0.0021, z²/4n² = 0.0000676, √ = 0.046558,
		// z·√ = 0.076581; (0.3 + 0.013528 − 0.076581) / 1.027055 = 0.23071.
		{30, 100, 0.95, 0.23071},
		// 1/10 at 95%: √(0.009 + 0.0067639) = 0.125554, z·√ = 0.206519;
		// (0.1 + 0.135277 − 0.206519) / 1.270554 = 0.022634.
		{1, 10, 0.95, 0.022634},
	}
	for _, tc := range cases {
		got := WilsonLower(tc.failures, tc.attempts, tc.c)
		if math.Abs(got-tc.want) > 1e-3 {
			t.Errorf("WilsonLower(%d, %d, %g) = %.6f, want %.6f (hand-computed) ±1e-3", tc.failures, tc.attempts, tc.c, got, tc.want)
		}
	}
	// Against the textbook formula with z given, across a grid.
	for _, c := range []struct {
		conf, z float64
	}{{0.95, z95}, {0.99, z99}, {0.5, 0}} {
		for _, n := range []int64{1, 7, 50, 100, 1000, 100000} {
			for _, f := range []int64{0, 1, n / 10, n / 3, n / 2, n - 1, n} {
				if f < 0 || f > n {
					continue
				}
				want := math.Max(0, wilsonTextbook(float64(f), float64(n), c.z))
				if got := WilsonLower(f, n, c.conf); math.Abs(got-want) > 1e-9 {
					t.Errorf("WilsonLower(%d, %d, %g) = %.12f, textbook %.12f", f, n, c.conf, got, want)
				}
			}
		}
	}
	// Confidence 0.5 is z = 0: the bound is the observed rate.
	if got := WilsonLower(30, 100, 0.5); math.Abs(got-0.3) > 1e-12 {
		t.Errorf("WilsonLower(30, 100, 0.5) = %v, want 0.3", got)
	}
	// No attempts: 0, not NaN.
	for _, n := range []int64{0, -1} {
		if got := WilsonLower(0, n, 0.95); got != 0 {
			t.Errorf("WilsonLower(0, %d, 0.95) = %v, want 0", n, got)
		}
	}
}

func TestWilsonLowerMonotonic(t *testing.T) {
	for _, n := range []int64{10, 100, 1000} {
		prev := -1.0
		for f := int64(0); f <= n; f++ {
			lo := WilsonLower(f, n, 0.95)
			p := float64(f) / float64(n)
			if math.IsNaN(lo) || lo < 0 || lo > p+1e-12 {
				t.Fatalf("WilsonLower(%d, %d) = %v, want within [0, %v]", f, n, lo, p)
			}
			if f > 0 && lo <= prev {
				t.Fatalf("WilsonLower not increasing in failures: n=%d f=%d → %v, f-1 → %v", n, f, lo, prev)
			}
			prev = lo
		}
	}
	// More confidence, lower bound; more attempts at the same rate, higher bound.
	if a, b := WilsonLower(30, 100, 0.95), WilsonLower(30, 100, 0.99); !(b < a) {
		t.Errorf("99%% bound %v not below 95%% bound %v", b, a)
	}
	if a, b := WilsonLower(30, 100, 0.95), WilsonLower(300, 1000, 0.95); !(b > a) {
		t.Errorf("bound at n=1000 (%v) not above n=100 (%v) for the same rate", b, a)
	}
}

const (
	guardApp  = "com.example.app"
	guardEdge = "00112233445566778899aabbccddeeff"
)

// devUUID is the i-th test device id.
func devUUID(i int) string { return fmt.Sprintf("%08x-1111-4111-8111-%012x", i, i) }

// segmentOf encodes events as a spool segment (records of at most
// events.MaxBatch events).
func segmentOf(evs []events.Event) []byte {
	seg := []byte(events.Magic)
	for len(evs) > 0 {
		n := min(len(evs), events.MaxBatch)
		seg = events.AppendRecord(seg, evs[:n])
		evs = evs[n:]
	}
	return seg
}

// outcomes returns install outcomes of devices [from, to) for version
// 1.0.1 on channel production: update_fail for the devices fail selects,
// set for the others.
func outcomes(from, to int, fail func(i int) bool, received int64) []events.Event {
	var evs []events.Event
	for i := from; i < to; i++ {
		action := "set"
		if fail(i) {
			action = "update_fail"
		}
		evs = append(evs, events.Event{
			Timestamp: received - 100, Received: received, AppID: guardApp, DeviceID: devUUID(i), Action: action,
			VersionName: "1.0.1", OldVersionName: "1.0.0", Platform: "android", VersionBuild: "2.3.0", PluginVersion: "7.1.0",
			IsProd: true, Channel: "production", Segment: "default", Arm: "rollout", ClientPrefix: devPrefix(i),
		})
	}
	return evs
}

// devPrefix is the client network test device i reports from: one of 64
// /24s, so that a few hundred devices are spread over many networks.
func devPrefix(i int) netip.Prefix {
	return events.PrefixOf(netip.AddrFrom4([4]byte{198, 51, byte(i % 64), 7}))
}

// checkInEdge sends the check-in segments of the tests (its own sequence).
const checkInEdge = "ffeeddccbbaa99887766554433221100"

var checkInSeq atomic.Uint64

// checkIn reports devices [from, to) as having checked for updates, as an
// edge does: the origin then knows them (established devices).
func checkIn(t *testing.T, o *testOrigin, from, to int) {
	t.Helper()
	seg := []byte(events.Magic)
	for i := from; i < to; {
		ci := events.CheckIns{AppID: guardApp, At: time.Now().UnixMilli()}
		for ; i < to && len(ci.Devices) < events.MaxCheckIns; i++ {
			d, _ := snapshot.ParseDeviceID(devUUID(i))
			ci.Devices = append(ci.Devices, d)
		}
		seg = events.AppendCheckIns(seg, &ci)
	}
	if err := o.srv.IngestSegment(context.Background(), checkInEdge, checkInSeq.Add(1), seg); err != nil {
		t.Fatalf("ingest check-ins: %v", err)
	}
}

func ingest(t *testing.T, o *testOrigin, seq uint64, evs []events.Event) {
	t.Helper()
	if err := o.srv.IngestSegment(context.Background(), guardEdge, seq, segmentOf(evs)); err != nil {
		t.Fatalf("ingest segment %d: %v", seq, err)
	}
}

// guardOrigin starts an origin whose guard evaluates every 50 ms, with app
// com.example.app: bundles 1.0.0 and 1.0.1, channel production on 1.0.0
// with a rollout of 1.0.1 at 50%, guarded with the given action. Devices
// 0..1999 checked in before the rollout began (established).
func guardOrigin(t *testing.T, action string) *testOrigin {
	return guardOriginWith(t, action, func(o *testOrigin) { checkIn(t, o, 0, 2000) })
}

// guardOriginWith is guardOrigin with before run before the rollout starts.
func guardOriginWith(t *testing.T, action string, before func(o *testOrigin)) *testOrigin {
	t.Helper()
	saved := guardInterval
	guardInterval = 50 * time.Millisecond
	t.Cleanup(func() { guardInterval = saved }) // after the origin is closed
	o := startOrigin(t)
	ctx := context.Background()
	c := o.client
	if _, err := c.CreateApp(ctx, guardApp, ""); err != nil {
		t.Fatal(err)
	}
	z := makeZip(t, map[string]string{"index.html": "<html>1</html>"})
	if _, err := c.UploadBundle(ctx, guardApp, "1.0.0", bytes.NewReader(z), client.UploadOptions{Channel: "production"}); err != nil {
		t.Fatal(err)
	}
	z = makeZip(t, map[string]string{"index.html": "<html>2</html>"})
	if _, err := c.UploadBundle(ctx, guardApp, "1.0.1", bytes.NewReader(z), client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(o)
	}
	bps := 5000
	if _, err := c.Rollout(ctx, guardApp, "production", RolloutRequest{Bundle: "1.0.1", BPS: &bps}); err != nil {
		t.Fatal(err)
	}
	var info GuardInfo
	if err := c.DoJSON(ctx, http.MethodPut, "/api/v1/apps/"+guardApp+"/channels/production/guard", map[string]any{
		"min_attempts": 50, "min_failures": 5, "threshold_bps": 1000, "action": action, "window_seconds": 600,
	}, &info); err != nil {
		t.Fatal(err)
	}
	want := store.Guard{WindowSeconds: 600, MinAttempts: 50, MinFailures: 5, ThresholdBPS: 1000, Confidence: 0.95, Action: action, CooldownSeconds: 300,
		MinPrefixes: 5, MaxDevicesPerPrefix: 25}
	if info.AppID != guardApp || info.Channel != "production" || info.Guard != want || len(info.Actions) != 0 || info.Actions == nil {
		t.Fatalf("PUT guard answered %+v, want guard %+v (defaults filled) and an empty action list", info, want)
	}
	ro := rolloutOf(t, o)
	if ro == nil || ro.Bundle != "1.0.1" || ro.BPS != 5000 || ro.Paused {
		t.Fatalf("rollout before any event: %+v, want 1.0.1 at 5000 bps running", ro)
	}
	return o
}

// rolloutOf is production's rollout in the published snapshot.
func rolloutOf(t *testing.T, o *testOrigin) *snapshot.Rollout {
	t.Helper()
	app := o.srv.Current().Snap.App(guardApp)
	if app == nil || app.Channel("production") == nil {
		t.Fatalf("published snapshot has no app %s with channel production", guardApp)
	}
	return app.Channel("production").Rollout
}

func getGuard(t *testing.T, o *testOrigin) GuardInfo {
	t.Helper()
	info, err := o.client.Guard(context.Background(), guardApp, "production")
	if err != nil {
		t.Fatalf("GET guard: %v", err)
	}
	return info
}

// waitUntil polls cond for at most 10 s; on timeout it fails with what and
// the last state describe returns.
func waitUntil(t *testing.T, what string, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s; last state: %s", what, describe())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitEvaluation waits for a guard evaluation that started after `after`,
// and returns the guard as GET shows it then.
func waitEvaluation(t *testing.T, o *testOrigin, after time.Time) GuardInfo {
	t.Helper()
	var info GuardInfo
	waitUntil(t, "a guard evaluation after "+after.Format(time.RFC3339Nano), func() bool {
		info = getGuard(t, o)
		return info.Status != nil && info.Status.EvaluatedAt.After(after)
	}, func() string { return fmt.Sprintf("%+v", info.Status) })
	return info
}

func describeGuard(t *testing.T, o *testOrigin) func() string {
	return func() string {
		info := getGuard(t, o)
		return fmt.Sprintf("status %+v, actions %+v, rollout %+v", info.Status, info.Actions, rolloutOf(t, o))
	}
}

// thirtyPercent fails devices 0, 1, 2 of every ten.
func thirtyPercent(i int) bool { return i%10 < 3 }

// TestGuardPausesFailingRollout: 100 devices report on the rollout bundle,
// 30% failing. Before min_attempts the guard only watches; once all report,
// it pauses the rollout, edges see it in the snapshot, and the action is
// listed.
func TestGuardPausesFailingRollout(t *testing.T) {
	o := guardOrigin(t, store.GuardPause)
	now := time.Now().UnixMilli()

	// 40 devices, 12 failing: the failure rate is well over the threshold
	// (Wilson lower bound 0.197 > 0.10) but below min_attempts.
	ingest(t, o, 1, outcomes(0, 40, thirtyPercent, now))
	fed := time.Now()
	first := waitEvaluation(t, o, fed)
	second := waitEvaluation(t, o, first.Status.EvaluatedAt)
	st := second.Status
	if st.State != "watching" || st.Attempts != 40 || st.Failures != 12 || st.Bundle != "1.0.1" {
		t.Fatalf("after 40 devices (two evaluations): status %+v, want watching with 40 attempts and 12 failures of 1.0.1", st)
	}
	if math.Abs(st.FailureRate-0.3) > 1e-9 || math.Abs(st.LowerBound-WilsonLower(12, 40, 0.95)) > 1e-9 || st.LowerBound < 0.1 {
		t.Fatalf("after 40 devices: rate %v lower %v, want 0.3 and %v (above the threshold)", st.FailureRate, st.LowerBound, WilsonLower(12, 40, 0.95))
	}
	if len(second.Actions) != 0 {
		t.Fatalf("guard acted before min_attempts: %+v", second.Actions)
	}
	if ro := rolloutOf(t, o); ro == nil || ro.Paused {
		t.Fatalf("rollout paused before min_attempts: %+v", ro)
	}

	// The other 60 devices (18 failing): 100 attempts, 30 failures.
	ingest(t, o, 2, outcomes(40, 100, thirtyPercent, now))
	waitUntil(t, "the guard pauses the rollout in the published snapshot", func() bool {
		ro := rolloutOf(t, o)
		return ro != nil && ro.Paused
	}, describeGuard(t, o))
	ro := rolloutOf(t, o)
	if ro.Bundle != "1.0.1" || ro.BPS != 5000 {
		t.Fatalf("paused rollout %+v, want 1.0.1 at 5000 bps, only paused", ro)
	}
	if ch := o.srv.Current().Snap.App(guardApp).Channel("production"); ch.Bundle != "1.0.0" {
		t.Fatalf("channel bundle %q after pause, want 1.0.0", ch.Bundle)
	}
	info := getGuard(t, o)
	if len(info.Actions) != 1 {
		t.Fatalf("guard actions %+v, want exactly one", info.Actions)
	}
	a := info.Actions[0]
	if a.Action != store.GuardPause || a.Bundle != "1.0.1" || a.Attempts != 100 || a.Failures != 30 || a.Error != "" ||
		math.Abs(a.FailureRate-0.3) > 1e-9 || math.Abs(a.LowerBound-WilsonLower(30, 100, 0.95)) > 1e-9 ||
		a.AppID != guardApp || a.Channel != "production" || a.At.IsZero() {
		t.Fatalf("guard action %+v, want pause of 1.0.1 at 100 attempts, 30 failures, rate 0.3, lower %v", a, WilsonLower(30, 100, 0.95))
	}
	if !info.LastAt.Equal(a.At) {
		t.Fatalf("last_action_at %v, want the action's time %v", info.LastAt, a.At)
	}
	// The paused rollout is left alone from then on: evaluations say
	// "paused" and nothing more is done.
	waitUntil(t, `guard status "paused"`, func() bool {
		info = getGuard(t, o)
		return info.Status != nil && info.Status.State == "paused"
	}, describeGuard(t, o))
	later := waitEvaluation(t, o, info.Status.EvaluatedAt)
	if later.Status.State != "paused" || len(later.Actions) != 1 {
		t.Fatalf("after the pause: status %+v, %d actions, want paused and 1", later.Status, len(later.Actions))
	}
	if got := metricValue(t, o, `updraft_origin_guard_actions_total{action="pause"}`); got != 1 {
		t.Fatalf("updraft_origin_guard_actions_total{action=pause} = %v, want 1", got)
	}
	// The store agrees with the snapshot.
	chs, err := o.client.ListChannels(context.Background(), guardApp)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chs {
		if ch.Name == "production" && (ch.Rollout == nil || !ch.Rollout.Paused) {
			t.Fatalf("stored channel production: rollout %+v, want paused", ch.Rollout)
		}
	}
}

// TestGuardLeavesHealthyRolloutAlone: 2% failures over 200 devices (and then
// over 300, with more than min_failures) does not trigger the guard.
func TestGuardLeavesHealthyRolloutAlone(t *testing.T) {
	o := guardOrigin(t, store.GuardPause)
	now := time.Now().UnixMilli()
	twoPercent := func(i int) bool { return i%50 == 0 }
	ingest(t, o, 1, outcomes(0, 100, twoPercent, now))
	ingest(t, o, 2, outcomes(100, 200, twoPercent, now))
	fed := time.Now()
	var info GuardInfo
	waitUntil(t, "an evaluation covering all 200 attempts", func() bool {
		info = getGuard(t, o)
		return info.Status != nil && info.Status.EvaluatedAt.After(fed) && info.Status.Attempts == 200
	}, describeGuard(t, o))
	info = waitEvaluation(t, o, info.Status.EvaluatedAt)
	if st := info.Status; st.State != "watching" || st.Attempts != 200 || st.Failures != 4 || math.Abs(st.FailureRate-0.02) > 1e-9 {
		t.Fatalf("healthy rollout: status %+v, want watching, 200 attempts, 4 failures", st)
	}
	if len(info.Actions) != 0 {
		t.Fatalf("guard acted on a healthy rollout: %+v", info.Actions)
	}
	if ro := rolloutOf(t, o); ro == nil || ro.Paused {
		t.Fatalf("healthy rollout touched: %+v", ro)
	}

	// 100 more devices, 2 failing: 6 failures ≥ min_failures and 300 ≥
	// min_attempts, but the lower bound (≈0.011) is under the threshold.
	ingest(t, o, 3, outcomes(200, 300, twoPercent, time.Now().UnixMilli()))
	fed = time.Now()
	waitUntil(t, "an evaluation covering all 300 attempts", func() bool {
		info = getGuard(t, o)
		return info.Status != nil && info.Status.EvaluatedAt.After(fed) && info.Status.Attempts == 300
	}, describeGuard(t, o))
	info = waitEvaluation(t, o, info.Status.EvaluatedAt)
	st := info.Status
	if st.State != "watching" || st.Failures != 6 || st.LowerBound >= 0.1 || math.Abs(st.LowerBound-WilsonLower(6, 300, 0.95)) > 1e-9 {
		t.Fatalf("300 devices at 2%%: status %+v, want watching, 6 failures, lower %v", st, WilsonLower(6, 300, 0.95))
	}
	if len(info.Actions) != 0 {
		t.Fatalf("guard acted on a healthy rollout: %+v", info.Actions)
	}
	if ro := rolloutOf(t, o); ro == nil || ro.Paused {
		t.Fatalf("healthy rollout touched: %+v", ro)
	}
	if got := metricValue(t, o, `updraft_origin_guard_actions_total{action="pause"}`); got != 0 {
		t.Fatalf("updraft_origin_guard_actions_total{action=pause} = %v, want 0", got)
	}
}

// TestGuardRollback: action rollback clears the rollout; the channel stays
// on its bundle.
func TestGuardRollback(t *testing.T) {
	o := guardOrigin(t, store.GuardRollback)
	ingest(t, o, 1, outcomes(0, 100, thirtyPercent, time.Now().UnixMilli()))
	waitUntil(t, "the guard clears the rollout in the published snapshot", func() bool {
		return rolloutOf(t, o) == nil
	}, describeGuard(t, o))
	if ch := o.srv.Current().Snap.App(guardApp).Channel("production"); ch.Bundle != "1.0.0" {
		t.Fatalf("channel bundle %q after rollback, want 1.0.0", ch.Bundle)
	}
	var info GuardInfo
	waitUntil(t, `guard status "no_rollout"`, func() bool {
		info = getGuard(t, o)
		return info.Status != nil && info.Status.State == "no_rollout"
	}, describeGuard(t, o))
	if len(info.Actions) != 1 {
		t.Fatalf("guard actions %+v, want one", info.Actions)
	}
	if a := info.Actions[0]; a.Action != store.GuardRollback || a.Bundle != "1.0.1" || a.Attempts != 100 || a.Failures != 30 || a.Error != "" {
		t.Fatalf("guard action %+v, want rollback of 1.0.1 at 100/30", a)
	}
	if got := metricValue(t, o, `updraft_origin_guard_actions_total{action="rollback"}`); got != 1 {
		t.Fatalf("updraft_origin_guard_actions_total{action=rollback} = %v, want 1", got)
	}
}

// TestGuardNotifyAndCooldown: action notify records the action and leaves
// the rollout running; a second batch of failures right after it is within
// the cooldown: no second action.
func TestGuardNotifyAndCooldown(t *testing.T) {
	o := guardOrigin(t, store.GuardNotify)
	// Reported a second ago, so strictly before the action's time.
	ingest(t, o, 1, outcomes(0, 100, thirtyPercent, time.Now().UnixMilli()-1000))
	var info GuardInfo
	waitUntil(t, "the guard records a notify action", func() bool {
		info = getGuard(t, o)
		return len(info.Actions) > 0
	}, describeGuard(t, o))
	if len(info.Actions) != 1 {
		t.Fatalf("guard actions %+v, want one", info.Actions)
	}
	a := info.Actions[0]
	if a.Action != store.GuardNotify || a.Bundle != "1.0.1" || a.Attempts != 100 || a.Failures != 30 || a.Error != "" {
		t.Fatalf("guard action %+v, want notify of 1.0.1 at 100/30", a)
	}
	if ro := rolloutOf(t, o); ro == nil || ro.Paused || ro.BPS != 5000 || ro.Bundle != "1.0.1" {
		t.Fatalf("notify changed the rollout: %+v", ro)
	}
	chs, err := o.client.ListChannels(context.Background(), guardApp)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chs {
		if ch.Name == "production" && (ch.Rollout == nil || ch.Rollout.Paused) {
			t.Fatalf("stored channel production: rollout %+v, want running", ch.Rollout)
		}
	}
	// The count starts afresh after the action: the next evaluation sees
	// no attempts since then. (The action's time is stored in ms; the
	// evaluation that acted started before it, so one that starts 1 ms
	// after the stored time is a later one.)
	info = waitEvaluation(t, o, a.At.Add(time.Millisecond))
	if st := info.Status; st.State != "watching" || st.Attempts != 0 || !st.Since.Equal(a.At) {
		t.Fatalf("evaluation after notify: %+v, want watching with 0 attempts since %v", st, a.At)
	}

	// 100 more devices, 30% failing, right after: triggered, but within
	// the 300 s cooldown.
	ingest(t, o, 2, outcomes(1000, 1100, thirtyPercent, time.Now().UnixMilli()))
	waitUntil(t, `guard status "cooldown" over the second batch`, func() bool {
		info = getGuard(t, o)
		return info.Status != nil && info.Status.Attempts == 100 && info.Status.State == "cooldown"
	}, describeGuard(t, o))
	info = waitEvaluation(t, o, info.Status.EvaluatedAt)
	if info.Status.State != "cooldown" || len(info.Actions) != 1 {
		t.Fatalf("within the cooldown: status %+v, actions %+v, want cooldown and still one action", info.Status, info.Actions)
	}
	if ro := rolloutOf(t, o); ro == nil || ro.Paused {
		t.Fatalf("notify guard changed the rollout: %+v", ro)
	}
	if got := metricValue(t, o, `updraft_origin_guard_actions_total{action="notify"}`); got != 1 {
		t.Fatalf("updraft_origin_guard_actions_total{action=notify} = %v, want 1", got)
	}
}

func TestGuardAPIErrors(t *testing.T) {
	o := guardOrigin(t, store.GuardPause)
	ctx := context.Background()
	c := o.client
	path := func(app, ch string) string { return "/api/v1/apps/" + app + "/channels/" + ch + "/guard" }
	cases := []struct {
		name   string
		method string
		path   string
		body   any
		want   string
	}{
		{"invalid threshold", http.MethodPut, path(guardApp, "production"), map[string]any{"threshold_bps": 20000}, "400 invalid_guard"},
		{"min failures over attempts", http.MethodPut, path(guardApp, "production"), map[string]any{"min_attempts": 3, "min_failures": 4}, "400 invalid_guard"},
		{"unknown action", http.MethodPut, path(guardApp, "production"), map[string]any{"action": "explode"}, "400 invalid_guard"},
		{"confidence as percent", http.MethodPut, path(guardApp, "production"), map[string]any{"confidence": 95}, "400 invalid_guard"},
		{"negative window", http.MethodPut, path(guardApp, "production"), map[string]any{"window_seconds": -1}, "400 invalid_guard"},
		{"unknown field", http.MethodPut, path(guardApp, "production"), map[string]any{"colour": "red"}, "400 invalid_json"},
		{"unknown channel", http.MethodPut, path(guardApp, "nightly"), map[string]any{}, "404 channel_not_found"},
		{"unknown app", http.MethodPut, path("com.missing.app", "production"), map[string]any{}, "404 app_not_found"},
		{"bad app id", http.MethodGet, path("nodots", "production"), nil, "400 invalid_app_id"},
		{"no guard", http.MethodGet, path(guardApp, "beta"), nil, "404 guard_not_found"},
	}
	for _, tc := range cases {
		if got := apiCode(c.DoJSON(ctx, tc.method, tc.path, tc.body, nil)); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	// Refused changes kept the guard as it was.
	if g := getGuard(t, o).Guard; g.ThresholdBPS != 1000 || g.Action != store.GuardPause || g.MinAttempts != 50 {
		t.Fatalf("guard after refused changes: %+v", g)
	}
	// The edge key may not touch guards.
	edge := client.New(o.http.URL, readKeyFile(t, o.dir, "edge-key"))
	if got := apiCode(edge.DoJSON(ctx, http.MethodGet, path(guardApp, "production"), nil, nil)); got != "401 unauthorized" {
		t.Fatalf("edge key GET guard: %q, want 401 unauthorized", got)
	}
	// DELETE removes it (twice is fine); GET then says so.
	for range 2 {
		if err := c.RemoveGuard(ctx, guardApp, "production"); err != nil {
			t.Fatalf("DELETE guard: %v", err)
		}
	}
	if got := apiCode(c.DoJSON(ctx, http.MethodGet, path(guardApp, "production"), nil, nil)); got != "404 guard_not_found" {
		t.Fatalf("GET after DELETE: %q, want 404 guard_not_found", got)
	}
}

// Outcomes reported before the rollout began (beyond the clock-skew
// allowance) belong to an earlier rollout of the bundle: they do not count.
func TestGuardIgnoresOutcomesBeforeRolloutStart(t *testing.T) {
	o := guardOrigin(t, store.GuardPause)
	ingest(t, o, 1, outcomes(0, 100, thirtyPercent, time.Now().Add(-5*time.Minute).UnixMilli()))
	info := waitEvaluation(t, o, time.Now().Add(10*time.Millisecond))
	if st := info.Status; st.State != "watching" || st.Attempts != 0 || len(info.Actions) != 0 {
		t.Fatalf("guard counted outcomes from before the rollout: %+v, actions %+v", st, info.Actions)
	}
	if ro := rolloutOf(t, o); ro == nil || ro.Paused {
		t.Fatalf("rollout %+v, want running", ro)
	}
}

// Finding 1 of issue 15: device ids made up after the rollout began (an
// attacker finds ids in the arm by asking /updates, which reports them to
// the origin as check-ins, then posts failures for them) are new to the
// rollout: seen, reported in the status, never counted. With
// count_new_devices the same reports roll the rollout back.
func TestGuardIgnoresDevicesNewToRollout(t *testing.T) {
	o := guardOriginWith(t, store.GuardRollback, nil) // no device known before the rollout
	checkIn(t, o, 5000, 5100)                         // the enumeration, after the rollout began
	evs := outcomes(5000, 5100, func(int) bool { return true }, time.Now().UnixMilli())
	ingest(t, o, 1, evs)
	fed := time.Now()
	var info GuardInfo
	waitUntil(t, "an evaluation that saw the 100 new devices", func() bool {
		info = getGuard(t, o)
		return info.Status != nil && info.Status.EvaluatedAt.After(fed) && info.Status.NewDevices == 100
	}, describeGuard(t, o))
	info = waitEvaluation(t, o, info.Status.EvaluatedAt)
	if st := info.Status; st.State != "watching" || st.Attempts != 0 || st.Failures != 0 || st.NewDevices != 100 || st.NewFailures != 100 {
		t.Fatalf("status %+v, want watching with 100 new devices (100 failed) and nothing counted", st)
	}
	if len(info.Actions) != 0 {
		t.Fatalf("guard acted on devices new to the rollout: %+v", info.Actions)
	}
	if ro := rolloutOf(t, o); ro == nil || ro.Paused {
		t.Fatalf("rollout %+v, want running", ro)
	}
	// The operator's opt-in counts them.
	if _, err := o.client.SetGuard(context.Background(), guardApp, "production", store.Guard{MinAttempts: 50, MinFailures: 5,
		ThresholdBPS: 1000, Action: store.GuardRollback, CountNewDevices: true}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "count_new_devices: the guard rolls back", func() bool { return rolloutOf(t, o) == nil }, describeGuard(t, o))
}

// Failures concentrated in fewer client networks than min_prefixes do not
// trip the guard, however high the rate: the status says too_few_prefixes.
// Once failures come from enough networks, it acts.
func TestGuardNeedsFailuresFromManyNetworks(t *testing.T) {
	o := guardOrigin(t, store.GuardPause)
	now := time.Now().UnixMilli()
	// 100 devices over 64 networks; the 40 failing ones behind 2 networks.
	evs := outcomes(0, 100, func(i int) bool { return i < 40 }, now)
	for i := range evs[:40] {
		evs[i].ClientPrefix = devPrefix(i % 2)
	}
	ingest(t, o, 1, evs)
	fed := time.Now()
	var info GuardInfo
	waitUntil(t, "an evaluation of the 100 devices", func() bool {
		info = getGuard(t, o)
		return info.Status != nil && info.Status.EvaluatedAt.After(fed) && info.Status.State == "too_few_prefixes"
	}, describeGuard(t, o))
	info = waitEvaluation(t, o, info.Status.EvaluatedAt)
	// Each of the two networks holds 20 failing devices and its share of
	// the successes (devices 40..99 with i%64 of 0 or 1: 64, 65): 21 each,
	// under the cap of 25.
	if st := info.Status; st.State != "too_few_prefixes" || st.FailurePrefixes != 2 || st.Attempts != 100 || st.Failures != 40 {
		t.Fatalf("status %+v, want too_few_prefixes: 40 failures of 100 from 2 networks", st)
	}
	if len(info.Actions) != 0 {
		t.Fatalf("guard acted on failures from 2 networks: %+v", info.Actions)
	}
	if ro := rolloutOf(t, o); ro == nil || ro.Paused {
		t.Fatalf("rollout %+v, want running", ro)
	}
	// 3 more networks report failures: 5 in all.
	more := outcomes(100, 110, func(int) bool { return true }, time.Now().UnixMilli())
	for i := range more {
		more[i].ClientPrefix = devPrefix(2 + i%3)
	}
	ingest(t, o, 2, more)
	waitUntil(t, "the guard pauses once 5 networks report failures", func() bool {
		ro := rolloutOf(t, o)
		return ro != nil && ro.Paused
	}, describeGuard(t, o))
}

// One network (a carrier-grade NAT, or one attacker) counts for at most
// max_devices_per_prefix devices, its failure rate kept.
func TestGuardCapsDevicesPerNetwork(t *testing.T) {
	o := guardOrigin(t, store.GuardNotify)
	now := time.Now().UnixMilli()
	// 40 devices over 40 networks, none failing; then 200 devices of one
	// network, all failing: the network counts as 25 failing devices.
	evs := outcomes(0, 40, func(int) bool { return false }, now)
	for i := range evs {
		evs[i].ClientPrefix = events.PrefixOf(netip.AddrFrom4([4]byte{203, 0, byte(i), 1}))
	}
	flood := outcomes(1000, 1200, func(int) bool { return true }, now)
	for i := range flood {
		flood[i].ClientPrefix = events.PrefixOf(netip.MustParseAddr("192.0.2.77"))
	}
	ingest(t, o, 1, append(evs, flood...))
	fed := time.Now()
	var info GuardInfo
	waitUntil(t, "an evaluation of the 240 devices", func() bool {
		info = getGuard(t, o)
		return info.Status != nil && info.Status.EvaluatedAt.After(fed) && info.Status.CappedDevices > 0
	}, describeGuard(t, o))
	if st := info.Status; st.Attempts != 65 || st.Failures != 25 || st.CappedDevices != 175 || st.FailurePrefixes != 1 || st.State != "too_few_prefixes" {
		t.Fatalf("status %+v, want 65 attempts (40 + 25), 25 failures, 175 capped, 1 failing network", st)
	}
}

// A format 1 segment (an edge from before client prefixes) still ingests;
// its outcomes count as from one unknown network.
func TestGuardFormat1Segment(t *testing.T) {
	o := guardOrigin(t, store.GuardPause)
	evs := outcomes(0, 100, thirtyPercent, time.Now().UnixMilli())
	seg := []byte(events.MagicV1)
	seg = events.AppendRecordV1(seg, evs[:50])
	seg = events.AppendRecordV1(seg, evs[50:])
	if err := o.srv.IngestSegment(context.Background(), guardEdge, 1, seg); err != nil {
		t.Fatal(err)
	}
	fed := time.Now()
	var info GuardInfo
	waitUntil(t, "an evaluation of the format 1 segment", func() bool {
		info = getGuard(t, o)
		return info.Status != nil && info.Status.EvaluatedAt.After(fed) && info.Status.CappedDevices == 75
	}, describeGuard(t, o))
	if st := info.Status; st.Attempts != 25 || st.Failures != 8 || st.FailurePrefixes != 1 || st.State != "watching" {
		t.Fatalf("status %+v, want 25 devices counted from the unknown network (8 failing)", st)
	}
	if got := metricValue(t, o, `updraft_origin_events_ingested_total`); got != 100 {
		t.Fatalf("events ingested %v, want 100", got)
	}
}
