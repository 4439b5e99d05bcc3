package store

import (
	"context"
)

// DeletedApp is what deleting an app removed.
type DeletedApp struct {
	AppID   string          `json:"app_id"`
	Bundles []DeletedBundle `json:"bundles"`
	// Rows counts the rows removed from the store, table by table.
	Rows map[string]int64 `json:"rows"`
	// EventRows counts the rows removed from the event database.
	EventRows map[string]int64 `json:"event_rows,omitempty"`
}

// appTables are the store's tables holding an app's rows, children first
// (foreign keys point from later to earlier entries of this list's reverse).
var appTables = []string{"cohort_members", "cohorts", "device_overrides", "channel_guards", "guard_actions", "jobs", "segments", "channels", "deltas", "manifest_files", "bundles", "apps"}

// DeleteApp deletes the app and everything it owns (bundles and their
// manifests and deltas, channels, rollouts, A/B splits, segments, overrides,
// guards, jobs) in one transaction. The returned bundles list the blobs they
// referenced, for the blob garbage collection's grace period.
func (s *Store) DeleteApp(ctx context.Context, appID string) (DeletedApp, error) {
	out := DeletedApp{AppID: appID, Rows: map[string]int64{}}
	err := s.write(ctx, true, func(tx *Tx) error {
		if err := appExists(ctx, tx, appID); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT version, sha256, canonical_sha256 FROM bundles WHERE app_id = ? ORDER BY version`, appID)
		if err != nil {
			return err
		}
		idx := map[string]int{}
		for rows.Next() {
			var d DeletedBundle
			var zip, canonical string
			if err := rows.Scan(&d.Version, &zip, &canonical); err != nil {
				rows.Close()
				return err
			}
			d.AppID = appID
			d.Blobs = append(d.Blobs, zip)
			if canonical != "" {
				d.Blobs = append(d.Blobs, canonical)
			}
			idx[d.Version] = len(out.Bundles)
			out.Bundles = append(out.Bundles, d)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = tx.QueryContext(ctx, `SELECT version, blob_sha256, 0 FROM manifest_files WHERE app_id = ?
			UNION ALL SELECT to_version, sha256, 1 FROM deltas WHERE app_id = ?`, appID, appID)
		if err != nil {
			return err
		}
		for rows.Next() {
			var version, sha string
			var isDelta int
			if err := rows.Scan(&version, &sha, &isDelta); err != nil {
				rows.Close()
				return err
			}
			if i, ok := idx[version]; ok {
				d := &out.Bundles[i]
				d.Blobs = append(d.Blobs, sha)
				if isDelta == 1 {
					d.Deltas++
				} else {
					d.ManifestFiles++
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		// Channels point at bundles and bundles are pointed at by channels:
		// unpoint first, then delete children before parents.
		if _, err := tx.ExecContext(ctx, `UPDATE channels SET bundle_version = NULL WHERE app_id = ?`, appID); err != nil {
			return err
		}
		for _, table := range appTables {
			col := "app_id"
			if table == "apps" {
				col = "id"
			}
			res, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE `+col+` = ?`, appID)
			if err != nil {
				return err
			}
			out.Rows[table], _ = res.RowsAffected()
		}
		return audit(ctx, tx, appID, "app.deleted", appID, obj{{"bundles", out.Rows["bundles"]}, {"channels", out.Rows["channels"]}}, nil)
	})
	return out, err
}

// eventAppTables are the event database's tables keyed by app.
var eventAppTables = []string{"event_counts", "device_versions", "adoption_changes", "device_outcomes", "devices_seen"}

// DeleteApp deletes the app's aggregates, adoption and outcomes and the
// devices seen for it in one transaction, then its device inventory with
// the devices' logs in transactions of pruneDevicesBatch devices (an app
// may have millions, with up to DeviceLogSize log rows each: one
// transaction would hold the write lock ingestion needs for minutes); the
// inventory's device count, which MaxInventoryDevices bounds, drops with
// them. Raw event segments (kept per edge, not per app) are left to their
// retention.
func (e *EventStore) DeleteApp(ctx context.Context, appID string) (map[string]int64, error) {
	tx, err := e.db.beginWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	out := map[string]int64{}
	for _, table := range eventAppTables {
		res, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE app_id = ?`, appID)
		if err != nil {
			return nil, err
		}
		out[table], _ = res.RowsAffected()
	}
	if n := out["devices_seen"]; n > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE event_meta SET value = CASE WHEN value > ? THEN value - ? ELSE 0 END WHERE key = 'devices_seen'`, n, n); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	n, err := e.removeDevices(ctx, `SELECT app_id, device_id FROM devices WHERE app_id = ? LIMIT ?`, appID)
	out["devices"] = n
	if err != nil {
		return out, err
	}
	// Log rows of devices the inventory no longer holds (none normally).
	for {
		tx, err := e.db.beginWrite(ctx)
		if err != nil {
			return out, err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM device_log WHERE app_id = ? AND device_id IN
			(SELECT DISTINCT device_id FROM device_log WHERE app_id = ? LIMIT ?)`, appID, appID, pruneDevicesBatch)
		if err == nil {
			err = tx.Commit()
		}
		tx.Rollback()
		if err != nil {
			return out, err
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return out, nil
		}
	}
}
