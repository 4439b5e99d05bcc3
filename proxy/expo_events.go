package proxy

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zeebo/xxh3"

	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// Analytics of Expo devices (docs/design-notes.md, "Expo updates at the
// edge"). The expo-updates client reports no events, so the edge derives
// them from its requests. Each manifest request is an update check-in (the
// guard's established devices, clients.go); one whose
// expo-current-update-id is one of the app's updates says the device runs
// that bundle — a "set", as the Capacitor plugin reports an install; each
// id of expo-recent-failed-update-ids that is one of the app's updates is
// an "update_fail" of that bundle; an expo-fatal-error (the error that
// ended the previous launch, sent once) is an "app_crash" of the bundle
// the device runs, the message in the event's metadata. An asset request
// answered in full with an update's launch asset, from a device named by
// its EAS-Client-ID (the stock clients send it with every asset), is a
// "download_complete" of that update. All go through the stats spool,
// placed in the device's channel, segment and arm, so `updraft stats`,
// the charts and the rollout guard count Expo devices as Capgo ones.
//
// A device sends the same headers at every check, so an event is kept
// only when it says something new: a direct-mapped table remembers the
// last "set" version per (app, device), and each other report per (app,
// device, action, version) (a crash with its message), with the day; the
// same report is sent again at most once a day (collisions only repeat a
// report). Events are rate-limited per client network like POST /stats,
// and appended by a background writer from a bounded queue, so an answer
// never waits for the spool's fsync.

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
		Name: "updraft_edge_expo_events_dropped_total", Help: "Events derived from Expo manifest and asset requests not kept, by reason (rate_limited, queue_full, spool).",
	}, []string{"reason"})
	ev.sent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "updraft_edge_expo_events_total", Help: "Records of events derived from Expo manifest and asset requests (set, update_fail, app_crash, download_complete) appended to the stats spool.",
	})
}

// fresh reports whether a report is news today, and remembers it. A
// "set" has one slot per (app, device) holding the version, so that a
// device moving back to an earlier bundle is reported again; any other
// report has one per (app, device, action, version), whose value also
// hashes detail (a crash's message: another crash is news).
func (ev *expoEvents) fresh(app string, dev [16]byte, action, version, detail string, day int64) bool {
	slot, v := expoSeenSlot(app, dev, action, version, detail, day)
	return ev.seen[slot].Swap(v) != v
}

// forget undoes fresh for a report that was not kept.
func (ev *expoEvents) forget(app string, dev [16]byte, action, version, detail string, day int64) {
	slot, v := expoSeenSlot(app, dev, action, version, detail, day)
	ev.seen[slot].CompareAndSwap(v, 0)
}

func expoSeenSlot(app string, dev [16]byte, action, version, detail string, day int64) (slot, v uint64) {
	var k [16 + 32 + 128]byte
	n := copy(k[:], dev[:])
	n += copy(k[n:], action)
	k[n] = 0
	n++
	if action != "set" {
		n += copy(k[n:], version)
	}
	v = xxh3.HashStringSeed(version, uint64(day))
	if detail != "" {
		v ^= xxh3.HashString(detail)
	}
	return xxh3.HashSeed(k[:n], xxh3.HashString(app)) % expoSeenSlots, v | 1
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

// expoReport is one event a request tells: detail, when set, is a
// crash's message, kept in the event's metadata.
type expoReport struct {
	action, version, detail string
}

// expoFatalMax bounds the expo-fatal-error message kept (the clients send
// at most 1024 characters).
const expoFatalMax = 1024

// expoEvents records what a manifest request tells about the device (see
// above). rq is the request Resolve saw; onEmbedded reports that the
// device runs its embedded update.
func (e *Edge) expoEvents(snap *snapshot.Snapshot, t *expoTable, app *snapshot.App, rq *snapshot.Request, dev [16]byte,
	cur *expoUpdate, runtimeSemver bool, failedHdr, fatalHdr string, onEmbedded bool, client netip.Addr) {
	if e.spool == nil {
		return
	}
	ev := &e.expo.events
	now := time.Now()
	day := now.Unix() / 86400
	var reps [2 + expoMaxFailed]expoReport
	n := 0
	if cur != nil && ev.fresh(app.ID, dev, "set", cur.bundle.Version, "", day) {
		reps[n] = expoReport{action: "set", version: cur.bundle.Version}
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
			if u == nil || !ev.fresh(app.ID, dev, "update_fail", u.bundle.Version, "", day) {
				return
			}
			reps[n] = expoReport{action: "update_fail", version: u.bundle.Version}
			n++
		})
	}
	if fatalHdr != "" {
		// The previous launch ended in a fatal error (the Android client's
		// NoDatabaseLauncher error log, iOS's ErrorRecovery): a crash of the
		// bundle the device runs now, as far as the edge can tell.
		version := "unknown"
		switch {
		case cur != nil:
			version = cur.bundle.Version
		case onEmbedded:
			version = snapshot.BuiltinVersion
		}
		msg := truncateUTF8(fatalHdr, expoFatalMax)
		if ev.fresh(app.ID, dev, "app_crash", version, msg, day) {
			reps[n] = expoReport{action: "app_crash", version: version, detail: msg}
			n++
		}
	}
	if n == 0 {
		return
	}
	build := ""
	if runtimeSemver {
		build = rq.VersionBuild
	}
	e.expoSend(snap, app.ID, rq, dev, reps[:n], build, client, now, day)
}

