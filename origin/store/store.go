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
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"

	"modernc.org/sqlite" // also registers the database/sql driver "sqlite"
	sqlite3 "modernc.org/sqlite/lib"
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
	db *sql.DB
}

// Open opens or creates the SQLite database at path and applies pending
// migrations.
func Open(ctx context.Context, path string) (*Store, error) {
	db, err := openSQLite(path, "foreign_keys(ON)", "busy_timeout(10000)")
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s := &Store{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// openSQLite opens a SQLite database in WAL mode with synchronous=FULL (a
// committed transaction survives a crash) and immediate write transactions,
// plus the given pragmas.
func openSQLite(path string, pragmas ...string) (*sql.DB, error) {
	q := url.Values{}
	for _, p := range append([]string{"journal_mode(WAL)", "synchronous(FULL)"}, pragmas...) {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	return db, nil
}

// migrations are applied in order, each once, each in its own transaction.
// Never edit a released migration: append a new one.
var migrations = []string{
	`CREATE TABLE revision (id INTEGER PRIMARY KEY CHECK (id = 1), rev INTEGER NOT NULL);
	 INSERT INTO revision (id, rev) VALUES (1, 0);
	 CREATE TABLE api_keys (
		id INTEGER PRIMARY KEY,
		hash TEXT NOT NULL UNIQUE,
		label TEXT NOT NULL,
		created_at INTEGER NOT NULL);
	 CREATE TABLE apps (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		created_at INTEGER NOT NULL);
	 CREATE TABLE bundles (
		app_id TEXT NOT NULL REFERENCES apps(id),
		version TEXT NOT NULL,
		sha256 TEXT NOT NULL,
		size INTEGER NOT NULL,
		min_update_version TEXT NOT NULL DEFAULT '',
		comment TEXT NOT NULL DEFAULT '',
		link TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL,
		PRIMARY KEY (app_id, version));
	 CREATE TABLE channels (
		app_id TEXT NOT NULL REFERENCES apps(id),
		name TEXT NOT NULL,
		bundle_version TEXT,
		public INTEGER NOT NULL,
		ios INTEGER NOT NULL,
		android INTEGER NOT NULL,
		electron INTEGER NOT NULL,
		allow_device_self_set INTEGER NOT NULL,
		allow_emulator INTEGER NOT NULL,
		allow_dev INTEGER NOT NULL,
		allow_prod INTEGER NOT NULL,
		allow_device INTEGER NOT NULL,
		disable_auto_update TEXT NOT NULL,
		disable_auto_update_under_native INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (app_id, name),
		FOREIGN KEY (app_id, bundle_version) REFERENCES bundles(app_id, version));`,
	`ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'operator';`,
	`ALTER TABLE channels ADD COLUMN rollout TEXT;
	 ALTER TABLE channels ADD COLUMN ab TEXT;
	 CREATE TABLE segments (
		app_id TEXT NOT NULL REFERENCES apps(id),
		name TEXT NOT NULL,
		position INTEGER NOT NULL,
		rule TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		PRIMARY KEY (app_id, name));
	 CREATE TABLE device_overrides (
		app_id TEXT NOT NULL,
		device_id BLOB NOT NULL,
		channel TEXT NOT NULL,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (app_id, device_id),
		FOREIGN KEY (app_id, channel) REFERENCES channels(app_id, name)) WITHOUT ROWID;
	 CREATE INDEX device_overrides_channel ON device_overrides (app_id, channel);`,
	`ALTER TABLE bundles ADD COLUMN canonical_sha256 TEXT NOT NULL DEFAULT '';
	 ALTER TABLE bundles ADD COLUMN canonical_size INTEGER NOT NULL DEFAULT 0;
	 CREATE TABLE deltas (
		app_id TEXT NOT NULL,
		from_version TEXT NOT NULL,
		to_version TEXT NOT NULL,
		encoding TEXT NOT NULL,
		base_sha256 TEXT NOT NULL,
		sha256 TEXT NOT NULL,
		size INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		PRIMARY KEY (app_id, from_version, to_version, encoding),
		FOREIGN KEY (app_id, to_version) REFERENCES bundles(app_id, version));`,
	`CREATE TABLE manifest_files (
		app_id TEXT NOT NULL,
		version TEXT NOT NULL,
		file_name TEXT NOT NULL,
		file_hash TEXT NOT NULL,
		blob_sha256 TEXT NOT NULL,
		size INTEGER NOT NULL,
		PRIMARY KEY (app_id, version, file_name),
		FOREIGN KEY (app_id, version) REFERENCES bundles(app_id, version));`,
	`CREATE TABLE channel_guards (
		app_id TEXT NOT NULL,
		channel TEXT NOT NULL,
		config TEXT NOT NULL,
		last_action_at INTEGER NOT NULL,
		PRIMARY KEY (app_id, channel));
	 CREATE TABLE guard_actions (
		id INTEGER PRIMARY KEY,
		app_id TEXT NOT NULL,
		channel TEXT NOT NULL,
		at INTEGER NOT NULL,
		action TEXT NOT NULL,
		bundle TEXT NOT NULL,
		attempts INTEGER NOT NULL,
		failures INTEGER NOT NULL,
		failure_rate REAL NOT NULL,
		lower_bound REAL NOT NULL,
		error TEXT NOT NULL);
	 CREATE INDEX guard_actions_channel ON guard_actions (app_id, channel, id);`,
	// Capgo parity: end-to-end encrypted bundles (the origin keeps what the
	// CLI encrypted, never a key that decrypts it), channels that revert
	// devices to the store build, overrides set by old plugins' setChannel,
	// the app's device-protocol options, and bundle retention.
	`ALTER TABLE bundles ADD COLUMN session_key TEXT NOT NULL DEFAULT '';
	 ALTER TABLE bundles ADD COLUMN checksum TEXT NOT NULL DEFAULT '';
	 ALTER TABLE bundles ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
	 ALTER TABLE channels ADD COLUMN builtin INTEGER NOT NULL DEFAULT 0;
	 ALTER TABLE device_overrides ADD COLUMN source TEXT NOT NULL DEFAULT 'operator';
	 ALTER TABLE apps ADD COLUMN expose_metadata INTEGER NOT NULL DEFAULT 0;
	 ALTER TABLE apps ADD COLUMN allow_device_custom_id INTEGER NOT NULL DEFAULT 1;
	 ALTER TABLE apps ADD COLUMN keep_bundles INTEGER NOT NULL DEFAULT 0;`,
	// Durable background work (manifest, canonical archive and delta builds
	// survive restarts and are retried; nothing depends on an in-memory queue
	// having room), and API keys that expire (rotation with an overlap).
	`CREATE TABLE jobs (
		id INTEGER PRIMARY KEY,
		kind TEXT NOT NULL,
		app_id TEXT NOT NULL,
		version TEXT NOT NULL,
		state TEXT NOT NULL,
		attempts INTEGER NOT NULL DEFAULT 0,
		run_after INTEGER NOT NULL DEFAULT 0,
		last_error TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL,
		UNIQUE (kind, app_id, version));
	 CREATE INDEX jobs_runnable ON jobs (state, run_after);
	 ALTER TABLE api_keys ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;`,
}

func (s *Store) migrate(ctx context.Context) error { return migrate(ctx, s.db, migrations) }

// migrate applies the pending migrations of list to db, each once, each in
// its own transaction.
func migrate(ctx context.Context, db *sql.DB, list []string) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for i, m := range list {
		v := i + 1
		err := func() error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, v).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, v, time.Now().Unix()); err != nil {
				return err
			}
			return tx.Commit()
		}()
		if err != nil {
			return fmt.Errorf("migration %d: %w", v, err)
		}
	}
	return nil
}

