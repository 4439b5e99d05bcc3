package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/store/postgres"
	"github.com/updraft-cdn/updraft/origin/store/sqlite"
)

// EventStore persists device events and their aggregates in their own
// SQLite database (DATA/events.db), so that ingest traffic never contends
// with the operator's metadata writes. Like Store it runs in WAL mode with
// synchronous=FULL: a segment acknowledged to an edge (which then deletes
// it) survives a crash.
//
// Every segment is ingested once: (edge id, sequence, SHA-256 of the
// segment) is recorded in the same transaction as its aggregates, so a
// re-sent segment changes nothing, while an edge that reuses a sequence
// number for other events (restored from a backup, cloned) is not mistaken
// for a re-send.
// The raw events are kept as the segment itself (the compact, checksummed
// encoding of origin/events), one row per segment: ingest writes one row
// for the raw data, not one per event.
type EventStore struct {
	db *db
	// noDeviceLog: the device inventory keeps no recent events (devices.go).
	noDeviceLog atomic.Bool
}

// MaxSeenDevices bounds the devices_seen table (about 150 bytes a row with
// its index): past it, devices not yet recorded are not recorded (they
// stay "new" to the rollout guard, the safe side) and are counted, until
// PruneSeen makes room. Devices not seen for SeenRetention are forgotten.
var MaxSeenDevices int64 = 20_000_000

// SeenRetention is how long a device the origin stops hearing from stays
// recorded as seen.
const SeenRetention = 90 * 24 * time.Hour

// seenRefresh is how stale a device's last_seen may get before an
// ingest rewrites it (one write per device per day at most).
const seenRefresh = 24 * time.Hour

// OpenEvents opens or creates the SQLite event database at path.
func OpenEvents(ctx context.Context, path string) (*EventStore, error) {
	return OpenEventsURL(ctx, "", path)
}

// OpenEventsURL opens the event store at url: "" for SQLite at path, or a
// postgres:// URL (several origins may share it).
func OpenEventsURL(ctx context.Context, url, path string) (*EventStore, error) {
	e, err := openEngine(ctx, url, path, sqlite.Events, postgres.Events)
	if err != nil {
		return nil, fmt.Errorf("events store: %w", err)
	}
	return &EventStore{db: newDB(e)}, nil
}

// Close closes the database.
func (s *EventStore) Close() error { return s.db.Close() }

// IngestResult says what one segment did.
type IngestResult struct {
	Events    int
	Duplicate bool // the segment had been ingested before: nothing changed
	// Outcomes lists the (app, channel) pairs whose rollout outcomes moved,
	// for the rollout guard.
	Outcomes map[[2]string]bool
	// CheckIns is the number of device check-ins the segment carried.
	CheckIns int
	// NewDevices is the number of devices first seen in this segment;
	// SeenDropped those not recorded because devices_seen is full.
	NewDevices, SeenDropped int
	// WithoutCheckIn counts events from devices never seen checking for
	// updates at any edge (forged device ids show up here).
	WithoutCheckIn int
}

type countKey struct {
	app                                              string
	minute                                           int64
	channel, segment, arm, platform, version, action string
}

type adoptKey struct {
	app                                 string
	minute                              int64
	channel, segment, platform, version string
}

// Ingest stores one edge segment's events and folds them into the
// aggregates, all in one transaction, unless the same segment (edgeID,
// seq, content) was ingested before.
func (s *EventStore) Ingest(ctx context.Context, edgeID string, seq uint64, segment []byte, evs []events.Event) (IngestResult, error) {
	return s.IngestAll(ctx, edgeID, seq, segment, evs, nil)
}

