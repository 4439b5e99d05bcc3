package store

// Webhooks: subscriptions to audit actions, delivered from the audit trail
// through an outbox (the webhooks and webhook_deliveries tables).
//
//	audit_log ──EnqueueWebhookDeliveries──▶ webhook_deliveries (pending)
//	  (one write transaction: the records after each webhook's cursor
//	   become its deliveries, and the cursor moves past them)
//
//	pending ──ClaimWebhookDeliveries (lease)──▶ sent ──▶ ok
//	   ▲                                              ├──▶ pending (next_attempt: backoff)
//	   └── lease expired (the sending origin died) ───┘──▶ failed (attempts spent)
//
// Nothing is lost or queued twice across a crash: a delivery row and its
// cursor move commit together, and (webhook_id, audit_id) is unique. Audit
// records are appended in write transactions, which are serialized on both
// engines (SQLite's BEGIN IMMEDIATE, PostgreSQL's per-schema advisory
// lock), so audit ids are assigned in commit order: a reader never sees
// record n+1 committed while record n is still to come, and a cursor never
// skips a record. A claim is one UPDATE … RETURNING in a write transaction:
// two origins never hold the same delivery; a claim's lease (lease_until)
// outlives the send's timeout, and a delivery whose origin died while
// sending is claimed again once its lease is over. So a receiver gets each
// delivery once, except after a crash between its 2xx and the origin
// recording it: deliveries are at least once, and Updraft-Delivery (the
// delivery's uid) lets a receiver drop a repeat. Times are Unix
// milliseconds.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Webhook formats.
const (
	WebhookJSON  = "json"  // the audit record as JSON, signed
	WebhookSlack = "slack" // {"text": "…"}: a Slack (or Mattermost, Discord /slack) incoming webhook
)

// Delivery states.
const (
	DeliveryPending = "pending" // to send at NextAttempt (or being sent, under a lease)
	DeliveryOK      = "ok"      // the receiver answered 2xx
	DeliveryFailed  = "failed"  // attempts spent; LastStatus and LastError say why
)

// Webhook is a subscription: audit records of App ("" : every app and the
// installation's own) whose action is one of Events (an entry "rollout.*"
// takes every action starting with "rollout.", "*" every action) are
// POSTed to URL, signed with Secret.
type Webhook struct {
	ID        int64     `json:"id"`
	App       string    `json:"app_id,omitempty"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	Secret    string    `json:"-"`
	Format    string    `json:"format"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
	// Cursor is the last audit record considered: the next deliveries come
	// from the records after it.
	Cursor   int64 `json:"cursor"`
	Disabled bool  `json:"disabled,omitempty"`
}

// Matches reports whether the webhook subscribes to rec.
func (w Webhook) Matches(rec AuditRecord) bool {
	if w.Disabled || (w.App != "" && w.App != rec.App) {
		return false
	}
	for _, e := range w.Events {
		if e == "*" || e == rec.Action || strings.HasSuffix(e, ".*") && strings.HasPrefix(rec.Action, e[:len(e)-1]) {
			return true
		}
	}
	return false
}

