package main

// `updraft migrate`: copy an origin's state between back ends (docs/deploy.md,
// "Moving between back ends"): the store (SQLite in the data folder, or
// PostgreSQL) table by table through origin/store's copy, the blobs (files
// in the data folder, or an S3 bucket) blob by blob, each verified against
// its SHA-256 as it is written. Both are resumable: rows and blobs the
// destination holds are skipped. --verify compares both sides afterwards.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin"
	"github.com/updraft-cdn/updraft/origin/blob"
	blobfs "github.com/updraft-cdn/updraft/origin/blob/fs"
	"github.com/updraft-cdn/updraft/origin/blob/s3"
	"github.com/updraft-cdn/updraft/origin/store"
)

// signingKeySecret is where origins sharing a store keep the snapshot
// signing key (origin/cluster.go); an embedded origin keeps it in
// DATA/origin-key only.
const signingKeySecret = "snapshot_signing_key"

// originLease is a lease every running origin on a shared store holds (one
// of them): taken within seconds, it proves no origin runs on the store.
const originLease = "guard"

// migrateBatchRows is the default number of rows per INSERT.
const migrateBatchRows = 500

type migration struct {
	data, fromStore, fromBlobs string
	toData, toStore, toBlobs   string
	verify, verifyOnly, hashes bool
	force                      bool
	batch, parallel            int
	stdout, stderr             io.Writer
}

// cmdMigrate is `updraft migrate`.
func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	m := migration{stdout: stdout, stderr: stderr}
	fs.StringVar(&m.data, "data", config.DataDir(), "the source origin's data folder (its SQLite store and blob files unless --from-store and --from-blobs say otherwise; its key files); env UPDRAFT_DATA")
	fs.StringVar(&m.fromStore, "from-store", "", "the source store: empty for SQLite in --data, or postgres://USER:PASS@HOST:PORT/DB")
	fs.StringVar(&m.fromBlobs, "from-blobs", "", "the source blob store: empty for files in --data/blobs, or s3://BUCKET?endpoint=HOST:PORT&region=R[&insecure=1]")
	fs.StringVar(&m.toData, "to-data", "", "the destination's data folder: its SQLite store when --to-store is empty, its blob files when --to-blobs is empty, and the key files the new origin needs")
	fs.StringVar(&m.toStore, "to-store", "", "the destination store: empty for SQLite in --to-data, or postgres://USER:PASS@HOST:PORT/DB")
	fs.StringVar(&m.toBlobs, "to-blobs", "", "the destination blob store: empty for files in --to-data/blobs, or s3://BUCKET?endpoint=HOST:PORT&region=R[&insecure=1][&create=1] (credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
	fs.BoolVar(&m.verify, "verify", false, "after copying, compare every table row by row and check every referenced blob in the destination; exit 1 on any difference")
	fs.BoolVar(&m.verifyOnly, "verify-only", false, "copy nothing: only compare (as --verify)")
	fs.BoolVar(&m.hashes, "verify-blob-hashes", false, "--verify also reads every referenced blob of the destination and checks its SHA-256")
	fs.BoolVar(&m.force, "force", false, "copy into a destination that holds another installation's apps, keys or bundles (its rows are kept; --verify lists the differences), and replace differing key files in --to-data")
	fs.IntVar(&m.batch, "batch", migrateBatchRows, "rows per INSERT (batches also end at about 4 MiB)")
	fs.IntVar(&m.parallel, "parallel", 4, "blobs copied (and verified) at once")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := want(0, pos, "no arguments (flags only)"); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if m.batch < 1 || m.parallel < 1 {
		return usagef("migrate", "migrate: --batch and --parallel: want 1 or more")
	}
	return m.run(ctx)
}

// side is one end of a migration, opened.
type side struct {
	storeFlag, blobsFlag string // how errors and the report name it
	meta                 *store.Store
	events               *store.EventStore
	blobs                blob.Store
}

func (s *side) close() {
	if s.meta != nil {
		s.meta.Close()
	}
	if s.events != nil {
		s.events.Close()
	}
}