// IngestAll is Ingest for a segment that also carries check-ins: every
// device of evs and cis is recorded as seen (devices_seen), in the same
// transaction.
func (s *EventStore) IngestAll(ctx context.Context, edgeID string, seq uint64, segment []byte, evs []events.Event, cis []events.CheckIns) (IngestResult, error) {
	res := IngestResult{Events: len(evs), Outcomes: map[[2]string]bool{}}
	tx, err := s.db.beginWrite(ctx)
	if err != nil {
		return res, err
	}
	defer tx.Rollback()
	sum := sha256.Sum256(segment)
	r, err := tx.ExecContext(ctx, `INSERT INTO event_segments (edge_id, seq, sha256, events, received_at, data) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		edgeID, int64(seq), hex.EncodeToString(sum[:]), len(evs), time.Now().UnixMilli(), segment)
	if err != nil {
		return res, err
	}
	if n, _ := r.RowsAffected(); n == 0 {
		res.Duplicate, res.Events = true, 0
		return res, nil
	}
	seen, err := s.recordSeen(ctx, tx, evs, cis, &res)
	if err != nil {
		return res, err
	}
	if err := s.recordInventory(ctx, tx, edgeID, evs, cis); err != nil { // devices.go
		return res, err
	}
	counts := map[countKey]int64{}
	adoption := map[adoptKey]int64{}
	type outcomeKey struct{ app, version, device string }
	type outcome struct {
		channel, arm string
		failed       bool
		at           int64
		prefix       string
	}
	outcomes := map[outcomeKey]outcome{}
	type deviceVersion struct {
		version, channel, segment, platform string
		at                                  int64
	}
	// The recorded version of every device that installed or reset in
	// this segment, read at once.
	recorded := map[[2]string]deviceVersion{}
	installers := map[string][]any{} // app → device ids
	for i := range evs {
		if e := &evs[i]; e.Action == "set" || e.Action == "reset" {
			k := [2]string{e.AppID, e.DeviceID}
			if _, ok := recorded[k]; !ok {
				recorded[k] = deviceVersion{}
				installers[e.AppID] = append(installers[e.AppID], e.DeviceID)
			}
		}
	}
	clear(recorded)
	for app, ids := range installers {
		err := queryIn(ctx, tx, `SELECT device_id, version_name, channel, segment, platform, updated_at FROM device_versions WHERE app_id = ? AND device_id IN `,
			[]any{app}, ids, func(rows *sql.Rows) error {
				var dev string
				var dv deviceVersion
				if err := rows.Scan(&dev, &dv.version, &dv.channel, &dv.segment, &dv.platform, &dv.at); err != nil {
					return err
				}
				recorded[[2]string{app, dev}] = dv
				return nil
			})
		if err != nil {
			return res, err
		}
	}
	moved := map[[2]string]deviceVersion{} // (app, device) → latest version set in this segment
	for i := range evs {
		e := &evs[i]
		minute := e.Received / 60000
		platform := events.NormalizePlatform(e.Platform)
		counts[countKey{e.AppID, minute, e.Channel, e.Segment, e.Arm, platform, e.VersionName, e.Action}]++
		if e.Action == "set" || events.Failure(e.Action) {
			k := outcomeKey{e.AppID, e.VersionName, e.DeviceID}
			if o, ok := outcomes[k]; !ok || e.Received >= o.at {
				prefix := ""
				if e.ClientPrefix.IsValid() {
					prefix = e.ClientPrefix.String()
				}
				outcomes[k] = outcome{e.Channel, e.Arm, e.Action != "set", e.Received, prefix}
			}
		}
		// Adoption follows installs: "set" moves a device to version_name,
		// "reset" back to the store build.
		if e.Action == "set" || e.Action == "reset" {
			v := e.VersionName
			if e.Action == "reset" {
				v = "builtin"
			}
			k := [2]string{e.AppID, e.DeviceID}
			old, seen := moved[k]
			if !seen {
				old, seen = recorded[k]
			}
			now := deviceVersion{v, e.Channel, e.Segment, platform, e.Received}
			// Segments arrive out of order (two edges, retries): an install
			// older than the one recorded does not move the device back.
			if seen && e.Received < old.at {
				continue
			}
			if seen && old.version == now.version && old.channel == now.channel && old.segment == now.segment && old.platform == now.platform {
				// Same place, later report: only the time moves (so that a
				// late, older install cannot move the device back).
				moved[k] = now
				continue
			}
			if seen {
				adoption[adoptKey{e.AppID, minute, old.channel, old.segment, old.platform, old.version}]--
			}
			adoption[adoptKey{e.AppID, minute, e.Channel, e.Segment, platform, v}]++
			moved[k] = now
		}
	}
	// Every aggregate row is written with one multi-row upsert per table
	// (a few statements per segment, not a few per event: on PostgreSQL
	// each statement is a round trip).
	rows := make([][]any, 0, len(moved))
	for k, dv := range moved {
		rows = append(rows, []any{k[0], k[1], dv.version, dv.channel, dv.segment, dv.platform, dv.at})
	}
	if err := insertRows(ctx, tx, `INSERT INTO device_versions (app_id, device_id, version_name, channel, segment, platform, updated_at) VALUES `, rows,
		` ON CONFLICT (app_id, device_id) DO UPDATE SET version_name = excluded.version_name,
		channel = excluded.channel, segment = excluded.segment, platform = excluded.platform, updated_at = excluded.updated_at`); err != nil {
		return res, err
	}
	rows = rows[:0]
	for k, n := range counts {
		rows = append(rows, []any{k.app, k.minute, k.channel, k.segment, k.arm, k.platform, k.version, k.action, n})
	}
	if err := insertRows(ctx, tx, `INSERT INTO event_counts (app_id, minute, channel, segment, arm, platform, version_name, action, n) VALUES `, rows,
		` ON CONFLICT (app_id, minute, channel, segment, arm, platform, version_name, action) DO UPDATE SET n = event_counts.n + excluded.n`); err != nil {
		return res, err
	}
	rows = rows[:0]
	for k, d := range adoption {
		if d != 0 {
			rows = append(rows, []any{k.app, k.minute, k.channel, k.segment, k.platform, k.version, d})
		}
	}
	if err := insertRows(ctx, tx, `INSERT INTO adoption_changes (app_id, minute, channel, segment, platform, version_name, delta) VALUES `, rows,
		` ON CONFLICT (app_id, minute, channel, segment, platform, version_name) DO UPDATE SET delta = adoption_changes.delta + excluded.delta`); err != nil {
		return res, err
	}
	// Segments may arrive out of order (two edges, retries): the latest
	// report (by edge receive time) wins.
	// first_seen is the device's first sighting by the origin (the guard
	// counts only devices established before a rollout began); prefix the
	// client network of the latest report.
	rows = rows[:0]
	for k, o := range outcomes {
		rows = append(rows, []any{k.app, k.version, k.device, o.channel, o.arm, o.failed, o.at, o.prefix, seen[[2]string{k.app, strings.ToLower(k.device)}]})
		res.Outcomes[[2]string{k.app, o.channel}] = true
	}
	if err := insertRows(ctx, tx, `INSERT INTO device_outcomes (app_id, version_name, device_id, channel, arm, failed, updated_at, prefix, first_seen) VALUES `, rows,
		` ON CONFLICT (app_id, version_name, device_id) DO UPDATE SET channel = excluded.channel, arm = excluded.arm, failed = excluded.failed,
		updated_at = excluded.updated_at, prefix = excluded.prefix, first_seen = excluded.first_seen
		WHERE excluded.updated_at >= device_outcomes.updated_at`); err != nil {
		return res, err
	}
	return res, tx.Commit()
}

// rowsPerStatement bounds a multi-row statement: at 9 columns, 4,500
// parameters, under both SQLite's (32,766) and PostgreSQL's (65,535) limits.
const rowsPerStatement = 500

// insertRows runs head + "(?, …), (?, …)…" + tail over rows, at most
// rowsPerStatement rows a statement. A statement must not name one key
// twice (PostgreSQL refuses an upsert that touches a row twice): callers
// pass one row per key.
func insertRows(ctx context.Context, tx *Tx, head string, rows [][]any, tail string) error {
	for len(rows) > 0 {
		n := min(len(rows), rowsPerStatement)
		q, args := valuesQuery(head, rows[:n], tail)
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// valuesQuery is head + "(?, …), (?, …)" (one group per row) + tail and
// the rows' values in order: one multi-row statement.
func valuesQuery(head string, rows [][]any, tail string) (string, []any) {
	var q strings.Builder
	q.WriteString(head)
	args := make([]any, 0, len(rows)*len(rows[0]))
	for i, r := range rows {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?")
		q.WriteString(strings.Repeat(", ?", len(r)-1))
		q.WriteByte(')')
		args = append(args, r...)
	}
	q.WriteString(tail)
	return q.String(), args
}

// eachRow calls fn for every row of rows, then closes them.
func eachRow(rows *sql.Rows, fn func(*sql.Rows) error) error {
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// queryIn runs head + "(?, …)" + tail over keys, at most rowsPerStatement keys a
// statement, with args before the keys, calling fn for every row.
func queryIn(ctx context.Context, tx *Tx, head string, args []any, keys []any, fn func(*sql.Rows) error, tail ...string) error {
	for len(keys) > 0 {
		n := min(len(keys), rowsPerStatement)
		q := head + "(?" + strings.Repeat(", ?", n-1) + ")" + strings.Join(tail, "")
		rows, err := tx.QueryContext(ctx, q, append(append([]any{}, args...), keys[:n]...)...)
		if err != nil {
			return err
		}
		if err := eachRow(rows, fn); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// Outcomes counts the devices that reported an install outcome for version
// on channel since a time (Unix ms): attempts, and failures (devices whose
// latest report was a failure). A non-empty arm counts only devices placed
// in that arm ("rollout": the devices the rollout serves).
func (s *EventStore) Outcomes(ctx context.Context, appID, channel, version, arm string, since int64) (attempts, failures int64, err error) {
	q := `SELECT count(*), CAST(coalesce(sum(failed), 0) AS BIGINT) FROM device_outcomes
		WHERE app_id = ? AND channel = ? AND version_name = ? AND updated_at >= ?`
	args := []any{appID, channel, version, since}
	if arm != "" {
		q += ` AND arm = ?`
		args = append(args, arm)
	}
	err = s.db.QueryRowContext(ctx, q, args...).Scan(&attempts, &failures)
	return
}

// recordSeen records every device of a segment as seen (now, origin
// time): a new device gets a devices_seen row, a check-in sets checked_in
// once, last_seen moves at most daily. It returns each device's first
// sighting, keyed by (app, lower-case device id), and fills res's device
// counts. The devices are read with one query per app and written with one
// multi-row upsert (per rowsPerStatement devices).
func (s *EventStore) recordSeen(ctx context.Context, tx *Tx, evs []events.Event, cis []events.CheckIns, res *IngestResult) (map[[2]string]int64, error) {
	now := time.Now().UnixMilli()
	type sighting struct {
		checkIn                        bool // the segment carries a check-in of the device
		events                         int
		known                          bool // devices_seen has it
		firstSeen, checkedIn, lastSeen int64
	}
	devs := map[[2]string]*sighting{}
	byApp := map[string][]any{}
	get := func(app, dev string) *sighting {
		k := [2]string{app, dev}
		d := devs[k]
		if d == nil {
			d = &sighting{}
			devs[k] = d
			byApp[app] = append(byApp[app], dev)
		}
		return d
	}
	for i := range cis {
		for _, d := range cis[i].Devices {
			get(cis[i].AppID, DeviceIDString(d)).checkIn = true
			res.CheckIns++
		}
	}
	for i := range evs {
		get(evs[i].AppID, strings.ToLower(evs[i].DeviceID)).events++
	}
	first := make(map[[2]string]int64, len(devs))
	if len(devs) == 0 {
		return first, nil
	}
	for app, ids := range byApp {
		err := queryIn(ctx, tx, `SELECT device_id, first_seen, checked_in, last_seen FROM devices_seen WHERE app_id = ? AND device_id IN `,
			[]any{app}, ids, func(rows *sql.Rows) error {
				var dev string
				var first, checkedIn, last int64
				if err := rows.Scan(&dev, &first, &checkedIn, &last); err != nil {
					return err
				}
				if d := devs[[2]string{app, dev}]; d != nil {
					d.known, d.firstSeen, d.checkedIn, d.lastSeen = true, first, checkedIn, last
				}
				return nil
			})
		if err != nil {
			return nil, err
		}
	}
	var count int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce((SELECT value FROM event_meta WHERE key = 'devices_seen'), 0)`).Scan(&count); err != nil {
		return nil, err
	}
	added := int64(0)
	var rows [][]any
	for k, d := range devs {
		if !d.known {
			first[k] = now
			if count+added >= MaxSeenDevices {
				res.SeenDropped++
			} else {
				ci := int64(0)
				if d.checkIn {
					ci = now
				}
				rows = append(rows, []any{k[0], k[1], now, ci, now})
				added++
				res.NewDevices++
			}
			if !d.checkIn {
				res.WithoutCheckIn += d.events
			}
			continue
		}
		first[k] = d.firstSeen
		if d.checkedIn == 0 && !d.checkIn {
			res.WithoutCheckIn += d.events
		}
		if d.checkedIn == 0 && d.checkIn || d.lastSeen < now-seenRefresh.Milliseconds() {
			checkedIn := d.checkedIn
			if checkedIn == 0 && d.checkIn {
				checkedIn = now
			}
			rows = append(rows, []any{k[0], k[1], d.firstSeen, checkedIn, now})
		}
	}
	if err := insertRows(ctx, tx, `INSERT INTO devices_seen (app_id, device_id, first_seen, checked_in, last_seen) VALUES `, rows,
		` ON CONFLICT (app_id, device_id) DO UPDATE SET checked_in = excluded.checked_in, last_seen = excluded.last_seen`); err != nil {
		return nil, err
	}
	if added > 0 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO event_meta (key, value) VALUES ('devices_seen', ?)
			ON CONFLICT (key) DO UPDATE SET value = event_meta.value + excluded.value`, added); err != nil {
			return nil, err
		}
	}
	return first, nil
}

// DeviceIDString formats a device id as the lower-case UUID text the event
// tables hold.
func DeviceIDString(d [16]byte) string {
	const hexDigits = "0123456789abcdef"
	var b [36]byte
	j := 0
	for i, c := range d {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		b[j], b[j+1] = hexDigits[c>>4], hexDigits[c&15]
		j += 2
	}
	return string(b[:])
}

// DeviceSeen is what the origin knows of one device.
type DeviceSeen struct {
	FirstSeen int64 // origin time, Unix ms
	CheckedIn int64 // first check-in, Unix ms; 0: never seen checking for updates
	LastSeen  int64
}

// Seen returns what the origin knows of a device (ok false: never seen).
func (s *EventStore) Seen(ctx context.Context, appID, deviceID string) (d DeviceSeen, ok bool, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT first_seen, checked_in, last_seen FROM devices_seen WHERE app_id = ? AND device_id = ?`,
		appID, strings.ToLower(deviceID)).Scan(&d.FirstSeen, &d.CheckedIn, &d.LastSeen)
	if err == sql.ErrNoRows {
		return d, false, nil
	}
	return d, err == nil, err
}

