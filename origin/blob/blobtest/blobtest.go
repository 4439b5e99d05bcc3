// Package blobtest is the conformance suite of blob.Store: every back end
// (blob/fs, blob/s3 against a real S3 server) runs the same tests, so the
// origin gets the same behaviour whichever one it is given.
package blobtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin/blob"
)

// Options tunes the suite to a back end.
type Options struct {
	// Backdate sets a blob's modification time age in the past, where the
	// back end allows it (files). Without it (S3, whose Last-Modified only
	// the server sets), the tests that need old blobs wait for real time
	// to pass, a few seconds per test.
	Backdate func(t *testing.T, s blob.Store, sha string, age time.Duration)
	// LargeSize is the size of the large-blob test (default 40 MiB: above
	// the S3 back end's part size, so a multipart upload).
	LargeSize int64
}

// Run runs the suite; open returns a new, empty store for each test.
func Run(t *testing.T, open func(t *testing.T) blob.Store, opts Options) {
	if opts.LargeSize == 0 {
		opts.LargeSize = 40 << 20
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s blob.Store, o Options)
	}{
		{"PutOpenStat", testPutOpenStat},
		{"InvalidHashes", testInvalidHashes},
		{"CommitWantAndMismatch", testCommitWantAndMismatch},
		{"TooLarge", testTooLarge},
		{"AbortAndInterrupted", testAbortAndInterrupted},
		{"ReadAtSeekRange", testReadAtSeekRange},
		{"WalkDeleteRemove", testWalkDeleteRemove},
		{"GraceTouchAndRecommit", testGraceTouchAndRecommit},
		{"DeleteRacingCommit", testDeleteRacingCommit},
		{"ConcurrentCommitsSameBlob", testConcurrentCommits},
		{"Large", testLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // the S3 tests mostly wait: on the server, on the clock
			tc.fn(t, open(t), opts)
		})
	}
}

// Sum is the hex SHA-256 of b.
func Sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func put(t *testing.T, s blob.Store, data []byte) blob.Info {
	t.Helper()
	info, err := s.Put(bytes.NewReader(data), 0)
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	if info.SHA256 != Sum(data) || info.Size != int64(len(data)) {
		t.Fatalf("put: info %+v, want %s and %d bytes", info, Sum(data), len(data))
	}
	return info
}

func readAll(t *testing.T, s blob.Store, sha string) []byte {
	t.Helper()
	r, info, err := s.Open(sha)
	if err != nil {
		t.Fatalf("open %s: %v", sha, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", sha, err)
	}
	if int64(len(b)) != info.Size {
		t.Fatalf("read %d bytes, Open said %d", len(b), info.Size)
	}
	return b
}

func walk(t *testing.T, s blob.Store) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	if err := s.Walk(func(sha string, size int64, mtime time.Time) error {
		if mtime.IsZero() || mtime.After(time.Now().Add(time.Minute)) {
			t.Errorf("walk: %s has mtime %v", sha, mtime)
		}
		got[sha] = size
		return nil
	}); err != nil {
		t.Fatalf("walk: %v", err)
	}
	return got
}

func testPutOpenStat(t *testing.T, s blob.Store, _ Options) {
	data := bytes.Repeat([]byte("updraft "), 10000)
	info := put(t, s, data)
	if got := readAll(t, s, info.SHA256); !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
	if st, err := s.Stat(info.SHA256); err != nil || st != info {
		t.Fatalf("stat: %+v %v, want %+v", st, err, info)
	}
	r, got, err := s.Open(info.SHA256)
	if err != nil || got != info {
		t.Fatalf("open: %+v %v", got, err)
	}
	r.Close()
	// Same content again: no error, same info.
	if again, err := s.Put(bytes.NewReader(data), 0); err != nil || again != info {
		t.Fatalf("second put: %+v %v", again, err)
	}
	// The empty blob is a blob.
	empty := put(t, s, nil)
	if got := readAll(t, s, empty.SHA256); len(got) != 0 {
		t.Fatalf("empty blob reads %d bytes", len(got))
	}
	absent := Sum([]byte("never stored"))
	if _, err := s.Stat(absent); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("stat absent: %v", err)
	}
	if r, _, err := s.Open(absent); !errors.Is(err, blob.ErrNotFound) || r != nil {
		t.Fatalf("open absent: %v %v", r, err)
	}
}

