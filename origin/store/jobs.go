package store

// Durable background jobs (the jobs table): the origin's bundle builds
// (manifest, canonical archive, deltas) survive restarts and are retried;
// nothing depends on an in-memory queue having room.
//
// A job is one row per (kind, app, version). Its life:
//
//	queued ──claim──▶ running ──▶ done
//	  ▲                  │
//	  └─ retry (run_after: backoff) ◀─┤ failure, attempts left
//	                     └──────────▶ failed (attempts spent, or the bundle is bad)
//
// ClaimJob is one UPDATE … RETURNING statement inside a write transaction,
// and write transactions are serialized on both engines (SQLite's BEGIN
// IMMEDIATE, PostgreSQL's per-schema advisory lock): two origins never
// claim the same job. A running job's worker touches it (TouchJob) while it
// works; a running job untouched for JobStaleAfter belongs to an origin
// that died, and is claimed again. attempts counts claims, so a job whose
// build kills the process is given up after as many tries. Times are Unix
// milliseconds.

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// JobBuild builds a bundle's manifest, canonical archive and deltas.
const JobBuild = "build"

// JobStaleAfter: a running job not touched for this long is claimed again
// (its origin died); workers touch theirs every JobStaleAfter/6.
var JobStaleAfter = 2 * time.Minute

// Job states.
const (
	JobQueued  = "queued"  // waiting to run
	JobRetry   = "retry"   // failed, runs again at RunAfter
	JobRunning = "running" // claimed by a worker
	JobDone    = "done"
	JobFailed  = "failed" // given up; LastError says why
)

// Job is a row of the jobs table.
type Job struct {
	ID        int64
	Kind      string
	AppID     string
	Version   string
	State     string
	Attempts  int // claims so far
	RunAfter  time.Time
	LastError string
	CreatedAt time.Time
	UpdatedAt time.Time
}

const jobCols = `id, kind, app_id, version, state, attempts, run_after, last_error, created_at, updated_at`

func scanJob(row interface{ Scan(...any) error }) (Job, error) {
	var j Job
	var runAfter, created, updated int64
	err := row.Scan(&j.ID, &j.Kind, &j.AppID, &j.Version, &j.State, &j.Attempts, &runAfter, &j.LastError, &created, &updated)
	j.RunAfter, j.CreatedAt, j.UpdatedAt = time.UnixMilli(runAfter), time.UnixMilli(created), time.UnixMilli(updated)
	return j, err
}

type execer interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

