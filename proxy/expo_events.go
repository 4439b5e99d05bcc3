package proxy

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zeebo/xxh3"

	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// Analytics of Expo devices (docs/design-notes.md, "Expo updates at the
// edge"). The expo-updates client reports no events, so the edge derives
// them from its manifest requests: each is an update check-in (the
// guard's established devices, clients.go); a request whose
// expo-current-update-id is one of the app's updates says the device runs
// that bundle — a "set", as the Capacitor plugin reports an install; and
// each id of expo-recent-failed-update-ids that is one of the app's
// updates is an "update_fail" of that bundle. Both go through the stats
// spool, placed in the device's channel, segment and arm, so `updraft
// stats`, the charts and the rollout guard count Expo devices as Capgo
// ones.
//
// A device sends the same headers at every check, so an event is kept
// only when it says something new: a direct-mapped table remembers the
// last "set" version per (app, device) and the failures per (app, device,
// version), with the day; the same report is sent again at most once a
// day (collisions only repeat a report). At most one record per request, rate-limited per client network
// like POST /stats, and appended by a background writer from a bounded
// queue, so a manifest answer never waits for the spool's fsync.

const (
	expoSeenSlots  = 1 << 16 // 512 KiB
	expoEventQueue = 1024
)

type expoEvents struct {
	seen    []atomic.Uint64
	queue   chan []byte
	pending atomic.Int64 // records queued or being appended

	dropped *prometheus.CounterVec
	sent    prometheus.Counter
}

func (ev *expoEvents) init() {
	ev.seen = make([]atomic.Uint64, expoSeenSlots)
	ev.queue = make(chan []byte, expoEventQueue)
	ev.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "updraft_edge_expo_events_dropped_total", Help: "Events derived from Expo manifest requests not kept, by reason (rate_limited, queue_full, spool).",
	}, []string{"reason"})
	ev.sent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "updraft_edge_expo_events_total", Help: "Events derived from Expo manifest requests (set, update_fail) appended to the stats spool.",
	})
}

// fresh reports whether a report is news today, and remembers it. A
// "set" has one slot per (app, device) holding the version, so that a
// device moving back to an earlier bundle is reported again; a failure
// has one per (app, device, version).
func (ev *expoEvents) fresh(app string, dev [16]byte, action, version string, day int64) bool {
	slot, v := expoSeenSlot(app, dev, action, version, day)
	return ev.seen[slot].Swap(v) != v
}

// forget undoes fresh for a report that was not kept.
func (ev *expoEvents) forget(app string, dev [16]byte, action, version string, day int64) {
	slot, v := expoSeenSlot(app, dev, action, version, day)
	ev.seen[slot].CompareAndSwap(v, 0)
}

func expoSeenSlot(app string, dev [16]byte, action, version string, day int64) (slot, v uint64) {
	var k [16 + 16 + 128]byte
	n := copy(k[:], dev[:])
	n += copy(k[n:], action)
	if action != "set" {
		n += copy(k[n:], version)
	}
	return xxh3.HashSeed(k[:n], xxh3.HashString(app)) % expoSeenSlots, xxh3.HashStringSeed(version, uint64(day)) | 1
}

// startExpoEvents starts the writer of derived events (called by
// StartStats); it stops with the spool.
func (e *Edge) startExpoEvents() {
	ev := &e.expo.events
	e.spool.background(func(ctx context.Context) {
		for {
			select {
			case rec := <-ev.queue:
				if err := e.spool.append(rec); err != nil {
					if !errors.Is(err, errSpoolClosed) {
						ev.dropped.WithLabelValues("spool").Inc()
					}
				} else {
					ev.sent.Inc()
				}
				ev.pending.Add(-1)
			case <-ctx.Done():
				return
			}
		}
	})
}

// flushExpoEvents waits until the queued derived events are appended.
func (e *Edge) flushExpoEvents(ctx context.Context) error {
	for e.expo.events.pending.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// expoEvents records what a manifest request tells about the device (see
// above). rq is the request Resolve saw.
func (e *Edge) expoEvents(snap *snapshot.Snapshot, t *expoTable, app *snapshot.App, rq *snapshot.Request, dev [16]byte,
	cur *expoUpdate, runtimeSemver bool, failedHdr string, client netip.Addr) {
	if e.spool == nil {
		return
	}
	ev := &e.expo.events
	now := time.Now()
	day := now.Unix() / 86400
	var versions [1 + expoMaxFailed]string
	var actions [1 + expoMaxFailed]string
	n := 0
	if cur != nil && ev.fresh(app.ID, dev, "set", cur.bundle.Version, day) {
		versions[n], actions[n] = cur.bundle.Version, "set"
		n++
	}
	if failedHdr != "" {
		seen := 0
		sfvList(failedHdr, func(v sfvItem) {
			if seen >= expoMaxFailed || v.kind != sfvString && v.kind != sfvToken {
				return
			}
			seen++
			id, ok := snapshot.ParseDeviceID(v.str)
			if !ok {
				return
			}
			u := t.byPrefix[expoIDKey{app.ID, expoPrefixOf(id)}]
			if u == nil || !ev.fresh(app.ID, dev, "update_fail", u.bundle.Version, day) {
				return
			}
			versions[n], actions[n] = u.bundle.Version, "update_fail"
			n++
		})
	}
	if n == 0 {
		return
	}
	if l := e.clients.stats; l != nil && limited(client) {
		if ok, _ := l.allowN(networkKey(client), e.clients.now(), float64(n)); !ok {
			ev.dropped.WithLabelValues("rate_limited").Add(float64(n))
			for i := 0; i < n; i++ {
				ev.forget(app.ID, dev, actions[i], versions[i], day)
			}
			return
		}
	}
	p := snapshot.Place(snap, rq)
	build := ""
	if runtimeSemver {
		build = rq.VersionBuild
	}
	evs := make([]events.Event, n)
	for i := range evs {
		evs[i] = events.Event{Received: now.UnixMilli(), AppID: app.ID, DeviceID: rq.DeviceID, Action: actions[i],
			VersionName: versions[i], Platform: rq.Platform, VersionBuild: build, IsProd: true,
			Channel: p.Channel, Segment: p.Segment, Arm: p.Arm, ClientPrefix: events.PrefixOf(client)}
	}
	rec := events.AppendRecords(nil, evs, maxRecordBytes) // copies the request's strings
	ev.pending.Add(1)
	select {
	case ev.queue <- rec:
	default:
		ev.pending.Add(-1)
		ev.dropped.WithLabelValues("queue_full").Add(float64(n))
		for i := 0; i < n; i++ {
			ev.forget(app.ID, dev, actions[i], versions[i], day)
		}
	}
}