func testInvalidHashes(t *testing.T, s blob.Store, _ Options) {
	for _, bad := range []string{"", "../etc/passwd", strings.Repeat("A", 64), strings.Repeat("0", 63), strings.Repeat("0", 63) + "/"} {
		if _, _, err := s.Open(bad); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Open(%q) = %v", bad, err)
		}
		if _, err := s.Stat(bad); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Stat(%q) = %v", bad, err)
		}
		if err := s.Touch(bad); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Touch(%q) = %v", bad, err)
		}
		if err := s.Remove(bad); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Remove(%q) = %v", bad, err)
		}
		if _, _, err := s.Delete(bad, time.Now()); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Delete(%q) = %v", bad, err)
		}
	}
}

func testCommitWantAndMismatch(t *testing.T, s blob.Store, _ Options) {
	data := []byte("content with a known hash")
	w, err := s.Create(0)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data[:5])
	w.Write(data[5:])
	if w.Size() != int64(len(data)) || w.Sum() != Sum(data) {
		t.Fatalf("size %d sum %s", w.Size(), w.Sum())
	}
	// The content can be read before committing (uploads check zips).
	if b, err := os.ReadFile(w.TempPath()); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("temp file: %q %v", b, err)
	}
	tmp := w.TempPath()
	info, err := w.Commit(Sum(data))
	if err != nil || info.SHA256 != Sum(data) {
		t.Fatalf("commit: %+v %v", info, err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left after commit: %v", err)
	}
	if _, err := w.Commit(""); err == nil {
		t.Fatal("second commit accepted")
	}
	w.Abort() // no-op after commit
	if _, err := s.Stat(info.SHA256); err != nil {
		t.Fatalf("abort after commit removed the blob: %v", err)
	}

	w, _ = s.Create(0)
	w.Write([]byte("abc"))
	tmp = w.TempPath()
	if _, err := w.Commit(strings.Repeat("0", 64)); !errors.Is(err, blob.ErrMismatch) {
		t.Fatalf("mismatch: %v", err)
	}
	if _, err := s.Stat(Sum([]byte("abc"))); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("mismatched content stored: %v", err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left after a mismatch: %v", err)
	}
	if got := walk(t, s); len(got) != 1 {
		t.Fatalf("walk = %v, want only %s", got, info.SHA256)
	}
}

func testTooLarge(t *testing.T, s blob.Store, _ Options) {
	data := make([]byte, 2000)
	if _, err := s.Put(bytes.NewReader(data), 1000); !errors.Is(err, blob.ErrTooLarge) {
		t.Fatalf("put over limit: %v", err)
	}
	w, _ := s.Create(1000)
	if n, err := w.Write(data[:1000]); n != 1000 || err != nil {
		t.Fatalf("write up to the limit: %d %v", n, err)
	}
	if _, err := w.Write(data[:1]); !errors.Is(err, blob.ErrTooLarge) {
		t.Fatalf("write over limit: %v", err)
	}
	w.Abort()
	if got := walk(t, s); len(got) != 0 {
		t.Fatalf("walk = %v, want empty", got)
	}
	if _, err := s.Stat(Sum(data)); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("stat: %v", err)
	}
	// Exactly the limit is fine.
	if _, err := s.Put(bytes.NewReader(data[:1000]), 1000); err != nil {
		t.Fatalf("put at the limit: %v", err)
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	n := min(len(p), r.n)
	r.n -= n
	return n, nil
}

