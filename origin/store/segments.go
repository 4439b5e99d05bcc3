package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// Codes of refused segmentation changes (the origin maps them to HTTP).
const (
	CodeUnknownChannel = "channel_not_found"
	CodeUnknownBundle  = "unknown_bundle"
	CodeInvalidBPS     = "invalid_bps"
	CodeNoRollout      = "no_rollout"
	CodeRolloutChanged = "rollout_changed"
	CodeABActive       = "ab_active"
	CodeRolloutActive  = "rollout_active"
	CodeInvalidSegment = "invalid_segment"
	CodeUnknownSegment = "segment_not_found"
	CodeInvalidDevice  = "invalid_device_id"
	CodeInvalidAB      = "invalid_ab"
	// CodeBuiltinTarget: a rollout or an A/B arm names the store build,
	// which only a channel itself can serve.
	CodeBuiltinTarget = "builtin_not_allowed"
	// Refusals of a device's own channel choice (SetDeviceChannel), Capgo's
	// /channel_self codes.
	CodeCannotOverride    = "cannot_override"
	CodeSelfSetNotAllowed = "channel_self_set_not_allowed"
	// CodeOverrideNotAllowed is Capgo's answer when a device's own override
	// cannot be stored (here: the app holds MaxDeviceOverrides of them).
	CodeOverrideNotAllowed = "override_not_allowed"
)