func (m *migration) run(ctx context.Context) error {
	var err error
	if m.data, err = filepath.Abs(m.data); err != nil {
		return err
	}
	for _, u := range []struct{ flag, val string }{{"--from-store", m.fromStore}, {"--to-store", m.toStore}} {
		if u.val != "" && !store.IsPostgres(u.val) {
			return fmt.Errorf("migrate: %s %q: want empty (SQLite in the data folder) or postgres://USER:PASS@HOST:PORT/DB", u.flag, store.RedactURL(u.val))
		}
	}
	for _, u := range []struct{ flag, val string }{{"--from-blobs", m.fromBlobs}, {"--to-blobs", m.toBlobs}} {
		if u.val != "" {
			if _, err := s3.ParseURL(u.val); err != nil {
				return fmt.Errorf("migrate: %s %s: %v (want empty for files in the data folder, or s3://BUCKET?endpoint=HOST:PORT)", u.flag, u.val, err)
			}
		}
	}
	if m.toData == "" && (m.toStore == "" || m.toBlobs == "") {
		return errors.New("migrate: --to-data DIR is needed: an empty --to-store means SQLite in --to-data, an empty --to-blobs files in --to-data/blobs (to move to PostgreSQL and S3, give --to-store and --to-blobs)")
	}
	if m.toData != "" {
		if m.toData, err = filepath.Abs(m.toData); err != nil {
			return err
		}
	}
	sameStore := (m.fromStore == "" && m.toStore == "" && m.data == m.toData) || (m.fromStore != "" && m.fromStore == m.toStore)
	sameBlobs := (m.fromBlobs == "" && m.toBlobs == "" && m.data == m.toData) || (m.fromBlobs != "" && m.fromBlobs == m.toBlobs)
	if sameStore && sameBlobs {
		return errors.New("migrate: the source and the destination are the same store and blob store: nothing to do (name the destination with --to-store, --to-blobs and --to-data)")
	}
	if m.fromStore == "" || m.fromBlobs == "" {
		if fi, err := os.Stat(m.data); err != nil || !fi.IsDir() {
			return fmt.Errorf("migrate: --data %s: not a folder: the source origin's data folder (or name the source with --from-store and --from-blobs)", m.data)
		}
	}
	if m.fromStore == "" {
		if _, err := os.Stat(filepath.Join(m.data, "meta.db")); err != nil {
			return fmt.Errorf("migrate: --data %s holds no meta.db: not an origin's data folder (a PostgreSQL source: --from-store)", m.data)
		}
	}
	if m.toData != "" {
		if err := os.MkdirAll(m.toData, 0o755); err != nil {
			return fmt.Errorf("migrate: --to-data: %w", err)
		}
	}
	// An embedded origin keeps its databases open while it runs.
	if m.fromStore == "" {
		if err := checkNoEmbeddedOrigin(ctx, m.data, "--data"); err != nil {
			return err
		}
	}
	if m.toStore == "" && !sameStore {
		if err := checkNoEmbeddedOrigin(ctx, m.toData, "--to-data"); err != nil {
			return err
		}
	}

	// Open both sides; errors name the flag at fault.
	src := &side{storeFlag: "--data " + m.data, blobsFlag: "--data " + m.data}
	if m.fromStore != "" {
		src.storeFlag = "--from-store " + store.RedactURL(m.fromStore)
	}
	if m.fromBlobs != "" {
		src.blobsFlag = "--from-blobs " + m.fromBlobs
	}
	dst := &side{storeFlag: "--to-data " + m.toData, blobsFlag: "--to-data " + m.toData}
	if m.toStore != "" {
		dst.storeFlag = "--to-store " + store.RedactURL(m.toStore)
	}
	if m.toBlobs != "" {
		dst.blobsFlag = "--to-blobs " + m.toBlobs
	}
	defer src.close()
	defer dst.close()
	if src.meta, src.events, err = store.OpenStores(ctx, m.fromStore, m.data); err != nil {
		return fmt.Errorf("migrate: %s: %w", src.storeFlag, err)
	}
	if err := checkNoOrigin(ctx, src.meta, src.storeFlag); err != nil {
		return err
	}
	if !sameStore {
		if dst.meta, dst.events, err = store.OpenStores(ctx, m.toStore, m.toData); err != nil {
			return fmt.Errorf("migrate: %s: %w", dst.storeFlag, err)
		}
		if err := checkNoOrigin(ctx, dst.meta, dst.storeFlag); err != nil {
			return err
		}
	}
	// Blob writes to a bucket go through local files, in a folder of this
	// run's (a killed run's folder is removed).
	tmpParent := m.toData
	if tmpParent == "" {
		tmpParent = m.data
		if _, err := os.Stat(tmpParent); err != nil {
			tmpParent = ""
		}
	}
	if tmpParent != "" {
		old, _ := filepath.Glob(filepath.Join(tmpParent, ".migrate-*"))
		for _, o := range old {
			os.RemoveAll(o)
		}
	}
	tmp, err := os.MkdirTemp(tmpParent, ".migrate-")
	if err != nil {
		return fmt.Errorf("migrate: temporary folder: %w", err)
	}
	defer os.RemoveAll(tmp)
	if src.blobs, err = openMigrationBlobs(ctx, m.fromBlobs, m.data, filepath.Join(tmp, "from")); err != nil {
		return fmt.Errorf("migrate: %s: %w", src.blobsFlag, err)
	}
	if !sameBlobs {
		if dst.blobs, err = openMigrationBlobs(ctx, m.toBlobs, m.toData, filepath.Join(tmp, "to")); err != nil {
			return fmt.Errorf("migrate: %s: %w", dst.blobsFlag, err)
		}
	}
	opt := store.CopyOptions{BatchRows: m.batch}
	if m.fromStore == "" {
		// An embedded origin signs with DATA/origin-key; origins sharing a
		// store take the key from it: the destination gets the source's,
		// so edges keep trusting what the new origins sign.
		sec, err := signingKeySecretOf(m.data)
		if err != nil {
			return fmt.Errorf("migrate: --data: %w", err)
		}
		if sec != nil {
			opt.ExtraSecrets = append(opt.ExtraSecrets, *sec)
		}
	}

	if !m.verifyOnly {
		if err := m.copy(ctx, src, dst, sameStore, sameBlobs, opt); err != nil {
			return err
		}
	}
	if m.verify || m.verifyOnly {
		return m.check(ctx, src, dst, sameStore, sameBlobs, opt)
	}
	return nil
}

