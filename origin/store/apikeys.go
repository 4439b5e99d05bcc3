package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// RotateAPIKey adds the hash of a new key named label with scope and makes
// every live key of that name and scope still valid after expires (Unix
// seconds) expire then: old and new keys are both accepted until expires
// (the rotation's overlap), in one transaction, with the audit records
// given (key.rotated). Keys that already expire earlier keep their expiry;
// other keys of the scope (created by name) are left alone.
func (s *Store) RotateAPIKey(ctx context.Context, hash, label, scope string, expires int64, audit ...AuditRecord) error {
	return s.write(ctx, false, func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET expires_at = ?
			WHERE label = ? AND scope = ? AND revoked_at = 0 AND (expires_at = 0 OR expires_at > ?)`,
			expires, label, scope, expires); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO api_keys (hash, label, scope, created_at) VALUES (?, ?, ?, ?)`, hash, label, scope, time.Now().Unix()); err != nil {
			return err
		}
		for _, a := range audit {
			if _, err := tx.AppendAudit(ctx, a); err != nil {
				return err
			}
		}
		return tx.eng.Notify(ctx, tx.tx, ChangesChannel) // other origins reload their keys
	})
}

// liveKeyCount counts the keys named name that are accepted now.
func liveKeyCount(ctx context.Context, tx *Tx, name string, now int64) (int, error) {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT count(*) FROM api_keys WHERE label = ? AND revoked_at = 0 AND (expires_at = 0 OR expires_at > ?)`,
		name, now).Scan(&n)
	return n, err
}

// CreateAPIKey stores k (its hash, name, scope, app and expiry; CreatedAt
// set to now) with its audit record (key.created) in one transaction.
// ErrExists when a live key (not revoked, not expired) has its name.
func (s *Store) CreateAPIKey(ctx context.Context, k APIKey, audit ...AuditRecord) (APIKey, error) {
	k.CreatedAt, k.RevokedAt = time.Now().Unix(), 0
	err := s.write(ctx, false, func(tx *Tx) error {
		n, err := liveKeyCount(ctx, tx, k.Label, k.CreatedAt)
		if err != nil {
			return err
		}
		if n > 0 {
			return ErrExists
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO api_keys (hash, label, scope, app_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
			k.Hash, k.Label, k.Scope, k.App, k.CreatedAt, k.ExpiresAt); err != nil {
			return err
		}
		for _, a := range audit {
			if _, err := tx.AppendAudit(ctx, a); err != nil {
				return err
			}
		}
		return tx.eng.Notify(ctx, tx.tx, ChangesChannel)
	})
	return k, err
}

// RevokeAPIKey revokes every live key named name (a rotated key's
// predecessors still in their overlap too) at once, with the audit records
// audit returns for the key (key.revoked), in one transaction; it returns
// the key as it was (the newest of the name). ErrNotFound when no live key
// has that name.
func (s *Store) RevokeAPIKey(ctx context.Context, name string, audit func(APIKey) []AuditRecord) (APIKey, error) {
	var k APIKey
	err := s.write(ctx, false, func(tx *Tx) error {
		now := time.Now().Unix()
		err := tx.QueryRowContext(ctx, `SELECT hash, label, scope, app_id, created_at, expires_at, revoked_at FROM api_keys
			WHERE label = ? AND revoked_at = 0 AND (expires_at = 0 OR expires_at > ?) ORDER BY id DESC LIMIT 1`, name, now).
			Scan(&k.Hash, &k.Label, &k.Scope, &k.App, &k.CreatedAt, &k.ExpiresAt, &k.RevokedAt)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = ? WHERE label = ? AND revoked_at = 0 AND (expires_at = 0 OR expires_at > ?)`,
			now, name, now); err != nil {
			return err
		}
		if audit != nil {
			for _, a := range audit(k) {
				if _, err := tx.AppendAudit(ctx, a); err != nil {
					return err
				}
			}
		}
		return tx.eng.Notify(ctx, tx.tx, ChangesChannel) // every origin refuses it from now on
	})
	return k, err
}

// RevokeAppKeys revokes every live key limited to app (its app was
// deleted: an app created later with the same id must not inherit them),
// with the audit records audit returns for each, in one transaction, and
// returns them.
func (s *Store) RevokeAppKeys(ctx context.Context, app string, audit func(APIKey) []AuditRecord) ([]APIKey, error) {
	var out []APIKey
	err := s.write(ctx, false, func(tx *Tx) error {
		out = out[:0]
		now := time.Now().Unix()
		rows, err := tx.QueryContext(ctx, `SELECT hash, label, scope, app_id, created_at, expires_at, revoked_at FROM api_keys
			WHERE app_id = ? AND revoked_at = 0 AND (expires_at = 0 OR expires_at > ?) ORDER BY id`, app, now)
		if err != nil {
			return err
		}
		for rows.Next() {
			var k APIKey
			if err := rows.Scan(&k.Hash, &k.Label, &k.Scope, &k.App, &k.CreatedAt, &k.ExpiresAt, &k.RevokedAt); err != nil {
				rows.Close()
				return err
			}
			out = append(out, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil || len(out) == 0 {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = ? WHERE app_id = ? AND revoked_at = 0 AND (expires_at = 0 OR expires_at > ?)`,
			now, app, now); err != nil {
			return err
		}
		for _, k := range out {
			if audit == nil {
				continue
			}
			for _, a := range audit(k) {
				if _, err := tx.AppendAudit(ctx, a); err != nil {
					return err
				}
			}
		}
		return tx.eng.Notify(ctx, tx.tx, ChangesChannel)
	})
	return out, err
}
