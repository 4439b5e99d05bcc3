package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// AuditRecord is one entry of the audit trail: who (the API key's name, or
// the origin itself: "guard", "retention"…), from which address, did what
// (Action, e.g. "channel.changed") to what (Target, e.g. the channel's
// name) of which app ("" for the installation), with the state before and
// after as JSON (empty when there is none: a creation has no before).
type AuditRecord struct {
	ID     int64           `json:"id"`
	At     int64           `json:"at"` // Unix milliseconds
	App    string          `json:"app_id,omitempty"`
	Actor  string          `json:"actor"`
	Addr   string          `json:"addr,omitempty"`
	Action string          `json:"action"`
	Target string          `json:"target,omitempty"`
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`
}

// AppendAudit appends rec in the transaction of the change it records (At
// set to now when 0) and returns its id.
func (tx *Tx) AppendAudit(ctx context.Context, rec AuditRecord) (int64, error) {
	if rec.At == 0 {
		rec.At = time.Now().UnixMilli()
	}
	var id int64
	err := tx.QueryRowContext(ctx, `INSERT INTO audit_log (at, app_id, actor, addr, action, target, before, after)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		rec.At, rec.App, rec.Actor, rec.Addr, rec.Action, rec.Target, string(rec.Before), string(rec.After)).Scan(&id)
	tx.audited = err == nil
	return id, err
}

// AppendAudit appends rec in a transaction of its own.
func (s *Store) AppendAudit(ctx context.Context, rec AuditRecord) (id int64, err error) {
	err = s.write(ctx, false, func(tx *Tx) error {
		id, err = tx.AppendAudit(ctx, rec)
		return err
	})
	return id, err
}

// AuditQuery selects audit records: of App ("" : every app and the
// installation's own), with an id above AfterID, at or after SinceMs, with
// one of Actions (none: all) and Target ("" : any), oldest first (newest
// first with Newest, below BeforeID when set), at most Limit (0: 1,000).
type AuditQuery struct {
	App      string
	AfterID  int64
	BeforeID int64
	Newest   bool
	SinceMs  int64
	Actions  []string
	Target   string
	Limit    int
}

// Audit returns the audit records q selects, oldest first (or newest first).
func (s *Store) Audit(ctx context.Context, q AuditQuery) ([]AuditRecord, error) {
	var where []string
	var args []any
	where = append(where, "id > ?")
	args = append(args, q.AfterID)
	if q.BeforeID > 0 {
		where = append(where, "id < ?")
		args = append(args, q.BeforeID)
	}
	if q.App != "" {
		where = append(where, "app_id = ?")
		args = append(args, q.App)
	}
	if q.SinceMs > 0 {
		where = append(where, "at >= ?")
		args = append(args, q.SinceMs)
	}
	if q.Target != "" {
		where = append(where, "target = ?")
		args = append(args, q.Target)
	}
	if len(q.Actions) > 0 {
		ph := strings.TrimSuffix(strings.Repeat("?, ", len(q.Actions)), ", ")
		where = append(where, "action IN ("+ph+")")
		for _, a := range q.Actions {
			args = append(args, a)
		}
	}
	limit := q.Limit
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	args = append(args, limit)
	order := "id"
	if q.Newest {
		order = "id DESC"
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+auditCols+` FROM audit_log
		WHERE `+strings.Join(where, " AND ")+` ORDER BY `+order+` LIMIT ?`, args...)
	if err != nil {
		return nil, err
	}
	return scanAudit(rows)
}

// auditCols are the columns scanAudit reads.
const auditCols = `id, at, app_id, actor, addr, action, target, before, after`

