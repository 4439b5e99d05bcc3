package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/updraft-cdn/updraft/origin/events"
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
	db *sql.DB
}

var eventMigrations = []string{
	`CREATE TABLE event_segments (
		edge_id TEXT NOT NULL,
		seq INTEGER NOT NULL,
		events INTEGER NOT NULL,
		received_at INTEGER NOT NULL,
		data BLOB,
		sha256 TEXT NOT NULL,
		PRIMARY KEY (edge_id, seq, sha256)) WITHOUT ROWID;
	 CREATE INDEX event_segments_received ON event_segments (received_at);
	 CREATE TABLE event_counts (
		app_id TEXT NOT NULL,
		minute INTEGER NOT NULL,
		channel TEXT NOT NULL,
		segment TEXT NOT NULL,
		arm TEXT NOT NULL,
		platform TEXT NOT NULL,
		version_name TEXT NOT NULL,
		action TEXT NOT NULL,
		n INTEGER NOT NULL,
		PRIMARY KEY (app_id, minute, channel, segment, arm, platform, version_name, action)) WITHOUT ROWID;
	 CREATE TABLE device_versions (
		app_id TEXT NOT NULL,
		device_id TEXT NOT NULL,
		version_name TEXT NOT NULL,
		channel TEXT NOT NULL,
		segment TEXT NOT NULL,
		platform TEXT NOT NULL,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (app_id, device_id)) WITHOUT ROWID;
	 CREATE TABLE adoption_changes (
		app_id TEXT NOT NULL,
		minute INTEGER NOT NULL,
		channel TEXT NOT NULL,
		segment TEXT NOT NULL,
		platform TEXT NOT NULL,
		version_name TEXT NOT NULL,
		delta INTEGER NOT NULL,
		PRIMARY KEY (app_id, minute, channel, segment, platform, version_name)) WITHOUT ROWID;
	 CREATE TABLE device_outcomes (
		app_id TEXT NOT NULL,
		version_name TEXT NOT NULL,
		device_id TEXT NOT NULL,
		channel TEXT NOT NULL,
		arm TEXT NOT NULL,
		failed INTEGER NOT NULL,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (app_id, version_name, device_id)) WITHOUT ROWID;
	 CREATE INDEX device_outcomes_window ON device_outcomes (app_id, channel, version_name, updated_at);`,
}

