// Package store persists the origin's metadata: API keys, apps, bundles and
// channels. The embedded default is SQLite (modernc.org/sqlite, no cgo) in WAL
// mode with synchronous=FULL, so a change acknowledged to an operator survives
// a crash. Every write bumps one revision counter in the same transaction; the
// snapshot built from the store carries that revision.
//
// store knows nothing of HTTP; it returns ErrNotFound, ErrExists and
// *InvalidError for the origin to map onto API codes.
package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/updraft-cdn/updraft/origin/store/postgres"
	"github.com/updraft-cdn/updraft/origin/store/sqlite"
)

// Errors the origin maps onto API error codes.
var (
	ErrNotFound = errors.New("store: not found")
	ErrExists   = errors.New("store: already exists")
)

// InvalidError is a change the store refuses because of its content.
type InvalidError struct {
	Code string // stable machine code, e.g. "unknown_bundle"
	Msg  string
}

func (e *InvalidError) Error() string { return "store: " + e.Msg }

// Store is the metadata store. It is safe for concurrent use.
type Store struct {
	db *db
	// onAudit runs after a write transaction that appended an audit record
	// commits (OnAudit; webhooks.go).
	onAudit atomic.Pointer[func()]
}

// Open opens or creates the SQLite database at path and applies pending
// migrations.
func Open(ctx context.Context, path string) (*Store, error) { return OpenURL(ctx, "", path) }

// OpenURL opens the store at url: "" for SQLite at path, or a postgres://
// URL (several origins may share it). Pending migrations are applied.
func OpenURL(ctx context.Context, url, path string) (*Store, error) {
	e, err := openEngine(ctx, url, path, sqlite.Meta, postgres.Meta)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &Store{db: newDB(e)}, nil
}

// Engine is the engine's name: "sqlite" or "postgres".
func (s *Store) Engine() string { return s.db.eng.Name() }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// write runs fn in a write transaction. When bump is set, the revision counter
// is incremented in the same transaction, so every committed change that edges
// must see yields a new snapshot revision.
func (s *Store) write(ctx context.Context, bump bool, fn func(tx *Tx) error) error {
	tx, err := s.db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if bump {
		if err := bumpRev(ctx, tx); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if tx.audited {
		if fn := s.onAudit.Load(); fn != nil {
			(*fn)()
		}
	}
	return nil
}

// Rev returns the current revision.
func (s *Store) Rev(ctx context.Context) (int64, error) {
	var rev int64
	err := s.db.QueryRowContext(ctx, `SELECT rev FROM revision WHERE id = 1`).Scan(&rev)
	return rev, err
}

// Key scopes (issue 20). An admin key may do everything; deploy may
// upload and change bundles, channels, rollouts, A/B splits, segments,
// overrides and guards, and read; upload may only upload bundles (and
// follow their builds); read may only read. An edge key may only
// replicate (snapshots, blobs, events, device channels under /v1). Which
// routes take which scope is the table in origin/api.go.
const (
	ScopeAdmin  = "admin"
	ScopeDeploy = "deploy"
	ScopeUpload = "upload"
	ScopeRead   = "read"
	ScopeEdge   = "edge"
	// ScopeOperator is the all-powerful key's scope before issue 20; the
	// migration that added scopes made every such key an admin key.
	ScopeOperator = "operator"
)

// Scopes are the scopes a key can be created with (keys create).
var Scopes = []string{ScopeAdmin, ScopeDeploy, ScopeUpload, ScopeRead}

// Names of the keys held in files in the data folder (DATA/api-key,
// DATA/edge-key): created at first start, replaced by a rotation, never
// created nor revoked by name.
const (
	FileAdminKey = "admin"
	FileEdgeKey  = "edge"
)

// APIKey is a stored key: the SHA-256 of the secret, never the secret.
type APIKey struct {
	Hash  string
	Label string // the key's name
	Scope string
	// App limits the key to one app's routes ("": every app).
	App string
	// CreatedAt, ExpiresAt and RevokedAt are Unix seconds. ExpiresAt ends
	// the key's validity (0: never); a rotation (RotateAPIKey) sets it on
	// the keys it replaces. RevokedAt (0: not revoked) ends it at once.
	CreatedAt int64
	ExpiresAt int64
	RevokedAt int64
}

// Live reports whether the key is accepted at now (Unix seconds).
func (k APIKey) Live(now int64) bool {
	return k.RevokedAt == 0 && (k.ExpiresAt == 0 || now < k.ExpiresAt)
}

// AddAPIKey stores the hash of a key with its name and scope (for every
// app, without expiry).
func (s *Store) AddAPIKey(ctx context.Context, hash, label, scope string) error {
	return s.write(ctx, false, func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO api_keys (hash, label, scope, created_at) VALUES (?, ?, ?, ?)`, hash, label, scope, time.Now().Unix()); err != nil {
			return err
		}
		return tx.eng.Notify(ctx, tx.tx, ChangesChannel) // other origins reload their keys
	})
}

// CountAPIKeys returns how many keys named name (revoked and expired ones
// included) are stored with scope.
func (s *Store) CountAPIKeys(ctx context.Context, name, scope string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM api_keys WHERE label = ? AND scope = ?`, name, scope).Scan(&n)
	return n, err
}

// APIKeys returns every stored key (revoked and expired ones included), in
// the order they were created.
func (s *Store) APIKeys(ctx context.Context) ([]APIKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT hash, label, scope, app_id, created_at, expires_at, revoked_at FROM api_keys ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []APIKey
	for rows.Next() {
		var k APIKey
		if err := rows.Scan(&k.Hash, &k.Label, &k.Scope, &k.App, &k.CreatedAt, &k.ExpiresAt, &k.RevokedAt); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

func (s *Store) isUniqueViolation(err error) bool { return s.db.eng.IsUniqueViolation(err) }
