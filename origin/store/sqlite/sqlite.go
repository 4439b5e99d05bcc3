// Package sqlite is the embedded engine of the origin's stores: SQLite
// (modernc.org/sqlite, no cgo) in WAL mode with synchronous=FULL, so a change
// acknowledged to an operator or an edge survives a crash. One origin
// process owns the database; write transactions begin IMMEDIATE, so writers
// are serialized as they are on PostgreSQL (origin/store/postgres).
//
// The stores' SQL is shared (origin/store); this package supplies what is
// SQLite's own: opening, the schema migrations, error classification.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"modernc.org/sqlite" // also registers the database/sql driver "sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Engine is one SQLite database.
type Engine struct{ db *sql.DB }

// Schema is one database's tables: its migrations, applied in order, each
// once. Never edit a released migration: append a new one.
type Schema struct {
	migrations  []string
	foreignKeys bool
}

// Open opens or creates the database at path and applies the pending
// migrations of schema (Meta or Events).
func Open(ctx context.Context, path string, schema Schema) (*Engine, error) {
	pragmas := []string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(10000)"}
	if schema.foreignKeys {
		pragmas = append(pragmas, "foreign_keys(ON)")
	}
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	e := &Engine{db: db}
	if err := e.migrate(ctx, schema.migrations); err != nil {
		db.Close()
		return nil, err
	}
	return e, nil
}

// Name is the engine's name in logs and errors.
func (e *Engine) Name() string { return "sqlite" }

// DB is the database handle.
func (e *Engine) DB() *sql.DB { return e.db }

// Close closes the database.
func (e *Engine) Close() error { return e.db.Close() }

// Rebind returns q unchanged: SQLite takes ? placeholders.
func (e *Engine) Rebind(q string) string { return q }

// BeginWrite begins a write transaction (BEGIN IMMEDIATE: writers are
// serialized).
func (e *Engine) BeginWrite(ctx context.Context) (*sql.Tx, error) { return e.db.BeginTx(ctx, nil) }

// BeginRead begins a read-only transaction; in WAL mode it reads one
// consistent state of the database.
func (e *Engine) BeginRead(ctx context.Context) (*sql.Tx, error) {
	return e.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
}

// Notify does nothing: one process owns an SQLite database, and it learns
// of its own writes directly.
func (e *Engine) Notify(ctx context.Context, tx *sql.Tx, channel string) error { return nil }

// IsUniqueViolation reports whether err is a unique or primary key
// constraint violation.
func (e *Engine) IsUniqueViolation(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// migrate applies the pending migrations of list, each once, each in its
// own transaction.
func (e *Engine) migrate(ctx context.Context, list []string) error {
	if _, err := e.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for i, m := range list {
		v := i + 1
		err := func() error {
			tx, err := e.db.BeginTx(ctx, nil)
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

// Len is the number of migrations of the schema.
func (s Schema) Len() int { return len(s.migrations) }

// Upto is the schema as its first n migrations left it (tests of a
// migration open an older database with it).
// Index returns the position of the first migration containing sub (-1:
// none), for tests that open a database as it was before a migration.
func (s Schema) Index(sub string) int {
	for i, m := range s.migrations {
		if strings.Contains(m, sub) {
			return i
		}
	}
	return -1
}

func (s Schema) Upto(n int) Schema { s.migrations = s.migrations[:n]; return s }