// WebhookDelivery is one audit record to send to one webhook, and how its
// sending went.
type WebhookDelivery struct {
	Seq         int64     `json:"seq"` // row id: the log's order
	UID         string    `json:"id"`  // stable across attempts: Updraft-Delivery
	WebhookID   int64     `json:"webhook_id"`
	AuditID     int64     `json:"audit_id"`
	Event       string    `json:"event"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	LastStatus  int       `json:"last_status,omitempty"` // HTTP status of the last attempt (0: no answer)
	LastError   string    `json:"last_error,omitempty"`
	DurationMs  int64     `json:"duration_ms"` // of the last attempt
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	Body        string    `json:"-"` // what is POSTed, rendered when queued

	// Set by ClaimWebhookDeliveries: where and how to send it.
	URL    string `json:"-"`
	Secret string `json:"-"`
	Format string `json:"-"`
}

const webhookCols = `id, app_id, url, events, secret, format, created_at, created_by, audit_cursor, disabled`

func scanWebhook(row interface{ Scan(...any) error }) (Webhook, error) {
	var w Webhook
	var events string
	var created int64
	var disabled int
	err := row.Scan(&w.ID, &w.App, &w.URL, &events, &w.Secret, &w.Format, &created, &w.CreatedBy, &w.Cursor, &disabled)
	w.Events = strings.Split(events, ",")
	w.CreatedAt, w.Disabled = time.UnixMilli(created), disabled != 0
	return w, err
}

const deliveryCols = `id, uid, webhook_id, audit_id, event, state, attempts, next_attempt, last_status, last_error, duration_ms, created_at, updated_at, body`

func scanDelivery(row interface{ Scan(...any) error }) (WebhookDelivery, error) {
	var d WebhookDelivery
	var next, created, updated int64
	err := row.Scan(&d.Seq, &d.UID, &d.WebhookID, &d.AuditID, &d.Event, &d.State, &d.Attempts, &next, &d.LastStatus,
		&d.LastError, &d.DurationMs, &created, &updated, &d.Body)
	d.NextAttempt, d.CreatedAt, d.UpdatedAt = time.UnixMilli(next), time.UnixMilli(created), time.UnixMilli(updated)
	return d, err
}

// webhookJSON is a webhook as its audit records show it (no secret).
func webhookJSON(w Webhook) json.RawMessage {
	b, _ := json.Marshal(w)
	return b
}

// AddWebhook stores w (its id, creation time and cursor set here) with
// the audit record webhook.added by rec's actor, in one transaction. Its
// cursor is that record: it gets what happens from then on, no backfill.
func (s *Store) AddWebhook(ctx context.Context, w Webhook, rec AuditRecord) (Webhook, error) {
	err := s.write(ctx, false, func(tx *Tx) error {
		var last sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT max(id) FROM audit_log`).Scan(&last); err != nil {
			return err
		}
		w.Cursor, w.CreatedAt = last.Int64, time.UnixMilli(time.Now().UnixMilli())
		disabled := 0
		if w.Disabled {
			disabled = 1
		}
		if err := tx.QueryRowContext(ctx, `INSERT INTO webhooks (app_id, url, events, secret, format, created_at, created_by, audit_cursor, disabled)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			w.App, w.URL, strings.Join(w.Events, ","), w.Secret, w.Format, w.CreatedAt.UnixMilli(), w.CreatedBy, w.Cursor, disabled).Scan(&w.ID); err != nil {
			return err
		}
		rec.App, rec.Action, rec.Target, rec.After = w.App, "webhook.added", strconv.FormatInt(w.ID, 10), webhookJSON(w)
		id, err := tx.AppendAudit(ctx, rec)
		if err != nil {
			return err
		}
		w.Cursor = id // its own creation is not news to it
		_, err = tx.ExecContext(ctx, `UPDATE webhooks SET audit_cursor = ? WHERE id = ?`, id, w.ID)
		return err
	})
	return w, err
}

// RemoveWebhook deletes a webhook and its delivery log (ErrNotFound when
// there is none) with the audit record webhook.removed, in one
// transaction, and returns what it was.
func (s *Store) RemoveWebhook(ctx context.Context, id int64, rec AuditRecord) (Webhook, error) {
	var w Webhook
	err := s.write(ctx, false, func(tx *Tx) error {
		var err error
		w, err = scanWebhook(tx.QueryRowContext(ctx, `SELECT `+webhookCols+` FROM webhooks WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM webhook_deliveries WHERE webhook_id = ?`, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM webhooks WHERE id = ?`, id); err != nil {
			return err
		}
		rec.App, rec.Action, rec.Target, rec.Before = w.App, "webhook.removed", strconv.FormatInt(w.ID, 10), webhookJSON(w)
		_, err = tx.AppendAudit(ctx, rec)
		return err
	})
	return w, err
}

// Webhooks returns every webhook, oldest first.
func (s *Store) Webhooks(ctx context.Context) ([]Webhook, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+webhookCols+` FROM webhooks ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Webhook
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// GetWebhook returns one webhook or ErrNotFound.
func (s *Store) GetWebhook(ctx context.Context, id int64) (Webhook, error) {
	w, err := scanWebhook(s.db.QueryRowContext(ctx, `SELECT `+webhookCols+` FROM webhooks WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return w, ErrNotFound
	}
	return w, err
}

