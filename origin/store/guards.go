package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"
)

// Guard is a channel's rollout guard: when the devices that installed the
// rollout bundle within Window fail at a rate whose Wilson lower bound (at
// Confidence) reaches ThresholdBPS, with at least MinAttempts devices and
// MinFailures failed devices, the guard takes Action, then waits Cooldown
// before acting again.
//
// POST /stats is unauthenticated (Capgo's protocol), so what counts is
// limited to what an attacker cannot cheaply make up: only devices the
// origin saw before the rollout began (unless CountNewDevices), failures
// from at least MinPrefixes client networks (/24, /48), and at most
// MaxDevicesPerPrefix devices from any one network.
type Guard struct {
	WindowSeconds   int     `json:"window_seconds"`
	MinAttempts     int     `json:"min_attempts"`
	MinFailures     int     `json:"min_failures"`
	ThresholdBPS    int     `json:"threshold_bps"`
	Confidence      float64 `json:"confidence"`
	Action          string  `json:"action"` // pause, rollback or notify
	CooldownSeconds int     `json:"cooldown_seconds"`
	// MinPrefixes: the counted failures must come from at least this many
	// distinct client networks (default 5; 1 disables the rule).
	MinPrefixes int `json:"min_prefixes"`
	// MaxDevicesPerPrefix: one client network counts for at most this many
	// devices, its failure rate kept (default 25).
	MaxDevicesPerPrefix int `json:"max_devices_per_prefix"`
	// CountNewDevices also counts devices first seen after the rollout
	// began (default false: a fresh deployment whose devices the origin
	// has not seen yet may need it).
	CountNewDevices bool `json:"count_new_devices"`
}

// Guard defaults and codes.
const (
	GuardPause    = "pause"
	GuardRollback = "rollback"
	GuardNotify   = "notify"

	CodeInvalidGuard = "invalid_guard"
)

// DefaultGuard fills the zero fields of g with defaults.
func DefaultGuard(g Guard) Guard {
	if g.WindowSeconds == 0 {
		g.WindowSeconds = 600
	}
	if g.MinAttempts == 0 {
		g.MinAttempts = 50
	}
	if g.MinFailures == 0 {
		g.MinFailures = 5
	}
	if g.ThresholdBPS == 0 {
		g.ThresholdBPS = 1000
	}
	if g.Confidence == 0 {
		g.Confidence = 0.95
	}
	if g.Action == "" {
		g.Action = GuardPause
	}
	if g.CooldownSeconds == 0 {
		g.CooldownSeconds = 300
	}
	if g.MinPrefixes == 0 {
		g.MinPrefixes = DefaultMinPrefixes
	}
	if g.MaxDevicesPerPrefix == 0 {
		g.MaxDevicesPerPrefix = DefaultMaxDevicesPerPrefix
	}
	return g
}

// Defaults of the guard's robustness settings (docs/design-notes.md, "Guard
// robustness and client limits"): an honest failing release fails on
// devices behind many networks; five /24s is more than one client (or one
// home, office or cloud subnet) has, and 25 devices per network keeps one
// carrier-grade NAT from dominating while leaving its failure rate intact.
const (
	DefaultMinPrefixes         = 5
	DefaultMaxDevicesPerPrefix = 25
)

