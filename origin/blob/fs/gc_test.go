package fs

import (
	"bytes"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin/blob"
)

func backdate(t *testing.T, s *Store, sha string, age time.Duration) {
	t.Helper()
	old := time.Now().Add(-age)
	if err := os.Chtimes(s.Path(sha), old, old); err != nil {
		t.Fatal(err)
	}
}

func mtime(t *testing.T, s *Store, sha string) time.Time {
	t.Helper()
	fi, err := os.Stat(s.Path(sha))
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}

// Committing content that is already stored refreshes the blob's mtime, so
// that garbage collection (grace period on mtime) does not take old content
// uploaded again before the upload's reference to it is written.
func TestGCDedupeCommitRefreshesMtime(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("same bundle "), 1000)
	info, err := s.Put(bytes.NewReader(data), 0)
	if err != nil {
		t.Fatal(err)
	}
	backdate(t, s, info.SHA256, 48*time.Hour)
	before := time.Now().Add(-time.Minute)
	if m := mtime(t, s, info.SHA256); !m.Before(before) {
		t.Fatalf("backdating failed: %v", m)
	}
	again, err := s.Put(bytes.NewReader(data), 0)
	if err != nil || again != info {
		t.Fatalf("second put: %+v %v", again, err)
	}
	if m := mtime(t, s, info.SHA256); m.Before(before) {
		t.Fatalf("mtime after a dedupe commit is %v, want refreshed to about now", m)
	}
	// So a collection with a grace period keeps it...
	if _, deleted, err := s.Delete(info.SHA256, time.Now().Add(-time.Hour)); err != nil || deleted {
		t.Fatalf("delete of a re-committed blob: deleted=%v err=%v", deleted, err)
	}
	// ...and the content is intact, with no temporary file left.
	if b, err := os.ReadFile(s.Path(info.SHA256)); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("content after dedupe commit: %v", err)
	}
	if es, _ := os.ReadDir(s.tmp); len(es) != 0 {
		t.Fatalf("%d temporary files left", len(es))
	}
}

func TestGCDeleteOnlyOlderThanCutoff(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	oldInfo, _ := s.Put(bytes.NewReader([]byte("old blob")), 0)
	youngInfo, _ := s.Put(bytes.NewReader([]byte("young blob")), 0)
	backdate(t, s, oldInfo.SHA256, 2*time.Hour)
	cutoff := time.Now().Add(-time.Hour)

	// A reader that opened the blob before its deletion keeps reading it.
	f, _, err := s.Open(oldInfo.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, deleted, err := s.Delete(oldInfo.SHA256, cutoff)
	if err != nil || !deleted || size != oldInfo.Size {
		t.Fatalf("delete old: size=%d deleted=%v err=%v", size, deleted, err)
	}
	if _, err := s.Stat(oldInfo.SHA256); err != blob.ErrNotFound {
		t.Fatalf("stat after delete: %v", err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil || buf.String() != "old blob" {
		t.Fatalf("open reader after delete: %q %v", buf.String(), err)
	}
	if _, deleted, err := s.Delete(youngInfo.SHA256, cutoff); err != nil || deleted {
		t.Fatalf("delete young: deleted=%v err=%v", deleted, err)
	}
	if _, deleted, err := s.Delete(oldInfo.SHA256, cutoff); err != nil || deleted {
		t.Fatalf("delete absent: deleted=%v err=%v", deleted, err)
	}
	if _, _, err := s.Delete("nothex", cutoff); err != blob.ErrNotFound {
		t.Fatalf("delete bad hash: %v", err)
	}
	// Touch restarts the grace period; touching an absent blob is no error.
	backdate(t, s, youngInfo.SHA256, 2*time.Hour)
	if err := s.Touch(youngInfo.SHA256); err != nil {
		t.Fatal(err)
	}
	if _, deleted, _ := s.Delete(youngInfo.SHA256, cutoff); deleted {
		t.Fatal("touched blob deleted")
	}
	if err := s.Touch(oldInfo.SHA256); err != nil {
		t.Fatalf("touch absent: %v", err)
	}
}

// A dedupe commit racing Delete: whichever wins, the committed blob is
// stored afterwards.
func TestGCDeleteRacingCommit(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("content uploaded again")
	for i := 0; i < 200; i++ {
		info, err := s.Put(bytes.NewReader(data), 0)
		if err != nil {
			t.Fatal(err)
		}
		backdate(t, s, info.SHA256, time.Hour)
		cutoff := time.Now().Add(-time.Minute)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); s.Delete(info.SHA256, cutoff) }()
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

func TestGCWalk(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, c := range []string{"a", "b", "c"} {
		info, _ := s.Put(bytes.NewReader([]byte(c)), 0)
		want = append(want, info.SHA256)
	}
	w, _ := s.Create(0) // in progress: not a blob
	w.Write([]byte("pending"))
	defer w.Abort()
	os.WriteFile(s.dir+"/README", []byte("x"), 0o644) // not a blob
	var got []string
	if err := s.Walk(func(sha string, size int64, mt time.Time) error {
		if size != 1 || mt.IsZero() {
			t.Errorf("%s: size %d mtime %v", sha, size, mt)
		}
		got = append(got, sha)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	sort.Strings(want)
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("walk = %v, want %v", got, want)
	}
}
