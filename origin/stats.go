package origin

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// ErrCorruptSegment is an event segment the origin refuses for good: its
// framing, checksums or content are wrong, so re-sending cannot help.
var ErrCorruptSegment = errors.New("origin: corrupt event segment")

// maxSegmentBody bounds one POST /v1/events body (edges send at most about
// 512 KiB; a record is at most events.MaxRecord).
const maxSegmentBody = 8 << 20

// eventRetention is how long raw events (and the ingest records that make
// re-sent segments harmless) are kept; aggregates are kept.
var eventRetention = 7 * 24 * time.Hour

type originMetrics struct {
	leaseHeld      *prometheus.GaugeVec
	reg            *prometheus.Registry
	ingestedEvents prometheus.Counter
	skippedEvents  prometheus.Counter
	segments       *prometheus.CounterVec
	ingestSeconds  prometheus.Histogram
	guardActions   *prometheus.CounterVec
	guardEvals     prometheus.Counter
	*seenMetrics
}

func newOriginMetrics() *originMetrics {
	m := &originMetrics{
		reg: prometheus.NewRegistry(),
		ingestedEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "updraft_origin_events_ingested_total", Help: "Device events ingested (first delivery of their segment).",
		}),
		skippedEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "updraft_origin_events_skipped_total", Help: "Events of ingested segments skipped as malformed (invalid app id, device id or action).",
		}),
		segments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "updraft_origin_event_segments_total", Help: "Event segments received, by outcome (ingested, duplicate, corrupt, error).",
		}, []string{"outcome"}),
		ingestSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "updraft_origin_event_ingest_seconds", Help: "Time to ingest one segment (decode, store, aggregate, commit).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
		}),
		guardActions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "updraft_origin_guard_actions_total", Help: "Rollout guard actions taken, by action.",
		}, []string{"action"}),
		guardEvals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "updraft_origin_guard_evaluations_total", Help: "Rollout guard evaluations of one channel.",
		}),
	}
	m.leaseHeld = prometheus.NewGaugeVec(leaseHeldDesc, []string{"lease"}) // cluster.go
	m.reg.MustRegister(m.ingestedEvents, m.skippedEvents, m.segments, m.ingestSeconds, m.guardActions, m.guardEvals, m.leaseHeld)
	m.seenMetrics = newSeenMetrics(m.reg)
	return m
}

// IngestSegment stores one edge's event segment exactly once: a segment
// already ingested under (edgeID, seq) is acknowledged without effect. It
// returns an error wrapping ErrCorruptSegment for a segment that can never
// be ingested.
func (s *Server) IngestSegment(ctx context.Context, edgeID string, seq uint64, segment []byte) error {
	start := time.Now()
	edgeID = strings.ToLower(edgeID) // one edge, one id, whatever its case
	if b, err := hex.DecodeString(edgeID); err != nil || len(b) != 16 {
		s.metrics.segments.WithLabelValues("corrupt").Inc()
		return fmt.Errorf("%w: edge id %q: want 32 hex digits", ErrCorruptSegment, edgeID)
	}
	var evs []events.Event
	var cis []events.CheckIns
	skipped := 0
	err := events.Decode(segment, events.Visitor{Event: func(e *events.Event) error {
		// The edge validated the event; what this origin cannot take is
		// skipped and counted, not the whole segment (a newer edge may know
		// an action this origin does not). Unknown but well-formed actions
		// are kept.
		if !snapshot.ValidAppID(e.AppID) || !snapshot.ValidDeviceID(e.DeviceID) || !events.WellFormedAction(e.Action) {
			skipped++
			return nil
		}
		evs = append(evs, *e)
		return nil
	}, CheckIns: func(c *events.CheckIns) error {
		if !snapshot.ValidAppID(c.AppID) {
			skipped += len(c.Devices)
			return nil
		}
		cis = append(cis, *c)
		return nil
	}})
	if skipped > 0 {
		s.metrics.skippedEvents.Add(float64(skipped))
		s.log.Warn("origin: skipped malformed events of a segment", "edge", edgeID, "seq", seq, "skipped", skipped)
	}
	if err != nil {
		s.metrics.segments.WithLabelValues("corrupt").Inc()
		return fmt.Errorf("%w: %v", ErrCorruptSegment, err)
	}
	res, err := s.events.IngestAll(ctx, edgeID, seq, segment, evs, cis)
	if err != nil {
		s.metrics.segments.WithLabelValues("error").Inc()
		return fmt.Errorf("origin: ingest segment %s/%d: %w", edgeID, seq, err)
	}
	if res.Duplicate {
		s.metrics.segments.WithLabelValues("duplicate").Inc()
		s.log.Debug("origin: duplicate event segment ignored", "edge", edgeID, "seq", seq)
		return nil
	}
	s.metrics.segments.WithLabelValues("ingested").Inc()
	s.metrics.ingestedEvents.Add(float64(res.Events))
	s.metrics.countSeen(res)
	s.metrics.ingestSeconds.Observe(time.Since(start).Seconds())
	if len(res.Outcomes) > 0 {
		s.guard.nudge()
	}
	return nil
}

// postEvents is POST /v1/events: one spool segment from an edge.
func (s *Server) postEvents(w http.ResponseWriter, r *http.Request) error {
	edgeID := r.Header.Get("X-Updraft-Edge-Id")
	seq, err := strconv.ParseUint(r.Header.Get("X-Updraft-Segment"), 10, 64)
	if err != nil {
		return errf(http.StatusBadRequest, "corrupt_segment", "X-Updraft-Segment: want the segment's sequence number")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxSegmentBody+1))
	if err != nil {
		return errf(http.StatusBadRequest, "body_read", "reading the segment: %v", err)
	}
	if len(body) > maxSegmentBody {
		return errf(http.StatusRequestEntityTooLarge, "corrupt_segment", "a segment is at most %d bytes", maxSegmentBody)
	}
	if err := s.IngestSegment(r.Context(), edgeID, seq, body); err != nil {
		if errors.Is(err, ErrCorruptSegment) {
			s.log.Warn("origin: refused an event segment", "edge", edgeID, "seq", seq, "err", err)
			return errf(http.StatusBadRequest, "corrupt_segment", "%v", err)
		}
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	return nil
}

// pruneEvents deletes raw events past the retention, hourly.
func (s *Server) pruneEvents(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		n, err := s.events.Prune(ctx, time.Now().Add(-eventRetention).UnixMilli())
		if err != nil && ctx.Err() == nil {
			s.log.Error("origin: prune events", "err", err)
		} else if n > 0 {
			s.log.Info("origin: pruned raw events past retention", "events", n, "retention", eventRetention)
		}
		n, err = s.events.PruneSeen(ctx, time.Now().Add(-store.SeenRetention).UnixMilli())
		if err != nil && ctx.Err() == nil {
			s.log.Error("origin: prune seen devices", "err", err)
		} else if n > 0 {
			s.log.Info("origin: forgot devices not seen within retention", "devices", n, "retention", store.SeenRetention)
		}
		s.pruneDevices(ctx) // devices.go
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// Events returns the event store (tests and tools read aggregates from it).
func (s *Server) Events() *store.EventStore { return s.events }