// enqueueJob queues a job, or queues it again from scratch (attempts and
// error cleared) if it exists in any state.
func enqueueJob(ctx context.Context, tx execer, kind, appID, version string, now time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO jobs (kind, app_id, version, state, attempts, run_after, last_error, created_at, updated_at)
		VALUES (?, ?, ?, 'queued', 0, 0, '', ?, ?)
		ON CONFLICT (kind, app_id, version) DO UPDATE SET state = 'queued', attempts = 0, run_after = 0, last_error = '', updated_at = excluded.updated_at`,
		kind, appID, version, now.UnixMilli(), now.UnixMilli())
	return err
}

// EnqueueJob queues a job (again, if it exists).
func (s *Store) EnqueueJob(ctx context.Context, kind, appID, version string) error {
	return s.write(ctx, false, func(tx *Tx) error { return enqueueJob(ctx, tx, kind, appID, version, time.Now()) })
}

// ClaimJob marks the oldest runnable job of kind (queued, or retry whose
// time has come) running and returns it, its attempts counted; ok is
// false when none is runnable.
func (s *Store) ClaimJob(ctx context.Context, kind string, now time.Time) (j Job, ok bool, err error) {
	err = s.write(ctx, false, func(tx *Tx) error {
		j, err = scanJob(tx.QueryRowContext(ctx, `UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_at = ?
			WHERE id = (SELECT id FROM jobs WHERE kind = ? AND (state IN ('queued', 'retry') AND run_after <= ? OR state = 'running' AND updated_at < ?)
			ORDER BY id LIMIT 1)
			RETURNING `+jobCols, now.UnixMilli(), kind, now.UnixMilli(), now.Add(-JobStaleAfter).UnixMilli()))
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		ok = err == nil
		return err
	})
	return j, ok, err
}

// TouchJob records that the worker holding claim j is still at it.
func (s *Store) TouchJob(ctx context.Context, j Job) error {
	return s.setJob(ctx, j, `state = 'running'`)
}

// FinishJob marks a running job done. It changes nothing if the job was
// queued again (or deleted) while it ran: the newer request stands.
func (s *Store) FinishJob(ctx context.Context, j Job) error {
	return s.setJob(ctx, j, `state = 'done', last_error = ''`)
}

// RetryJob records a running job's failure and schedules it again at at.
func (s *Store) RetryJob(ctx context.Context, j Job, msg string, at time.Time) error {
	return s.setJob(ctx, j, `state = 'retry', last_error = ?, run_after = ?`, msg, at.UnixMilli())
}

// FailJob gives a running job up with its error.
func (s *Store) FailJob(ctx context.Context, j Job, msg string) error {
	return s.setJob(ctx, j, `state = 'failed', last_error = ?`, msg)
}

// ReleaseJob puts a running job back in the queue without counting the
// attempt (its worker is stopping).
func (s *Store) ReleaseJob(ctx context.Context, j Job) error {
	return s.setJob(ctx, j, `state = 'queued', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END`)
}

// setJob updates a job only while it is the claim j holds: running, with
// the attempts of that claim.
func (s *Store) setJob(ctx context.Context, j Job, set string, args ...any) error {
	return s.write(ctx, false, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE jobs SET `+set+`, updated_at = ? WHERE id = ? AND state = 'running' AND attempts = ?`,
			append(args, time.Now().UnixMilli(), j.ID, j.Attempts)...)
		return err
	})
}

// DropJob deletes a job (its bundle is gone).
func (s *Store) DropJob(ctx context.Context, id int64) error {
	return s.write(ctx, false, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM jobs WHERE id = ?`, id)
		return err
	})
}

// ResumeJobs runs at start-up, before any worker: jobs left running by a
// crash (last touched before runningBefore: with one origin, now; with
// several, JobStaleAfter ago, since the others' running jobs are alive)
// are queued again, or failed with interrupted as their error when they
// already had maxAttempts claims; plain bundles without a canonical
// archive and without a job (stored before jobs existed, or whose job was
// lost) get a build job. It returns how many jobs were requeued, failed
// and added.
func (s *Store) ResumeJobs(ctx context.Context, maxAttempts int, interrupted string, runningBefore time.Time) (requeued, failed, added int64, err error) {
	err = s.write(ctx, false, func(tx *Tx) error {
		now, before := time.Now().UnixMilli(), runningBefore.UnixMilli()
		res, err := tx.ExecContext(ctx, `UPDATE jobs SET state = 'failed', last_error = ?, updated_at = ? WHERE state = 'running' AND attempts >= ? AND updated_at <= ?`,
			interrupted, now, maxAttempts, before)
		if err != nil {
			return err
		}
		failed, _ = res.RowsAffected()
		if res, err = tx.ExecContext(ctx, `UPDATE jobs SET state = 'queued', updated_at = ? WHERE state = 'running' AND updated_at <= ?`, now, before); err != nil {
			return err
		}
		requeued, _ = res.RowsAffected()
		res, err = tx.ExecContext(ctx, `INSERT INTO jobs (kind, app_id, version, state, attempts, run_after, last_error, created_at, updated_at)
			SELECT ?, app_id, version, 'queued', 0, 0, '', ?, ? FROM bundles
			WHERE canonical_sha256 = '' AND session_key = ''
			AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.kind = ? AND jobs.app_id = bundles.app_id AND jobs.version = bundles.version)
			ORDER BY created_at, rowid`, JobBuild, now, now, JobBuild)
		if err != nil {
			return err
		}
		added, _ = res.RowsAffected()
		return nil
	})
	return requeued, failed, added, err
}

// NextJobAt returns when the next queued or retrying job of kind becomes
// runnable (ok false: none is waiting).
func (s *Store) NextJobAt(ctx context.Context, kind string) (at time.Time, ok bool, err error) {
	var ms sql.NullInt64
	err = s.db.QueryRowContext(ctx, `SELECT min(run_after) FROM jobs WHERE kind = ? AND state IN ('queued', 'retry')`, kind).Scan(&ms)
	return time.UnixMilli(ms.Int64), ms.Valid, err
}

// ListJobs returns an app's jobs of kind by version.
func (s *Store) ListJobs(ctx context.Context, kind, appID string) (map[string]Job, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+jobCols+` FROM jobs WHERE kind = ? AND app_id = ?`, kind, appID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]Job{}
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out[j.Version] = j
	}
	return out, rows.Err()
}

// GetJob returns one job or ErrNotFound.
func (s *Store) GetJob(ctx context.Context, kind, appID, version string) (Job, error) {
	j, err := scanJob(s.db.QueryRowContext(ctx, `SELECT `+jobCols+` FROM jobs WHERE kind = ? AND app_id = ? AND version = ?`, kind, appID, version))
	if errors.Is(err, sql.ErrNoRows) {
		return j, ErrNotFound
	}
	return j, err
}

// CountJobs counts the jobs of kind in each state.
func (s *Store) CountJobs(ctx context.Context, kind string) (map[string]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT state, count(*) FROM jobs WHERE kind = ? GROUP BY state`, kind)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, err
		}
		out[st] = n
	}
	return out, rows.Err()
}

