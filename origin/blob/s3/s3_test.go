package s3

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin/blob"
	"github.com/updraft-cdn/updraft/origin/blob/blobtest"
)

// open returns a store on the test server under a fresh prefix.
func open(t *testing.T, srv *testenv.S3, tr http.RoundTripper) *Store {
	t.Helper()
	s, err := Open(context.Background(), Config{
		Bucket: srv.Bucket, Prefix: srv.Prefix(), Endpoint: srv.Endpoint, Insecure: true,
		Creds: srv.Creds(), TempDir: t.TempDir(), Transport: tr,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	srv := testenv.Seaweed(t)
	blobtest.Run(t, func(t *testing.T) blob.Store { return open(t, srv, nil) }, blobtest.Options{})
}

func TestParseURL(t *testing.T) {
	c, err := ParseURL("s3://bucket?endpoint=127.0.0.1:8333&region=eu-west-1&insecure=1")
	if err != nil {
		t.Fatal(err)
	}
	if c.Bucket != "bucket" || c.Endpoint != "127.0.0.1:8333" || c.Region != "eu-west-1" || !c.Insecure || c.Create || c.Prefix != "" {
		t.Fatalf("%+v", c)
	}
	c, err = ParseURL("s3://b/some/prefix/?endpoint=http://minio:9000&create=1")
	if err != nil || c.Prefix != "some/prefix" || !c.Insecure || !c.Create || c.Endpoint != "minio:9000" {
		t.Fatalf("%+v %v", c, err)
	}
	c, err = ParseURL("s3://b")
	if err != nil || c.Endpoint != "s3.amazonaws.com" || c.Insecure {
		t.Fatalf("default endpoint: %+v %v", c, err)
	}
	for raw, want := range map[string]string{
		"http://b?endpoint=x":                  "not a \"http\" URL",
		"s3://?endpoint=x":                     "no bucket",
		"s3://key:secret@b?endpoint=x":         "AWS_ACCESS_KEY_ID",
		"s3://b?endpoint=x&insecure=yes":       "insecure=\"yes\"",
		"s3://b?endpiont=x":                    "unknown parameter \"endpiont\"",
		"s3://b?endpoint=ftp://x":              "want HOST:PORT",
		"s3://b?endpoint=https://x&insecure=1": "contradicts",
		"s3://b?endpoint=x/y":                  "want HOST:PORT",
		"s3://b%zz":                            "not a URL",
	} {
		if _, err := ParseURL(raw); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseURL(%q) = %v, want an error saying %q", raw, err, want)
		}
	}
}

// Start-up errors say what to fix.
func TestOpenErrors(t *testing.T) {
	srv := testenv.Seaweed(t)
	cfg := func() Config {
		return Config{Bucket: srv.Bucket, Endpoint: srv.Endpoint, Insecure: true, Creds: srv.Creds(), TempDir: t.TempDir()}
	}
	expect := func(name string, c Config, want ...string) {
		t.Helper()
		start := time.Now()
		_, err := Open(context.Background(), c)
		if err == nil {
			t.Fatalf("%s: no error", name)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", name, err, w)
			}
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("%s: took %v to fail", name, d)
		}
		t.Logf("%s: %v", name, err)
	}

	c := cfg()
	c.Creds = credentials.NewStaticV4("nobody", srv.SecretKey, "")
	expect("unknown access key", c, "access key \"nobody\"")

	c = cfg()
	c.Creds = credentials.NewStaticV4(srv.AccessKey, "wrong-secret", "")
	expect("wrong secret", c, "AWS_SECRET_ACCESS_KEY", srv.AccessKey)

	c = cfg()
	c.Bucket = "no-such-bucket-" + strings.ToLower(srv.Prefix())
	expect("missing bucket", c, "does not exist", "create=1", c.Bucket)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there now
	c = cfg()
	c.Endpoint = closed
	expect("unreachable endpoint", c, "cannot reach", closed)

	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	c = cfg()
	c.Creds = nil
	expect("no credentials", c, "AWS_ACCESS_KEY_ID")

	// create=1 creates the missing bucket; the environment's credentials
	// are used when none are given.
	srv.SetEnv(t)
	c = cfg()
	c.Creds = nil
	c.Bucket = "created-" + strings.ToLower(srv.Prefix())
	c.Create = true
	s, err := Open(context.Background(), c)
	if err != nil {
		t.Fatalf("create=1: %v", err)
	}
	if _, err := s.Put(strings.NewReader("in a new bucket"), 0); err != nil {
		t.Fatal(err)
	}
}