// SeenDevices returns how many devices are recorded as seen.
func (s *EventStore) SeenDevices(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT coalesce((SELECT value FROM event_meta WHERE key = 'devices_seen'), 0)`).Scan(&n)
	return n, err
}

// PruneSeen forgets the devices not seen since before (Unix ms) and
// returns how many.
func (s *EventStore) PruneSeen(ctx context.Context, before int64) (int64, error) {
	tx, err := s.db.beginWrite(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	r, err := tx.ExecContext(ctx, `DELETE FROM devices_seen WHERE last_seen < ?`, before)
	if err != nil {
		return 0, err
	}
	n, _ := r.RowsAffected()
	if n > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE event_meta SET value = CASE WHEN value > ? THEN value - ? ELSE 0 END WHERE key = 'devices_seen'`, n, n); err != nil {
			return 0, err
		}
	}
	return n, tx.Commit()
}

// GuardQuery selects the install outcomes a rollout guard judges.
type GuardQuery struct {
	AppID, Channel, Version string
	Arm                     string // "" for every arm
	Since                   int64  // outcomes reported since (Unix ms)
	// RolloutStart: devices the origin first saw after it (Unix ms) are
	// new to the rollout, and not counted unless CountNew.
	RolloutStart int64
	CountNew     bool
	// MaxPerPrefix bounds how many devices one client network contributes
	// (0: no bound); a network over it is scaled down to it, failure rate
	// kept.
	MaxPerPrefix int
}

