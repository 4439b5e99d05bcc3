package origin

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/delta"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

type testOrigin struct {
	srv    *Server
	http   *httptest.Server
	client *client.Client
	dir    string
}

func startOrigin(t *testing.T) *testOrigin {
	t.Helper()
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.MaxBundleSize = 4 * config.MiB
	srv, err := Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); srv.Close() })
	key, err := os.ReadFile(filepath.Join(dir, "api-key"))
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(dir, "api-key"))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("api-key mode %v, want 0600", fi.Mode().Perm())
	}
	return &testOrigin{srv: srv, http: hs, client: client.New(hs.URL, strings.TrimSpace(string(key))), dir: dir}
}

// makeZip builds a zip with the given files.
func makeZip(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, body)
	}
	zw.Close()
	return buf.Bytes()
}

func apiCode(err error) string {
	var ae *client.APIError
	if errors.As(err, &ae) {
		return fmt.Sprintf("%d %s", ae.Status, ae.Code)
	}
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func TestOperatorAPIErrors(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	c := o.client
	good := makeZip(t, map[string]string{"index.html": "<html>hi</html>", "app.js": "console.log(1)"})
	if _, err := c.CreateApp(ctx, "com.example.app", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UploadBundle(ctx, "com.example.app", "1.0.0", bytes.NewReader(good), client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	wrongKey := client.New(o.http.URL, "upd_wrong")
	noKey := client.New(o.http.URL, "")
	big := make([]byte, 5<<20)
	cases := []struct {
		name string
		call func() error
		want string
	}{
		{"no key", func() error { _, err := noKey.ListApps(ctx); return err }, "401 unauthorized"},
		{"wrong key", func() error { _, err := wrongKey.ListApps(ctx); return err }, "401 unauthorized"},
		{"bad app id", func() error { _, err := c.CreateApp(ctx, "not an id", ""); return err }, "400 invalid_app_id"},
		{"duplicate app", func() error { _, err := c.CreateApp(ctx, "com.example.app", ""); return err }, "409 app_exists"},
		{"upload unknown app", func() error {
			_, err := c.UploadBundle(ctx, "com.missing.app", "1.0.0", bytes.NewReader(good), client.UploadOptions{})
			return err
		}, "404 app_not_found"},
		{"bad semver", func() error {
			_, err := c.UploadBundle(ctx, "com.example.app", "v1.x", bytes.NewReader(good), client.UploadOptions{})
			return err
		}, "400 invalid_version"},
		{"same version twice", func() error {
			_, err := c.UploadBundle(ctx, "com.example.app", "1.0.0", bytes.NewReader(good), client.UploadOptions{})
			return err
		}, "409 version_exists"},
		{"not a zip", func() error {
			_, err := c.UploadBundle(ctx, "com.example.app", "1.0.1", strings.NewReader("hello"), client.UploadOptions{})
			return err
		}, "400 invalid_bundle"},
		{"traversal in zip", func() error {
			z := makeZip(t, map[string]string{"index.html": "x", "../evil.js": "x"})
			_, err := c.UploadBundle(ctx, "com.example.app", "1.0.2", bytes.NewReader(z), client.UploadOptions{})
			return err
		}, "400 invalid_bundle"},
		{"no index.html", func() error {
			z := makeZip(t, map[string]string{"app.js": "x"})
			_, err := c.UploadBundle(ctx, "com.example.app", "1.0.3", bytes.NewReader(z), client.UploadOptions{})
			return err
		}, "400 invalid_bundle"},
		{"too large", func() error {
			_, err := c.UploadBundle(ctx, "com.example.app", "1.0.4", bytes.NewReader(big), client.UploadOptions{})
			return err
		}, "413 bundle_too_large"},
		{"too large, no length", func() error {
			_, err := c.UploadBundle(ctx, "com.example.app", "1.0.5", io.MultiReader(bytes.NewReader(big)), client.UploadOptions{})
			return err
		}, "413 bundle_too_large"},
		{"bad channel name", func() error {
			_, err := c.UploadBundle(ctx, "com.example.app", "1.0.6", bytes.NewReader(good), client.UploadOptions{Channel: "no spaces"})
			return err
		}, "400 invalid_channel_name"},
		{"channel unknown bundle", func() error {
			v := "9.9.9"
			_, err := c.SetChannel(ctx, "com.example.app", "beta", store.ChannelPatch{Bundle: &v})
			return err
		}, "400 unknown_bundle"},
		{"channel bad option", func() error {
			v := "sometimes"
			_, err := c.SetChannel(ctx, "com.example.app", "beta", store.ChannelPatch{DisableAutoUpdate: &v})
			return err
		}, "400 invalid_disable_auto_update"},
		{"unknown json field", func() error {
			return c.DoJSON(ctx, http.MethodPut, "/api/v1/apps/com.example.app/channels/beta", map[string]any{"colour": "red"}, nil)
		}, "400 invalid_json"},
		{"channel of unknown app", func() error { _, err := c.ListChannels(ctx, "com.missing.app"); return err }, "404 app_not_found"},
		{"unknown endpoint", func() error { return c.DoJSON(ctx, http.MethodGet, "/api/v1/nope", nil, nil) }, "404 not_found"},
		{"blob bad id", func() error { return c.Do(ctx, http.MethodGet, "/v1/blobs/xyz", nil, "", nil) }, "400 invalid_blob_id"},
		{"blob unknown", func() error { return c.Do(ctx, http.MethodGet, "/v1/blobs/"+strings.Repeat("0", 64), nil, "", nil) }, "404 blob_not_found"},
	}
	for _, tc := range cases {
		if got := apiCode(tc.call()); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	// Nothing refused left a bundle or a blob behind: the store holds the
	// accepted zip and what is built from it in the background.
	bs := waitDeltas(t, c, "com.example.app", "1.0.0")
	if len(bs) != 1 || bs[0].ManifestFiles != 2 {
		t.Fatalf("bundles = %+v, want only 1.0.0 with 2 manifest files", bs)
	}
	assertBlobs(t, o, 2+bs[0].ManifestFiles) // zip, canonical archive, manifest files
}

// waitDeltas waits until a bundle's background delta build is done.
func waitDeltas(t *testing.T, c *client.Client, app, version string) []BundleInfo {
	t.Helper()
	deadline := time.Now().Add(testenv.Patience(3 * time.Minute))
	for {
		bs, err := c.ListBundles(context.Background(), app)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			if b.Version == version && b.Canonical != "" && (b.DeltaStatus == nil || b.DeltaStatus.State == "ready") {
				return bs
			}
			if b.Version == version && b.DeltaStatus != nil && b.DeltaStatus.State == "failed" {
				t.Fatalf("delta build of %s failed: %s", version, b.DeltaStatus.Error)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("deltas of %s not built within 3m: %+v", version, bs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// uploadTempDir is where the origin's blob store keeps writes in progress:
// DATA/blobs/tmp on files, DATA/blob-uploads on S3.
func uploadTempDir(o *testOrigin) string {
	if o.srv.cfg.Blobs != "" {
		return filepath.Join(o.dir, "blob-uploads")
	}
	return filepath.Join(o.dir, "blobs", "tmp")
}

// assertBlobs checks the blob store holds exactly n committed blobs and no
// temporary files.
func assertBlobs(t *testing.T, o *testOrigin, n int) {
	t.Helper()
	var committed, tmp int
	if err := o.srv.blobs.Walk(func(string, int64, time.Time) error { committed++; return nil }); err != nil {
		t.Fatal(err)
	}
	es, _ := os.ReadDir(uploadTempDir(o))
	tmp = len(es)
	if committed != n || tmp != 0 {
		t.Fatalf("blob store: %d committed (want %d), %d temporary (want 0)", committed, n, tmp)
	}
}

func TestSnapshotPublishedOnEveryChange(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	var revs []int64
	o.srv.Subscribe(func(s *snapshot.Snapshot) { revs = append(revs, s.Rev) })
	o.client.CreateApp(ctx, "com.example.app", "")
	z := makeZip(t, map[string]string{"dist/index.html": "x", "dist/a.js": "y"})
	if _, err := o.client.UploadBundle(ctx, "com.example.app", "1.0.0", bytes.NewReader(z), client.UploadOptions{Channel: "production"}); err != nil {
		t.Fatal(err)
	}
	tr := true
	if _, err := o.client.SetChannel(ctx, "com.example.app", "production", store.ChannelPatch{Public: &tr}); err != nil {
		t.Fatal(err)
	}
	cur := o.srv.Current().Snap
	ch := cur.App("com.example.app").DefaultChannel("android")
	if ch == nil || ch.Bundle != "1.0.0" {
		t.Fatalf("snapshot rev %d: default channel %+v", cur.Rev, ch)
	}
	for i := 1; i < len(revs); i++ {
		if revs[i] <= revs[i-1] {
			t.Fatalf("revisions not increasing: %v", revs)
		}
	}
	if len(revs) < 4 {
		t.Fatalf("revisions published: %v, want initial + one per change", revs)
	}
}

// TestUploadCutMidStream sends half of a declared body and hangs up: no
// bundle and no blob may become visible.
func TestUploadCutMidStream(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	o.client.CreateApp(ctx, "com.example.app", "")
	conn, err := net.Dial("tcp", strings.TrimPrefix(o.http.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /api/v1/apps/com.example.app/bundles?version=1.0.0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/zip\r\nContent-Length: %d\r\n\r\n", o.client.APIKey, 2<<20)
	conn.Write(make([]byte, 1<<20))
	// Wait until the server has spooled some of it to a temporary file.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if es, _ := os.ReadDir(uploadTempDir(o)); len(es) > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	conn.Close()
	deadline = time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if es, _ := os.ReadDir(uploadTempDir(o)); len(es) == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	assertBlobs(t, o, 0)
	if bs, _ := o.client.ListBundles(ctx, "com.example.app"); len(bs) != 0 {
		t.Fatalf("bundles after cut upload: %+v", bs)
	}
	// The same version uploads fine afterwards.
	z := makeZip(t, map[string]string{"index.html": "x"})
	if _, err := o.client.UploadBundle(ctx, "com.example.app", "1.0.0", bytes.NewReader(z), client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestZipDirDeterministic(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "assets"), 0o755)
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("<html></html>"), 0o644)
	os.WriteFile(filepath.Join(dir, "assets", "app.js"), []byte("let a = 1"), 0o644)
	var a, b bytes.Buffer
	if err := client.ZipDir(dir, &a); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	os.Chtimes(filepath.Join(dir, "index.html"), time.Now(), time.Now())
	client.ZipDir(dir, &b)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("same folder zipped twice differs")
	}
	if err := checkZip(writeTemp(t, a.Bytes())); err != nil {
		t.Fatalf("ZipDir output refused: %v", err)
	}
}

func writeTemp(t *testing.T, b []byte) string {
	p := filepath.Join(t.TempDir(), "z.zip")
	os.WriteFile(p, b, 0o644)
	return p
}

// FuzzCheckZip: the upload check refuses with invalid_bundle or accepts,
// and whatever it accepts the builder builds (one rule for both): its
// manifest and canonical archive, within the limits.
func FuzzCheckZip(f *testing.F) {
	f.Add(makeZip(&testing.T{}, map[string]string{"index.html": "x"}))
	f.Add(makeZip(&testing.T{}, map[string]string{"dist/index.html": "x", "dist/a//b.js": "y"}))
	f.Add(makeZip(&testing.T{}, map[string]string{"./index.html": "x"}))
	f.Add(makeZip(&testing.T{}, map[string]string{"index.html": "x", "a": "y", "a/b": "z"}))
	f.Add(makeZip(&testing.T{}, map[string]string{"index.html": strings.Repeat("\x00", 3<<20)}))
	f.Add([]byte("PK\x03\x04garbage"))
	lim := delta.Limits{MaxEntries: 100, MaxUncompressed: 8 << 20, MaxRatio: 100, MaxEntryRatio: 100}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "f.zip")
		os.WriteFile(p, data, 0o644)
		err := checkZipLimits(context.Background(), p, lim)
		var ae *apiError
		if err != nil {
			if !errors.As(err, &ae) || ae.Code != "invalid_bundle" {
				t.Fatalf("unexpected error type: %v", err)
			}
			return
		}
		z, err := delta.OpenZip(bytes.NewReader(data), int64(len(data)), lim)
		if err != nil {
			t.Fatalf("accepted at upload, refused by the builder: %v", err)
		}
		var files []delta.File
		for _, e := range z.Files {
			b, err := z.ReadAll(e)
			if err != nil {
				t.Fatalf("accepted at upload, %s unreadable by the builder: %v", e.Path, err)
			}
			files = append(files, delta.File{Path: e.Path, Data: b})
		}
		if _, err := delta.Manifest(files); err != nil {
			t.Fatalf("accepted at upload, no manifest: %v", err)
		}
		if _, err := delta.Canonical(files); err != nil {
			t.Fatalf("accepted at upload, no canonical archive: %v", err)
		}
	})
}

// A replaced override shard is deleted from the blob store after the grace
// period; published snapshots keep the list they were published with.
func TestOldShardsCollected(t *testing.T) {
	defer func(g time.Duration) { shardGrace = g }(shardGrace)
	shardGrace = 0
	o := startOrigin(t)
	ctx := context.Background()
	o.client.CreateApp(ctx, "com.example.app", "")
	z := makeZip(t, map[string]string{"index.html": "x"})
	o.client.UploadBundle(ctx, "com.example.app", "1.0.0", bytes.NewReader(z), client.UploadOptions{Channel: "beta"})
	o.client.SetChannel(ctx, "com.example.app", "production", store.ChannelPatch{})
	const dev = "00009a6b-eefe-490a-9c60-8e965132ae51"
	if err := o.client.SetOverrides(ctx, "com.example.app", "beta", []string{dev}); err != nil {
		t.Fatal(err)
	}
	first := o.srv.Current().Snap
	old := first.App("com.example.app").OverrideShards[0]
	if old == "" {
		t.Fatal("no shard for the device")
	}
	if err := o.client.SetOverrides(ctx, "com.example.app", "production", []string{dev}); err != nil {
		t.Fatal(err)
	}
	cur := o.srv.Current().Snap.App("com.example.app")
	if cur.OverrideShards[0] == old || cur.Override(dev).Name != "production" {
		t.Fatalf("shard not replaced: %v", cur.OverrideShards[0])
	}
	if first.App("com.example.app").OverrideShards[0] != old {
		t.Fatal("a published snapshot's shard list changed")
	}
	if _, err := o.srv.blobs.Stat(old); err == nil {
		t.Fatal("replaced shard still stored after its grace period")
	}
	if _, err := o.srv.blobs.Stat(cur.OverrideShards[0]); err != nil {
		t.Fatalf("current shard missing: %v", err)
	}
}