// Touch and a re-commit refresh Last-Modified on the server (a copy of
// the object onto itself), which garbage collection reads.
func TestTouchRefreshesLastModified(t *testing.T) {
	srv := testenv.Seaweed(t)
	s := open(t, srv, nil)
	info, err := s.Put(strings.NewReader("touch me"), 0)
	if err != nil {
		t.Fatal(err)
	}
	lastModified := func() time.Time {
		t.Helper()
		st, err := s.client.StatObject(context.Background(), s.bucket, s.key(info.SHA256), minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return st.LastModified
	}
	first := lastModified()
	// Wait until the server's second has changed, then touch.
	for !time.Now().Truncate(time.Second).After(first.Add(time.Second)) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.Touch(info.SHA256); err != nil {
		t.Fatal(err)
	}
	touched := lastModified()
	if !touched.After(first) {
		t.Fatalf("Last-Modified after Touch %v, before %v: not refreshed", touched, first)
	}
	if got, _ := io.ReadAll(mustOpen(t, s, info.SHA256)); string(got) != "touch me" {
		t.Fatalf("content after touch: %q", got)
	}
	for !time.Now().Truncate(time.Second).After(touched.Add(time.Second)) {
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := s.Put(strings.NewReader("touch me"), 0); err != nil {
		t.Fatal(err)
	}
	if again := lastModified(); !again.After(touched) {
		t.Fatalf("Last-Modified after a re-commit %v, before %v: not refreshed", again, touched)
	}
}

func mustOpen(t *testing.T, s *Store, sha string) blob.Reader {
	t.Helper()
	r, _, err := s.Open(sha)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// countingTransport counts the response body bytes read and the requests.
type countingTransport struct {
	requests, bytes atomic.Int64
	parts           atomic.Int64 // multipart part uploads
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.requests.Add(1)
	if r.Method == http.MethodPut && r.URL.Query().Get("partNumber") != "" {
		c.parts.Add(1)
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &c.bytes}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// Reading in the middle of a large blob fetches about what is read, and a
// zip reader's many small sequential ReadAt calls share a response.
func TestRangedReads(t *testing.T) {
	srv := testenv.Seaweed(t)
	tr := &countingTransport{}
	s := open(t, srv, tr)
	data := bytes.Repeat([]byte("0123456789abcdef"), 24<<20/16) // 24 MiB
	info, err := s.Put(bytes.NewReader(data), 0)
	if err != nil {
		t.Fatal(err)
	}
	r := mustOpen(t, s, info.SHA256)
	req0, bytes0 := tr.requests.Load(), tr.bytes.Load()
	buf := make([]byte, 1000)
	if _, err := r.ReadAt(buf, 12<<20); err != nil || !bytes.Equal(buf, data[12<<20:12<<20+1000]) {
		t.Fatalf("ReadAt: %v", err)
	}
	// 300 sequential 4 KiB reads after it.
	for off := int64(12<<20 + 1000); off < 12<<20+1000+300*4096; off += 4096 {
		b := make([]byte, 4096)
		if _, err := r.ReadAt(b, off); err != nil || !bytes.Equal(b, data[off:off+4096]) {
			t.Fatalf("ReadAt(%d): %v", off, err)
		}
	}
	reqs, got := tr.requests.Load()-req0, tr.bytes.Load()-bytes0
	if got > 3<<20 {
		t.Errorf("1.2 MB of reads in the middle fetched %d bytes", got)
	}
	if reqs > 3 {
		t.Errorf("301 sequential reads took %d requests", reqs)
	}
	t.Logf("1.2 MB read in the middle of 24 MiB: %d requests, %d bytes fetched", reqs, got)
}

// Reading an object deleted meanwhile is an error, not a short read.
func TestReadDeletedObject(t *testing.T) {
	srv := testenv.Seaweed(t)
	s := open(t, srv, nil)
	data := bytes.Repeat([]byte("x"), 3<<20)
	info, _ := s.Put(bytes.NewReader(data), 0)
	r := mustOpen(t, s, info.SHA256)
	if err := s.Remove(info.SHA256); err != nil {
		t.Fatal(err)
	}
	_, err := io.ReadAll(r)
	if err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("read of a deleted object: %v", err)
	}
	t.Log(err)
}

// A blob larger than the part size goes up as a multipart upload read
// from the temporary file part by part: allocations stay far below the
// blob's size.
func TestMultipartUploadBoundedMemory(t *testing.T) {
	srv := testenv.Seaweed(t)
	tr := &countingTransport{}
	s, err := Open(context.Background(), Config{
		Bucket: srv.Bucket, Prefix: srv.Prefix(), Endpoint: srv.Endpoint, Insecure: true,
		Creds: srv.Creds(), TempDir: t.TempDir(), Transport: tr, PartSize: 5 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	const size = 48 << 20
	w, err := s.Create(0)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("multipart"), 1<<20/8)[:1<<20]
	for written := 0; written < size; written += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	parts0 := tr.parts.Load()
	info, err := w.Commit("")
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	parts := tr.parts.Load() - parts0
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d MiB in %d parts, %d KiB allocated", size>>20, parts, alloc>>10)
	if parts < size/(5<<20) {
		t.Errorf("%d part uploads, want a multipart upload of 5 MiB parts", parts)
	}
	if alloc > 16<<20 {
		t.Errorf("uploading %d MiB allocated %d MiB", size>>20, alloc>>20)
	}
	if st, err := s.Stat(info.SHA256); err != nil || st.Size != size {
		t.Fatalf("stat: %+v %v", st, err)
	}
}
