package origin

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/updraft-cdn/updraft/origin/store"
)

// guardInterval is how often every guard is evaluated (ingest of install
// outcomes also triggers an evaluation).
var guardInterval = time.Second

// rolloutClockSkew is how far before a rollout's start (origin clock) an
// outcome stamped by an edge still counts for it.
const rolloutClockSkew = time.Minute

// rolloutGuard evaluates the channels' guards continuously: for a channel
// with a running rollout it counts the devices that reported installing
// the rollout bundle (set) or failing it (*_fail) since the later of the
// window start and the guard's last action, and acts when the failure
// rate's Wilson lower bound reaches the threshold. Actions are ordinary
// store changes, so edges see them in the next snapshot.
type rolloutGuard struct {
	s    *Server
	kick chan struct{}
	mu   sync.Mutex
	last map[[2]string]GuardStatus
	// retryAt delays the next attempt after a store error (guard goroutine
	// only), so a failing store is not hit, nor logged, every second.
	retryAt map[[2]string]time.Time
}

// guardRetry is how long the guard waits after a store error.
const guardRetry = 10 * time.Second

func newRolloutGuard(s *Server) *rolloutGuard {
	return &rolloutGuard{s: s, kick: make(chan struct{}, 1), last: map[[2]string]GuardStatus{}, retryAt: map[[2]string]time.Time{}}
}

func (g *rolloutGuard) nudge() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

func (g *rolloutGuard) run(ctx context.Context) {
	t := time.NewTicker(guardInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-g.kick:
		case <-ctx.Done():
			return
		}
		if err := g.evaluateAll(ctx); err != nil && ctx.Err() == nil {
			g.s.log.Error("origin: rollout guard", "err", err)
		}
	}
}

func (g *rolloutGuard) status(appID, channel string) (GuardStatus, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st, ok := g.last[[2]string{appID, channel}]
	return st, ok
}

func (g *rolloutGuard) evaluateAll(ctx context.Context) error {
	guards, err := g.s.store.Guards(ctx, "")
	if err != nil {
		return err
	}
	snap := g.s.Current().Snap
	for _, gc := range guards {
		st := GuardStatus{EvaluatedAt: time.Now().UTC(), State: "no_rollout"}
		if app := snap.App(gc.AppID); app != nil {
			if ch := app.Channel(gc.Channel); ch != nil && ch.Rollout != nil {
				st.Bundle, st.RolloutStart = ch.Rollout.Bundle, ch.Rollout.StartedAt
				if ch.Rollout.Paused && gc.Guard.Action != store.GuardNotify {
					st.State = "paused"
				} else if err := g.evaluate(ctx, gc, &st); err != nil {
					return err
				}
			}
		}
		g.mu.Lock()
		prev := g.last[[2]string{gc.AppID, gc.Channel}]
		g.last[[2]string{gc.AppID, gc.Channel}] = st
		g.mu.Unlock()
		if st.State == "too_few_prefixes" && prev.State != st.State {
			// Logged once per episode, not every second.
			g.s.log.Warn("origin: rollout guard not acting: failure rate over the threshold, but from too few client networks",
				"app", gc.AppID, "channel", gc.Channel, "bundle", st.Bundle, "attempts", st.Attempts, "failures", st.Failures,
				"failure_prefixes", st.FailurePrefixes, "min_prefixes", gc.Guard.MinPrefixes, "new_devices", st.NewDevices)
		}
	}
	return nil
}

