package store

// The device inventory: per device (app, device id) the last check-in an
// edge reported (time, edge, platform, versions, custom id, the channel it
// was served and why, what it was answered) and a ring of its most recent
// check-ins and events. Written at ingest, in the segment's transaction,
// with one multi-row upsert per table; listed by keyset over (app, device
// id), with an index per filter; swept by PruneDevices past the retention.
// Privacy: device ids only, no client address is kept per device.

import (
	"cmp"
	"context"
	"database/sql"
	"slices"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/origin/events"
)

// DeviceLogSize is how many recent check-ins and events are kept per
// device (a ring: the oldest is overwritten).
const DeviceLogSize = 50

// MaxInventoryDevices bounds the devices table: past it, devices not yet
// recorded are not recorded (those recorded are still updated), until
// PruneDevices makes room.
var MaxInventoryDevices int64 = 20_000_000

// DefaultDeviceRetention is how long a device the origin stops hearing
// from stays in the inventory (origin flag --device-retention).
const DefaultDeviceRetention = 90 * 24 * time.Hour

// Device is a device's inventory record.
type Device struct {
	AppID    string `json:"app_id"`
	DeviceID string `json:"device_id"`
	// LastSeen: when the device was last heard of, a check-in or an event
	// (edge time, Unix ms); it drives the retention. An event moves it at
	// most every deviceSeenRefresh (a check-in always does).
	LastSeen int64 `json:"last_seen"`
	// CheckedIn: the last check-in (edge time, Unix ms); 0: none seen (the
	// device only sent events). The fields below are that check-in's.
	CheckedIn     int64  `json:"checked_in"`
	EdgeID        string `json:"edge_id"`
	Platform      string `json:"platform"`
	VersionBuild  string `json:"version_build"`
	VersionName   string `json:"version_name"`
	PluginVersion string `json:"plugin_version"`
	CustomID      string `json:"custom_id"`
	Channel       string `json:"channel"`
	// Reason is why the device got Channel: override, self_assigned,
	// segment:NAME or default.
	Reason string `json:"reason"`
	// Arm: rollout or base on a channel with a rollout, the A/B arm, or "".
	Arm string `json:"arm"`
	// Outcome is what the edge answered: update, revert_to_builtin or the
	// refusal code (no_new_version_available, …); Bundle the bundle
	// offered or resolved.
	Outcome string `json:"outcome"`
	Bundle  string `json:"bundle"`
}

// DeviceLogEntry is one check-in or event in a device's recent log.
type DeviceLogEntry struct {
	Seq    int64  `json:"seq"` // increasing per device
	At     int64  `json:"at"`  // edge time, Unix ms
	EdgeID string `json:"edge_id"`
	Kind   string `json:"kind"` // checkin or event
	// Action: the event's action, or the check-in's outcome.
	Action      string `json:"action"`
	VersionName string `json:"version_name"`
	// Target: the event's old_version_name, or the bundle a check-in was
	// offered.
	Target  string `json:"target,omitempty"`
	Channel string `json:"channel"`
	Reason  string `json:"reason,omitempty"`
}

const (
	LogCheckIn = "checkin"
	LogEvent   = "event"
)

// deviceSeenRefresh is how stale a device's last_seen may get before an
// event rewrites it: events then cost no write to the devices table (a
// page write per device is what the inventory costs at ingest).
var deviceSeenRefresh = time.Hour

// SetDeviceLog turns the recent check-ins and events of the device
// inventory on (the default) or off (--device-log=false): each logged
// entry costs a write to its device's ring at ingest, a random page per
// device and segment; off, only the last check-in is kept.
func (s *EventStore) SetDeviceLog(on bool) { s.noDeviceLog.Store(!on) }

// inventoryDevice is what one segment says of one device.
type inventoryDevice struct {
	app, dev string
	last     Device // the latest check-in (CheckedIn 0: none in the segment)
	lastSeen int64
	log      []DeviceLogEntry
	// What the store holds (read first).
	known  bool
	stored Device
	maxSeq int64
}

// reason joins a check-in's or event's rule and arm: "segment:beta",
// "default/rollout".
func reason(rule, arm string) string {
	if arm == "" {
		return rule
	}
	return rule + "/" + arm
}

// The columns of devices a full upsert writes, in order.
var deviceWriteCols = []string{"app_id", "device_id", "last_seen", "checked_in", "edge_id", "platform", "version_build", "version_name",
	"plugin_version", "custom_id", "channel", "reason", "arm", "outcome", "bundle"}