func testAbortAndInterrupted(t *testing.T, s blob.Store, _ Options) {
	w, _ := s.Create(0)
	w.Write([]byte("pending")) // in progress: not a blob
	tmp := w.TempPath()
	if got := walk(t, s); len(got) != 0 {
		t.Fatalf("a write in progress is walked: %v", got)
	}
	w.Abort()
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left after abort: %v", err)
	}
	if _, err := w.Write([]byte("more")); err == nil {
		t.Fatal("write after abort accepted")
	}
	if _, err := s.Put(&failingReader{n: 1 << 20}, 0); err == nil {
		t.Fatal("interrupted put: want an error")
	}
	if got := walk(t, s); len(got) != 0 {
		t.Fatalf("walk after an interrupted put = %v", got)
	}
}

// pattern returns size bytes that differ at every offset and can be
// generated from any offset: byte i of block k (32 bytes) is byte i of
// SHA-256(k).
type pattern struct{ size int64 }

func (p pattern) at(off int64, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n && off < p.size {
		var k [8]byte
		binary.BigEndian.PutUint64(k[:], uint64(off/32))
		block := sha256.Sum256(k[:])
		start := off % 32
		end := min(32, start+int64(n-len(out)))
		out = append(out, block[start:end]...)
		off = (off/32 + 1) * 32
	}
	return out
}

// reader streams the pattern without holding it.
func (p pattern) reader() io.Reader {
	return io.LimitReader(&patternReader{p: p}, p.size)
}

type patternReader struct {
	p   pattern
	off int64
}

func (r *patternReader) Read(b []byte) (int, error) {
	if r.off >= r.p.size {
		return 0, io.EOF
	}
	chunk := r.p.at(r.off, min(len(b), 64<<10))
	n := copy(b, chunk)
	r.off += int64(n)
	return n, nil
}

func putPattern(t *testing.T, s blob.Store, p pattern) blob.Info {
	t.Helper()
	w, err := s.Create(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, p.reader()); err != nil {
		t.Fatal(err)
	}
	info, err := w.Commit("")
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	if info.Size != p.size {
		t.Fatalf("size %d, want %d", info.Size, p.size)
	}
	return info
}

