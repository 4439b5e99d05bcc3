package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// Preview channels (issue 20): short-lived channels a tester's device
// joins with a signed token (snapshot/preview.go). A preview channel is a
// channel row with preview_expires set: never public, never
// self-assignable by name, deleted (with what routes to it) once expired.

// Refusals of preview channel changes.
const (
	CodePreviewChannel = "preview_channel" // a preview channel cannot become public or self-assignable
	CodeNotPreview     = "not_preview"     // not a preview channel
	CodeChannelExists  = "channel_exists"  // the name is taken
)

// CreatePreview stores a preview channel of appID serving bundle until
// expires, and appends audit (its Action, Target and After set here) in the
// same transaction. The channel takes Capgo's defaults of a new channel,
// except that it is private, does not allow self-assignment, and takes any
// version jump (disable_auto_update none): a preview is whatever the
// pull request built.
func (s *Store) CreatePreview(ctx context.Context, appID, name, bundle string, expires time.Time, audit AuditRecord) (Channel, error) {
	var ch Channel
	err := s.write(ctx, true, func(tx *Tx) error {
		if err := appExists(ctx, tx, appID); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM bundles WHERE app_id = ? AND version = ?`, appID, bundle).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return invalid(CodeUnknownBundle, "app %s has no bundle %q", appID, bundle)
		}
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM channels WHERE app_id = ? AND name = ?`, appID, name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return invalid(CodeChannelExists, "app %s already has channel %q", appID, name)
		}
		now := time.Now().UTC().Truncate(time.Second)
		c := NewChannel(name)
		c.Bundle = bundle
		c.DisableAutoUpdate = snapshot.DisableNone
		c.DisableAutoUpdateUnderNative = false
		c.PreviewExpires = expires.Unix()
		_, err := tx.ExecContext(ctx, `INSERT INTO channels (`+channelCols+`, builtin, preview_expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)`,
			appID, name, bundle, c.Public, c.IOS, c.Android, c.Electron, c.AllowDeviceSelfSet, c.AllowEmulator, c.AllowDev,
			c.AllowProd, c.AllowDevice, c.DisableAutoUpdate, c.DisableAutoUpdateUnderNative, now.Unix(), now.Unix(), c.PreviewExpires)
		if err != nil {
			return err
		}
		saved, err := listChannels(ctx, tx, `WHERE app_id = ? AND name = ?`, appID, name)
		if err != nil || len(saved) != 1 {
			return fmt.Errorf("re-read channel %s: %v", name, err)
		}
		ch = saved[0]
		after, err := json.Marshal(ch)
		if err != nil {
			return err
		}
		audit.App, audit.Action, audit.Target, audit.After = appID, "channel.preview_created", name, after
		_, err = tx.AppendAudit(ctx, audit)
		return err
	})
	return ch, err
}

// ListPreviews returns the app's preview channels (expired ones included
// until they are swept), by name.
func (s *Store) ListPreviews(ctx context.Context, appID string) ([]Channel, error) {
	if _, err := s.GetApp(ctx, appID); err != nil {
		return nil, err
	}
	return listChannels(ctx, s.db, `WHERE app_id = ? AND preview_expires <> 0 ORDER BY name`, appID)
}

// DeletePreview deletes a preview channel of appID (CodeNotPreview for any
// other channel, CodeUnknownChannel when there is none) with the overrides,
// segments and guard that route to it, and appends audit (Action
// "channel.deleted") in the same transaction.
func (s *Store) DeletePreview(ctx context.Context, appID, name string, audit AuditRecord) error {
	return s.write(ctx, true, func(tx *Tx) error {
		chs, err := listChannels(ctx, tx, `WHERE app_id = ? AND name = ?`, appID, name)
		if err != nil {
			return err
		}
		if len(chs) == 0 {
			return invalid(CodeUnknownChannel, "app %s has no channel %q", appID, name)
		}
		if !chs[0].Preview() {
			return invalid(CodeNotPreview, "channel %q of %s is not a preview channel", name, appID)
		}
		return deletePreview(ctx, tx, chs[0], audit)
	})
}

// ExpiredPreviews lists the preview channels expired at now.
func (s *Store) ExpiredPreviews(ctx context.Context, now time.Time) ([]Channel, error) {
	return listChannels(ctx, s.db, `WHERE preview_expires <> 0 AND preview_expires <= ? ORDER BY app_id, name`, now.Unix())
}

// DeleteExpiredPreviews deletes every preview channel expired at now, each
// with an audit record by actor, and returns them.
func (s *Store) DeleteExpiredPreviews(ctx context.Context, now time.Time, actor string) ([]Channel, error) {
	var gone []Channel
	err := s.write(ctx, false, func(tx *Tx) error {
		chs, err := listChannels(ctx, tx, `WHERE preview_expires <> 0 AND preview_expires <= ? ORDER BY app_id, name`, now.Unix())
		if err != nil || len(chs) == 0 {
			return err
		}
		for _, c := range chs {
			if err := deletePreview(ctx, tx, c, AuditRecord{Actor: actor}); err != nil {
				return err
			}
		}
		gone = chs
		return bumpRev(ctx, tx)
	})
	return gone, err
}

func deletePreview(ctx context.Context, tx *Tx, c Channel, audit AuditRecord) error {
	segs, err := listSegments(ctx, tx, c.AppID)
	if err != nil {
		return err
	}
	// Segments routing to it go first, from the last, so that positions
	// stay dense.
	for i := len(segs) - 1; i >= 0; i-- {
		if segs[i].Channel != c.Name {
			continue
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM segments WHERE app_id = ? AND name = ?`, c.AppID, segs[i].Name); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE segments SET position = position - 1 WHERE app_id = ? AND position > ?`, c.AppID, segs[i].Position); err != nil {
			return err
		}
	}
	for _, q := range []string{
		`DELETE FROM device_overrides WHERE app_id = ? AND channel = ?`,
		`DELETE FROM channel_guards WHERE app_id = ? AND channel = ?`,
		`DELETE FROM channels WHERE app_id = ? AND name = ?`,
	} {
		if _, err := tx.ExecContext(ctx, q, c.AppID, c.Name); err != nil {
			return err
		}
	}
	before, err := json.Marshal(c)
	if err != nil {
		return err
	}
	audit.App, audit.Action, audit.Target, audit.Before = c.AppID, "channel.deleted", c.Name, before
	_, err = tx.AppendAudit(ctx, audit)
	return err
}

// NextPreviewExpiry returns when the next preview channel expires (zero
// time when there is none).
func (s *Store) NextPreviewExpiry(ctx context.Context) (time.Time, error) {
	var next sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT min(preview_expires) FROM channels WHERE preview_expires <> 0`).Scan(&next); err != nil {
		return time.Time{}, err
	}
	if !next.Valid {
		return time.Time{}, nil
	}
	return time.Unix(next.Int64, 0), nil
}