// copy copies the store and the blobs, and writes the key files into
// --to-data.
func (m *migration) copy(ctx context.Context, src, dst *side, sameStore, sameBlobs bool, opt store.CopyOptions) error {
	var keys []keyFile
	if !sameStore {
		if err := store.CheckDestination(ctx, dst.meta, src.meta, opt); err != nil {
			var de *store.DifferentInstallationError
			if !errors.As(err, &de) {
				return fmt.Errorf("migrate: %s: %w", dst.storeFlag, err)
			}
			if !m.force {
				return fmt.Errorf("migrate: %s: %w (nothing copied; --force copies into it anyway, keeping its rows)", dst.storeFlag, err)
			}
			fmt.Fprintf(m.stderr, "migrate: warning (--force): %s: %v\n", dst.storeFlag, err)
		}
		var err error
		if keys, err = m.keyFiles(ctx, src, opt); err != nil {
			return err
		}
	}
	start := time.Now()
	var rows, copied int64
	var rev int64
	if sameStore {
		fmt.Fprintf(m.stderr, "store: the source and the destination are the same (%s): not copied\n", src.storeFlag)
	} else {
		p := &progressPrinter{w: m.stderr}
		opt.Progress = p.table
		mc, err := store.CopyMeta(ctx, dst.meta, src.meta, opt)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		ec, err := store.CopyEvents(ctx, dst.events, src.events, opt)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		for _, c := range append(mc, ec...) {
			if c.Table == "revision" {
				rev = c.DestRev
				continue
			}
			rows += c.Source
			copied += c.Inserted
		}
	}
	var bs *blobCopyStats
	if sameBlobs {
		fmt.Fprintf(m.stderr, "blobs: the source and the destination are the same (%s): not copied\n", src.blobsFlag)
	} else {
		var err error
		if bs, err = copyBlobs(ctx, dst.blobs, src.blobs, m.parallel, m.stderr); err != nil {
			return fmt.Errorf("migrate: blobs from %s to %s: %w", src.blobsFlag, dst.blobsFlag, err)
		}
	}
	for _, k := range keys {
		if err := k.write(m.stderr); err != nil {
			return fmt.Errorf("migrate: --to-data: %w", err)
		}
	}
	if !sameStore {
		fmt.Fprintf(m.stdout, "migrate: store: %d rows in %d tables, %d copied by this run; revision %d\n", rows, len(store.MetaTables())+len(store.EventTables()), copied, rev)
	}
	if !sameBlobs {
		fmt.Fprintf(m.stdout, "migrate: blobs: %d (%s), %d copied by this run (%s), %d there already\n", bs.seen.Load(), humanSize(bs.bytes.Load()),
			bs.copied.Load(), humanSize(bs.copiedBytes.Load()), bs.present.Load())
	}
	fmt.Fprintf(m.stdout, "migrate: done in %s; start the origin on the destination with:\n  updraft origin %s\n", time.Since(start).Round(time.Millisecond), m.originFlags())
	return nil
}