func testReadAtSeekRange(t *testing.T, s blob.Store, _ Options) {
	p := pattern{size: 3<<20 + 12345}
	info := putPattern(t, s, p)
	r, _, err := s.Open(info.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	check := func(what string, got []byte, off int64) {
		t.Helper()
		if want := p.at(off, len(got)); !bytes.Equal(got, want) {
			t.Fatalf("%s at %d: content differs", what, off)
		}
	}
	// ReadAt in the middle, then elsewhere, then sequentially.
	for _, off := range []int64{p.size / 2, 17, p.size - 5000, 1 << 20, 1<<20 + 4096, 1<<20 + 8192} {
		buf := make([]byte, 4096)
		n, err := r.ReadAt(buf, off)
		if n != len(buf) || err != nil {
			t.Fatalf("ReadAt(%d): %d %v", off, n, err)
		}
		check("ReadAt", buf, off)
	}
	// Across the end: what is there, and io.EOF.
	buf := make([]byte, 100)
	if n, err := r.ReadAt(buf, p.size-40); n != 40 || err != io.EOF {
		t.Fatalf("ReadAt across the end: %d %v", n, err)
	}
	check("ReadAt at the end", buf[:40], p.size-40)
	if n, err := r.ReadAt(buf, p.size); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt at the end: %d %v", n, err)
	}
	// Concurrent ReadAt calls are allowed (io.ReaderAt).
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			off := int64(i) * 300001
			b := make([]byte, 10000)
			if n, err := r.ReadAt(b, off); n != len(b) || err != nil {
				t.Errorf("concurrent ReadAt(%d): %d %v", off, n, err)
				return
			}
			if !bytes.Equal(b, p.at(off, len(b))) {
				t.Errorf("concurrent ReadAt(%d): content differs", off)
			}
		}()
	}
	wg.Wait()
	// Seek and Read.
	if end, err := r.Seek(0, io.SeekEnd); end != p.size || err != nil {
		t.Fatalf("Seek end: %d %v", end, err)
	}
	if _, err := r.Seek(2<<20, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil || int64(len(rest)) != p.size-2<<20 {
		t.Fatalf("read from 2 MiB: %d bytes, %v", len(rest), err)
	}
	check("Seek+Read", rest, 2<<20)
	// An HTTP Range request served from the reader, as the origin does.
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Range", "bytes=1000000-1000999")
	http.ServeContent(rec, req, "", time.Time{}, r)
	if rec.Code != http.StatusPartialContent || rec.Body.Len() != 1000 {
		t.Fatalf("range: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	check("Range", rec.Body.Bytes(), 1000000)
}

func testWalkDeleteRemove(t *testing.T, s blob.Store, _ Options) {
	want := map[string]int64{}
	for _, c := range []string{"a", "bb", "ccc"} {
		info := put(t, s, []byte(c))
		want[info.SHA256] = info.Size
	}
	if got := walk(t, s); !mapsEqual(got, want) {
		t.Fatalf("walk = %v, want %v", got, want)
	}
	// A walk stops at fn's error and returns it.
	stop := errors.New("stop")
	calls := 0
	if err := s.Walk(func(string, int64, time.Time) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("walk stopped by fn: %v after %d calls", err, calls)
	}
	a := Sum([]byte("a"))
	// Young: kept by a cutoff in the past.
	if size, deleted, err := s.Delete(a, time.Now().Add(-time.Hour)); err != nil || deleted || size != 0 {
		t.Fatalf("delete young: %d %v %v", size, deleted, err)
	}
	// Old enough for a cutoff in the future.
	if size, deleted, err := s.Delete(a, time.Now().Add(time.Hour)); err != nil || !deleted || size != 1 {
		t.Fatalf("delete: %d %v %v", size, deleted, err)
	}
	if _, err := s.Stat(a); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("stat after delete: %v", err)
	}
	if _, deleted, err := s.Delete(a, time.Now().Add(time.Hour)); err != nil || deleted {
		t.Fatalf("delete absent: %v %v", deleted, err)
	}
	if err := s.Touch(a); err != nil {
		t.Fatalf("touch absent: %v", err)
	}
	bb := Sum([]byte("bb"))
	if err := s.Remove(bb); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(bb); err != nil {
		t.Fatalf("remove absent: %v", err)
	}
	if got := walk(t, s); len(got) != 1 || got[Sum([]byte("ccc"))] != 3 {
		t.Fatalf("walk after delete and remove = %v", got)
	}
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// makeOld makes the blobs older than the returned cutoff, while anything
// committed or touched from now on is younger than it.
func makeOld(t *testing.T, s blob.Store, o Options, shas ...string) time.Time {
	t.Helper()
	if o.Backdate != nil {
		for _, sha := range shas {
			o.Backdate(t, s, sha, 2*time.Hour)
		}
		return time.Now().Add(-time.Hour)
	}
	// Real time: the blobs were committed before now; once 2.5 s have
	// passed, a cutoff 1 s ago is past them even at one-second
	// Last-Modified resolution, and anything committed later is at least
	// 1 s younger than the cutoff.
	start := time.Now()
	for time.Since(start) < 2500*time.Millisecond {
		time.Sleep(50 * time.Millisecond)
	}
	return time.Now().Add(-time.Second)
}

func testGraceTouchAndRecommit(t *testing.T, s blob.Store, o Options) {
	old := put(t, s, []byte("old, unreferenced"))
	touched := put(t, s, []byte("old, touched"))
	again := put(t, s, []byte("old, uploaded again"))
	cutoff := makeOld(t, s, o, old.SHA256, touched.SHA256, again.SHA256)
	young := put(t, s, []byte("young"))
	if err := s.Touch(touched.SHA256); err != nil {
		t.Fatal(err)
	}
	// Committing content already stored refreshes it (and stores nothing
	// twice): garbage collection must not take content referenced again.
	if info, err := s.Put(strings.NewReader("old, uploaded again"), 0); err != nil || info != again {
		t.Fatalf("re-put: %+v %v", info, err)
	}
	for _, c := range []struct {
		info blob.Info
		keep bool
	}{{old, false}, {touched, true}, {again, true}, {young, true}} {
		size, deleted, err := s.Delete(c.info.SHA256, cutoff)
		if err != nil || deleted == c.keep {
			t.Errorf("delete %s (keep %v): deleted %v, err %v", c.info.SHA256[:8], c.keep, deleted, err)
		}
		if deleted && size != c.info.Size {
			t.Errorf("delete freed %d, want %d", size, c.info.Size)
		}
	}
	if got := readAll(t, s, again.SHA256); string(got) != "old, uploaded again" {
		t.Fatalf("re-committed content: %q", got)
	}
	got := walk(t, s)
	if _, ok := got[old.SHA256]; ok || len(got) != 3 {
		t.Fatalf("walk = %v", got)
	}
}

// A commit of content already stored racing Delete: whichever wins, the
// blob is stored afterwards.
func testDeleteRacingCommit(t *testing.T, s blob.Store, o Options) {
	rounds := 1 // each round needs an old blob: real seconds without Backdate
	if o.Backdate != nil {
		rounds = 100
	}
	data := []byte("content uploaded again")
	for i := 0; i < rounds; i++ {
		info := put(t, s, data)
		cutoff := makeOld(t, s, o, info.SHA256)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, _, err := s.Delete(info.SHA256, cutoff); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := s.Put(bytes.NewReader(data), 0); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		if _, err := s.Stat(info.SHA256); err != nil {
			t.Fatalf("round %d: blob committed during a delete is gone: %v", i, err)
		}
	}
}

func testConcurrentCommits(t *testing.T, s blob.Store, _ Options) {
	p := pattern{size: 1<<20 + 7}
	var wg sync.WaitGroup
	infos := make([]blob.Info, 6)
	for i := range infos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			info, err := s.Put(p.reader(), 0)
			if err != nil {
				t.Errorf("put %d: %v", i, err)
			}
			infos[i] = info
		}()
	}
	wg.Wait()
	for _, info := range infos[1:] {
		if info != infos[0] {
			t.Fatalf("infos differ: %+v", infos)
		}
	}
	if got := walk(t, s); len(got) != 1 || got[infos[0].SHA256] != p.size {
		t.Fatalf("walk = %v", got)
	}
	if got := readAll(t, s, infos[0].SHA256); !bytes.Equal(got, p.at(0, int(p.size))) {
		t.Fatal("content differs")
	}
}