// GuardCounts is what a rollout guard sees: devices whose latest report
// about the version is an install (attempts) or a failure.
type GuardCounts struct {
	Attempts, Failures int64 // the devices counted
	// FailurePrefixes is the number of distinct client networks (/24,
	// /48; unknown counts as one) among the counted failures.
	FailurePrefixes int
	// NewDevices, NewFailures: devices first seen after the rollout
	// began (and their failures), not counted unless CountNew.
	NewDevices, NewFailures int64
	// Capped: devices over MaxPerPrefix in their network, not counted.
	Capped int64
}

// GuardOutcomes counts the outcomes a rollout guard judges (see GuardQuery).
func (s *EventStore) GuardOutcomes(ctx context.Context, q GuardQuery) (GuardCounts, error) {
	var c GuardCounts
	w := `app_id = ? AND channel = ? AND version_name = ? AND updated_at >= ?`
	args := []any{q.RolloutStart, q.AppID, q.Channel, q.Version, q.Since}
	if q.Arm != "" {
		w += ` AND arm = ?`
		args = append(args, q.Arm)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT prefix, CASE WHEN first_seen > ? THEN 1 ELSE 0 END AS fresh, count(*), CAST(coalesce(sum(failed), 0) AS BIGINT)
		FROM device_outcomes WHERE `+w+` GROUP BY 1, 2`, args...)
	if err != nil {
		return c, err
	}
	defer rows.Close()
	type counts struct{ attempts, failures int64 }
	byPrefix := map[string]*counts{}
	for rows.Next() {
		var prefix string
		var fresh bool
		var n, failed int64
		if err := rows.Scan(&prefix, &fresh, &n, &failed); err != nil {
			return c, err
		}
		if fresh && q.RolloutStart > 0 {
			c.NewDevices += n
			c.NewFailures += failed
			if !q.CountNew {
				continue
			}
		}
		p := byPrefix[prefix]
		if p == nil {
			p = &counts{}
			byPrefix[prefix] = p
		}
		p.attempts += n
		p.failures += failed
	}
	if err := rows.Err(); err != nil {
		return c, err
	}
	for _, p := range byPrefix {
		a, f := p.attempts, p.failures
		if k := int64(q.MaxPerPrefix); k > 0 && a > k {
			c.Capped += a - k
			f = int64(math.Round(float64(f) * float64(k) / float64(a)))
			a = k
		}
		c.Attempts += a
		c.Failures += f
		if f > 0 {
			c.FailurePrefixes++
		}
	}
	return c, nil
}

// EventFilter selects aggregates: an app, optionally one channel, and a
// time range (Unix ms; To 0 means now).
type EventFilter struct {
	AppID   string
	Channel string // "" for all
	Segment string // "" for all
	// Platform restricts to one platform ("" for all).
	Platform string
	// Version restricts to one bundle version ("" for all).
	Version string
	From    int64
	To      int64
}

func (f EventFilter) where() (string, []any) {
	w := `app_id = ? AND minute >= ? AND minute <= ?`
	to := f.To
	if to == 0 {
		to = time.Now().UnixMilli()
	}
	args := []any{f.AppID, f.From / 60000, to / 60000}
	if f.Channel != "" {
		w += ` AND channel = ?`
		args = append(args, f.Channel)
	}
	if f.Segment != "" {
		w += ` AND segment = ?`
		args = append(args, f.Segment)
	}
	if f.Platform != "" {
		w += ` AND platform = ?`
		args = append(args, f.Platform)
	}
	if f.Version != "" {
		w += ` AND version_name = ?`
		args = append(args, f.Version)
	}
	return w, args
}

// Count is one aggregate row: events of one action by dimensions.
type Count struct {
	Minute   int64  `json:"minute"`
	Channel  string `json:"channel"`
	Segment  string `json:"segment"`
	Arm      string `json:"arm"`
	Platform string `json:"platform"`
	Version  string `json:"version_name"`
	Action   string `json:"action"`
	N        int64  `json:"n"`
}

// Counts returns the event counts in the filter's range, by minute and
// dimensions.
func (s *EventStore) Counts(ctx context.Context, f EventFilter) ([]Count, error) {
	w, args := f.where()
	rows, err := s.db.QueryContext(ctx, `SELECT minute, channel, segment, arm, platform, version_name, action, n FROM event_counts WHERE `+w+
		` ORDER BY minute`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Count
	for rows.Next() {
		var c Count
		if err := rows.Scan(&c.Minute, &c.Channel, &c.Segment, &c.Arm, &c.Platform, &c.Version, &c.Action, &c.N); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// AdoptionChange is a net change of devices on a version in one minute.
type AdoptionChange struct {
	Minute   int64  `json:"minute"`
	Channel  string `json:"channel"`
	Segment  string `json:"segment"`
	Platform string `json:"platform"`
	Version  string `json:"version_name"`
	Delta    int64  `json:"delta"`
}

// AdoptionChanges returns the adoption changes in the filter's range, by
// minute, preceded by one row per (channel, segment, platform, version)
// with Minute -1 holding the net change before the range: devices per
// version at a time is the running sum from there.
func (s *EventStore) AdoptionChanges(ctx context.Context, f EventFilter) ([]AdoptionChange, error) {
	w, args := f.where()
	// The baseline: minutes before the range's first (From's minute).
	base := f
	base.From, base.To = 0, (f.From/60000-1)*60000
	bw, bargs := base.where()
	q := `SELECT minute, channel, segment, platform, version_name, delta FROM adoption_changes WHERE ` + w + ` ORDER BY 1`
	if f.From >= 2*60000 { // (a baseline ending at minute 0 would read as "now")
		q = `SELECT -1, channel, segment, platform, version_name, CAST(sum(delta) AS BIGINT) FROM adoption_changes WHERE ` + bw +
			` GROUP BY channel, segment, platform, version_name HAVING sum(delta) != 0 UNION ALL ` + q
		args = append(bargs, args...)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AdoptionChange
	for rows.Next() {
		var c AdoptionChange
		if err := rows.Scan(&c.Minute, &c.Channel, &c.Segment, &c.Platform, &c.Version, &c.Delta); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// TotalEvents returns how many events of the app were ingested, from the
// aggregates (every event is counted exactly once).
func (s *EventStore) TotalEvents(ctx context.Context, appID string) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT CAST(coalesce(sum(n), 0) AS BIGINT) FROM event_counts WHERE app_id = ?`, appID).Scan(&n)
	return n, err
}

