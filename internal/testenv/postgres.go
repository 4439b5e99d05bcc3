// Package testenv starts the real servers integration tests run against:
// a throwaway PostgreSQL cluster (postgres.go) and an S3-compatible server
// (seaweed.go). No mocks: the store and blob conformance suites run on the
// engines operators deploy.
package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgreSQL binaries: env UPDRAFT_PG_BIN, else Debian's PostgreSQL 15.
func pgBin() string {
	if d := os.Getenv("UPDRAFT_PG_BIN"); d != "" {
		return d
	}
	return "/usr/lib/postgresql/15/bin"
}

var (
	pgOnce sync.Once
	pgURL  string // admin URL of the shared cluster ("" when unavailable)
	pgErr  error
	pgSeq  atomic.Int64
)

// PostgresURL returns the URL of a fresh, empty database for this test.
// The database lives in one throwaway cluster per test binary, started on
// first use (UPDRAFT_PG_URL names an existing server instead); it stops
// when the test binary exits, even on a crash (see startPostgres). Without
// PostgreSQL the test is skipped, unless UPDRAFT_REQUIRE_PG is set (CI).
func PostgresURL(t testing.TB) string {
	t.Helper()
	pgOnce.Do(func() {
		if u := os.Getenv("UPDRAFT_PG_URL"); u != "" {
			pgURL = u
			return
		}
		pgURL, pgErr = startPostgres()
	})
	if pgErr != nil || pgURL == "" {
		if os.Getenv("UPDRAFT_REQUIRE_PG") != "" {
			t.Fatalf("PostgreSQL required (UPDRAFT_REQUIRE_PG) but unavailable: %v", pgErr)
		}
		t.Skipf("PostgreSQL unavailable (%v): install PostgreSQL 15 (%s) or set UPDRAFT_PG_URL", pgErr, pgBin())
	}
	name := fmt.Sprintf("t%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, pgSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("postgres: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if c, err := pgx.Connect(ctx, pgURL); err == nil {
			c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	})
	return withDatabase(pgURL, name)
}

func withDatabase(u, db string) string {
	base, query, _ := strings.Cut(u, "?")
	i := strings.LastIndex(base, "/")
	out := base[:i+1] + db
	if query != "" {
		out += "?" + query
	}
	return out
}

