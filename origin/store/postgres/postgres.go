// Package postgres is the engine of the origin's stores when several origins
// share one database: PostgreSQL through pgx v5 (database/sql interface, so
// the stores' SQL in origin/store is the same on both engines).
//
// What differs from SQLite, and is this package's to supply:
//   - placeholders: the shared SQL writes ?, PostgreSQL takes $1, $2… (Rebind);
//   - serialized writers: SQLite's BEGIN IMMEDIATE becomes a transaction-
//     scoped advisory lock per schema, so two origins' writes to the same
//     schema never interleave (and a revision number is never given twice);
//   - consistent reads: REPEATABLE READ, so a snapshot is built from one
//     state of the database and the revision it carries;
//   - change notification across origins: NOTIFY in the committing
//     transaction, LISTEN on a dedicated connection (Listen);
//   - leases: a session advisory lock held on a dedicated connection, lost
//     (and taken by another origin) when the holder dies (Lease);
//   - schema migrations under a session advisory lock, so two origins
//     starting at once apply each migration once.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// Schema is one store's tables: its migrations (applied in order, each once;
// never edit a released migration: append a new one), the table recording
// them, and the advisory lock key serializing its writers.
type Schema struct {
	name       string
	migrations []string
}

// Engine is a PostgreSQL database holding one schema's tables.
type Engine struct {
	db      *sql.DB
	cfg     *pgx.ConnConfig
	schema  Schema
	lockKey int64
	rebinds sync.Map // query → rebound query
}

// ParseURL checks a postgres:// URL and returns its connection settings,
// with an error that never repeats the password.
func ParseURL(u string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		var pe *pgconn.ParseConfigError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("not a valid PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE): %v", pe.Unwrap())
		}
		return nil, fmt.Errorf("not a valid PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE)")
	}
	return cfg, nil
}

// Open connects to the database at url (postgres://…), checks that it
// answers, and applies schema's pending migrations.
func Open(ctx context.Context, url string, schema Schema) (*Engine, error) {
	cfg, err := ParseURL(url)
	if err != nil {
		return nil, err
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	// Statements run as unnamed prepared statements (parse, bind and
	// execute in one round trip) rather than being prepared and cached per
	// connection: the stores' multi-row statements vary in length, and
	// caching each variant cost more than it saved (event ingest 9,000 →
	// 53,000 events/s, BenchmarkIngestSegment).
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("cannot reach PostgreSQL at %s:%d (database %q, user %q): %w", cfg.Host, cfg.Port, cfg.Database, cfg.User, describe(err))
	}
	e := &Engine{db: db, cfg: cfg, schema: schema, lockKey: key("updraft.write." + schema.name)}
	if err := e.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return e, nil
}

// describe shortens pgx's connection errors to their cause.
func describe(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s (SQLSTATE %s)", pe.Message, pe.Code)
	}
	return err
}

// key is a stable advisory lock key for a name.
func key(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return int64(h.Sum64())
}

// Name is the engine's name in logs and errors.
func (e *Engine) Name() string { return "postgres" }

// DB is the database handle.
func (e *Engine) DB() *sql.DB { return e.db }

// Close closes the database.
func (e *Engine) Close() error { return e.db.Close() }

// Rebind turns the shared SQL's ? placeholders into $1, $2…, leaving
// string literals, quoted identifiers and comments alone. Results are
// cached: the stores' queries are a fixed set of strings.
func (e *Engine) Rebind(q string) string {
	if r, ok := e.rebinds.Load(q); ok {
		return r.(string)
	}
	r := Rebind(q)
	e.rebinds.Store(q, r)
	return r
}

// Rebind rewrites ? placeholders outside quotes and comments as $n.
func Rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(q) {
				if q[j] == c {
					if j+1 < len(q) && q[j+1] == c { // doubled quote
						j += 2
						continue
					}
					break
				}
				j++
			}
			if j >= len(q) {
				j = len(q) - 1
			}
			b.WriteString(q[i : j+1])
			i = j
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				j = len(q) - i - 1
			}
			b.WriteString(q[i : i+j+1])
			i += j
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// BeginWrite begins a write transaction holding the schema's write lock
// until it ends: writers of every origin sharing the database are
// serialized, as SQLite's BEGIN IMMEDIATE serializes one origin's.
func (e *Engine) BeginWrite(ctx context.Context) (*sql.Tx, error) {
	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, e.lockKey); err != nil {
		tx.Rollback()
		return nil, err
	}
	return tx, nil
}