// expoDownload records a download of the update whose launch asset a is,
// answered in full to the request r (see above): once per device and
// update a day. The update is the one Expo-Requested-Update-ID names
// (recent clients send it) when that is one of a's, else the only bundle
// a is the launch asset of for the request's platform; none when two
// bundles share it. The device is placed as its manifest request was:
// EAS-Client-ID, expo-channel-name (the app's updates.requestHeaders go
// with asset requests too), the platform, the update's runtime version
// (the only one it is offered to), the bundle of Expo-Current-Update-ID.
func (e *Edge) expoDownload(r *request, t *expoTable, a *expoAsset, app string) {
	x := e.expo
	h := r.header
	clientID := h.get("eas-client-id")
	dev, ok := snapshot.ParseDeviceID(clientID)
	if !ok {
		x.downloads.WithLabelValues("no_client_id").Inc()
		return
	}
	platform := h.get("expo-platform")
	if platform != snapshot.PlatformIOS && platform != snapshot.PlatformAndroid {
		platform = ""
	}
	u := t.launchUpdate(a, app, platform, h.get("expo-requested-update-id"))
	if u == nil {
		x.downloads.WithLabelValues("ambiguous").Inc()
		return
	}
	if e.spool == nil {
		return
	}
	ev := &x.events
	now := time.Now()
	day := now.Unix() / 86400
	if !ev.fresh(app, dev, "download_complete", u.bundle.Version, "", day) {
		x.downloads.WithLabelValues("repeat").Inc()
		return
	}
	x.downloads.WithLabelValues("new").Inc()
	var lower [36]byte
	for i := range lower {
		c := clientID[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	channel := h.get("expo-channel-name")
	if len(channel) > 128 || !printable(channel) {
		channel = ""
	}
	rq := &snapshot.Request{AppID: app, DeviceID: string(lower[:]), VersionName: "unknown", VersionBuild: "0.0.0",
		Platform: u.platform, PluginVersion: "0.0.0", DefaultChannel: channel, BuildChannel: true, IsProd: true}
	if cur := t.current(app, u.platform, h.get("expo-current-update-id")); cur != nil {
		rq.VersionName = cur.bundle.Version
	}
	build := ""
	if _, ok := snapshot.ParseVersion(u.runtime); ok {
		rq.VersionBuild, build = u.runtime, u.runtime
	}
	reps := [1]expoReport{{action: "download_complete", version: u.bundle.Version}}
	e.expoSend(t.snap, app, rq, dev, reps[:], build, r.client, now, day)
}

// launchUpdate is the update a download of launch asset a is for (see
// expoDownload); platform "" matches both.
func (t *expoTable) launchUpdate(a *expoAsset, app, platform, requested string) *expoUpdate {
	if id, ok := snapshot.ParseDeviceID(requested); ok {
		if u := t.byPrefix[expoIDKey{app, expoPrefixOf(id)}]; u != nil && (platform == "" || u.platform == platform) {
			for _, l := range a.launchOf {
				if l == u {
					return u
				}
			}
		}
	}
	var pick *expoUpdate
	for _, u := range a.launchOf {
		switch {
		case platform != "" && u.platform != platform:
		case pick == nil:
			pick = u
		case pick.bundle != u.bundle:
			return nil
		}
	}
	return pick
}

// expoSend appends reports of one request to the stats spool: rate-limited
// per client network, placed by rq, through the writer's queue; a report
// not kept is forgotten (fresh) so that the next request tells it again.
func (e *Edge) expoSend(snap *snapshot.Snapshot, appID string, rq *snapshot.Request, dev [16]byte, reps []expoReport,
	build string, client netip.Addr, now time.Time, day int64) {
	ev := &e.expo.events
	n := len(reps)
	if l := e.clients.stats; l != nil && limited(client) {
		if ok, _ := l.allowN(networkKey(client), e.clients.now(), float64(n)); !ok {
			ev.dropped.WithLabelValues("rate_limited").Add(float64(n))
			for _, r := range reps {
				ev.forget(appID, dev, r.action, r.version, r.detail, day)
			}
			return
		}
	}
	p := snapshot.Place(snap, rq)
	evs := make([]events.Event, n)
	for i, r := range reps {
		evs[i] = events.Event{Received: now.UnixMilli(), AppID: appID, DeviceID: rq.DeviceID, Action: r.action,
			VersionName: r.version, Platform: rq.Platform, VersionBuild: build, IsProd: true,
			Channel: p.Channel, Segment: p.Segment, Arm: p.Arm, ClientPrefix: events.PrefixOf(client)}
		if r.detail != "" {
			meta := append(make([]byte, 0, len(expoFatalKey)+len(r.detail)+16), `{"`+expoFatalKey+`":`...)
			evs[i].Metadata = string(append(appendString(meta, r.detail), '}'))
		}
	}
	rec := events.AppendRecords(nil, evs, maxRecordBytes) // copies the request's strings
	ev.pending.Add(1)
	select {
	case ev.queue <- rec:
	default:
		ev.pending.Add(-1)
		ev.dropped.WithLabelValues("queue_full").Add(float64(n))
		for _, r := range reps {
			ev.forget(appID, dev, r.action, r.version, r.detail, day)
		}
	}
}

// expoFatalKey is the metadata key of an app_crash's message.
const expoFatalKey = "expo_fatal_error"

// truncateUTF8 is s cut to at most max bytes, not inside a UTF-8 sequence.
func truncateUTF8(s string, max int) string {
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
