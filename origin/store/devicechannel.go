package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// SetDeviceChannel records the channel that an old plugin's setChannel
// chose for one device, as an override with source SourceDevice, or removes
// the device's override when channel is "". Plugins before 5.34.0 / 6.34.0 /
// 7.34.0 expect the server to remember it (Capgo channel_self.ts:285-415,
// 493-549). The rules are Capgo's, enforced here whatever the caller checked
// on its copy of the snapshot: a device never moves off an override whose
// channel does not allow self-assignment (CodeCannotOverride), and only
// pins itself to a channel that allows it (CodeUnknownChannel,
// CodeSelfSetNotAllowed). changed is false when nothing had to be written;
// the revision moves only when something changed.
// MaxDeviceOverrides bounds the overrides devices may create for one app:
// legacy setChannel is unauthenticated and device ids are free to invent,
// so without a bound anyone could grow the table (and every edge's
// override shards) without end. Operators' pins are not counted.
var MaxDeviceOverrides = 100_000

func (s *Store) SetDeviceChannel(ctx context.Context, appID, deviceID, channel string) (changed bool, err error) {
	u, ok := snapshot.ParseDeviceID(deviceID)
	if !ok {
		return false, invalid(CodeInvalidDevice, "device id %q: want a UUID", deviceID)
	}
	err = s.write(ctx, false, func(tx *Tx) error {
		if err := appExists(ctx, tx, appID); err != nil {
			return err
		}
		var current, source string
		var currentSelfSet bool
		err := tx.QueryRowContext(ctx, `SELECT o.channel, o.source, c.allow_device_self_set FROM device_overrides o
			JOIN channels c ON c.app_id = o.app_id AND c.name = o.channel WHERE o.app_id = ? AND o.device_id = ?`, appID, u[:]).
			Scan(&current, &source, &currentSelfSet)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			current = ""
		case err != nil:
			return err
		case !currentSelfSet, source != SourceDevice:
			// An operator's pin is the operator's: a device (or anyone who
			// knows its id) neither moves nor removes it.
			return invalid(CodeCannotOverride, "Cannot change device override current channel don't allow it")
		}
		if channel == "" {
			if current == "" {
				return nil
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM device_overrides WHERE app_id = ? AND device_id = ?`, appID, u[:]); err != nil {
				return err
			}
			changed = true
			return bumpRev(ctx, tx)
		}
		ch, err := lockChannel(ctx, tx, appID, channel)
		if err != nil {
			return err
		}
		if !ch.AllowDeviceSelfSet {
			return invalid(CodeSelfSetNotAllowed, "This channel does not allow devices to self associate")
		}
		if current == channel {
			return nil
		}
		if current == "" {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM device_overrides WHERE app_id = ? AND source = '`+SourceDevice+`'`, appID).Scan(&n); err != nil {
				return err
			}
			if n >= MaxDeviceOverrides {
				return invalid(CodeOverrideNotAllowed, "Cannot do channel override")
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO device_overrides (app_id, device_id, channel, updated_at, source) VALUES (?, ?, ?, ?, '`+SourceDevice+`')
			ON CONFLICT (app_id, device_id) DO UPDATE SET channel = excluded.channel, updated_at = excluded.updated_at, source = excluded.source`,
			appID, u[:], channel, time.Now().Unix()); err != nil {
			return err
		}
		changed = true
		return bumpRev(ctx, tx)
	})
	return changed, err
}

func bumpRev(ctx context.Context, tx *Tx) error {
	// changed_at strictly increases with the revision whatever the clocks
	// of the origins that write: it becomes the snapshot's issued time,
	// which edges require to grow with the revision.
	now := time.Now().UnixMilli()
	if _, err := tx.ExecContext(ctx, `UPDATE revision SET rev = rev + 1,
		changed_at = CASE WHEN changed_at >= ? THEN changed_at + 1 ELSE ? END WHERE id = 1`, now, now); err != nil {
		return err
	}
	return tx.eng.Notify(ctx, tx.tx, ChangesChannel)
}

// ChangesChannel is the notification channel on which origins sharing a
// store learn that the revision moved (PostgreSQL LISTEN/NOTIFY).
const ChangesChannel = "updraft_changes"
