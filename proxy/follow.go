package proxy

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// Replica states, as /readyz and updraft_edge_replica_state name them.
const (
	stateStarting      = "starting"       // no answer from the upstream yet
	stateFollowing     = "following"      // the last poll succeeded
	stateRefusing      = "refusing"       // the upstream's last answer was refused (reason)
	stateUpstreamError = "upstream_error" // the upstream could not be reached or answered an error
)

var replicaStates = []string{stateStarting, stateFollowing, stateRefusing, stateUpstreamError}

// Reasons a replica is not following (the refusal reasons, plus the
// upstream error), for updraft_edge_replica_reason.
var replicaReasons = []string{"bad_signature", "malformed", "format", "shard_unavailable", "older_rev", "stale", stateUpstreamError}

// codeStale answers device requests when the snapshot is older than
// --max-snapshot-age.
const codeStale = "snapshot_stale"

// followState is what an edge knows about its replica and the freshness of
// its snapshot. The zero value is an edge without a replica (serve's edge,
// fed by the origin in the same process).
type followState struct {
	// fresh is the newest proof that the current snapshot is the origin's
	// current one: its signed issued time, or the latest signed heartbeat
	// vouching for it (Unix ms; 0: unknown, a format 1 snapshot).
	fresh atomic.Int64
	// heartbeat is the latest heartbeat vouching for the current snapshot,
	// base64 as received, relayed to child edges ("" : none).
	heartbeat atomic.Pointer[string]
	// staleAnswers counts device requests refused as stale.
	staleAnswers atomic.Uint64
	// pending is the verified heartbeat that came with the snapshot the
	// replica is swapping in: swapped applies it in the same step, so that
	// requests do not see the new snapshot without the freshness it came
	// with (a spurious snapshot_stale).
	pending atomic.Pointer[signedHeartbeat]

	mu         sync.Mutex
	hasReplica bool
	state      string
	reason     string    // why not following ("" when following)
	since      time.Time // when state (and reason) began
	failures   int       // refusals and errors since the state last was following

	metricsOnce sync.Once
	stateGauge  *prometheus.GaugeVec
	reasonGauge *prometheus.GaugeVec
	heartbeats  prometheus.Counter
}

// newerSnapshot reports whether s may replace cur: a later revision, or the
// same revision issued later (re-signed: a signing key rotation, a restarted
// or upgraded origin), and never one issued before cur (a replay of a
// snapshot from before an origin was restored to an older revision).
// Format 1 snapshots (no issued time) compare by revision only.
func newerSnapshot(s, cur *snapshot.Snapshot) bool {
	if s.Issued != 0 && cur.Issued != 0 && s.Issued < cur.Issued {
		return false
	}
	if s.Rev != cur.Rev {
		return s.Rev > cur.Rev
	}
	return s.Issued > cur.Issued
}

// swapped records a new current snapshot (under the edge's wireMu): its
// freshness is its issued time, or the heartbeat it came with (pending),
// until a heartbeat vouches for it.
func (f *followState) swapped(s *snapshot.Snapshot) {
	fresh, relay := s.Issued, (*string)(nil)
	if p := f.pending.Load(); p != nil && p.hb.Vouches(s) && p.hb.At > fresh {
		fresh, relay = p.hb.At, &p.b64
		if f.heartbeats != nil {
			f.heartbeats.Inc()
		}
	}
	f.fresh.Store(fresh)
	f.heartbeat.Store(relay)
}

// vouch applies a verified heartbeat for the current snapshot cur; it
// reports whether the freshness moved forward.
func (f *followState) vouch(cur *snapshot.Snapshot, hb snapshot.Heartbeat, b64 string) bool {
	if !hb.Vouches(cur) {
		return false
	}
	for {
		old := f.fresh.Load()
		if hb.At <= old {
			return false
		}
		if f.fresh.CompareAndSwap(old, hb.At) {
			f.heartbeat.Store(&b64)
			if f.heartbeats != nil {
				f.heartbeats.Inc()
			}
			return true
		}
	}
}

// relayHeartbeat is the heartbeat to pass on to child edges ("" if none).
func (f *followState) relayHeartbeat() string {
	if p := f.heartbeat.Load(); p != nil {
		return *p
	}
	return ""
}

// register adds the replica metrics to the edge's registry (once).
func (e *Edge) registerFollowMetrics() {
	f := &e.follow
	f.metricsOnce.Do(func() {
		f.stateGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "updraft_edge_replica_state", Help: "1 for the replica's current state (starting, following, refusing, upstream_error), 0 for the others.",
		}, []string{"state"})
		f.reasonGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "updraft_edge_replica_reason", Help: "1 for why the replica is not following (a refusal reason or upstream_error), 0 for the others; all 0 while following.",
		}, []string{"reason"})
		f.heartbeats = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "updraft_edge_snapshot_heartbeats_total", Help: "Signed origin heartbeats that moved the snapshot's freshness forward.",
		})
		age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "updraft_edge_snapshot_age_seconds", Help: "Age of the newest signed proof (issued time or heartbeat) that the snapshot is the origin's current one; -1 when unknown.",
		}, func() float64 {
			if ms := f.fresh.Load(); ms > 0 && e.snap.Load() != nil {
				return float64(time.Now().UnixMilli()-ms) / 1000
			}
			return -1
		})
		stale := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "updraft_edge_stale_answers_total", Help: "Device requests answered 503 snapshot_stale (--max-snapshot-age).",
		}, func() float64 { return float64(f.staleAnswers.Load()) })
		e.metrics.reg.MustRegister(f.stateGauge, f.reasonGauge, f.heartbeats, age, stale)
		for _, s := range replicaStates {
			f.stateGauge.WithLabelValues(s)
		}
		for _, r := range replicaReasons {
			f.reasonGauge.WithLabelValues(r).Set(0)
		}
		f.stateGauge.WithLabelValues(stateStarting).Set(1)
	})
}

