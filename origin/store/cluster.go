package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// What several origins sharing one store (PostgreSQL) need of it, and what
// the same calls do with one origin (SQLite): nothing to share.

// Shared reports whether other origins may share this store.
func (s *Store) Shared() bool {
	_, ok := s.db.eng.(clusterEngine)
	return ok
}

// Listen calls fn whenever another origin (or this one) commits a change
// that moved the revision or a shared secret, until ctx ends; errors (a
// lost connection, retried) go to onError. On an unshared store it returns
// at once: the origin learns of its own changes directly.
func (s *Store) Listen(ctx context.Context, fn func(), onError func(error)) {
	if c, ok := s.db.eng.(clusterEngine); ok {
		c.Listen(ctx, ChangesChannel, fn, onError)
	}
}

// Lease is held by one origin at a time.
type Lease interface {
	Lost() <-chan struct{} // closed when the lease is lost or released
	Release()
}

// AcquireLease blocks until this origin holds the cluster-wide lease name
// (retrying every retry) or ctx ends. On an unshared store there is nobody
// to share with: it returns a nil Lease at once, and the caller holds the
// lease for good.
func (s *Store) AcquireLease(ctx context.Context, name string, retry time.Duration) (Lease, error) {
	c, ok := s.db.eng.(clusterEngine)
	if !ok {
		return nil, nil
	}
	l, err := c.AcquireLease(ctx, name, retry)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Secret returns a shared secret (ok false: none stored).
func (s *Store) Secret(ctx context.Context, name string) (value string, ok bool, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT value FROM secrets WHERE name = ?`, name).Scan(&value)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return value, err == nil, err
}

// InitSecret stores value as the secret name unless one is stored already,
// and returns the stored one: of several origins starting at once, the
// first to commit wins and all use its value.
func (s *Store) InitSecret(ctx context.Context, name, value string) (string, error) {
	err := s.write(ctx, false, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO secrets (name, value, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`,
			name, value, time.Now().Unix())
		return err
	})
	if err != nil {
		return "", err
	}
	v, _, err := s.Secret(ctx, name)
	return v, err
}

// SetSecret replaces a shared secret. The revision moves (and the other
// origins are told), so that the snapshot is issued again under a new
// revision: a rotated signing key signs it.
func (s *Store) SetSecret(ctx context.Context, name, value string) error {
	return s.write(ctx, true, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO secrets (name, value, created_at) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value, created_at = excluded.created_at`, name, value, time.Now().Unix())
		return err
	})
}