// scanAudit reads audit records (auditCols) and closes rows.
func scanAudit(rows *sql.Rows) ([]AuditRecord, error) {
	var out []AuditRecord
	err := eachRow(rows, func(rows *sql.Rows) error {
		var r AuditRecord
		var before, after string
		if err := rows.Scan(&r.ID, &r.At, &r.App, &r.Actor, &r.Addr, &r.Action, &r.Target, &before, &after); err != nil {
			return err
		}
		if before != "" {
			r.Before = json.RawMessage(before)
		}
		if after != "" {
			r.After = json.RawMessage(after)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// Who names who makes a change: the API key's name (or the origin itself:
// "guard", "retention") and the client's address. The origin puts it in a
// request's context (origin/actor.go); the store's write methods read it
// and append the change's audit record in the change's own transaction, so
// a change never commits without its record, nor a record without its
// change. A write whose context carries no Who (device traffic, background
// work such as delta builds) is not audited.
type Who struct {
	Actor string
	Addr  string
}

type whoKey struct{}

// WithWho returns ctx carrying who.
func WithWho(ctx context.Context, who Who) context.Context {
	return context.WithValue(ctx, whoKey{}, who)
}

// WhoFrom returns the Who of ctx; ok is false when there is none.
func WhoFrom(ctx context.Context) (who Who, ok bool) {
	who, ok = ctx.Value(whoKey{}).(Who)
	return who, ok && who.Actor != ""
}

// audit appends the record of a change in its transaction when ctx names
// who made it. before and after are the state that changed (nil: none);
// a change whose before and after are equal records nothing.
func audit(ctx context.Context, tx *Tx, app, action, target string, before, after any) error {
	who, ok := WhoFrom(ctx)
	if !ok {
		return nil
	}
	b, err := auditJSON(before)
	if err != nil {
		return err
	}
	a, err := auditJSON(after)
	if err != nil {
		return err
	}
	if (b == nil && a == nil) || (b != nil && a != nil && string(b) == string(a)) {
		return nil
	}
	_, err = tx.AppendAudit(ctx, AuditRecord{App: app, Actor: who.Actor, Addr: who.Addr, Action: action, Target: target, Before: b, After: a})
	return err
}

func auditJSON(v any) (json.RawMessage, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case obj:
		if v == nil {
			return nil, nil
		}
	}
	return json.Marshal(v)
}

// obj is a JSON object whose keys keep their order: audit records show
// state in a fixed, readable order.
type obj []kv

type kv struct {
	k string
	v any
}

func (o obj) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(e.k)
		v, err := json.Marshal(e.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

// diff returns the entries of before and after (the same keys in the same
// order) whose values differ; both nil when nothing differs.
func diff(before, after obj) (obj, obj) {
	var b, a obj
	for i := range before {
		x, _ := json.Marshal(before[i].v)
		y, _ := json.Marshal(after[i].v)
		if string(x) != string(y) {
			b = append(b, before[i])
			a = append(a, after[i])
		}
	}
	return b, a
}

// auditRollout and auditArm are the parts of a rollout and an A/B arm an
// audit record shows (not their bucket seeds or start times).
type auditRollout struct {
	Bundle         string `json:"bundle"`
	BPS            int    `json:"bps"`
	Paused         bool   `json:"paused"`
	MinNativeBuild string `json:"min_native_build,omitempty"`
}

type auditArm struct {
	Name           string `json:"name"`
	Bundle         string `json:"bundle"`
	BPS            int    `json:"bps"`
	MinNativeBuild string `json:"min_native_build,omitempty"`
}

// channelState is a channel's state as audit records show it: what it
// serves first (bundle, rollout, A/B arms), then its settings.
func channelState(c snapshot.Channel) obj {
	var ro *auditRollout
	if c.Rollout != nil {
		ro = &auditRollout{Bundle: c.Rollout.Bundle, BPS: c.Rollout.BPS, Paused: c.Rollout.Paused, MinNativeBuild: c.Rollout.MinNativeBuild}
	}
	var arms []auditArm
	if c.AB != nil {
		for _, a := range c.AB.Arms {
			arms = append(arms, auditArm{Name: a.Name, Bundle: a.Bundle, BPS: a.BPS, MinNativeBuild: a.MinNativeBuild})
		}
	}
	minNative := ""
	if c.NativeGate != nil {
		minNative = c.NativeGate.MinBuild
	}
	// Maintenance windows as `channel set --window/--blackout` reads them.
	var windows, blackouts []string
	if c.Windows != nil {
		for _, w := range c.Windows.Weekly {
			windows = append(windows, w.String())
		}
		for _, b := range c.Windows.Blackouts {
			blackouts = append(blackouts, b.String())
		}
	}
	return obj{
		{"bundle", c.Bundle}, {"min_native_build", minNative}, {"rollout", ro}, {"ab", arms},
		{"public", c.Public}, {"ios", c.IOS}, {"android", c.Android}, {"electron", c.Electron},
		{"allow_device_self_set", c.AllowDeviceSelfSet}, {"allow_emulator", c.AllowEmulator},
		{"allow_dev", c.AllowDev}, {"allow_prod", c.AllowProd}, {"allow_device", c.AllowDevice},
		{"disable_auto_update", c.DisableAutoUpdate}, {"disable_auto_update_under_native", c.DisableAutoUpdateUnderNative},
		{"windows", windows}, {"blackouts", blackouts},
	}
}

// auditChannel records a change of a channel from before to after (nil
// before: created) under action, with only the fields that changed; a
// created channel shows its bundle and the settings it has other than a
// new channel's defaults.
func auditChannel(ctx context.Context, tx *Tx, app, action string, before *snapshot.Channel, after snapshot.Channel) error {
	if before != nil {
		return auditChannelFrom(ctx, tx, app, action, channelState(*before), after)
	}
	{
		def := NewChannel(after.Name)
		_, a := diff(channelState(def), channelState(after))
		if len(a) == 0 || a[0].k != "bundle" {
			a = append(obj{{"bundle", after.Bundle}}, a...)
		}
		return audit(ctx, tx, app, action, after.Name, nil, a)
	}
}

// auditChannelFrom records a change of a channel from the state before
// (channelState, taken before the change) to after.
func auditChannelFrom(ctx context.Context, tx *Tx, app, action string, before obj, after snapshot.Channel) error {
	b, a := diff(before, channelState(after))
	if a == nil {
		return nil
	}
	return audit(ctx, tx, app, action, after.Name, b, a)
}

// rolloutAuditActions maps rollout actions onto audit actions.
var rolloutAuditActions = map[RolloutAction]string{
	RolloutSet: "rollout.set", RolloutPause: "rollout.paused", RolloutResume: "rollout.resumed",
	RolloutPromote: "rollout.promoted", RolloutRollback: "rollout.rolled_back",
}

// bundleState is what a bundle's audit records show of it.
func bundleState(version, sha string, size int64) obj {
	return obj{{"version", version}, {"sha256", sha}, {"size", size}}
}
