package store

import (
	"context"
	"time"

	"github.com/updraft-cdn/updraft/origin/events"
)

// ActiveWindow defines an active device, once for all of Updraft (the
// adoption reports, and the behaviour cohorts): a device is active at a
// time T when the origin heard of it, by a check-in or an event, within
// ActiveWindow before T. "Heard of" is the device inventory's last_seen
// (edge time), so the count of active devices is a count over the
// inventory (ActiveDevices), not a scan of raw events.
const ActiveWindow = 30 * 24 * time.Hour

// Active reports whether a device last seen at lastSeen is active at at
// (both Unix ms). ActiveDevices counts exactly the devices it accepts.
func Active(lastSeen, at int64) bool { return lastSeen > activeSince(at) }

// activeSince is the last_seen a device must exceed to be active at at.
func activeSince(at int64) int64 { return at - ActiveWindow.Milliseconds() }

// ActiveCount is the number of active devices whose last check-in placed
// them on Channel in Segment (the inventory's channel and reason; devices
// known only from events count under "" and "").
type ActiveCount struct {
	Channel, Segment string
	N                int64
}

// ActiveDevices counts the app's devices active at at (Unix ms), by
// channel and segment, only on channel when not "". Its cost is one pass
// over the app's inventory rows (bounded by MaxInventoryDevices), the
// only per-device read of the adoption report.
func (s *EventStore) ActiveDevices(ctx context.Context, appID, channel string, at int64) ([]ActiveCount, error) {
	q := `SELECT channel, reason, count(*) FROM devices WHERE app_id = ? AND last_seen > ?`
	args := []any{appID, activeSince(at)}
	if channel != "" {
		q += ` AND channel = ?`
		args = append(args, channel)
	}
	rows, err := s.db.QueryContext(ctx, q+` GROUP BY channel, reason`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ActiveCount
	for rows.Next() {
		var c ActiveCount
		if err := rows.Scan(&c.Channel, &c.Segment, &c.N); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// ReleaseCount is the events of one action about one bundle on one
// channel in one segment, over all time, with the first minute any was
// counted.
type ReleaseCount struct {
	Channel, Segment, Version, Action string
	FirstMinute                       int64
	N                                 int64
}

// ReleaseCounts sums the aggregates (event_counts) of f's app by
// channel, segment, version and action, over all time (f's From and To
// are ignored).
func (s *EventStore) ReleaseCounts(ctx context.Context, f EventFilter) ([]ReleaseCount, error) {
	f.From, f.To = 0, 1<<62
	w, args := f.where()
	rows, err := s.db.QueryContext(ctx, `SELECT channel, segment, version_name, action, min(minute), CAST(sum(n) AS BIGINT) FROM event_counts WHERE `+w+
		` GROUP BY channel, segment, version_name, action`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ReleaseCount
	for rows.Next() {
		var c ReleaseCount
		if err := rows.Scan(&c.Channel, &c.Segment, &c.Version, &c.Action, &c.FirstMinute, &c.N); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// TimingCount is installs or failures of one segment in one hour of day
// (0–23) and day of week (0 Sunday), UTC.
type TimingCount struct {
	Segment       string
	Failure       bool
	Hour, Weekday int
	N             int64
}

// Timing sums f's installs ("set") and failures (*_fail) by segment, hour
// of day and day of week (UTC), over all time (From and To ignored).
func (s *EventStore) Timing(ctx context.Context, f EventFilter) ([]TimingCount, error) {
	f.From, f.To = 0, 1<<62
	w, args := f.where()
	// minute counts from the Unix epoch, a Thursday (weekday 4).
	rows, err := s.db.QueryContext(ctx, `SELECT segment, action, ((minute / 60) % 24), (((minute / 1440) + 4) % 7), CAST(sum(n) AS BIGINT)
		FROM event_counts WHERE `+w+` AND (action = 'set' OR action LIKE '%fail') GROUP BY 1, 2, 3, 4`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TimingCount
	for rows.Next() {
		var c TimingCount
		var action string
		if err := rows.Scan(&c.Segment, &action, &c.Hour, &c.Weekday, &c.N); err != nil {
			return nil, err
		}
		if action != "set" && !events.Failure(action) {
			continue
		}
		c.Failure = action != "set"
		out = append(out, c)
	}
	return out, rows.Err()
}
