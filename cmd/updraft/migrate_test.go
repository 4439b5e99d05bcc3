package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/updraft-cdn/updraft/bundlecrypt"
	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

const migApp = "com.example.app"

// startOriginOn starts origin + edge in this process on oc's back ends;
// stop may be called any number of times (and is, at cleanup).
func startOriginOn(t *testing.T, oc config.Origin) (*running, func()) {
	t.Helper()
	oc.Listen = "127.0.0.1:0"
	oc.BuildNice = 0 // see TestMain
	ec := config.NewEdge(filepath.Join(t.TempDir(), "edge-cache"))
	ec.Listen = "127.0.0.1:0"
	ec.TLS, ec.TLSListen = "self-signed", "127.0.0.1:0"
	r, err := startServe(context.Background(), serveOptions{origin: oc, edge: ec, log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := r.stop(ctx); err != nil {
				t.Errorf("stop: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return r, stop
}

func migKey(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// migrateCmd runs `updraft migrate ARGS` in this process; cancelOn, when
// set, is called with every line it writes to stderr.
func migrateCmd(ctx context.Context, args []string, onLine func(string)) (stdout, stderr string, err error) {
	var out syncBuffer
	errw := &lineWriter{fn: onLine}
	err = run(ctx, append([]string{"migrate"}, args...), &out, errw)
	return out.String(), errw.String(), err
}

type lineWriter struct {
	syncBuffer
	fn      func(string)
	mu      sync.Mutex
	pending string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.syncBuffer.Write(p)
	if w.fn != nil {
		w.mu.Lock()
		w.pending += string(p)
		for {
			i := strings.IndexByte(w.pending, '\n')
			if i < 0 {
				break
			}
			line := w.pending[:i]
			w.pending = w.pending[i+1:]
			w.fn(line)
		}
		w.mu.Unlock()
	}
	return len(p), nil
}

// state is what an origin serves of the test app, read through its API.
type state struct {
	Apps      []store.App
	Bundles   []origin.BundleInfo
	Channels  []store.Channel
	Segments  []store.Segment
	Overrides []store.Override
	Guard     origin.GuardInfo
	Events    int64
	Stats     []origin.VersionStats
}

func readState(t *testing.T, c *client.Client) state {
	t.Helper()
	ctx := context.Background()
	var s state
	var err error
	if s.Apps, err = c.ListApps(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Bundles, err = c.ListBundles(ctx, migApp); err != nil {
		t.Fatal(err)
	}
	for _, b := range s.Bundles {
		if b.DeltaStatus != nil { // the running build's progress: the origin's memory
			b.DeltaStatus.Done, b.DeltaStatus.Total = 0, 0
		}
	}
	if s.Channels, err = c.ListChannels(ctx, migApp); err != nil {
		t.Fatal(err)
	}
	if s.Segments, err = c.ListSegments(ctx, migApp); err != nil {
		t.Fatal(err)
	}
	if s.Overrides, err = c.ListOverrides(ctx, migApp, "", 1000); err != nil {
		t.Fatal(err)
	}
	if s.Guard, err = c.Guard(ctx, migApp, "production"); err != nil {
		t.Fatal(err)
	}
	s.Guard.Status = nil // its last evaluation: the origin's memory
	rep, err := c.Stats(ctx, migApp, url.Values{"from": {strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)}})
	if err != nil {
		t.Fatal(err)
	}
	s.Events, s.Stats = rep.Events, rep.Bundles
	return s
}

// migDevice is the i-th test device's update check, from a native build
// older than every bundle.
func migDevice(i int) string {
	body := strings.Replace(deviceBody, "00009A6B-EEFE-490A-9C60-8E965132AE51", fmt.Sprintf("00009A6B-EEFE-490A-9C60-%012X", i), 1)
	return strings.Replace(body, `"version_build":"1.0.0"`, `"version_build":"0.1.0"`, 1)
}

func migPtr[T any](v T) *T { return &v }

func sameState(t *testing.T, what string, a, b state) {
	t.Helper()
	ja, _ := json.MarshalIndent(a, "", " ")
	jb, _ := json.MarshalIndent(b, "", " ")
	if string(ja) != string(jb) {
		t.Fatalf("%s: the origin on the destination serves other content:\nbefore: %s\nafter:  %s", what, ja, jb)
	}
}

// populateOrigin fills the test app through the operator API and the
// edge, as operators and devices do: plain bundles (built: canonical
// archives, manifests, deltas) and an end-to-end encrypted one, channels
// with a rollout and an A/B split, a segment, device overrides, a guard,
// update checks and events.
func populateOrigin(t *testing.T, r *running, c *client.Client) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CreateApp(ctx, migApp, "Example"); err != nil {
		t.Fatal(err)
	}
	shared := make([]byte, 64<<10)
	for i := range shared {
		shared[i] = byte(rand.IntN(256))
	}
	for _, v := range []string{"1.0.0", "1.0.1"} {
		if _, err := c.UploadBundle(ctx, migApp, v, strings.NewReader(string(releaseBundle(t, shared, v))), client.UploadOptions{Comment: "release " + v}); err != nil {
			t.Fatal(err)
		}
	}
	key, err := bundlecrypt.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	zipPath := filepath.Join(t.TempDir(), "b.zip")
	os.WriteFile(zipPath, releaseBundle(t, shared, "secret"), 0o644)
	eb, err := client.EncryptPath(zipPath, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UploadEncrypted(ctx, migApp, "1.0.2", eb, client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	waitBuild(t, c, migApp, "1.0.0", "ready")
	waitBuild(t, c, migApp, "1.0.1", "ready")
	yes := true
	if _, err := c.SetChannel(ctx, migApp, "production", store.ChannelPatch{Bundle: migPtr("1.0.0"), Public: &yes, DisableAutoUpdate: migPtr("none")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetChannel(ctx, migApp, "beta", store.ChannelPatch{Bundle: migPtr("1.0.0"), AllowDeviceSelfSet: &yes}); err != nil {
		t.Fatal(err)
	}
	bps := 2500
	if _, err := c.Rollout(ctx, migApp, "production", origin.RolloutRequest{Action: store.RolloutSet, Bundle: "1.0.1", BPS: &bps}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetAB(ctx, migApp, "beta", []snapshot.Arm{{Name: "a", Bundle: "1.0.1", BPS: 5000}, {Name: "b", Bundle: "1.0.2", BPS: 5000}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddSegment(ctx, migApp, snapshot.Rule{Name: "testers", Channel: "beta", CustomIDPrefix: "qa-"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.SetOverrides(ctx, migApp, "beta", []string{"00000000-0000-4000-8000-000000000000", "ffffffff-ffff-4fff-bfff-ffffffffffff"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetGuard(ctx, migApp, "production", store.DefaultGuard(store.Guard{})); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if a := checkUpdate(t, r.EdgeAddr, migDevice(i)); a.Error != "" {
			t.Fatalf("update check: %+v", a)
		}
	}
	acc := &tally{n: map[[2]string]int64{}}
	client := &http.Client{Timeout: 10 * time.Second}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 8; i++ {
		batch := make([]map[string]any, 20)
		for j := range batch {
			batch[j], _, _ = fleetEvent(rng, migApp, []string{"1.0.0", "1.0.1"})
		}
		if _, err := sendBatch(client, r.EdgeAddr, batch, acc); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, time.Minute, "the origin aggregating the events", func() bool {
		rep, err := c.Stats(ctx, migApp, url.Values{"from": {strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)}})
		return err == nil && rep.Events == acc.total.Load()
	})
}

// s3OrFiles returns a --blobs URL in the test S3 server when SeaweedFS is
// available (its credentials set in the environment), else "" (files).
func s3OrFiles(t *testing.T) string {
	t.Helper()
	if _, err := testenv.WeedBinary(); err != nil && os.Getenv("UPDRAFT_REQUIRE_S3") == "" {
		t.Logf("no SeaweedFS (%v): blobs go to files", err)
		return ""
	}
	s := testenv.Seaweed(t)
	s.SetEnv(t)
	return s.URL(s.Prefix())
}

// Issue 13: an embedded installation (SQLite + files), populated by a real
// origin, migrates to PostgreSQL (+ S3 when SeaweedFS is there): an
// interrupted run resumes, --verify is clean, and an origin on the
// destination serves the same content with the same keys (the old API
// key, the old signing key); an origin running on the store stops a
// migration. Then the way back, to SQLite + files in a new data folder,
// interrupted by a kill and resumed, verifies clean and serves the same;
// and --verify-only finds a row and a blob removed from the destination.
func TestMigrateEmbeddedToPostgresAndBack(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three origins and PostgreSQL")
	}
	ctx := context.Background()
	pg := testenv.PostgresURL(t)
	blobsURL := s3OrFiles(t)

	// 1. An embedded origin with content.
	data := t.TempDir()
	r1, stop1 := startOriginOn(t, config.NewOrigin(data))
	apiKey := migKey(t, config.APIKeyFile(data))
	c1 := client.New("http://"+r1.OriginAddr, apiKey)
	populateOrigin(t, r1, c1)
	before := readState(t, c1)
	pub := r1.Origin.PublicKey()
	stop1()
	src, err := store.Open(ctx, filepath.Join(data, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	srcSnap, err := src.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	src.Close()

	// 2. Migrate, interrupted once the apps are copied (the bundles'
	// copy is under way), then again to the end.
	data2 := t.TempDir()
	args := []string{"--data", data, "--to-store", pg, "--to-data", data2, "--batch", "1"}
	if blobsURL != "" {
		args = append(args, "--to-blobs", blobsURL)
	}
	cctx, cancel := context.WithCancel(ctx)
	_, errOut, err := migrateCmd(cctx, args, func(line string) {
		if strings.HasPrefix(line, "copy meta.apps ") {
			cancel()
		}
	})
	cancel()
	if err == nil || !strings.Contains(errOut, "copy meta.apps") || strings.Contains(errOut, "copy meta.channels ") {
		t.Fatalf("interrupted migration: %v\n%s", err, errOut)
	}
	out, errOut, err := migrateCmd(ctx, append(args, "--verify"), nil)
	if err != nil {
		t.Fatalf("migrate: %v\n%s\n%s", err, out, errOut)
	}
	t.Logf("migrate:\n%s%s", errOut, out)
	for _, want := range []string{`(?m)^copy meta\.apps +1 rows: 0 copied by this run \(the destination held some: resumed\)$`,
		`(?m)^copy meta\.bundles +3 rows: 3 copied by this run$`, `(?m)^copy meta\.revision +source revision (\d+), destination now (\d+)$`,
		`(?m)^copy events\.event_segments +\d+ rows`, `(?m)^copy blobs: \d+ `, `(?m)^verify meta\.bundles +3 rows, destination 3  sha256 [0-9a-f]{16}  ok$`,
		`(?m)^verify blobs +\d+ referenced by the store \(.*\): \d+ present with their size  ok$`, `(?m)^verify: the destination matches the source$`} {
		if !regexp.MustCompile(want).MatchString(errOut + out) {
			t.Errorf("migrate output lacks %s", want)
		}
	}
	dst, err := store.OpenURL(ctx, pg, "")
	if err != nil {
		t.Fatal(err)
	}
	dstSnap, err := dst.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dst.Close()
	js, _ := json.Marshal(srcSnap)
	jd, _ := json.Marshal(dstSnap)
	if dstSnap.Rev < srcSnap.Rev || string(js) != string(jd) {
		t.Fatalf("snapshot on PostgreSQL differs:\n%s\n%s", js, jd)
	}

	// 3. An origin on the destination, in a data folder of its own:
	// same content, same API key, same signing key, blobs served.
	oc := config.NewOrigin(t.TempDir())
	oc.Store, oc.Blobs = pg, blobsURL
	if blobsURL == "" {
		oc.DataDir = data2 // the blob files are in --to-data
	}
	r2, stop2 := startOriginOn(t, oc)
	c2 := client.New("http://"+r2.OriginAddr, apiKey)
	sameState(t, "PostgreSQL", before, readState(t, c2))
	if !r2.Origin.PublicKey().Equal(pub) {
		t.Fatal("the origin on PostgreSQL signs with another key: edges would refuse its snapshots")
	}
	a := checkUpdate(t, r2.EdgeAddr, migDevice(42))
	if a.Error != "" || (a.Version != "1.0.0" && a.Version != "1.0.1") {
		t.Fatalf("update answer: %+v", a)
	}
	if err := downloadBlob(a); err != nil {
		t.Fatalf("download from the origin on the destination: %v", err)
	}
	// A migration from a store an origin runs on is refused.
	back := []string{"--data", data2, "--from-store", pg, "--to-data", t.TempDir()}
	if blobsURL != "" {
		back = append(back, "--from-blobs", blobsURL)
	}
	if _, _, err := migrateCmd(ctx, back, nil); err == nil || !strings.Contains(err.Error(), "an origin is running on this store") ||
		!strings.Contains(err.Error(), "--from-store postgres://") {
		t.Fatalf("migrate from a store an origin runs on: %v", err)
	}
	stop2()

	// 4. The way back, as a process killed part-way, then run again.
	data3 := t.TempDir()
	back = []string{"--data", data2, "--from-store", pg, "--to-data", data3, "--batch", "1"}
	if blobsURL != "" {
		back = append(back, "--from-blobs", blobsURL)
	}
	killedMigration(t, back, "copy meta.bundles ")
	out, errOut, err = migrateCmd(ctx, append(back, "--verify", "--verify-blob-hashes"), nil)
	if err != nil || !strings.Contains(out, "verify: the destination matches the source") || !strings.Contains(errOut, "resumed") {
		t.Fatalf("migrate back: %v\n%s\n%s", err, errOut, out)
	}
	if got := migKey(t, config.APIKeyFile(data3)); got != apiKey {
		t.Fatalf("--to-data api-key %q, want the original %q", got, apiKey)
	}
	r3, stop3 := startOriginOn(t, config.NewOrigin(data3))
	c3 := client.New("http://"+r3.OriginAddr, apiKey)
	sameState(t, "back to SQLite", before, readState(t, c3))
	if !r3.Origin.PublicKey().Equal(pub) {
		t.Fatal("the origin back on SQLite signs with another key")
	}
	a = checkUpdate(t, r3.EdgeAddr, migDevice(43))
	if err := downloadBlob(a); err != nil || a.Error != "" {
		t.Fatalf("download from the origin back on SQLite: %+v %v", a, err)
	}
	stop3()

	// 5. --verify-only names what differs: a row, a blob.
	db, err := sql.Open("sqlite", filepath.Join(data3, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM segments WHERE name = 'testers'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	gone := before.Bundles[len(before.Bundles)-1].SHA256
	if err := os.Remove(filepath.Join(data3, "blobs", gone[:2], gone)); err != nil {
		t.Fatal(err)
	}
	out, _, err = migrateCmd(ctx, append(back, "--verify-only"), nil)
	if err == nil || !strings.Contains(err.Error(), "differs from the source in meta.segments, blobs") {
		t.Fatalf("verify-only after changes: %v\n%s", err, out)
	}
	for _, want := range []string{`(?m)^verify meta\.segments +1 rows, destination 0  sha256 [0-9a-f]{16} ≠ [0-9a-f]{16}  DIFFERENT$`,
		`(?m)^ +missing in the destination: \(app_id="com\.example\.app", name="testers"\)$`,
		`(?m)^verify blobs .*DIFFERENT$`, `(?m)^ +blob ` + gone + ` \(\d+ bytes\) is missing in the destination$`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("verify report lacks %s:\n%s", want, out)
		}
	}
}

// downloadBlob downloads an update answer's url and checks its SHA-256.
func downloadBlob(a updateAnswer) error {
	resp, err := http.Get(a.URL)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || hexSHA(b) != a.Checksum {
		return fmt.Errorf("HTTP %d, sha256 %s, want %s", resp.StatusCode, hexSHA(b), a.Checksum)
	}
	return nil
}

// killedMigration runs `updraft migrate ARGS` as a child process and kills
// it (SIGKILL) when it writes a line starting with at.
func killedMigration(t *testing.T, args []string, at string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "UPDRAFT_TEST_MAIN_ARGS="+strings.Join(append([]string{"migrate"}, args...), "\x1f"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var lines []string
	killed := false
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if !killed && strings.HasPrefix(sc.Text(), at) {
			cmd.Process.Kill()
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed || err == nil || strings.Contains(out.String(), "migrate: done") {
		t.Fatalf("migration not killed part-way (%v):\n%s\n%s", err, strings.Join(lines, "\n"), out.String())
	}
}

// Bad flags, unreachable servers, missing buckets, wrong credentials and
// a destination holding another installation: errors that name the flag.
func TestMigrateErrors(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	_, stop := startOriginOn(t, config.NewOrigin(data))
	_, _, err := migrateCmd(ctx, []string{"--data", data, "--to-data", t.TempDir()}, nil)
	if err == nil || !strings.Contains(err.Error(), "--data "+data+": meta.db is open in another process: an origin is running on it") {
		t.Fatalf("migrate from a data folder an origin runs on: %v", err)
	}
	stop()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--data", data, "--to-store", "mysql://x/y", "--to-blobs", "s3://b?endpoint=127.0.0.1:1"}, `--to-store "mysql://x/y": want empty`},
		{[]string{"--data", data, "--to-data", t.TempDir(), "--to-blobs", "s3://b?endpoint=127.0.0.1:1&colour=blue"}, `--to-blobs s3://b?endpoint=127.0.0.1:1&colour=blue: unknown parameter "colour"`},
		{[]string{"--data", data, "--to-store", "postgres://u:secret@127.0.0.1:1/db?connect_timeout=2", "--to-data", t.TempDir()}, "--to-store postgres://u:***@127.0.0.1:1/db?connect_timeout=2: cannot reach PostgreSQL at 127.0.0.1:1"},
		{[]string{"--data", data, "--to-store", "postgres://u@127.0.0.1:1/db"}, "--to-data DIR is needed"},
		{[]string{"--data", t.TempDir(), "--to-data", t.TempDir()}, "holds no meta.db"},
		{[]string{"--data", data, "--to-data", data}, "nothing to do"},
		{[]string{"--data", data, "--to-data", t.TempDir(), "extra"}, "no arguments"},
	}
	for _, c := range cases {
		_, _, err := migrateCmd(ctx, c.args, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "secret@") {
			t.Errorf("migrate %v: %v, want %q", c.args, err, c.want)
		}
	}

	// A destination an origin already ran on (other keys) is refused,
	// --force copies into it anyway.
	pg := testenv.PostgresURL(t)
	oc := config.NewOrigin(t.TempDir())
	oc.Store = pg
	_, stopPG := startOriginOn(t, oc)
	stopPG()
	args := []string{"--data", data, "--to-store", pg, "--to-data", t.TempDir()}
	_, _, err = migrateCmd(ctx, args, nil)
	if err == nil || !strings.Contains(err.Error(), "--to-store postgres://") || !strings.Contains(err.Error(), "already holds another installation: API key #1 differs") ||
		!strings.Contains(err.Error(), "--force") {
		t.Fatalf("migrate into another installation: %v", err)
	}
	out, errOut, err := migrateCmd(ctx, append(args, "--force", "--verify"), nil)
	if err == nil || !strings.Contains(errOut, "warning (--force)") || !strings.Contains(out, "verify meta.api_keys") || !strings.Contains(err.Error(), "meta.api_keys") {
		t.Fatalf("migrate --force into another installation: %v\n%s\n%s", err, errOut, out)
	}

	// S3: a missing bucket, wrong credentials.
	if _, err := testenv.WeedBinary(); err != nil {
		return
	}
	s := testenv.Seaweed(t)
	s.SetEnv(t)
	_, _, err = migrateCmd(ctx, []string{"--data", data, "--to-data", t.TempDir(), "--to-blobs", "s3://no-such-bucket?endpoint=" + s.Endpoint + "&insecure=1"}, nil)
	if err == nil || !strings.Contains(err.Error(), "--to-blobs s3://no-such-bucket") || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing bucket: %v", err)
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	_, _, err = migrateCmd(ctx, []string{"--data", data, "--to-data", t.TempDir(), "--to-blobs", s.URL(s.Prefix())}, nil)
	if err == nil || !strings.Contains(err.Error(), "--to-blobs s3://"+s.Bucket) || !strings.Contains(err.Error(), "AWS_SECRET_ACCESS_KEY") {
		t.Errorf("wrong credentials: %v", err)
	}
}