// OpenEvents opens or creates the event database at path.
func OpenEvents(ctx context.Context, path string) (*EventStore, error) {
	db, err := openSQLite(path, "busy_timeout(10000)")
	if err != nil {
		return nil, fmt.Errorf("events store: open %s: %w", path, err)
	}
	if err := migrate(ctx, db, eventMigrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("events store: open %s: %w", path, err)
	}
	return &EventStore{db: db}, nil
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
	res := IngestResult{Events: len(evs), Outcomes: map[[2]string]bool{}}
	tx, err := s.db.BeginTx(ctx, nil)
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
	prep := func(q string) (*sql.Stmt, error) { return tx.PrepareContext(ctx, q) }
	getVersion, err := prep(`SELECT version_name, channel, segment, platform, updated_at FROM device_versions WHERE app_id = ? AND device_id = ?`)
	if err != nil {
		return res, err
	}
	defer getVersion.Close()
	putVersion, err := prep(`INSERT INTO device_versions (app_id, device_id, version_name, channel, segment, platform, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (app_id, device_id) DO UPDATE SET version_name = excluded.version_name,
		channel = excluded.channel, segment = excluded.segment, platform = excluded.platform, updated_at = excluded.updated_at`)
	if err != nil {
		return res, err
	}
	defer putVersion.Close()
	counts := map[countKey]int64{}
	adoption := map[adoptKey]int64{}
	type outcomeKey struct{ app, version, device string }
	type outcome struct {
		channel, arm string
		failed       bool
		at           int64
	}
	outcomes := map[outcomeKey]outcome{}
	type deviceVersion struct {
		version, channel, segment, platform string
		at                                  int64
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
				outcomes[k] = outcome{e.Channel, e.Arm, e.Action != "set", e.Received}
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
				var dv deviceVersion
				err := getVersion.QueryRowContext(ctx, e.AppID, e.DeviceID).Scan(&dv.version, &dv.channel, &dv.segment, &dv.platform, &dv.at)
				switch {
				case err == sql.ErrNoRows:
				case err != nil:
					return res, err
				default:
					old, seen = dv, true
				}
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
				if _, err := putVersion.ExecContext(ctx, e.AppID, e.DeviceID, v, e.Channel, e.Segment, platform, e.Received); err != nil {
					return res, err
				}
				continue
			}
			if seen {
				adoption[adoptKey{e.AppID, minute, old.channel, old.segment, old.platform, old.version}]--
			}
			adoption[adoptKey{e.AppID, minute, e.Channel, e.Segment, platform, v}]++
			moved[k] = now
			if _, err := putVersion.ExecContext(ctx, e.AppID, e.DeviceID, v, e.Channel, e.Segment, platform, e.Received); err != nil {
				return res, err
			}
		}
	}
	putCount, err := prep(`INSERT INTO event_counts (app_id, minute, channel, segment, arm, platform, version_name, action, n)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n`)
	if err != nil {
		return res, err
	}
	defer putCount.Close()
	for k, n := range counts {
		if _, err := putCount.ExecContext(ctx,
			k.app, k.minute, k.channel, k.segment, k.arm, k.platform, k.version, k.action, n); err != nil {
			return res, err
		}
	}
	for k, d := range adoption {
		if d == 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO adoption_changes (app_id, minute, channel, segment, platform, version_name, delta)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET delta = delta + excluded.delta`,
			k.app, k.minute, k.channel, k.segment, k.platform, k.version, d); err != nil {
			return res, err
		}
	}
	// Segments may arrive out of order (two edges, retries): the latest
	// report (by edge receive time) wins.
	putOutcome, err := prep(`INSERT INTO device_outcomes (app_id, version_name, device_id, channel, arm, failed, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET channel = excluded.channel, arm = excluded.arm, failed = excluded.failed,
		updated_at = excluded.updated_at WHERE excluded.updated_at >= device_outcomes.updated_at`)
	if err != nil {
		return res, err
	}
	defer putOutcome.Close()
	for k, o := range outcomes {
		if _, err := putOutcome.ExecContext(ctx,
			k.app, k.version, k.device, o.channel, o.arm, o.failed, o.at); err != nil {
			return res, err
		}
		res.Outcomes[[2]string{k.app, o.channel}] = true
	}
	return res, tx.Commit()
}

// Outcomes counts the devices that reported an install outcome for version
// on channel since a time (Unix ms): attempts, and failures (devices whose
// latest report was a failure). A non-empty arm counts only devices placed
// in that arm ("rollout": the devices the rollout serves).
func (s *EventStore) Outcomes(ctx context.Context, appID, channel, version, arm string, since int64) (attempts, failures int64, err error) {
	q := `SELECT count(*), coalesce(sum(failed), 0) FROM device_outcomes
		WHERE app_id = ? AND channel = ? AND version_name = ? AND updated_at >= ?`
	args := []any{appID, channel, version, since}
	if arm != "" {
		q += ` AND arm = ?`
		args = append(args, arm)
	}
	err = s.db.QueryRowContext(ctx, q, args...).Scan(&attempts, &failures)
	return
}

// EventFilter selects aggregates: an app, optionally one channel, and a
// time range (Unix ms; To 0 means now).
type EventFilter struct {
	AppID   string
	Channel string // "" for all
	Segment string // "" for all
	// Platform restricts to one platform ("" for all).
	Platform string
	From     int64
	To       int64
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
		q = `SELECT -1, channel, segment, platform, version_name, sum(delta) FROM adoption_changes WHERE ` + bw +
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
	err := s.db.QueryRowContext(ctx, `SELECT coalesce(sum(n), 0) FROM event_counts WHERE app_id = ?`, appID).Scan(&n)
	return n, err
}

// RawEvents returns how many raw events are kept (in retained segments).
func (s *EventStore) RawEvents(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT coalesce(sum(events), 0) FROM event_segments WHERE data IS NOT NULL`).Scan(&n)
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
	if err := s.db.QueryRowContext(ctx, `SELECT coalesce(sum(events), 0) FROM event_segments WHERE received_at < ? AND data IS NOT NULL`, before).Scan(&n); err != nil {
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
