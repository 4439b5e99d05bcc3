package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/origin/store/postgres"
	"github.com/updraft-cdn/updraft/origin/store/sqlite"
)

// Engine is the SQL database a store runs on: SQLite (origin/store/sqlite,
// the embedded default: one origin) or PostgreSQL (origin/store/postgres:
// several origins on one database). The stores' SQL is written once, here,
// in the subset both engines share; an engine supplies the rest.
type Engine interface {
	Name() string
	DB() *sql.DB
	Close() error
	// Rebind rewrites the shared SQL's ? placeholders for the engine.
	Rebind(q string) string
	// BeginWrite begins a transaction serialized with every other writer
	// of the same database, in this process and in any other origin.
	BeginWrite(ctx context.Context) (*sql.Tx, error)
	// BeginRead begins a read-only transaction that sees one state of the
	// database throughout.
	BeginRead(ctx context.Context) (*sql.Tx, error)
	// Notify tells the other origins sharing the database, when tx
	// commits, that something changed (a no-op with one origin).
	Notify(ctx context.Context, tx *sql.Tx, channel string) error
	IsUniqueViolation(err error) bool
}

// clusterEngine is an engine several origins share: they learn of each
// other's changes and take turns holding leases.
type clusterEngine interface {
	Listen(ctx context.Context, channel string, fn func(), onError func(error))
	AcquireLease(ctx context.Context, name string, retry time.Duration) (*postgres.Lease, error)
}

// IsPostgres reports whether a --store value names PostgreSQL.
func IsPostgres(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// openEngine opens url ("" or a file path: SQLite at path; postgres://…)
// with the given schema pair.
func openEngine(ctx context.Context, url, path string, lite sqlite.Schema, pg postgres.Schema) (Engine, error) {
	switch {
	case url == "":
		e, err := sqlite.Open(ctx, path, lite)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		return e, nil
	case IsPostgres(url):
		e, err := postgres.Open(ctx, url, pg)
		if err != nil {
			return nil, fmt.Errorf("--store: %w", err)
		}
		return e, nil
	default:
		return nil, fmt.Errorf("--store %q: want empty (SQLite in the data folder) or a postgres:// URL", RedactURL(url))
	}
}

// RedactURL hides a URL's password, for messages and logs.
func RedactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return u
	}
	user, _, _ := strings.Cut(rest[:at], ":")
	return scheme + "://" + user + ":***" + rest[at:]
}

// db runs the shared SQL on an engine: queries are rebound for it, and
// booleans are written as 0/1 (the columns are integers on both engines).
type db struct {
	eng Engine
	sql *sql.DB
}

func newDB(e Engine) *db { return &db{eng: e, sql: e.DB()} }

func args(a []any) []any {
	for i, v := range a {
		if b, ok := v.(bool); ok {
			if b {
				a[i] = int64(1)
			} else {
				a[i] = int64(0)
			}
		}
	}
	return a
}

func (d *db) ExecContext(ctx context.Context, q string, a ...any) (sql.Result, error) {
	return d.sql.ExecContext(ctx, d.eng.Rebind(q), args(a)...)
}

func (d *db) QueryContext(ctx context.Context, q string, a ...any) (*sql.Rows, error) {
	return d.sql.QueryContext(ctx, d.eng.Rebind(q), args(a)...)
}

func (d *db) QueryRowContext(ctx context.Context, q string, a ...any) *sql.Row {
	return d.sql.QueryRowContext(ctx, d.eng.Rebind(q), args(a)...)
}

// beginWrite begins a serialized write transaction (Engine.BeginWrite).
func (d *db) beginWrite(ctx context.Context) (*Tx, error) {
	tx, err := d.eng.BeginWrite(ctx)
	if err != nil {
		return nil, err
	}
	return &Tx{tx: tx, eng: d.eng}, nil
}

// beginRead begins a consistent read-only transaction.
func (d *db) beginRead(ctx context.Context) (*Tx, error) {
	tx, err := d.eng.BeginRead(ctx)
	if err != nil {
		return nil, err
	}
	return &Tx{tx: tx, eng: d.eng}, nil
}

func (d *db) Close() error { return d.eng.Close() }

// Tx is a transaction running the shared SQL.
type Tx struct {
	tx  *sql.Tx
	eng Engine
	// audited: AppendAudit ran in this transaction (the store's OnAudit
	// hook runs after it commits).
	audited bool
}

func (t *Tx) ExecContext(ctx context.Context, q string, a ...any) (sql.Result, error) {
	return t.tx.ExecContext(ctx, t.eng.Rebind(q), args(a)...)
}

func (t *Tx) QueryContext(ctx context.Context, q string, a ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(ctx, t.eng.Rebind(q), args(a)...)
}

func (t *Tx) QueryRowContext(ctx context.Context, q string, a ...any) *sql.Row {
	return t.tx.QueryRowContext(ctx, t.eng.Rebind(q), args(a)...)
}

// Stmt is a prepared statement of the shared SQL.
type Stmt struct{ s *sql.Stmt }

func (t *Tx) PrepareContext(ctx context.Context, q string) (*Stmt, error) {
	s, err := t.tx.PrepareContext(ctx, t.eng.Rebind(q))
	if err != nil {
		return nil, err
	}
	return &Stmt{s}, nil
}

func (s *Stmt) ExecContext(ctx context.Context, a ...any) (sql.Result, error) {
	return s.s.ExecContext(ctx, args(a)...)
}

func (s *Stmt) QueryRowContext(ctx context.Context, a ...any) *sql.Row {
	return s.s.QueryRowContext(ctx, args(a)...)
}

func (s *Stmt) Close() error { return s.s.Close() }

func (t *Tx) Commit() error   { return t.tx.Commit() }
func (t *Tx) Rollback() error { return t.tx.Rollback() }
