package store

import (
	"context"
	"time"
)

// RotateAPIKey adds the hash of a new key of scope and makes every key of
// that scope still valid after expires (Unix seconds) expire then: old and
// new keys are both accepted until expires (the rotation's overlap), in one
// transaction. Keys that already expire earlier keep their expiry.
func (s *Store) RotateAPIKey(ctx context.Context, hash, label, scope string, expires int64) error {
	return s.write(ctx, false, func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET expires_at = ? WHERE scope = ? AND (expires_at = 0 OR expires_at > ?)`,
			expires, scope, expires); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO api_keys (hash, label, scope, created_at) VALUES (?, ?, ?, ?)`, hash, label, scope, time.Now().Unix()); err != nil {
			return err
		}
		return tx.eng.Notify(ctx, tx.tx, ChangesChannel) // other origins reload their keys
	})
}