// WebhookRender turns an audit record into the delivery's uid (stable, for
// the receiver's deduplication) and the body POSTed to w.
type WebhookRender func(w Webhook, rec AuditRecord, uid string) (body string, err error)

// EnqueueWebhookDeliveries reads up to limit audit records after the
// enabled webhooks' cursors and, in one write transaction, queues a
// pending delivery (rendered by render, due at now) for each webhook each
// record matches, and moves the cursors past the records read. It returns
// the deliveries queued and whether records remain after those read.
// Without anything new it only reads (no write transaction).
func (s *Store) EnqueueWebhookDeliveries(ctx context.Context, now time.Time, limit int, newUID func() string, render WebhookRender) (queued int, more bool, err error) {
	var last, low sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT max(id) FROM audit_log`).Scan(&last); err != nil {
		return 0, false, err
	}
	if err := s.db.QueryRowContext(ctx, `SELECT min(audit_cursor) FROM webhooks WHERE disabled = 0`).Scan(&low); err != nil {
		return 0, false, err
	}
	if !low.Valid || last.Int64 <= low.Int64 {
		return 0, false, nil
	}
	err = s.write(ctx, false, func(tx *Tx) error {
		queued, more = 0, false
		rows, err := tx.QueryContext(ctx, `SELECT `+webhookCols+` FROM webhooks WHERE disabled = 0 ORDER BY id`)
		if err != nil {
			return err
		}
		var hooks []Webhook
		for rows.Next() {
			w, err := scanWebhook(rows)
			if err != nil {
				rows.Close()
				return err
			}
			hooks = append(hooks, w)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(hooks) == 0 {
			return nil
		}
		from := hooks[0].Cursor
		for _, w := range hooks {
			from = min(from, w.Cursor)
		}
		recs, err := auditAfter(ctx, tx, from, limit)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return nil
		}
		more = len(recs) == limit
		upto := recs[len(recs)-1].ID
		ms := now.UnixMilli()
		for _, w := range hooks {
			if w.Cursor >= upto {
				continue
			}
			for _, rec := range recs {
				if rec.ID <= w.Cursor || !w.Matches(rec) {
					continue
				}
				uid := newUID()
				body, err := render(w, rec, uid)
				if err != nil {
					return err
				}
				res, err := tx.ExecContext(ctx, `INSERT INTO webhook_deliveries (webhook_id, audit_id, uid, event, body, state, attempts,
					next_attempt, lease_until, last_status, last_error, duration_ms, created_at, updated_at)
					VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, 0, 0, '', 0, ?, ?) ON CONFLICT (webhook_id, audit_id) DO NOTHING`,
					w.ID, rec.ID, uid, rec.Action, body, ms, ms, ms)
				if err != nil {
					return err
				}
				n, _ := res.RowsAffected()
				queued += int(n)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE webhooks SET audit_cursor = ? WHERE id = ? AND audit_cursor < ?`, upto, w.ID, upto); err != nil {
				return err
			}
		}
		return nil
	})
	return queued, more, err
}

// auditAfter reads up to limit audit records after id, in tx.
func auditAfter(ctx context.Context, tx *Tx, id int64, limit int) ([]AuditRecord, error) {
	rows, err := tx.QueryContext(ctx, `SELECT `+auditCols+` FROM audit_log WHERE id > ? ORDER BY id LIMIT ?`, id, limit)
	if err != nil {
		return nil, err
	}
	return scanAudit(rows)
}