// RawEvents returns how many raw events are kept (in retained segments).
func (s *EventStore) RawEvents(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT CAST(coalesce(sum(events), 0) AS BIGINT) FROM event_segments WHERE data IS NOT NULL`).Scan(&n)
	return n, err
}

// RawSegments calls fn with every retained segment received in [from, to)
// (Unix ms), oldest first: the raw events, for export or re-aggregation.
func (s *EventStore) RawSegments(ctx context.Context, from, to int64, fn func(edgeID string, seq uint64, segment []byte) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT edge_id, seq, data FROM event_segments WHERE received_at >= ? AND received_at < ?
		AND data IS NOT NULL ORDER BY received_at`, from, to)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var edge string
		var seq int64
		var data []byte
		if err := rows.Scan(&edge, &seq, &data); err != nil {
			return err
		}
		if err := fn(edge, uint64(seq), data); err != nil {
			return err
		}
	}
	return rows.Err()
}

// IngestRecordGrace is how much longer than raw events the ingest records
// ((edge id, seq) of every segment) are kept: an edge re-sending a segment
// within this time is still recognised.
const IngestRecordGrace = 30 * 24 * time.Hour

// Prune drops raw events received before before (Unix ms), and the ingest
// records of segments older than before minus IngestRecordGrace.
// Aggregates are kept. It returns the number of raw events dropped.
func (s *EventStore) Prune(ctx context.Context, before int64) (int64, error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, `SELECT CAST(coalesce(sum(events), 0) AS BIGINT) FROM event_segments WHERE received_at < ? AND data IS NOT NULL`, before).Scan(&n); err != nil {
		return 0, err
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE event_segments SET data = NULL WHERE received_at < ? AND data IS NOT NULL`, before); err != nil {
		return 0, err
	}
	_, err := s.db.ExecContext(ctx, `DELETE FROM event_segments WHERE received_at < ?`, before-IngestRecordGrace.Milliseconds())
	return n, err
}

// Segments returns the segments the app's events were placed in, sorted.
func (s *EventStore) Segments(ctx context.Context, appID string) ([]string, error) {
	return s.strings(ctx, `SELECT DISTINCT segment FROM event_counts WHERE app_id = ? AND segment != '' ORDER BY segment`, appID)
}

// strings runs a query of one text column.
func (s *EventStore) strings(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