// write runs fn in a write transaction. When bump is set, the revision counter
// is incremented in the same transaction, so every committed change that edges
// must see yields a new snapshot revision.
func (s *Store) write(ctx context.Context, bump bool, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if bump {
		if _, err := tx.ExecContext(ctx, `UPDATE revision SET rev = rev + 1 WHERE id = 1`); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Rev returns the current revision.
func (s *Store) Rev(ctx context.Context) (int64, error) {
	var rev int64
	err := s.db.QueryRowContext(ctx, `SELECT rev FROM revision WHERE id = 1`).Scan(&rev)
	return rev, err
}

// Key scopes: an operator key may do everything; an edge key may only
// replicate (snapshots and blobs under /v1).
const (
	ScopeOperator = "operator"
	ScopeEdge     = "edge"
)

// APIKey is a stored key: the SHA-256 of the secret, never the secret.
type APIKey struct {
	Hash  string
	Scope string
	// ExpiresAt ends the key's validity (Unix seconds; 0: never). A
	// rotation (RotateAPIKey) sets it on the keys it replaces.
	ExpiresAt int64
}

// AddAPIKey stores the hash of a key with its scope.
func (s *Store) AddAPIKey(ctx context.Context, hash, label, scope string) error {
	return s.write(ctx, false, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO api_keys (hash, label, scope, created_at) VALUES (?, ?, ?, ?)`, hash, label, scope, time.Now().Unix())
		return err
	})
}

// CountAPIKeys returns how many keys of a scope are stored.
func (s *Store) CountAPIKeys(ctx context.Context, scope string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM api_keys WHERE scope = ?`, scope).Scan(&n)
	return n, err
}

// APIKeys returns every stored key hash with its scope.
func (s *Store) APIKeys(ctx context.Context) ([]APIKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT hash, scope, expires_at FROM api_keys`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []APIKey
	for rows.Next() {
		var k APIKey
		if err := rows.Scan(&k.Hash, &k.Scope, &k.ExpiresAt); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

func isUniqueViolation(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}