// ClaimWebhookDeliveries claims up to n pending deliveries due at now whose
// lease is over (none was taken, or its origin died sending), leasing them
// until now+lease and counting the attempt; each comes with its webhook's
// URL, secret and format.
func (s *Store) ClaimWebhookDeliveries(ctx context.Context, now time.Time, lease time.Duration, n int) ([]WebhookDelivery, error) {
	var out []WebhookDelivery
	err := s.write(ctx, false, func(tx *Tx) error {
		out = out[:0]
		ms := now.UnixMilli()
		rows, err := tx.QueryContext(ctx, `UPDATE webhook_deliveries SET attempts = attempts + 1, lease_until = ?, updated_at = ?
			WHERE id IN (SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt <= ? AND lease_until <= ?
				ORDER BY next_attempt, id LIMIT ?)
			RETURNING `+deliveryCols, now.Add(lease).UnixMilli(), ms, ms, ms, n)
		if err != nil {
			return err
		}
		for rows.Next() {
			d, err := scanDelivery(rows)
			if err != nil {
				rows.Close()
				return err
			}
			out = append(out, d)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for i := range out {
			if err := tx.QueryRowContext(ctx, `SELECT url, secret, format FROM webhooks WHERE id = ?`, out[i].WebhookID).
				Scan(&out[i].URL, &out[i].Secret, &out[i].Format); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// WebhookAttempt is how one attempt at a delivery went.
type WebhookAttempt struct {
	Status   int    // HTTP status (0: no answer)
	Err      string // "" when delivered
	Duration time.Duration
	// Retry at this time; zero: the delivery is settled (ok when Err is
	// empty, failed otherwise).
	RetryAt time.Time
}

// RecordWebhookAttempt records the outcome of claim d's attempt. It
// changes nothing when the claim is no longer d's (its lease ran out and
// another claim counted a new attempt), and reports whether it did.
func (s *Store) RecordWebhookAttempt(ctx context.Context, d WebhookDelivery, a WebhookAttempt) (bool, error) {
	state, next := DeliveryOK, d.NextAttempt.UnixMilli()
	switch {
	case a.Err != "" && !a.RetryAt.IsZero():
		state, next = DeliveryPending, a.RetryAt.UnixMilli()
	case a.Err != "":
		state = DeliveryFailed
	}
	var ok bool
	err := s.write(ctx, false, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET state = ?, next_attempt = ?, lease_until = 0, last_status = ?,
			last_error = ?, duration_ms = ?, updated_at = ? WHERE id = ? AND attempts = ? AND state = 'pending'`,
			state, next, a.Status, a.Err, a.Duration.Milliseconds(), time.Now().UnixMilli(), d.Seq, d.Attempts)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		ok = n == 1
		return nil
	})
	return ok, err
}

// ReleaseWebhookDelivery gives claim d back without counting its attempt
// (its origin is stopping): it is due again at once.
func (s *Store) ReleaseWebhookDelivery(ctx context.Context, d WebhookDelivery) error {
	return s.write(ctx, false, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET attempts = attempts - 1, lease_until = 0, updated_at = ?
			WHERE id = ? AND attempts = ? AND state = 'pending'`, time.Now().UnixMilli(), d.Seq, d.Attempts)
		return err
	})
}

// PruneWebhookDeliveries deletes the settled deliveries (ok or failed)
// queued before before, and returns how many.
func (s *Store) PruneWebhookDeliveries(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.write(ctx, false, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM webhook_deliveries WHERE state <> 'pending' AND created_at < ?`, before.UnixMilli())
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n, err
}

// CountWebhookDeliveries counts the deliveries in the log by state.
func (s *Store) CountWebhookDeliveries(ctx context.Context) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT state, count(*) FROM webhook_deliveries GROUP BY state`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var st string
		var n int64
		if err := rows.Scan(&st, &n); err != nil {
			return nil, err
		}
		out[st] = n
	}
	return out, rows.Err()
}

// NextWebhookAttempt returns when the next pending delivery is due (its
// lease's end when it is being sent); ok is false when none is pending.
func (s *Store) NextWebhookAttempt(ctx context.Context) (at time.Time, ok bool, err error) {
	var ms sql.NullInt64
	err = s.db.QueryRowContext(ctx, `SELECT min(CASE WHEN lease_until > next_attempt THEN lease_until ELSE next_attempt END)
		FROM webhook_deliveries WHERE state = 'pending'`).Scan(&ms)
	return time.UnixMilli(ms.Int64), ms.Valid, err
}

// WebhookDeliveries returns a webhook's deliveries, newest first, at most
// limit (0: 100).
func (s *Store) WebhookDeliveries(ctx context.Context, webhookID int64, limit int) ([]WebhookDelivery, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+deliveryCols+` FROM webhook_deliveries WHERE webhook_id = ? ORDER BY id DESC LIMIT ?`, webhookID, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []WebhookDelivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// OnAudit sets fn to run after every write transaction of this Store that
// appended an audit record commits (the webhook sender's wake-up; records
// appended by other origins sharing the store are found by polling). fn
// must not block.
func (s *Store) OnAudit(fn func()) { s.onAudit.Store(&fn) }
