package origin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/internal/testenv"
	blobfs "github.com/updraft-cdn/updraft/origin/blob/fs"
	"github.com/updraft-cdn/updraft/origin/blob/s3"
	"github.com/updraft-cdn/updraft/origin/delta"
	"github.com/updraft-cdn/updraft/origin/store"
)

// blobPath is where a blob's file is, for tests that set its time or look
// at the folder: they need the filesystem store. On the PostgreSQL + S3
// run such a test is skipped (it ran on files in the SQLite run; S3's own
// ages are covered by TestBlobsOnS3 and the blob conformance suite).
func blobPath(t testing.TB, s *Server, sha string) string {
	t.Helper()
	fs, ok := s.blobs.(*blobfs.Store)
	if !ok {
		t.Skipf("this test sets blob files' times; the origin's blob store is %T", s.blobs)
	}
	return fs.Path(sha)
}

func TestOpenBlobsErrorsNameTheFlag(t *testing.T) {
	for blobs, want := range map[string]string{
		"/var/lib/blobs":                  "want empty (files in the data folder) or s3://",
		"s3://?endpoint=127.0.0.1:1":      "no bucket",
		"s3://b?endpoint=127.0.0.1:1&x=1": "unknown parameter",
	} {
		cfg := testConfig(t, t.TempDir())
		cfg.Blobs = blobs
		_, err := Open(context.Background(), cfg, nil)
		if err == nil || !strings.Contains(err.Error(), "--blobs") || !strings.Contains(err.Error(), want) {
			t.Errorf("--blobs %q: %v, want an error naming --blobs and saying %q", blobs, err, want)
		}
	}
}

// TestBlobsOnS3 runs an origin on a bucket (SeaweedFS): uploads, the
// background build reading zips and bases from the bucket, blob downloads
// with Range as edges do, bundle deletion and garbage collection.
func TestBlobsOnS3(t *testing.T) {
	srv := testenv.Seaweed(t)
	srv.SetEnv(t)
	// A start-up error names the flag and the cause.
	cfg := testConfig(t, t.TempDir())
	cfg.Blobs = "s3://no-such-bucket-" + strings.ToLower(srv.Prefix()) + "?endpoint=" + srv.Endpoint + "&insecure=1"
	if _, err := Open(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), "--blobs") || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing bucket: %v", err)
	}

	o, _ := startOriginCfg(t, func(c *config.Origin) { c.Blobs = srv.URL(srv.Prefix()) })
	if _, ok := o.srv.blobs.(*s3.Store); !ok {
		t.Fatalf("blob store %T, want S3", o.srv.blobs)
	}
	ctx := context.Background()
	c := o.client
	uploadReleases(t, o, "1.0.0", "1.0.1", "1.0.2")
	waitDeltas(t, c, lcApp, "1.0.1")
	bs := waitDeltas(t, c, lcApp, "1.0.2")

	// The deltas, built from canonical archives read from the bucket,
	// rebuild their target.
	byVersion := map[string]BundleInfo{}
	for _, b := range bs {
		byVersion[b.Version] = b
	}
	target := byVersion["1.0.2"]
	if len(target.Deltas) == 0 {
		t.Fatalf("no deltas: %+v", bs)
	}
	for _, d := range target.Deltas {
		base, err := o.srv.deltas.readBlob(d.Base)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := o.srv.deltas.readBlob(d.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		out, err := delta.Apply(base, raw, delta.MaxCanonical)
		if err != nil || hexSum(out) != target.Canonical {
			t.Fatalf("%s delta from %s does not rebuild 1.0.2: %v", d.Encoding, d.From, err)
		}
	}
	// Nothing stays on the local disk: no blob folder, no upload left over.
	if _, err := os.Stat(filepath.Join(o.dir, "blobs")); !os.IsNotExist(err) {
		t.Fatalf("DATA/blobs exists with S3 blobs: %v", err)
	}
	if es, err := os.ReadDir(filepath.Join(o.dir, "blob-uploads")); err != nil || len(es) != 0 {
		t.Fatalf("DATA/blob-uploads: %d files, %v", len(es), err)
	}

	// Edges download blobs, whole or in ranges.
	edgeKey := readKey(t, config.EdgeKeyFile(o.dir))
	get := func(sha, rng string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, o.http.URL+"/v1/blobs/"+sha, nil)
		req.Header.Set("Authorization", "Bearer "+edgeKey)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	zipSHA := target.SHA256
	code, whole := get(zipSHA, "")
	if sum := sha256.Sum256(whole); code != http.StatusOK || hex.EncodeToString(sum[:]) != zipSHA || int64(len(whole)) != target.Size {
		t.Fatalf("whole blob: %d, %d bytes", code, len(whole))
	}
	code, part := get(zipSHA, "bytes=100-4195")
	if code != http.StatusPartialContent || !bytes.Equal(part, whole[100:4196]) {
		t.Fatalf("range: %d, %d bytes", code, len(part))
	}
	code, tail := get(zipSHA, "bytes=-10")
	if code != http.StatusPartialContent || !bytes.Equal(tail, whole[len(whole)-10:]) {
		t.Fatalf("suffix range: %d %q", code, tail)
	}
	if code, _ := get(strings.Repeat("0", 64), ""); code != http.StatusNotFound {
		t.Fatalf("unknown blob: %d", code)
	}

	// Delete 1.0.1: its blobs stay for the grace period (the deletion
	// touched them), then a collection frees exactly them.
	if _, err := c.SetChannel(ctx, lcApp, "production", store.ChannelPatch{Bundle: ptrTo("1.0.2")}); err != nil {
		t.Fatal(err)
	}
	refsBefore := referencedBlobs(t, o)
	stored := blobsOnDisk(t, o) // a listing of the bucket
	if _, err := c.DeleteBundle(ctx, lcApp, "1.0.1"); err != nil {
		t.Fatal(err)
	}
	deletedAt := time.Now()
	refsAfter := referencedBlobs(t, o)
	var freed []string
	for sha := range refsBefore {
		if !refsAfter[sha] {
			freed = append(freed, sha)
		}
	}
	if len(freed) < 3 {
		t.Fatalf("freed %v", freed)
	}
	res, err := c.GC(ctx, nil) // the configured grace period
	if err != nil || res.Deleted != 0 || res.Kept != len(stored) {
		t.Fatalf("gc within the grace period: %+v %v (%d blobs)", res, err, len(stored))
	}
	// Grace 2 s, once 3.5 s have passed since the deletion touched the
	// blobs (Last-Modified has one-second resolution).
	for time.Since(deletedAt) < 3500*time.Millisecond {
		time.Sleep(50 * time.Millisecond)
	}
	grace := 2 * time.Second
	res, err = c.GC(ctx, &grace)
	if err != nil || res.Deleted != len(freed) || res.Kept != len(stored)-len(freed) {
		t.Fatalf("gc after the grace period: %+v %v, want %d deleted of %d", res, err, len(freed), len(stored))
	}
	left := blobsOnDisk(t, o)
	for _, sha := range freed {
		if _, ok := left[sha]; ok {
			t.Fatalf("freed blob %s still in the bucket", sha)
		}
	}
	for sha := range refsAfter {
		if _, ok := left[sha]; !ok {
			t.Fatalf("referenced blob %s deleted", sha)
		}
	}
	if code, b := get(zipSHA, "bytes=0-3"); code != http.StatusPartialContent || string(b) != "PK\x03\x04" {
		t.Fatalf("current bundle after gc: %d %q", code, b)
	}
}