// recordInventory writes the segment's check-ins and events into the
// device inventory (see the top of this file). It reads what the store
// holds of the segment's devices, then writes as little as it can: a row
// is rewritten whole only for a new device or a check-in that moves an
// indexed column (channel, version_name, platform); a check-in that does
// not rewrites the other columns only; an event alone only refreshes a
// stale last_seen. The log entries are numbered after the device's
// latest and written into its ring.
func (s *EventStore) recordInventory(ctx context.Context, tx *Tx, edgeID string, evs []events.Event, cis []events.CheckIns) error {
	devs := map[[2]string]*inventoryDevice{}
	byApp := map[string][]any{}
	get := func(app, dev string) *inventoryDevice {
		k := [2]string{app, dev}
		d := devs[k]
		if d == nil {
			d = &inventoryDevice{app: app, dev: dev}
			devs[k] = d
			byApp[app] = append(byApp[app], dev)
		}
		return d
	}
	for i := range cis {
		c := &cis[i]
		for j, id := range c.Devices {
			det := events.CheckInDetail{At: c.At}
			if c.Details != nil {
				det = c.Details[j]
			}
			if det.At == 0 {
				det.At = c.At
			}
			d := get(c.AppID, DeviceIDString(id))
			d.lastSeen = max(d.lastSeen, det.At)
			if det.At >= d.last.CheckedIn {
				d.last = Device{CheckedIn: det.At, EdgeID: edgeID, Platform: det.Platform, VersionBuild: det.VersionBuild,
					VersionName: det.VersionName, PluginVersion: det.PluginVersion, CustomID: det.CustomID,
					Channel: det.Channel, Reason: det.Segment, Arm: det.Arm, Outcome: det.Outcome, Bundle: det.Bundle}
			}
			d.log = append(d.log, DeviceLogEntry{At: det.At, EdgeID: edgeID, Kind: LogCheckIn, Action: det.Outcome,
				VersionName: det.VersionName, Target: det.Bundle, Channel: det.Channel, Reason: reason(det.Segment, det.Arm)})
		}
	}
	for i := range evs {
		e := &evs[i]
		d := get(e.AppID, strings.ToLower(e.DeviceID))
		d.lastSeen = max(d.lastSeen, e.Received)
		d.log = append(d.log, DeviceLogEntry{At: e.Received, EdgeID: edgeID, Kind: LogEvent, Action: e.Action,
			VersionName: e.VersionName, Target: e.OldVersionName, Channel: e.Channel, Reason: reason(e.Segment, e.Arm)})
	}
	if len(devs) == 0 {
		return nil
	}
	// What the store holds of these devices: their row and latest log
	// entry (reads: the pages are the ones about to be written).
	for app, ids := range byApp {
		err := queryIn(ctx, tx, `SELECT device_id, last_seen, checked_in, platform, version_name, channel FROM devices WHERE app_id = ? AND device_id IN `,
			[]any{app}, ids, func(r *sql.Rows) error {
				var st Device
				if err := r.Scan(&st.DeviceID, &st.LastSeen, &st.CheckedIn, &st.Platform, &st.VersionName, &st.Channel); err != nil {
					return err
				}
				if d := devs[[2]string{app, st.DeviceID}]; d != nil {
					d.known, d.stored = true, st
				}
				return nil
			})
		if err != nil {
			return err
		}
		if s.noDeviceLog.Load() {
			continue
		}
		err = queryIn(ctx, tx, `SELECT device_id, max(seq) FROM device_log WHERE app_id = ? AND device_id IN `,
			[]any{app}, ids, func(r *sql.Rows) error {
				var dev string
				var seq int64
				if err := r.Scan(&dev, &seq); err != nil {
					return err
				}
				if d := devs[[2]string{app, dev}]; d != nil {
					d.maxSeq = seq
				}
				return nil
			}, ` GROUP BY device_id`)
		if err != nil {
			return err
		}
	}
	list := make([]*inventoryDevice, 0, len(devs))
	for _, d := range devs {
		slices.SortStableFunc(d.log, func(a, b DeviceLogEntry) int { return cmp.Compare(a.At, b.At) })
		if n := len(d.log); n > DeviceLogSize {
			d.log = d.log[n-DeviceLogSize:]
		}
		list = append(list, d)
	}
	// One lock order for every origin sharing a PostgreSQL store.
	slices.SortFunc(list, func(a, b *inventoryDevice) int {
		return cmp.Or(strings.Compare(a.app, b.app), strings.Compare(a.dev, b.dev))
	})
	var count int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce((SELECT value FROM event_meta WHERE key = 'devices'), 0)`).Scan(&count); err != nil {
		return err
	}
	stale := time.Now().Add(-deviceSeenRefresh).UnixMilli()
	var full, narrow, narrowSeen, touch, logRows [][]any
	added := int64(0)
	for _, d := range list {
		if !d.known {
			if count+added >= MaxInventoryDevices {
				continue // full: only the devices recorded are updated
			}
			added++
		}
		l := &d.last
		row := []any{d.app, d.dev, d.lastSeen, l.CheckedIn, l.EdgeID, l.Platform, l.VersionBuild, l.VersionName,
			l.PluginVersion, l.CustomID, l.Channel, l.Reason, l.Arm, l.Outcome, l.Bundle}
		seen := d.lastSeen > d.stored.LastSeen && (l.CheckedIn > 0 || d.stored.LastSeen < stale)
		st := &d.stored
		switch {
		case !d.known:
			full = append(full, row)
		case l.CheckedIn > st.CheckedIn && (l.Channel != st.Channel || l.VersionName != st.VersionName || l.Platform != st.Platform):
			full = append(full, row)
		case l.CheckedIn > st.CheckedIn && seen:
			narrowSeen = append(narrowSeen, row)
		case l.CheckedIn > st.CheckedIn:
			narrow = append(narrow, row)
		case seen:
			touch = append(touch, []any{d.app, d.dev, d.lastSeen, 0, "", "", "", "", "", "", "", "", "", "", ""})
		}
		for i := range d.log {
			if s.noDeviceLog.Load() {
				break
			}
			e := &d.log[i]
			seq := d.maxSeq + int64(i) + 1
			logRows = append(logRows, []any{d.app, d.dev, seq % DeviceLogSize, seq, e.At, e.EdgeID, e.Kind, e.Action, e.VersionName,
				e.Target, e.Channel, e.Reason})
		}
	}
	head := `INSERT INTO devices (` + strings.Join(deviceWriteCols, ", ") + `) VALUES `
	// A column is set only when the check-in is newer than the stored one
	// (two origins may race on a device); a narrow write also only while
	// the indexed columns still hold what was read.
	setCols := func(cols []string, seen bool) string {
		var b strings.Builder
		b.WriteString(` ON CONFLICT (app_id, device_id) DO UPDATE SET `)
		for i, c := range cols {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(c + " = CASE WHEN excluded.checked_in > devices.checked_in THEN excluded." + c + " ELSE devices." + c + " END")
		}
		if seen {
			b.WriteString(`, last_seen = CASE WHEN excluded.last_seen > devices.last_seen THEN excluded.last_seen ELSE devices.last_seen END`)
		}
		return b.String()
	}
	nonIndexed := []string{"edge_id", "version_build", "plugin_version", "custom_id", "reason", "arm", "outcome", "bundle", "checked_in"}
	narrowWhere := ` WHERE devices.channel = excluded.channel AND devices.version_name = excluded.version_name AND devices.platform = excluded.platform`
	for _, w := range []struct {
		rows [][]any
		tail string
	}{
		{full, setCols(append([]string{"platform", "version_name", "channel"}, nonIndexed...), true)},
		{narrowSeen, setCols(nonIndexed, true) + narrowWhere},
		{narrow, setCols(nonIndexed, false) + narrowWhere},
	} {
		if err := insertRows(ctx, tx, head, w.rows, w.tail); err != nil {
			return err
		}
	}
	// An event's device (known: the row exists) only moves its last_seen.
	if err := insertRows(ctx, tx, head, touch, ` ON CONFLICT (app_id, device_id) DO UPDATE SET
		last_seen = CASE WHEN excluded.last_seen > devices.last_seen THEN excluded.last_seen ELSE devices.last_seen END`); err != nil {
		return err
	}
	if err := insertRows(ctx, tx, `INSERT INTO device_log (app_id, device_id, slot, seq, at, edge_id, kind, action, version_name, target, channel, reason) VALUES `, logRows,
		` ON CONFLICT (app_id, device_id, slot) DO UPDATE SET seq = excluded.seq, at = excluded.at, edge_id = excluded.edge_id,
		kind = excluded.kind, action = excluded.action, version_name = excluded.version_name, target = excluded.target,
		channel = excluded.channel, reason = excluded.reason`); err != nil {
		return err
	}
	if added > 0 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO event_meta (key, value) VALUES ('devices', ?)
			ON CONFLICT (key) DO UPDATE SET value = event_meta.value + excluded.value`, added); err != nil {
			return err
		}
	}
	return nil
}