func invalid(code, format string, args ...any) error {
	return &InvalidError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// RolloutAction is a change to a channel's rollout.
type RolloutAction string

// Rollout actions.
const (
	RolloutSet      RolloutAction = "set" // start, or change the share of, a rollout of Bundle
	RolloutPause    RolloutAction = "pause"
	RolloutResume   RolloutAction = "resume"
	RolloutPromote  RolloutAction = "promote"
	RolloutRollback RolloutAction = "rollback"
)

// lockChannel reads one channel inside a write transaction.
func lockChannel(ctx context.Context, tx *Tx, appID, name string) (Channel, error) {
	if err := appExists(ctx, tx, appID); err != nil {
		return Channel{}, err
	}
	chs, err := listChannels(ctx, tx, `WHERE app_id = ? AND name = ?`, appID, name)
	if err != nil {
		return Channel{}, err
	}
	if len(chs) == 0 {
		return Channel{}, invalid(CodeUnknownChannel, "app %s has no channel %q", appID, name)
	}
	return chs[0], nil
}

func bundleExists(ctx context.Context, tx *Tx, appID, version string) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM bundles WHERE app_id = ? AND version = ?`, appID, version).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return invalid(CodeUnknownBundle, "app %s has no bundle %q", appID, version)
	}
	return nil
}

func newID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func saveSplit(ctx context.Context, tx *Tx, ch Channel) error {
	var ro, ab any
	if ch.Rollout != nil {
		b, _ := json.Marshal(ch.Rollout)
		ro = string(b)
	}
	if ch.AB != nil {
		b, _ := json.Marshal(ch.AB)
		ab = string(b)
	}
	// The store build is builtin = 1 with no bundle row (bundle_version NULL);
	// promoting a rollout makes the channel serve a real bundle again.
	builtin := ch.Bundle == snapshot.BuiltinVersion
	bundle := nullable(ch.Bundle)
	if builtin {
		bundle = nil
	}
	_, err := tx.ExecContext(ctx, `UPDATE channels SET rollout = ?, ab = ?, bundle_version = ?, builtin = ?, native_gate = ?, updated_at = ? WHERE app_id = ? AND name = ?`,
		ro, ab, bundle, builtin, gateJSON(ch.NativeGate), time.Now().Unix(), ch.AppID, ch.Name)
	return err
}

// builtinTarget refuses a rollout or A/B arm of the store build.
func builtinTarget(what, bundle string) error {
	if bundle != snapshot.BuiltinVersion {
		return nil
	}
	return invalid(CodeBuiltinTarget, "%s cannot target builtin (the store build): point the channel itself at it with `channel set NAME --bundle builtin`; a builtin channel may roll out a real bundle", what)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// SetRollout applies a rollout action to a channel, all or nothing. For
// RolloutSet, a rollout of a new bundle gets a new id (so devices are drawn
// afresh); changing the share of the same bundle keeps the id, so raising it
// only adds devices.
func (s *Store) SetRollout(ctx context.Context, appID, channel string, action RolloutAction, bundle string, bps int) (Channel, error) {
	return s.SetRolloutNative(ctx, appID, channel, action, bundle, bps, nil)
}

// SetRolloutNative is SetRollout with the rollout's min native build for
// RolloutSet: nil keeps a rollout's own (same bundle) or takes the
// channel's gate (a new bundle, found compatible with the channel's);
// "" clears it. Promoting a gated rollout gates the channel.
func (s *Store) SetRolloutNative(ctx context.Context, appID, channel string, action RolloutAction, bundle string, bps int, minNative *string) (Channel, error) {
	var out Channel
	err := s.write(ctx, true, func(tx *Tx) error {
		var err error
		out, err = setRolloutNative(ctx, tx, appID, channel, action, bundle, bps, minNative)
		return err
	})
	return out, err
}

func setRollout(ctx context.Context, tx *Tx, appID, channel string, action RolloutAction, bundle string, bps int) (Channel, error) {
	return setRolloutNative(ctx, tx, appID, channel, action, bundle, bps, nil)
}

func setRolloutNative(ctx context.Context, tx *Tx, appID, channel string, action RolloutAction, bundle string, bps int, minNative *string) (Channel, error) {
	var out Channel
	err := func() error {
		ch, err := lockChannel(ctx, tx, appID, channel)
		if err != nil {
			return err
		}
		before := channelState(ch.Channel) // copies: the switch below changes *ch.Rollout
		if action != RolloutSet && ch.Rollout == nil {
			return invalid(CodeNoRollout, "channel %s has no rollout to %s", channel, action)
		}
		// For the other actions a bundle, when given, names the rollout
		// meant: a rollout of another bundle is not touched.
		if action != RolloutSet && bundle != "" && ch.Rollout.Bundle != bundle {
			return invalid(CodeRolloutChanged, "channel %s now rolls out %s, not %s", channel, ch.Rollout.Bundle, bundle)
		}
		switch action {
		case RolloutSet:
			if ch.AB != nil {
				return invalid(CodeABActive, "channel %s runs an A/B split; clear it before starting a rollout", channel)
			}
			if bps < 0 || bps > snapshot.BucketCount {
				return invalid(CodeInvalidBPS, "bps %d: want 0..10000 (percent × 100)", bps)
			}
			if err := builtinTarget("a rollout", bundle); err != nil {
				return err
			}
			if err := bundleExists(ctx, tx, appID, bundle); err != nil {
				return err
			}
			if err := checkMinNative(minNative); err != nil {
				return err
			}
			if ch.Rollout == nil || ch.Rollout.Bundle != bundle {
				ch.Rollout = &snapshot.Rollout{ID: newID(), Bundle: bundle, StartedAt: time.Now().UnixMilli()}
				if ch.NativeGate != nil {
					ch.Rollout.MinNativeBuild = ch.NativeGate.MinBuild
				}
			}
			if minNative != nil {
				ch.Rollout.MinNativeBuild = *minNative
			}
			ch.Rollout.BPS = bps
		case RolloutPause:
			ch.Rollout.Paused = true
		case RolloutResume:
			ch.Rollout.Paused = false
		case RolloutPromote:
			ro := ch.Rollout
			gate, err := nextGate(ch.Bundle, ch.NativeGate, ro.Bundle, &ro.MinNativeBuild)
			if err != nil {
				return err
			}
			if ch.NativeGate != nil && ro.MinNativeBuild == ch.NativeGate.MinBuild {
				gate = ch.NativeGate // the rollout took the channel's gate: same native build
			}
			ch.Bundle, ch.NativeGate = ro.Bundle, gate
			ch.Rollout = nil
		case RolloutRollback:
			ch.Rollout = nil
		default:
			return invalid("invalid_action", "rollout action %q: want set, pause, resume, promote or rollback", action)
		}
		out = ch
		if err := saveSplit(ctx, tx, ch); err != nil {
			return err
		}
		return auditChannelFrom(ctx, tx, appID, rolloutAuditActions[action], before, ch.Channel)
	}()
	return out, err
}

// SetAB replaces a channel's A/B split (nil arms clear it).
func (s *Store) SetAB(ctx context.Context, appID, channel string, arms []snapshot.Arm) (Channel, error) {
	var out Channel
	err := s.write(ctx, true, func(tx *Tx) error {
		ch, err := lockChannel(ctx, tx, appID, channel)
		if err != nil {
			return err
		}
		before := channelState(ch.Channel)
		if len(arms) == 0 {
			ch.AB = nil
			out = ch
			if err := saveSplit(ctx, tx, ch); err != nil {
				return err
			}
			return auditChannelFrom(ctx, tx, appID, "ab.deleted", before, ch.Channel)
		}
		if ch.Rollout != nil {
			return invalid(CodeRolloutActive, "channel %s runs a rollout; promote or roll it back before an A/B split", channel)
		}
		split := &snapshot.ABSplit{ID: newID(), Arms: arms}
		if ch.AB != nil && sameArms(ch.AB.Arms, arms) {
			split.ID = ch.AB.ID // re-weighting keeps devices' buckets
		}
		if err := split.Validate(); err != nil {
			return invalid(CodeInvalidAB, "%v", err)
		}
		for i := range arms {
			a := &arms[i]
			if err := checkMinNative(&a.MinNativeBuild); err != nil {
				return err
			}
			if a.MinNativeBuild == "" && ch.NativeGate != nil {
				a.MinNativeBuild = ch.NativeGate.MinBuild // as the channel's bundle, which it was compared with
			}
			if err := builtinTarget("A/B arm "+a.Name, a.Bundle); err != nil {
				return err
			}
			if err := bundleExists(ctx, tx, appID, a.Bundle); err != nil {
				return err
			}
		}
		ch.AB = split
		out = ch
		if err := saveSplit(ctx, tx, ch); err != nil {
			return err
		}
		return auditChannelFrom(ctx, tx, appID, "ab.set", before, ch.Channel)
	})
	return out, err
}

func sameArms(a, b []snapshot.Arm) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Bundle != b[i].Bundle {
			return false
		}
	}
	return true
}

// Segment is a stored attribute rule with its position.
type Segment struct {
	snapshot.Rule
	AppID    string `json:"app_id"`
	Position int    `json:"position"`
}

func listSegments(ctx context.Context, q querier, appID string) ([]Segment, error) {
	where, args := `ORDER BY app_id, position`, []any{}
	if appID != "" {
		where, args = `WHERE app_id = ? ORDER BY position`, []any{appID}
	}
	rows, err := q.QueryContext(ctx, `SELECT app_id, position, rule FROM segments `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Segment{}
	for rows.Next() {
		var sg Segment
		var raw string
		if err := rows.Scan(&sg.AppID, &sg.Position, &raw); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(raw), &sg.Rule); err != nil {
			return nil, fmt.Errorf("segment of %s: %w", sg.AppID, err)
		}
		out = append(out, sg)
	}
	return out, rows.Err()
}

// ListSegments returns an app's rules in evaluation order.
func (s *Store) ListSegments(ctx context.Context, appID string) ([]Segment, error) {
	if _, err := s.GetApp(ctx, appID); err != nil {
		return nil, err
	}
	return listSegments(ctx, s.db, appID)
}

// AddSegment validates and stores a rule at position (0-based; < 0 or past
// the end: last), shifting later rules down.
func (s *Store) AddSegment(ctx context.Context, appID string, rule snapshot.Rule, position int) (Segment, error) {
	var out Segment
	err := s.write(ctx, true, func(tx *Tx) error {
		if err := appExists(ctx, tx, appID); err != nil {
			return err
		}
		if err := rule.Validate(); err != nil {
			if we := (*snapshot.WindowError)(nil); errors.As(err, &we) {
				return invalid(snapshot.CodeInvalidWindow, "%v", err)
			}
			return invalid(CodeInvalidSegment, "%v", err)
		}
		if _, err := lockChannel(ctx, tx, appID, rule.Channel); err != nil {
			return err
		}
		if rule.Cohort != "" {
			if _, err := getCohort(ctx, tx, appID, rule.Cohort); errors.Is(err, sql.ErrNoRows) {
				return invalid(CodeCohortNotFound, "app %s has no cohort %q", appID, rule.Cohort)
			} else if err != nil {
				return err
			}
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM segments WHERE app_id = ?`, appID).Scan(&n); err != nil {
			return err
		}
		if position < 0 || position > n {
			position = n
		}
		if _, err := tx.ExecContext(ctx, `UPDATE segments SET position = position + 1 WHERE app_id = ? AND position >= ?`, appID, position); err != nil {
			return err
		}
		raw, _ := json.Marshal(rule)
		_, err := tx.ExecContext(ctx, `INSERT INTO segments (app_id, name, position, rule, created_at) VALUES (?, ?, ?, ?, ?)`,
			appID, rule.Name, position, string(raw), time.Now().Unix())
		if s.isUniqueViolation(err) {
			return ErrExists
		}
		if err != nil {
			return err
		}
		out = Segment{Rule: rule, AppID: appID, Position: position}
		return audit(ctx, tx, appID, "segment.added", rule.Name, nil, obj{{"position", position}, {"rule", json.RawMessage(raw)}})
	})
	return out, err
}