// Validate refuses a guard that could not work.
func (g Guard) Validate() error {
	switch {
	case g.WindowSeconds < 1 || g.WindowSeconds > 7*86400:
		return invalid(CodeInvalidGuard, "window_seconds %d: want 1..604800", g.WindowSeconds)
	case g.MinAttempts < 1:
		return invalid(CodeInvalidGuard, "min_attempts %d: want at least 1", g.MinAttempts)
	case g.MinFailures < 1 || g.MinFailures > g.MinAttempts:
		return invalid(CodeInvalidGuard, "min_failures %d: want 1..min_attempts", g.MinFailures)
	case g.ThresholdBPS < 1 || g.ThresholdBPS > 10000:
		return invalid(CodeInvalidGuard, "threshold_bps %d: want 1..10000 (percent × 100)", g.ThresholdBPS)
	case !(g.Confidence >= 0.5 && g.Confidence < 1): // also refuses NaN
		return invalid(CodeInvalidGuard, "confidence %g: want 0.5 ≤ c < 1 (e.g. 0.95)", g.Confidence)
	case g.Action != GuardPause && g.Action != GuardRollback && g.Action != GuardNotify:
		return invalid(CodeInvalidGuard, "action %q: want pause, rollback or notify", g.Action)
	case g.CooldownSeconds < 0 || g.CooldownSeconds > 7*86400:
		return invalid(CodeInvalidGuard, "cooldown_seconds %d: want 0..604800", g.CooldownSeconds)
	case g.MinPrefixes < 1 || g.MinPrefixes > 10000:
		return invalid(CodeInvalidGuard, "min_prefixes %d: want 1..10000 (1: failures from one network suffice)", g.MinPrefixes)
	case g.MaxDevicesPerPrefix < 1:
		return invalid(CodeInvalidGuard, "max_devices_per_prefix %d: want at least 1 (a large number: no bound)", g.MaxDevicesPerPrefix)
	}
	return nil
}

// GuardedChannel is a channel with a guard.
type GuardedChannel struct {
	AppID   string    `json:"app_id"`
	Channel string    `json:"channel"`
	Guard   Guard     `json:"guard"`
	LastAt  time.Time `json:"last_action_at,omitzero"`
	// LastBundle is the bundle of the guard's last action: its cooldown
	// applies to that rollout only.
	LastBundle string `json:"last_action_bundle,omitempty"`
}

// GuardAction is one thing a guard did.
type GuardAction struct {
	AppID       string    `json:"app_id"`
	Channel     string    `json:"channel"`
	At          time.Time `json:"at"`
	Action      string    `json:"action"`
	Bundle      string    `json:"bundle"`
	Attempts    int64     `json:"attempts"`
	Failures    int64     `json:"failures"`
	FailureRate float64   `json:"failure_rate"`
	LowerBound  float64   `json:"failure_rate_lower"`
	Error       string    `json:"error,omitempty"`
}

