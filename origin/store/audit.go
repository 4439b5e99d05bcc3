package store

import (
	"context"
	"encoding/json"
	"strings"
	"time"
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
// one of Actions (none: all) and Target ("" : any), oldest first, at most
// Limit (0: 1,000).
type AuditQuery struct {
	App     string
	AfterID int64
	SinceMs int64
	Actions []string
	Target  string
	Limit   int
}

// Audit returns the audit records q selects, oldest first.
func (s *Store) Audit(ctx context.Context, q AuditQuery) ([]AuditRecord, error) {
	var where []string
	var args []any
	where = append(where, "id > ?")
	args = append(args, q.AfterID)
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
	rows, err := s.db.QueryContext(ctx, `SELECT id, at, app_id, actor, addr, action, target, before, after FROM audit_log
		WHERE `+strings.Join(where, " AND ")+` ORDER BY id LIMIT ?`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AuditRecord
	for rows.Next() {
		var r AuditRecord
		var before, after string
		if err := rows.Scan(&r.ID, &r.At, &r.App, &r.Actor, &r.Addr, &r.Action, &r.Target, &before, &after); err != nil {
			return nil, err
		}
		if before != "" {
			r.Before = json.RawMessage(before)
		}
		if after != "" {
			r.After = json.RawMessage(after)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