// upsertReturning is insertRows for a statement with a RETURNING clause:
// fn is called for every row returned.
func upsertReturning(ctx context.Context, tx *Tx, head string, rows [][]any, tail string, fn func(*sql.Rows) error) error {
	// 16 columns: 250 rows a statement stay under SQLite's parameter limit.
	const per = 250
	for len(rows) > 0 {
		n := min(len(rows), per)
		q, args := valuesQuery(head, rows[:n], tail)
		res, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		if err := eachRow(res, fn); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

const deviceCols = `app_id, device_id, last_seen, checked_in, edge_id, platform, version_build, version_name,
	plugin_version, custom_id, channel, reason, arm, outcome, bundle`

func scanDevice(r interface{ Scan(...any) error }, d *Device) error {
	return r.Scan(&d.AppID, &d.DeviceID, &d.LastSeen, &d.CheckedIn, &d.EdgeID, &d.Platform, &d.VersionBuild, &d.VersionName,
		&d.PluginVersion, &d.CustomID, &d.Channel, &d.Reason, &d.Arm, &d.Outcome, &d.Bundle)
}

// Device returns a device's inventory record (ok false: not recorded).
func (s *EventStore) Device(ctx context.Context, appID, deviceID string) (d Device, ok bool, err error) {
	err = scanDevice(s.db.QueryRowContext(ctx, `SELECT `+deviceCols+` FROM devices WHERE app_id = ? AND device_id = ?`,
		appID, strings.ToLower(deviceID)), &d)
	if err == sql.ErrNoRows {
		return d, false, nil
	}
	return d, err == nil, err
}

// DeviceLog returns a device's recorded check-ins and events with a seq
// above after, oldest first (at most DeviceLogSize).
func (s *EventStore) DeviceLog(ctx context.Context, appID, deviceID string, after int64) ([]DeviceLogEntry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, at, edge_id, kind, action, version_name, target, channel, reason FROM device_log
		WHERE app_id = ? AND device_id = ? AND seq > ? ORDER BY seq`, appID, strings.ToLower(deviceID), after)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []DeviceLogEntry{}
	for rows.Next() {
		var e DeviceLogEntry
		if err := rows.Scan(&e.Seq, &e.At, &e.EdgeID, &e.Kind, &e.Action, &e.VersionName, &e.Target, &e.Channel, &e.Reason); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// DeviceQuery selects devices of an app: every filter set must match.
type DeviceQuery struct {
	AppID    string
	Channel  string // the last check-in's channel
	Version  string // the last check-in's version_name (the bundle the device ran)
	Platform string
	After    string // keyset: devices whose id sorts after this one
	Limit    int
}

// Devices lists the app's devices in device id order, after q.After, at
// most q.Limit. Each filter is served by an index on (app_id, filter,
// device_id), which also gives the order: a page reads about Limit / (the
// share of the other filters' matches) index entries. With several
// filters the most selective index is walked. PostgreSQL's planner picks
// it from its statistics; SQLite's would walk the primary key for the
// order whatever the filters, so the index is named (INDEXED BY), the
// smallest of the filters' matches counted up to selectivityProbe.
func (s *EventStore) Devices(ctx context.Context, q DeviceQuery) ([]Device, error) {
	w := `app_id = ?`
	args := []any{q.AppID}
	type filter struct{ col, index, v string }
	var filters []filter
	for _, f := range []filter{{"channel", "devices_channel", q.Channel}, {"version_name", "devices_version", q.Version}, {"platform", "devices_platform", q.Platform}} {
		if f.v != "" {
			w += ` AND ` + f.col + ` = ?`
			args = append(args, f.v)
			filters = append(filters, f)
		}
	}
	from := `devices`
	if s.db.eng.Name() == "sqlite" && len(filters) > 0 {
		best, bestN := filters[0], int64(-1)
		if len(filters) > 1 {
			for _, f := range filters {
				var n int64
				if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM devices INDEXED BY `+f.index+
					` WHERE app_id = ? AND `+f.col+` = ? LIMIT ?)`, q.AppID, f.v, selectivityProbe).Scan(&n); err != nil {
					return nil, err
				}
				if bestN < 0 || n < bestN {
					best, bestN = f, n
				}
			}
		}
		from += ` INDEXED BY ` + best.index
	}
	if q.After != "" {
		w += ` AND device_id > ?`
		args = append(args, strings.ToLower(q.After))
	}
	args = append(args, q.Limit)
	rows, err := s.db.QueryContext(ctx, `SELECT `+deviceCols+` FROM `+from+` WHERE `+w+` ORDER BY device_id LIMIT ?`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Device{}
	for rows.Next() {
		var d Device
		if err := scanDevice(rows, &d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// CountDevices counts the app's devices that match q's filters (channel,
// version, platform; After and Limit are not used) and whose last check-in
// is at or after since (Unix ms, edge time; 0: any, devices that only sent
// events included).
func (s *EventStore) CountDevices(ctx context.Context, q DeviceQuery, since int64) (int64, error) {
	w := `app_id = ?`
	args := []any{q.AppID}
	for _, f := range [][2]string{{"channel", q.Channel}, {"version_name", q.Version}, {"platform", q.Platform}} {
		if f[1] != "" {
			w += ` AND ` + f[0] + ` = ?`
			args = append(args, f[1])
		}
	}
	if since > 0 {
		w += ` AND checked_in >= ?`
		args = append(args, since)
	}
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM devices WHERE `+w, args...).Scan(&n)
	return n, err
}

// selectivityProbe bounds the index entries counted per filter to choose
// SQLite's index (a few milliseconds at most).
const selectivityProbe = 20000

// InventoryDevices returns how many devices the inventory holds.
func (s *EventStore) InventoryDevices(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT coalesce((SELECT value FROM event_meta WHERE key = 'devices'), 0)`).Scan(&n)
	return n, err
}

// pruneDevicesBatch is how many devices one PruneDevices transaction
// removes.
var pruneDevicesBatch = 1000

// PruneDevices removes the devices not seen (no check-in, no event) since
// before (Unix ms, edge time), with their logs, in transactions of
// pruneDevicesBatch devices, and returns how many.
func (s *EventStore) PruneDevices(ctx context.Context, before int64) (int64, error) {
	return s.removeDevices(ctx, `SELECT app_id, device_id FROM devices WHERE last_seen < ? ORDER BY last_seen LIMIT ?`, before)
}

// removeDevices removes the devices selectQuery names (app_id, device_id;
// its last parameter is the batch size) with their logs, pruneDevicesBatch
// devices a transaction, so ingestion never waits long on the write lock,
// and returns how many.
func (s *EventStore) removeDevices(ctx context.Context, selectQuery string, args ...any) (int64, error) {
	var total int64
	for {
		n, err := s.removeDevicesOnce(ctx, selectQuery, args...)
		total += n
		if err != nil || n < int64(pruneDevicesBatch) {
			return total, err
		}
	}
}

func (s *EventStore) removeDevicesOnce(ctx context.Context, selectQuery string, args ...any) (int64, error) {
	tx, err := s.db.beginWrite(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, selectQuery, append(args, pruneDevicesBatch)...)
	if err != nil {
		return 0, err
	}
	var keys [][2]string
	for rows.Next() {
		var k [2]string
		if err := rows.Scan(&k[0], &k[1]); err != nil {
			rows.Close()
			return 0, err
		}
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(keys) == 0 {
		return 0, err
	}
	for _, k := range keys {
		if _, err := tx.ExecContext(ctx, `DELETE FROM device_log WHERE app_id = ? AND device_id = ?`, k[0], k[1]); err != nil {
			return 0, err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM devices WHERE app_id = ? AND device_id = ?`, k[0], k[1]); err != nil {
			return 0, err
		}
	}
	n := int64(len(keys))
	if _, err := tx.ExecContext(ctx, `UPDATE event_meta SET value = CASE WHEN value > ? THEN value - ? ELSE 0 END WHERE key = 'devices'`, n, n); err != nil {
		return 0, err
	}
	return n, tx.Commit()
}

// BulkDevices inserts devices as they are (no log), for benchmarks and
// tests that need a large inventory; existing devices are left alone.
func (s *EventStore) BulkDevices(ctx context.Context, devs []Device) error {
	tx, err := s.db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	rows := make([][]any, 0, len(devs))
	for _, d := range devs {
		rows = append(rows, []any{d.AppID, strings.ToLower(d.DeviceID), d.LastSeen, d.CheckedIn, d.EdgeID, d.Platform, d.VersionBuild,
			d.VersionName, d.PluginVersion, d.CustomID, d.Channel, d.Reason, d.Arm, d.Outcome, d.Bundle})
	}
	added := int64(0)
	err = upsertReturning(ctx, tx, `INSERT INTO devices (`+deviceCols+`) VALUES `, rows, ` ON CONFLICT (app_id, device_id) DO NOTHING RETURNING device_id`,
		func(r *sql.Rows) error { added++; var s string; return r.Scan(&s) })
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO event_meta (key, value) VALUES ('devices', ?)
		ON CONFLICT (key) DO UPDATE SET value = event_meta.value + excluded.value`, added); err != nil {
		return err
	}
	return tx.Commit()
}

// RelationSize is the disk space one table or index takes.
type RelationSize struct {
	Name  string `json:"name"`
	Bytes int64  `json:"bytes"`
}

// InventorySize returns the space the device inventory's tables and
// indexes take (SQLite: their pages, from dbstat; PostgreSQL:
// pg_relation_size of each), for sizing notes and benchmarks.
func (s *EventStore) InventorySize(ctx context.Context) ([]RelationSize, error) {
	names := []string{"devices", "devices_channel", "devices_version", "devices_platform", "devices_last", "device_log"}
	var out []RelationSize
	for _, n := range names {
		var b int64
		var err error
		if s.db.eng.Name() == "postgres" {
			rel := n
			if n == "devices" || n == "device_log" {
				rel = n + "_pkey" // the table and its primary key, apart
				var t int64
				if err = s.db.QueryRowContext(ctx, `SELECT pg_relation_size(?::regclass) + coalesce(pg_relation_size((SELECT reltoastrelid FROM pg_class WHERE oid = ?::regclass)), 0)`, n, n).Scan(&t); err != nil {
					return nil, err
				}
				out = append(out, RelationSize{n, t})
			}
			err = s.db.QueryRowContext(ctx, `SELECT pg_relation_size(?::regclass)`, rel).Scan(&b)
			n = rel
		} else {
			// WITHOUT ROWID tables are their primary key's b-tree.
			err = s.db.QueryRowContext(ctx, `SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name = ?`, n).Scan(&b)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, RelationSize{n, b})
	}
	return out, nil
}

// AnalyzeInventory refreshes the planner's statistics of the inventory
// tables (PostgreSQL's autovacuum does it after large changes; a bulk
// load calls it at once). A no-op on SQLite, whose index is chosen per
// query (Devices).
func (s *EventStore) AnalyzeInventory(ctx context.Context) error {
	if s.db.eng.Name() != "postgres" {
		return nil
	}
	_, err := s.db.ExecContext(ctx, `ANALYZE devices`)
	return err
}

// DeviceLogSeq returns the seq of a device's latest log entry (0: none).
func (s *EventStore) DeviceLogSeq(ctx context.Context, appID, deviceID string) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM device_log WHERE app_id = ? AND device_id = ?`,
		appID, strings.ToLower(deviceID)).Scan(&n)
	return n, err
}

// BuildCount is how many of a channel's devices run one native build.
type BuildCount struct {
	Build   string `json:"build"`
	Devices int64  `json:"devices"`
}

// NativeBuilds counts the native builds (version_build) that the devices
// last served on channel report, among those whose last check-in is at or
// after since (Unix ms), most common first, at most limit builds; total is
// every such device, the builds beyond limit included.
func (s *EventStore) NativeBuilds(ctx context.Context, appID, channel string, since int64, limit int) (builds []BuildCount, total int64, err error) {
	rows, err := s.db.QueryContext(ctx, `SELECT version_build, count(*) FROM devices
		WHERE app_id = ? AND channel = ? AND checked_in >= ? GROUP BY version_build ORDER BY count(*) DESC, version_build`,
		appID, channel, since)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	builds = []BuildCount{}
	for rows.Next() {
		var b BuildCount
		if err := rows.Scan(&b.Build, &b.Devices); err != nil {
			return nil, 0, err
		}
		total += b.Devices
		if len(builds) < limit {
			builds = append(builds, b)
		}
	}
	return builds, total, rows.Err()
}