// startPostgres creates a cluster in a temporary folder and starts it on a
// free loopback port. The server runs under a shell that waits on its
// stdin, a pipe from this process: when the test binary exits for any
// reason the pipe closes, and the shell stops the server and removes the
// folder. As root, PostgreSQL runs as the postgres user (it refuses root).
func startPostgres() (string, error) {
	bin := pgBin()
	if _, err := os.Stat(filepath.Join(bin, "postgres")); err != nil {
		return "", fmt.Errorf("no PostgreSQL in %s", bin)
	}
	dir, err := os.MkdirTemp("", "updraft-pg-")
	if err != nil {
		return "", err
	}
	os.Chmod(dir, 0o755)
	asUser := func(args ...string) *exec.Cmd {
		if os.Geteuid() == 0 {
			return exec.Command("runuser", append([]string{"-u", "postgres", "--"}, args...)...)
		}
		return exec.Command(args[0], args[1:]...)
	}
	data := filepath.Join(dir, "data")
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "postgres", dir).CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("chown: %v: %s", err, out)
		}
	}
	if out, err := asUser(filepath.Join(bin, "initdb"), "-D", data, "-U", "updraft", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("initdb: %v: %s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	// fsync off: these clusters are thrown away; crash safety of the
	// stores is tested on what they commit, not on PostgreSQL's disk.
	// Benchmarks set UPDRAFT_PG_DURABLE=1 to measure with PostgreSQL's
	// defaults (fsync, synchronous commit), as operators run it.
	durability := "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	if os.Getenv("UPDRAFT_PG_DURABLE") != "" {
		durability = ""
	}
	script := fmt.Sprintf(`%s -D %s -p %d -k %s -h 127.0.0.1 %s -c max_connections=300 >%s/log 2>&1 &
pid=$!
read _
kill -INT $pid 2>/dev/null
wait $pid
rm -rf %s`, filepath.Join(bin, "postgres"), data, port, dir, durability, dir, dir)
	cmd := asUser("sh", "-c", script)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	keepStdin = append(keepStdin, stdin) // open for the life of the process; closed by exit
	go cmd.Wait()
	u := fmt.Sprintf("postgres://updraft@127.0.0.1:%d/postgres?sslmode=disable", port)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := pgx.Connect(ctx, u)
		if err == nil {
			c.Close(ctx)
			cancel()
			return u, nil
		}
		cancel()
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			return "", fmt.Errorf("postgres did not start: %v\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// keepStdin holds the pipe's write end for the life of the process, so the
// garbage collector never closes it (which would stop the server).
var keepStdin []any

// StoreEngine is the store engine this test run uses: "postgres" when
// UPDRAFT_TEST_STORE=postgres (MainWithStores sets it for its second
// run), else "sqlite".
func StoreEngine() string {
	if os.Getenv("UPDRAFT_TEST_STORE") == "postgres" {
		return "postgres"
	}
	return "sqlite"
}

// StoreURL is the --store value for a test's origin or store: "" (SQLite in
// the test's folder) or a fresh PostgreSQL database (StoreEngine).
func StoreURL(t testing.TB) string {
	t.Helper()
	if StoreEngine() != "postgres" {
		return ""
	}
	return PostgresURL(t)
}

// MainWithStores runs a package's tests on SQLite, then, when PostgreSQL is
// available (or required), once more on PostgreSQL: the same tests, in a
// child process of the test binary with UPDRAFT_TEST_STORE=postgres. So
// `go test ./...` proves one behaviour on both engines. With -short, or
// when UPDRAFT_TEST_STORE is already set, the tests run once.
func MainWithStores(m *testing.M) {
	code := m.Run()
	if code != 0 || os.Getenv("UPDRAFT_TEST_STORE") != "" || testing.Short() {
		os.Exit(code)
	}
	if _, err := os.Stat(filepath.Join(pgBin(), "postgres")); err != nil && os.Getenv("UPDRAFT_PG_URL") == "" {
		if os.Getenv("UPDRAFT_REQUIRE_PG") != "" {
			fmt.Fprintln(os.Stderr, "PostgreSQL required (UPDRAFT_REQUIRE_PG) but not found in", pgBin())
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "testenv: PostgreSQL not found: store tests ran on SQLite only")
		os.Exit(code)
	}
	var args []string
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.testlogfile") || strings.HasPrefix(a, "-test.coverprofile") {
			continue
		}
		args = append(args, a)
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "UPDRAFT_TEST_STORE=postgres")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	fmt.Println("=== the same tests on PostgreSQL (UPDRAFT_TEST_STORE=postgres)")
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "tests on PostgreSQL:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// BlobsURL is the --blobs value for a test's origin: "" (files in the
// test's folder) on the SQLite run, and a fresh prefix of the S3 server on
// the PostgreSQL run (MainWithStores), so that the second run covers the
// production pair, PostgreSQL + S3. Without a weed binary that run keeps
// files (logged), unless UPDRAFT_REQUIRE_S3 is set.
func BlobsURL(t testing.TB) string {
	t.Helper()
	if StoreEngine() != "postgres" {
		return ""
	}
	if _, err := WeedBinary(); err != nil && os.Getenv("UPDRAFT_REQUIRE_S3") == "" {
		t.Logf("no S3 server (%v): blobs on files", err)
		return ""
	}
	s3 := Seaweed(t)
	// Process-wide (t.Setenv refuses parallel tests): every origin of
	// this test binary talks to the same server with the same key.
	os.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	os.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	return s3.URL(s3.Prefix())
}

// backends remembers each data folder's store and blob URLs (Backends).
var backends sync.Map

// Backends returns the --store and --blobs values of a test's data folder
// (StoreURL, BlobsURL), the same ones every time for the same folder, so
// that an origin restarted on the folder finds its state again.
func Backends(t testing.TB, dataDir string) (store, blobs string) {
	t.Helper()
	b, ok := backends.Load(dataDir)
	if !ok {
		b = [2]string{StoreURL(t), BlobsURL(t)}
		backends.Store(dataDir, b)
	}
	return b.([2]string)[0], b.([2]string)[1]
}