// BeginRead begins a read-only transaction that sees one state of the
// database throughout (REPEATABLE READ).
func (e *Engine) BeginRead(ctx context.Context) (*sql.Tx, error) {
	return e.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
}

// Notify queues a notification on channel, delivered to every listener
// (Listen) when tx commits, and not at all if it rolls back.
func (e *Engine) Notify(ctx context.Context, tx *sql.Tx, channel string) error {
	_, err := tx.ExecContext(ctx, `SELECT pg_notify($1, '')`, channel)
	return err
}

// IsUniqueViolation reports whether err is a unique or primary key
// constraint violation.
func (e *Engine) IsUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// Listen calls fn after each notification on channel until ctx ends, on a
// dedicated connection. It reconnects after a lost connection (backing off
// up to 2 s) and calls fn after every reconnection too, since notifications
// sent while disconnected are lost. Connection failures go to onError.
func (e *Engine) Listen(ctx context.Context, channel string, fn func(), onError func(error)) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := e.listenOnce(ctx, channel, fn, func() { backoff = 50 * time.Millisecond })
		if ctx.Err() != nil {
			return
		}
		if err != nil && onError != nil {
			onError(describe(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (e *Engine) listenOnce(ctx context.Context, channel string, fn func(), connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, e.cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return err
	}
	connected()
	fn() // changes made while no connection listened
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		fn()
	}
}

// Lease is a named, cluster-wide lease: held by at most one origin at a
// time, released when its holder's connection ends (a crash included).
type Lease struct {
	conn *pgx.Conn
	lost chan struct{}
	stop chan struct{}
	once sync.Once
}

// Lost is closed when the lease is lost (its connection failed) or
// released.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Release gives the lease up.
func (l *Lease) Release() {
	l.once.Do(func() { close(l.stop) })
	<-l.lost
}

// AcquireLease blocks until this process holds the lease name, retrying
// every retry, or ctx ends. The holder's connection is checked every
// retry; when it fails the lease is lost (Lost closes) and another origin
// takes it over within one retry of PostgreSQL noticing.
func (e *Engine) AcquireLease(ctx context.Context, name string, retry time.Duration) (*Lease, error) {
	k := key("updraft.lease." + name)
	for {
		conn, err := pgx.ConnectConfig(ctx, e.cfg)
		if err == nil {
			var ok bool
			if err = conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, k).Scan(&ok); err == nil && ok {
				l := &Lease{conn: conn, lost: make(chan struct{}), stop: make(chan struct{})}
				go l.hold(retry)
				return l, nil
			}
			conn.Close(context.Background())
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(retry):
		}
	}
}

func (l *Lease) hold(every time.Duration) {
	defer close(l.lost)
	defer l.conn.Close(context.Background())
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), every+5*time.Second)
			err := l.conn.Ping(ctx)
			cancel()
			if err != nil {
				return
			}
		}
	}
}

// migrate applies the pending migrations under a session advisory lock, so
// two origins starting at once apply each one once.
func (e *Engine) migrate(ctx context.Context) error {
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	k := key("updraft.migrate")
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, k); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock($1)`, k)
	table := pgx.Identifier{e.schema.name + "_migrations"}.Sanitize()
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+table+` (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for i, m := range e.schema.migrations {
		v := i + 1
		err := func() error {
			tx, err := conn.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM `+table+` WHERE version = $1`, v).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, strings.ReplaceAll(m, "TEXTC", `TEXT COLLATE "C"`)); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO `+table+` (version, applied_at) VALUES ($1, $2)`, v, time.Now().Unix()); err != nil {
				return err
			}
			return tx.Commit()
		}()
		if err != nil {
			return fmt.Errorf("%s migration %d: %w", e.schema.name, v, describe(err))
		}
	}
	return nil
}

// Len is the number of migrations of the schema.
func (s Schema) Len() int { return len(s.migrations) }

// MigrationsTable is the table recording the schema's applied migrations.
func (s Schema) MigrationsTable() string { return s.name + "_migrations" }