// SetGuard sets (g non-nil) or removes a channel's guard. It does not
// change the snapshot: edges do not need guards.
func (s *Store) SetGuard(ctx context.Context, appID, channel string, g *Guard) error {
	return s.write(ctx, false, func(tx *Tx) error {
		if _, err := lockChannel(ctx, tx, appID, channel); err != nil {
			return err
		}
		var before any
		var cfg string
		switch err := tx.QueryRowContext(ctx, `SELECT config FROM channel_guards WHERE app_id = ? AND channel = ?`, appID, channel).Scan(&cfg); {
		case err == nil:
			var old Guard
			if err := json.Unmarshal([]byte(cfg), &old); err != nil {
				return err
			}
			old = DefaultGuard(old)
			before = old
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		if g == nil {
			_, err := tx.ExecContext(ctx, `DELETE FROM channel_guards WHERE app_id = ? AND channel = ?`, appID, channel)
			if err != nil {
				return err
			}
			return audit(ctx, tx, appID, "guard.deleted", channel, before, nil)
		}
		if err := g.Validate(); err != nil {
			return err
		}
		b, err := json.Marshal(g)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO channel_guards (app_id, channel, config, last_action_at) VALUES (?, ?, ?, 0)
			ON CONFLICT (app_id, channel) DO UPDATE SET config = excluded.config`, appID, channel, string(b))
		if err != nil {
			return err
		}
		return audit(ctx, tx, appID, "guard.set", channel, before, *g)
	})
}

// Guards lists guarded channels (of one app, or all when appID is "").
func (s *Store) Guards(ctx context.Context, appID string) ([]GuardedChannel, error) {
	q := `SELECT app_id, channel, config, last_action_at, coalesce((SELECT bundle FROM guard_actions a
		WHERE a.app_id = g.app_id AND a.channel = g.channel ORDER BY a.id DESC LIMIT 1), '') FROM channel_guards g`
	var args []any
	if appID != "" {
		q += ` WHERE g.app_id = ?`
		args = append(args, appID)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY g.app_id, g.channel`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []GuardedChannel
	for rows.Next() {
		var gc GuardedChannel
		var cfg string
		var last int64
		if err := rows.Scan(&gc.AppID, &gc.Channel, &cfg, &last, &gc.LastBundle); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(cfg), &gc.Guard); err != nil {
			return nil, err
		}
		// Guards stored before a setting existed get its default.
		gc.Guard = DefaultGuard(gc.Guard)
		if last > 0 {
			gc.LastAt = time.UnixMilli(last).UTC()
		}
		out = append(out, gc)
	}
	return out, rows.Err()
}

// RecordGuardAction stores what a guard did and starts its cooldown.
func (s *Store) RecordGuardAction(ctx context.Context, a GuardAction) error {
	return s.write(ctx, false, func(tx *Tx) error { return recordGuardAction(ctx, tx, a) })
}

// GuardAct applies a guard's pause or rollback to the rollout of a.Bundle
// and records the action, in one transaction: the change and its record
// (which starts the cooldown) exist together or not at all. The store
// refuses with rollout_changed when the channel now rolls out another
// bundle, and no_rollout when it has none.
func (s *Store) GuardAct(ctx context.Context, a GuardAction) error {
	action := RolloutPause
	if a.Action == GuardRollback {
		action = RolloutRollback
	}
	return s.write(ctx, true, func(tx *Tx) error {
		// Recorded first: the audit trail shows guard.acted, then what it
		// did to the rollout.
		if err := recordGuardAction(ctx, tx, a); err != nil {
			return err
		}
		_, err := setRollout(ctx, tx, a.AppID, a.Channel, action, a.Bundle, 0)
		return err
	})
}

func recordGuardAction(ctx context.Context, tx *Tx, a GuardAction) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO guard_actions (app_id, channel, at, action, bundle, attempts, failures, failure_rate, lower_bound, error)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, a.AppID, a.Channel, a.At.UnixMilli(), a.Action, a.Bundle, a.Attempts, a.Failures,
		a.FailureRate, a.LowerBound, a.Error); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE channel_guards SET last_action_at = ? WHERE app_id = ? AND channel = ?`, a.At.UnixMilli(), a.AppID, a.Channel); err != nil {
		return err
	}
	after := obj{{"action", a.Action}, {"bundle", a.Bundle}, {"attempts", a.Attempts}, {"failures", a.Failures},
		{"failure_rate", a.FailureRate}, {"failure_rate_lower", a.LowerBound}}
	if a.Error != "" {
		after = append(after, kv{"error", a.Error})
	}
	return audit(ctx, tx, a.AppID, "guard.acted", a.Channel, nil, after)
}

// GuardActions lists a channel's guard actions, newest first (at most limit).
func (s *Store) GuardActions(ctx context.Context, appID, channel string, limit int) ([]GuardAction, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT app_id, channel, at, action, bundle, attempts, failures, failure_rate, lower_bound, error
		FROM guard_actions WHERE app_id = ? AND channel = ? ORDER BY id DESC LIMIT ?`, appID, channel, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []GuardAction{}
	for rows.Next() {
		var a GuardAction
		var at int64
		if err := rows.Scan(&a.AppID, &a.Channel, &at, &a.Action, &a.Bundle, &a.Attempts, &a.Failures, &a.FailureRate, &a.LowerBound, &a.Error); err != nil {
			return nil, err
		}
		a.At = time.UnixMilli(at).UTC()
		out = append(out, a)
	}
	return out, rows.Err()
}
