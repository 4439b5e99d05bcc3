package origin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/updraft-cdn/updraft/origin/store"
)

// seenMetrics count what the origin learns of devices from event segments:
// update check-ins reported by edges, devices seen for the first time, and
// events from devices never seen checking for updates (a device id made up
// for POST /stats shows up there: honest devices check for updates before
// they install anything).
type seenMetrics struct {
	checkIns       prometheus.Counter
	newDevices     prometheus.Counter
	seenDropped    prometheus.Counter
	withoutCheckIn prometheus.Counter
}

func newSeenMetrics(reg *prometheus.Registry) *seenMetrics {
	m := &seenMetrics{
		checkIns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "updraft_origin_checkins_total", Help: "Device update check-ins reported by edges (at most one per device per edge per second).",
		}),
		newDevices: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "updraft_origin_devices_first_seen_total", Help: "Devices the origin saw for the first time (an event or a check-in).",
		}),
		seenDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "updraft_origin_devices_seen_dropped_total", Help: "New devices not recorded because the seen-devices table is full (they stay new to the rollout guard).",
		}),
		withoutCheckIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "updraft_origin_events_without_checkin_total", Help: "Events from devices never seen checking for updates at any edge: bursts here are forged device ids.",
		}),
	}
	reg.MustRegister(m.checkIns, m.newDevices, m.seenDropped, m.withoutCheckIn)
	return m
}

func (m *seenMetrics) countSeen(res store.IngestResult) {
	m.checkIns.Add(float64(res.CheckIns))
	m.newDevices.Add(float64(res.NewDevices))
	m.seenDropped.Add(float64(res.SeenDropped))
	m.withoutCheckIn.Add(float64(res.WithoutCheckIn))
}