func testLarge(t *testing.T, s blob.Store, o Options) {
	p := pattern{size: o.LargeSize + 12345}
	info := putPattern(t, s, p)
	if st, err := s.Stat(info.SHA256); err != nil || st.Size != p.size {
		t.Fatalf("stat: %+v %v", st, err)
	}
	r, _, err := s.Open(info.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := sha256.New()
	if n, err := io.Copy(h, r); err != nil || n != p.size {
		t.Fatalf("read: %d %v", n, err)
	}
	if hex.EncodeToString(h.Sum(nil)) != info.SHA256 {
		t.Fatal("content read back does not hash to its name")
	}
	// Around part boundaries (16 MiB for S3) and near the end.
	for _, off := range []int64{16<<20 - 100, 32<<20 - 1, p.size - 777} {
		buf := make([]byte, 700)
		n, err := r.ReadAt(buf, off)
		if err != nil && !(err == io.EOF && off+int64(n) == p.size) {
			t.Fatalf("ReadAt(%d): %v", off, err)
		}
		if !bytes.Equal(buf[:n], p.at(off, n)) {
			t.Fatalf("ReadAt(%d): content differs", off)
		}
	}
	if got := walk(t, s); len(got) != 1 || got[info.SHA256] != p.size {
		t.Fatalf("walk = %v", got)
	}
	if _, deleted, err := s.Delete(info.SHA256, time.Now().Add(time.Hour)); err != nil || !deleted {
		t.Fatalf("delete: %v %v", deleted, err)
	}
}