// setState moves the replica to state (with reason when not following) and
// logs only transitions, never each attempt: attempts are counted by
// updraft_edge_snapshot_refusals_total and _poll_errors_total.
func (e *Edge) setReplicaState(state, reason string, err error) {
	f := &e.follow
	f.mu.Lock()
	prev, prevReason, prevSince, failures := f.state, f.reason, f.since, f.failures
	if state == stateFollowing {
		f.failures = 0
	} else {
		f.failures++
	}
	changed := state != prev || reason != prevReason
	if changed {
		f.state, f.reason, f.since = state, reason, time.Now()
	}
	f.mu.Unlock()
	if !changed {
		return
	}
	if f.stateGauge != nil {
		f.stateGauge.WithLabelValues(prev).Set(0)
		f.stateGauge.WithLabelValues(state).Set(1)
		if prevReason != "" {
			f.reasonGauge.WithLabelValues(prevReason).Set(0)
		}
		if reason != "" {
			f.reasonGauge.WithLabelValues(reason).Set(1)
		}
	}
	var rev int64 = -1
	if s := e.snap.Load(); s != nil {
		rev = s.Rev
	}
	switch {
	case state == stateFollowing && (prev == stateStarting || prev == ""):
		e.log.Info("replica: following upstream", "rev", rev)
	case state == stateFollowing:
		e.log.Info("replica: following upstream again", "rev", rev, "was", prev, "reason", prevReason,
			"failed_attempts", failures, "after", time.Since(prevSince).Round(time.Millisecond))
	case state == stateRefusing:
		e.log.Error("replica: refusing upstream snapshots (serving rev, -1: none); retrying with backoff, logged again when this changes",
			"reason", reason, "err", err, "rev", rev)
	default:
		e.log.Warn("replica: upstream unavailable (serving rev, -1: none); retrying with backoff, logged again when this changes",
			"err", err, "rev", rev)
	}
}

// replicaStatus is a consistent view of the replica state.
func (e *Edge) replicaStatus() (has bool, state, reason string, since time.Time) {
	f := &e.follow
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hasReplica, f.state, f.reason, f.since
}

// snapshotAge is how old the newest proof of freshness is (ok false when
// unknown).
func (e *Edge) snapshotAge(now time.Time) (time.Duration, bool) {
	ms := e.follow.fresh.Load()
	if ms <= 0 {
		return 0, false
	}
	return time.Duration(now.UnixMilli()-ms) * time.Millisecond, true
}

// stale reports whether --max-snapshot-age is set and the current snapshot
// is older than it (a snapshot without an issued time counts as stale).
func (e *Edge) stale(now time.Time) bool {
	maxAge := e.cfg.MaxSnapshotAge
	if maxAge <= 0 || e.snap.Load() == nil {
		return false
	}
	age, ok := e.snapshotAge(now)
	return !ok || age > maxAge
}

// refuseStale answers a device request 503 snapshot_stale when the snapshot
// is stale; it reports whether it did. Without --max-snapshot-age it is one
// comparison and never allocates.
func (e *Edge) refuseStale(out *reply) bool {
	if e.cfg.MaxSnapshotAge <= 0 || !e.stale(time.Now()) {
		return false
	}
	e.follow.staleAnswers.Add(1)
	out.jsonError(503, codeStale, "The edge's snapshot is older than its --max-snapshot-age: it cannot tell whether its answers are current")
	out.retryAfter = 30
	return true
}

// readyz answers GET /readyz: 503 not_ready without a snapshot, 503
// snapshot_stale past --max-snapshot-age, else 200 {"status":"ok","rev"}.
// The revision, the snapshot's age (when its issued time is known) and,
// with a replica, whether it is following its upstream (and if not why and
// since when: the edge keeps serving its last good snapshot meanwhile) are
// top-level fields of the 200 and in moreInfo of the 503 envelopes.
func (e *Edge) readyz(out *reply) {
	now := time.Now()
	s := e.snap.Load()
	out.contentType = contentTypeJSON
	b := out.body[:0]
	switch {
	case s == nil:
		out.status = 503
		b = append(b, `{"error":"not_ready","message":"Edge has no verified snapshot yet","moreInfo":{`...)
	case e.stale(now):
		out.status = 503
		b = append(b, `{"error":"snapshot_stale","message":"Snapshot older than --max-snapshot-age","moreInfo":{`...)
	default:
		out.status = 200
		b = append(b, `{"status":"ok",`...)
	}
	first := true
	field := func(name string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(append(append(b, '"'), name...), `":`...)
	}
	if s != nil {
		field("rev")
		b = strconv.AppendInt(b, s.Rev, 10)
		if age, ok := e.snapshotAge(now); ok {
			field("age_seconds")
			b = strconv.AppendFloat(b, age.Seconds(), 'f', 1, 64)
		}
	}
	if has, state, reason, since := e.replicaStatus(); has {
		field("following")
		b = strconv.AppendBool(b, state == stateFollowing)
		if state != stateFollowing {
			if reason == "" {
				reason = state
			}
			field("reason")
			b = append(append(append(b, '"'), reason...), '"')
			field("since")
			b = append(b, '"')
			b = since.UTC().AppendFormat(b, time.RFC3339)
			b = append(b, '"')
		}
	}
	if out.status != 200 {
		b = append(b, '}')
	}
	out.body = append(b, '}')
}
