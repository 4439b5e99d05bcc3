package store

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// CohortRule is a behaviour cohort's definition, computed by the origin
// from what it records (the device inventory and its log, the devices seen,
// the install outcomes):
//
//	new:Nd      first seen by the origin within the last N days
//	active:K/Nd checked in on at least K distinct UTC days of the last N
//	power:P%    the top P% of the active devices (store.Active) by check-ins
//	            within ActiveWindow (ties: lower device id first); a device
//	            with none is never a member
//	power:P%/E  the same, ranked by how often the device reported the event
//	            E (a /stats action, e.g. app_moved_to_foreground)
//	failing:Nd  an install failure reported within the last N days
//
// Check-ins are counted from the device log, which keeps a device's last
// DeviceLogSize check-ins and events: a device checking in more often than
// that in the window counts as DeviceLogSize.
type CohortRule struct {
	Kind string // new, active, power, failing
	Days int    // N
	K    int    // active: days
	BPS  int    // power: share in basis points
	// Event: power ranks by this /stats action instead of check-ins.
	Event string
}

// validEventName: a /stats action as the plugin names them (snake case).
func validEventName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// ParseCohortRule reads a rule.
func ParseCohortRule(s string) (CohortRule, error) {
	bad := func() (CohortRule, error) {
		return CohortRule{}, invalid(CodeInvalidCohort, "rule %q: want new:Nd, active:K/Nd, power:P%%, power:P%%/EVENT or failing:Nd", s)
	}
	kind, arg, ok := strings.Cut(s, ":")
	if !ok {
		return bad()
	}
	days := func(v string) (int, bool) {
		n, err := strconv.Atoi(strings.TrimSuffix(v, "d"))
		return n, err == nil && strings.HasSuffix(v, "d") && n >= 1 && n <= 90
	}
	r := CohortRule{Kind: kind}
	switch kind {
	case "new", "failing":
		if r.Days, ok = days(arg); !ok {
			return bad()
		}
	case "active":
		k, d, found := strings.Cut(arg, "/")
		n, err := strconv.Atoi(k)
		if r.Days, ok = days(d); !found || !ok || err != nil || n < 1 || n > r.Days {
			return bad()
		}
		r.K = n
	case "power":
		if share, event, found := strings.Cut(arg, "/"); found {
			if !validEventName(event) {
				return bad()
			}
			arg, r.Event = share, event
		}
		p, err := strconv.ParseFloat(strings.TrimSuffix(arg, "%"), 64)
		if err != nil || !strings.HasSuffix(arg, "%") || p <= 0 || p > 100 || math.IsNaN(p) {
			return bad()
		}
		r.BPS = int(math.Round(p * 100))
	default:
		return bad()
	}
	return r, nil
}

func (r CohortRule) String() string {
	switch r.Kind {
	case "active":
		return fmt.Sprintf("active:%d/%dd", r.K, r.Days)
	case "power":
		p := "power:" + strconv.FormatFloat(float64(r.BPS)/100, 'f', -1, 64) + "%"
		if r.Event != "" {
			p += "/" + r.Event
		}
		return p
	}
	return fmt.Sprintf("%s:%dd", r.Kind, r.Days)
}

const day = int64(24 * time.Hour / time.Millisecond)

// CohortMembers computes the device ids a rule selects at now (Unix ms),
// sorted as member keys.
func (e *EventStore) CohortMembers(ctx context.Context, appID string, r CohortRule, now int64) ([][16]byte, error) {
	var q string
	var args []any
	switch r.Kind {
	case "new":
		q, args = `SELECT device_id FROM devices_seen WHERE app_id = ? AND first_seen > ?`, []any{appID, now - int64(r.Days)*day}
	case "failing":
		q, args = `SELECT DISTINCT device_id FROM device_outcomes WHERE app_id = ? AND failed = 1 AND updated_at > ?`, []any{appID, now - int64(r.Days)*day}
	case "active":
		q = `SELECT device_id FROM (SELECT DISTINCT device_id, at / ` + strconv.FormatInt(day, 10) + ` AS d FROM device_log
			WHERE app_id = ? AND kind = '` + LogCheckIn + `' AND at > ? AND at <= ?) days GROUP BY device_id HAVING count(*) >= ?`
		args = []any{appID, now - int64(r.Days)*day, now, r.K}
	case "power":
		return e.powerMembers(ctx, appID, r.BPS, r.Event, now)
	default:
		return nil, fmt.Errorf("cohort rule kind %q", r.Kind)
	}
	rows, err := e.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][16]byte
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		if u, ok := snapshot.ParseDeviceID(id); ok {
			out = append(out, u)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return SortKeys(out), nil
}

// powerMembers ranks the active devices by their check-ins (event "") or
// reports of event within ActiveWindow and keeps the top share of the
// active devices (rounded up) among those with at least one.
func (e *EventStore) powerMembers(ctx context.Context, appID string, bps int, event string, now int64) ([][16]byte, error) {
	type dev struct {
		id string
		n  int64
	}
	var devs []dev
	kind, action := LogCheckIn, ""
	match := `l.kind = ?`
	if event != "" {
		kind, action, match = LogEvent, event, `l.kind = ? AND l.action = ?`
	}
	args := []any{kind}
	if event != "" {
		args = append(args, action)
	}
	args = append(args, activeSince(now), now, appID, activeSince(now))
	rows, err := e.db.QueryContext(ctx, `SELECT d.device_id, (SELECT count(*) FROM device_log l WHERE l.app_id = d.app_id AND l.device_id = d.device_id
		AND `+match+` AND l.at > ? AND l.at <= ?) FROM devices d WHERE d.app_id = ? AND d.last_seen > ?`, args...)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var d dev
		if err := rows.Scan(&d.id, &d.n); err != nil {
			rows.Close()
			return nil, err
		}
		devs = append(devs, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(devs, func(a, b dev) int {
		if c := cmp.Compare(b.n, a.n); c != 0 {
			return c
		}
		return cmp.Compare(strings.ToLower(a.id), strings.ToLower(b.id))
	})
	keep := (len(devs)*bps + snapshot.BucketCount - 1) / snapshot.BucketCount
	var out [][16]byte
	for _, d := range devs[:keep] {
		if d.n == 0 {
			break // sorted: none left with a check-in or the event
		}
		if u, ok := snapshot.ParseDeviceID(d.id); ok {
			out = append(out, u)
		}
	}
	return SortKeys(out), nil
}