// originFlags are the flags of an origin on the destination.
func (m *migration) originFlags() string {
	var f []string
	if m.toData != "" {
		f = append(f, "--data "+m.toData)
	} else {
		f = append(f, "--data DIR")
	}
	if m.toStore != "" {
		f = append(f, "--store '"+store.RedactURL(m.toStore)+"'")
	}
	if m.toBlobs != "" {
		f = append(f, "--blobs '"+m.toBlobs+"'")
	}
	return strings.Join(f, " ")
}

// checkNoOrigin refuses a shared store an origin runs on: every running
// origin takes part in the contest for its leases, and one of them holds
// each; taking one within a few seconds proves that none runs. (An
// embedded store: checkNoEmbeddedOrigin.)
func checkNoOrigin(ctx context.Context, st *store.Store, what string) error {
	if !st.Shared() {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	l, err := st.AcquireLease(cctx, originLease, 200*time.Millisecond)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("migrate: %s: an origin is running on this store (it holds the %q lease): stop every origin that uses it first", what, originLease)
	}
	if l != nil {
		l.Release()
	}
	return nil
}

// checkNoEmbeddedOrigin refuses a data folder whose SQLite databases
// another process (an origin) has open: a connection in exclusive locking
// mode cannot read a WAL database that another connection holds open (an
// origin keeps idle connections open as long as it runs). The probe lets
// go at once; the copy then opens the databases as usual.
func checkNoEmbeddedOrigin(ctx context.Context, dir, flag string) error {
	for _, name := range []string{"meta.db", "events.db"} {
		path := filepath.Join(dir, name)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(500)")
		if err != nil {
			return fmt.Errorf("migrate: %s: %w", flag, err)
		}
		err = func() error {
			defer db.Close()
			conn, err := db.Conn(ctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			if _, err := conn.ExecContext(ctx, `PRAGMA locking_mode=EXCLUSIVE`); err != nil {
				return err
			}
			var n int
			return conn.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master`).Scan(&n)
		}()
		var se *sqlite.Error
		if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY {
			return fmt.Errorf("migrate: %s %s: %s is open in another process: an origin is running on it; stop it first", flag, dir, name)
		}
		if err != nil {
			return fmt.Errorf("migrate: %s: %s: %w", flag, path, err)
		}
	}
	return nil
}

// openMigrationBlobs opens a blob store: files in dir/blobs (raw empty) or
// a bucket, whose writes in progress go to tmp (not the origin's
// DATA/blob-uploads, which opening a bucket store empties).
func openMigrationBlobs(ctx context.Context, raw, dir, tmp string) (blob.Store, error) {
	if raw == "" {
		return blobfs.Open(filepath.Join(dir, "blobs"))
	}
	c, err := s3.ParseURL(raw)
	if err != nil {
		return nil, err
	}
	c.TempDir = tmp
	return s3.Open(ctx, c)
}

// signingKeySecretOf returns an embedded origin's signing key (DATA/origin-key)
// as the store secret origins sharing a store read it from (nil: no key).
func signingKeySecretOf(data string) (*store.SecretRow, error) {
	path := config.SigningKeyFile(data)
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	key, err := origin.LoadSigningKeyFile(path)
	if err != nil {
		return nil, err
	}
	return &store.SecretRow{Name: signingKeySecret, Value: base64.StdEncoding.EncodeToString(key.Seed()), CreatedAt: fi.ModTime().Unix()}, nil
}

// keyFile is a file the origin on the destination needs in its data folder.
type keyFile struct {
	path  string
	data  []byte
	force bool
}

// keyFiles plans the key files of --to-data: the snapshot signing key
// (from the source's store when origins share it, else DATA/origin-key),
// the previous one, and the operator and edge key files (their hashes
// are in the store; the files are what the CLI and edges read). A file
// --to-data holds already with other content is refused unless --force.
func (m *migration) keyFiles(ctx context.Context, src *side, opt store.CopyOptions) ([]keyFile, error) {
	if m.toData == "" || m.toData == m.data {
		return nil, nil
	}
	var out []keyFile
	signing := ""
	for _, s := range opt.ExtraSecrets {
		if s.Name == signingKeySecret {
			signing = s.Value
		}
	}
	if signing == "" {
		v, ok, err := src.meta.Secret(ctx, signingKeySecret)
		if err != nil {
			return nil, fmt.Errorf("migrate: %s: %w", src.storeFlag, err)
		}
		if ok {
			signing = v
		}
	}
	if signing != "" {
		out = append(out, keyFile{path: config.SigningKeyFile(m.toData), data: []byte(signing + "\n")})
	} else if b, err := os.ReadFile(config.SigningKeyFile(m.data)); err == nil {
		out = append(out, keyFile{path: config.SigningKeyFile(m.toData), data: b})
	}
	for _, name := range []func(string) string{origin.PreviousSigningKeyFile, config.APIKeyFile, config.EdgeKeyFile} {
		if b, err := os.ReadFile(name(m.data)); err == nil {
			out = append(out, keyFile{path: name(m.toData), data: b})
		}
	}
	for i, k := range out {
		old, err := os.ReadFile(k.path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("migrate: --to-data: %w", err)
		}
		if bytes.Equal(bytes.TrimSpace(old), bytes.TrimSpace(k.data)) {
			out[i].data = nil // the same: leave it
			continue
		}
		if !m.force {
			return nil, fmt.Errorf("migrate: --to-data: %s holds another key than the source's: move it away, or --force keeps it as %s.before-migrate", k.path, filepath.Base(k.path))
		}
		out[i].force = true
	}
	return out, nil
}

func (k keyFile) write(log io.Writer) error {
	if k.data == nil {
		return nil
	}
	if k.force {
		if err := os.Rename(k.path, k.path+".before-migrate"); err != nil {
			return err
		}
		fmt.Fprintf(log, "migrate: %s kept as %s.before-migrate\n", k.path, filepath.Base(k.path))
	}
	if err := blob.WriteFileAtomic(k.path, k.data, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(log, "migrate: wrote %s\n", k.path)
	return nil
}

// progressPrinter prints a table copy's progress: a line per table, and
// while a large table copies, a line a second at most.
type progressPrinter struct {
	w    io.Writer
	last time.Time
}

func (p *progressPrinter) table(c store.TableCopy) {
	name := c.Schema + "." + c.Table
	switch {
	case c.Table == "revision":
		fmt.Fprintf(p.w, "copy %-24s source revision %d, destination now %d\n", name, c.SourceRev, c.DestRev)
	case c.Done:
		resumed := ""
		if c.Resumed {
			resumed = " (the destination held some: resumed)"
		}
		fmt.Fprintf(p.w, "copy %-24s %d rows: %d copied by this run%s\n", name, c.Source, c.Inserted, resumed)
		p.last = time.Time{}
	case time.Since(p.last) >= time.Second:
		if !p.last.IsZero() {
			fmt.Fprintf(p.w, "copy %-24s %d of %d rows read (%s), %d copied\n", name, c.Read, c.Source, humanSize(c.Bytes), c.Inserted)
		}
		p.last = time.Now()
	}
}

type blobCopyStats struct {
	seen, copied, present, missing atomic.Int64
	bytes, copiedBytes             atomic.Int64
}

type walked struct {
	sha  string
	size int64
}

// copyBlobs copies every blob of src that dst lacks (or holds with another
// size), parallel at a time, each streamed through dst's writer, which
// checks its SHA-256 before committing it.
func copyBlobs(ctx context.Context, dst, src blob.Store, parallel int, log io.Writer) (*blobCopyStats, error) {
	st := &blobCopyStats{}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan walked)
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				if ctx.Err() != nil {
					continue
				}
				if err := copyBlob(dst, src, b, st); err != nil {
					cancel(err)
				}
			}
		}()
	}
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() { // progress, every 2 s
		defer close(stopped)
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				fmt.Fprintf(log, "copy blobs: %d seen (%s): %d copied (%s), %d there already\n", st.seen.Load(), humanSize(st.bytes.Load()),
					st.copied.Load(), humanSize(st.copiedBytes.Load()), st.present.Load())
			}
		}
	}()
	werr := src.Walk(func(sha string, size int64, _ time.Time) error {
		select {
		case work <- walked{sha, size}:
			st.seen.Add(1)
			st.bytes.Add(size)
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
	close(work)
	wg.Wait()
	close(stop)
	<-stopped
	if err := context.Cause(ctx); err != nil {
		return st, err
	}
	if werr != nil {
		return st, werr
	}
	fmt.Fprintf(log, "copy blobs: %d (%s): %d copied by this run (%s), %d there already\n", st.seen.Load(), humanSize(st.bytes.Load()),
		st.copied.Load(), humanSize(st.copiedBytes.Load()), st.present.Load())
	if n := st.missing.Load(); n > 0 {
		fmt.Fprintf(log, "copy blobs: %d removed from the source during the walk: not copied\n", n)
	}
	return st, nil
}

func copyBlob(dst, src blob.Store, b walked, st *blobCopyStats) error {
	info, err := dst.Stat(b.sha)
	switch {
	case err == nil && info.Size == b.size:
		st.present.Add(1)
		return nil
	case err == nil: // a wrong size: content addressing says it is damaged
		if err := dst.Remove(b.sha); err != nil {
			return err
		}
	case !errors.Is(err, blob.ErrNotFound):
		return err
	}
	r, _, err := src.Open(b.sha)
	if errors.Is(err, blob.ErrNotFound) {
		st.missing.Add(1)
		return nil
	}
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := dst.Create(0)
	if err != nil {
		return err
	}
	n, err := io.Copy(w, r)
	if err != nil {
		w.Abort()
		return fmt.Errorf("blob %s: %w", b.sha, err)
	}
	if _, err := w.Commit(b.sha); err != nil {
		if errors.Is(err, blob.ErrMismatch) {
			return fmt.Errorf("blob %s of the source does not hash to its name (damaged in the source): %w", b.sha, err)
		}
		return err
	}
	st.copied.Add(1)
	st.copiedBytes.Add(n)
	return nil
}

// check is --verify: every table compared row by row, every blob the
// source's store references present in the destination with its size
// (and, with --verify-blob-hashes, its content hashed again).
func (m *migration) check(ctx context.Context, src, dst *side, sameStore, sameBlobs bool, opt store.CopyOptions) error {
	var bad []string
	w := m.stdout
	if !sameStore {
		mc, err := store.VerifyMeta(ctx, dst.meta, src.meta, opt)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		ec, err := store.VerifyEvents(ctx, dst.events, src.events, opt)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		for _, c := range append(mc, ec...) {
			name := c.Schema + "." + c.Table
			status := "ok"
			if !c.OK() {
				status = "DIFFERENT"
				bad = append(bad, name)
			}
			if c.Table == "revision" {
				fmt.Fprintf(w, "verify %-24s source revision %d, destination %d  %s\n", name, c.SourceRev, c.DestRev, status)
			} else {
				sum := c.DestSum[:16]
				if c.SourceSum != c.DestSum {
					sum = c.SourceSum[:16] + " ≠ " + sum
				}
				fmt.Fprintf(w, "verify %-24s %d rows, destination %d  sha256 %s  %s\n", name, c.SourceRows, c.DestRows, sum, status)
			}
			if !c.OK() {
				if c.Table != "revision" {
					fmt.Fprintf(w, "       %d missing in the destination, %d only in the destination, %d different\n", c.Missing, c.Extra, c.Differ)
				}
				for _, e := range c.Examples {
					fmt.Fprintf(w, "       %s\n", e)
				}
			}
		}
	}
	if !sameBlobs {
		refs, err := src.meta.ReferencedBlobs(ctx)
		if err != nil {
			return fmt.Errorf("migrate: %s: %w", src.storeFlag, err)
		}
		r := verifyBlobs(ctx, dst.blobs, src.blobs, refs, m.hashes, m.parallel)
		if r.err != nil {
			return fmt.Errorf("migrate: verify blobs: %w", r.err)
		}
		status := "ok"
		if len(r.problems) > 0 {
			status = "DIFFERENT"
			bad = append(bad, "blobs")
		}
		what := "present with their size"
		if m.hashes {
			what = "present with their size and SHA-256"
		}
		fmt.Fprintf(w, "verify %-24s %d referenced by the store (%s): %d %s  %s\n", "blobs", len(refs), humanSize(r.bytes), r.ok, what, status)
		slices.Sort(r.problems)
		for i, p := range r.problems {
			if i == 10 {
				fmt.Fprintf(w, "       … and %d more\n", len(r.problems)-10)
				break
			}
			fmt.Fprintf(w, "       %s\n", p)
		}
		for _, p := range r.warnings {
			fmt.Fprintf(w, "       warning: %s\n", p)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("migrate: verify: the destination differs from the source in %s", strings.Join(bad, ", "))
	}
	fmt.Fprintln(w, "verify: the destination matches the source")
	return nil
}

type blobReport struct {
	ok       int
	bytes    int64
	problems []string
	warnings []string
	err      error
}

func verifyBlobs(ctx context.Context, dst, src blob.Store, refs map[string]bool, hashes bool, parallel int) blobReport {
	var r blobReport
	var mu sync.Mutex
	work := make(chan string)
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sha := range work {
				problem, warning, size, err := verifyBlob(dst, src, sha, hashes)
				mu.Lock()
				switch {
				case err != nil:
					if r.err == nil {
						r.err = err
					}
				case problem != "":
					r.problems = append(r.problems, problem)
				case warning != "":
					r.warnings = append(r.warnings, warning)
				default:
					r.ok++
					r.bytes += size
				}
				mu.Unlock()
			}
		}()
	}
	for sha := range refs {
		if ctx.Err() != nil {
			break
		}
		work <- sha
	}
	close(work)
	wg.Wait()
	if r.err == nil {
		r.err = ctx.Err()
	}
	return r
}

func verifyBlob(dst, src blob.Store, sha string, hashes bool) (problem, warning string, size int64, err error) {
	si, serr := src.Stat(sha)
	if serr != nil && !errors.Is(serr, blob.ErrNotFound) {
		return "", "", 0, serr
	}
	di, derr := dst.Stat(sha)
	switch {
	case errors.Is(derr, blob.ErrNotFound) && serr != nil:
		return "", fmt.Sprintf("blob %s is referenced but absent in the source too", sha), 0, nil
	case errors.Is(derr, blob.ErrNotFound):
		return fmt.Sprintf("blob %s (%d bytes) is missing in the destination", sha, si.Size), "", 0, nil
	case derr != nil:
		return "", "", 0, derr
	case serr == nil && di.Size != si.Size:
		return fmt.Sprintf("blob %s has %d bytes in the destination, %d in the source", sha, di.Size, si.Size), "", 0, nil
	}
	if hashes {
		rd, _, err := dst.Open(sha)
		if err != nil {
			return "", "", 0, err
		}
		h := sha256.New()
		_, err = io.Copy(h, rd)
		rd.Close()
		if err != nil {
			return "", "", 0, fmt.Errorf("blob %s: %w", sha, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != sha {
			return fmt.Sprintf("blob %s hashes to %s in the destination", sha, got), "", 0, nil
		}
	}
	return "", "", di.Size, nil
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