// Codes of refused rebuilds.
const (
	CodeBundleEncrypted = "bundle_encrypted"
	CodeBuildRunning    = "build_running"
)

// RequeueBuild queues a bundle's build again (the rebuild command). With
// clear, the bundle's manifest, canonical archive and the deltas to it are
// removed first, in the same transaction (which bumps the revision: the
// published bundle loses them until the build is done); refused while the
// build runs. An *InvalidError with CodeBundleNotFound, CodeBundleEncrypted
// (the origin holds ciphertext only) or CodeBuildRunning refuses it.
func (s *Store) RequeueBuild(ctx context.Context, appID, version string, clear bool) error {
	return s.write(ctx, clear, func(tx *Tx) error {
		if err := appExists(ctx, tx, appID); err != nil {
			return err
		}
		var sessionKey string
		err := tx.QueryRowContext(ctx, `SELECT session_key FROM bundles WHERE app_id = ? AND version = ?`, appID, version).Scan(&sessionKey)
		if errors.Is(err, sql.ErrNoRows) {
			return &InvalidError{Code: CodeBundleNotFound, Msg: "app " + appID + " has no bundle " + version}
		}
		if err != nil {
			return err
		}
		if sessionKey != "" {
			return &InvalidError{Code: CodeBundleEncrypted, Msg: "bundle " + version + " is encrypted end to end: the origin has no plaintext to build from (its manifest came from the CLI)"}
		}
		if clear {
			var state string
			err := tx.QueryRowContext(ctx, `SELECT state FROM jobs WHERE kind = ? AND app_id = ? AND version = ?`, JobBuild, appID, version).Scan(&state)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if state == JobRunning {
				return &InvalidError{Code: CodeBuildRunning, Msg: "the build of bundle " + version + " is running; rebuild it with --force once it is done"}
			}
			for _, q := range []string{
				`DELETE FROM manifest_files WHERE app_id = ? AND version = ?`,
				`DELETE FROM deltas WHERE app_id = ? AND to_version = ?`,
				`UPDATE bundles SET canonical_sha256 = '', canonical_size = 0 WHERE app_id = ? AND version = ?`,
			} {
				if _, err := tx.ExecContext(ctx, q, appID, version); err != nil {
					return err
				}
			}
		}
		if err := enqueueJob(ctx, tx, JobBuild, appID, version, time.Now()); err != nil {
			return err
		}
		return audit(ctx, tx, appID, "bundle.rebuilt", version, nil, obj{{"force", clear}})
	})
}