func (g *rolloutGuard) evaluate(ctx context.Context, gc store.GuardedChannel, st *GuardStatus) error {
	g.s.metrics.guardEvals.Inc()
	now := time.Now()
	since := now.Add(-time.Duration(gc.Guard.WindowSeconds) * time.Second)
	if gc.LastAt.After(since) {
		since = gc.LastAt // a fresh count after every action (e.g. a resumed rollout)
	}
	// Outcomes of an earlier rollout of the same bundle do not count. Edges
	// stamp outcomes with their own clocks: allow them some skew.
	if start := time.UnixMilli(st.RolloutStart).Add(-rolloutClockSkew); st.RolloutStart > 0 && start.After(since) {
		since = start
	}
	st.Since = since.UTC()
	// Only devices the rollout serves count: a forged report from a device
	// outside the rollout's buckets cannot trip the guard. Nor can ids made
	// up after the rollout began (found in the arm by asking /updates):
	// only devices the origin saw before it count. And one client network
	// cannot carry it alone (min_prefixes, max_devices_per_prefix).
	c, err := g.s.events.GuardOutcomes(ctx, store.GuardQuery{AppID: gc.AppID, Channel: gc.Channel, Version: st.Bundle, Arm: "rollout",
		Since: since.UnixMilli(), RolloutStart: st.RolloutStart, CountNew: gc.Guard.CountNewDevices, MaxPerPrefix: gc.Guard.MaxDevicesPerPrefix})
	if err != nil {
		return err
	}
	attempts, failures := c.Attempts, c.Failures
	st.Attempts, st.Failures = attempts, failures
	st.FailurePrefixes, st.NewDevices, st.NewFailures, st.CappedDevices = c.FailurePrefixes, c.NewDevices, c.NewFailures, c.Capped
	if attempts > 0 {
		st.FailureRate = float64(failures) / float64(attempts)
	}
	st.LowerBound = WilsonLower(failures, attempts, gc.Guard.Confidence)
	st.State = "watching"
	if attempts < int64(gc.Guard.MinAttempts) || failures < int64(gc.Guard.MinFailures) ||
		st.LowerBound < float64(gc.Guard.ThresholdBPS)/10000 {
		return nil
	}
	if st.FailurePrefixes < gc.Guard.MinPrefixes {
		// The rate is over the threshold, but from too few networks: it
		// may be one client posting failures for devices it made up.
		st.State = "too_few_prefixes"
		return nil
	}
	st.State = "triggered"
	// The cooldown follows an action on this rollout: not one on an earlier
	// rollout of the bundle (started again since).
	sameRollout := gc.LastBundle == st.Bundle && (st.RolloutStart == 0 || gc.LastAt.UnixMilli() >= st.RolloutStart)
	if !gc.LastAt.IsZero() && sameRollout && now.Sub(gc.LastAt) < time.Duration(gc.Guard.CooldownSeconds)*time.Second {
		st.State = "cooldown"
		return nil
	}
	a := store.GuardAction{AppID: gc.AppID, Channel: gc.Channel, At: now.UTC(), Action: gc.Guard.Action, Bundle: st.Bundle,
		Attempts: attempts, Failures: failures, FailureRate: st.FailureRate, LowerBound: st.LowerBound}
	key := [2]string{gc.AppID, gc.Channel}
	if now.Before(g.retryAt[key]) {
		return nil // a store error a moment ago: retry a little later
	}
	ctx = asOrigin(ctx, ActorGuard) // its records in the audit trail
	if gc.Guard.Action == store.GuardNotify {
		err = g.s.store.RecordGuardAction(ctx, a)
	} else {
		// The change and its record in one transaction; st.Bundle names the
		// rollout judged (rollout_changed if the operator replaced it).
		err = g.s.store.GuardAct(ctx, a)
	}
	var inv *store.InvalidError
	if errors.As(err, &inv) {
		// The rollout moved under the guard: record that, which also
		// restarts the count, and do not act.
		a.Error = err.Error()
		err = g.s.store.RecordGuardAction(ctx, a)
	}
	if err != nil {
		g.retryAt[key] = now.Add(guardRetry)
		return fmt.Errorf("rollout guard %s/%s: %w", gc.AppID, gc.Channel, err)
	}
	delete(g.retryAt, key)
	g.s.metrics.guardActions.WithLabelValues(gc.Guard.Action).Inc()
	g.s.log.Warn("origin: rollout guard acted", "app", gc.AppID, "channel", gc.Channel, "action", gc.Guard.Action,
		"bundle", st.Bundle, "attempts", attempts, "failures", failures, "failure_rate", st.FailureRate,
		"failure_rate_lower", st.LowerBound, "threshold_bps", gc.Guard.ThresholdBPS, "refused", a.Error)
	if a.Error == "" && gc.Guard.Action != store.GuardNotify {
		g.s.changedStore()
	}
	return nil
}

// WilsonLower is the lower bound of the Wilson score interval for a
// failure rate of failures/attempts at one-sided confidence c (0.95 → z
// 1.645): the rate the data shows with that confidence, small samples
// pulled toward 0.
func WilsonLower(failures, attempts int64, c float64) float64 {
	if attempts <= 0 {
		return 0
	}
	n := float64(attempts)
	p := float64(failures) / n
	z := math.Sqrt2 * math.Erfinv(2*c-1)
	z2 := z * z
	lo := (p + z2/(2*n) - z*math.Sqrt(p*(1-p)/n+z2/(4*n*n))) / (1 + z2/n)
	return math.Max(0, lo)
}