// RemoveSegment deletes a rule and closes the gap in positions.
func (s *Store) RemoveSegment(ctx context.Context, appID, name string) error {
	return s.write(ctx, true, func(tx *Tx) error {
		var pos int
		var raw string
		err := tx.QueryRowContext(ctx, `SELECT position, rule FROM segments WHERE app_id = ? AND name = ?`, appID, name).Scan(&pos, &raw)
		if errors.Is(err, sql.ErrNoRows) {
			return invalid(CodeUnknownSegment, "app %s has no segment %q", appID, name)
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM segments WHERE app_id = ? AND name = ?`, appID, name); err != nil {
			return err
		}
		if _, err = tx.ExecContext(ctx, `UPDATE segments SET position = position - 1 WHERE app_id = ? AND position > ?`, appID, pos); err != nil {
			return err
		}
		return audit(ctx, tx, appID, "segment.removed", name, obj{{"position", pos}, {"rule", json.RawMessage(raw)}}, nil)
	})
}

// SetOverrides pins devices to a channel ("" clears their overrides), all
// or nothing.
func (s *Store) SetOverrides(ctx context.Context, appID, channel string, deviceIDs []string) error {
	ids := make([][16]byte, len(deviceIDs))
	for i, d := range deviceIDs {
		u, ok := snapshot.ParseDeviceID(d)
		if !ok {
			return invalid(CodeInvalidDevice, "device id %q: want a UUID", d)
		}
		ids[i] = u
	}
	return s.write(ctx, true, func(tx *Tx) error {
		if err := appExists(ctx, tx, appID); err != nil {
			return err
		}
		var changed int64
		if channel == "" {
			for _, u := range ids {
				res, err := tx.ExecContext(ctx, `DELETE FROM device_overrides WHERE app_id = ? AND device_id = ?`, appID, u[:])
				if err != nil {
					return err
				}
				n, _ := res.RowsAffected()
				changed += n
			}
			return auditOverrides(ctx, tx, appID, channel, changed)
		}
		if _, err := lockChannel(ctx, tx, appID, channel); err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO device_overrides (app_id, device_id, channel, updated_at, source) VALUES (?, ?, ?, ?, '`+SourceOperator+`')
			ON CONFLICT (app_id, device_id) DO UPDATE SET channel = excluded.channel, updated_at = excluded.updated_at, source = excluded.source
			WHERE device_overrides.channel <> excluded.channel OR device_overrides.source <> excluded.source`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		now := time.Now().Unix()
		for _, u := range ids {
			res, err := stmt.ExecContext(ctx, appID, u[:], channel, now)
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			changed += n
		}
		return auditOverrides(ctx, tx, appID, channel, changed)
	})
}

// auditOverrides records that n devices were pinned to channel ("":
// unpinned); nothing when none changed.
func auditOverrides(ctx context.Context, tx *Tx, appID, channel string, n int64) error {
	if n == 0 {
		return nil
	}
	return audit(ctx, tx, appID, "overrides.changed", channel, nil, obj{{"channel", channel}, {"devices", n}})
}

// Override sources: who pinned the device.
const (
	SourceOperator = "operator" // the operator API (device override, PUT overrides)
	SourceDevice   = "device"   // an old plugin's setChannel (POST /channel_self), through an edge
)

// Override is one pinned device.
type Override struct {
	DeviceID string `json:"device_id"`
	Channel  string `json:"channel"`
	Source   string `json:"source"` // SourceOperator or SourceDevice
}

// ListOverrides returns up to limit overrides of an app, by device id,
// starting after the device id `after` (for paging).
func (s *Store) ListOverrides(ctx context.Context, appID, after string, limit int) ([]Override, error) {
	if _, err := s.GetApp(ctx, appID); err != nil {
		return nil, err
	}
	// An empty blob sorts before every device id; a nil one would be NULL,
	// and device_id > NULL matches nothing (issue 16).
	from := []byte{}
	if after != "" {
		u, ok := snapshot.ParseDeviceID(after)
		if !ok {
			return nil, invalid(CodeInvalidDevice, "after %q: want a UUID", after)
		}
		from = u[:]
	}
	rows, err := s.db.QueryContext(ctx, `SELECT device_id, channel, source FROM device_overrides WHERE app_id = ? AND device_id > ? ORDER BY device_id LIMIT ?`,
		appID, from, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Override{}
	for rows.Next() {
		var raw []byte
		var o Override
		if err := rows.Scan(&raw, &o.Channel, &o.Source); err != nil {
			return nil, err
		}
		if len(raw) == 16 {
			o.DeviceID = snapshot.FormatDeviceID([16]byte(raw))
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// OverridesInShard returns the device → channel pairs of one override shard
// of an app (device ids whose first byte is shard), or of all shards when
// shard < 0.
func (s *Store) OverridesInShard(ctx context.Context, appID string, shard int) (map[[16]byte]string, error) {
	q, args := `SELECT device_id, channel FROM device_overrides WHERE app_id = ?`, []any{appID}
	if shard >= 0 {
		lo := make([]byte, 16)
		lo[0] = byte(shard)
		q += ` AND device_id >= ?`
		args = append(args, lo)
		if shard < snapshot.ShardCount-1 {
			hi := make([]byte, 16)
			hi[0] = byte(shard + 1)
			q += ` AND device_id < ?`
			args = append(args, hi)
		}
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[[16]byte]string{}
	for rows.Next() {
		var raw []byte
		var ch string
		if err := rows.Scan(&raw, &ch); err != nil {
			return nil, err
		}
		if len(raw) == 16 {
			out[[16]byte(raw)] = ch
		}
	}
	return out, rows.Err()
}
