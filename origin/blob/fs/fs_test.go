package fs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin/blob"
)

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestPutOpen(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("updraft "), 10000)
	info, err := s.Put(bytes.NewReader(data), 0)
	if err != nil {
		t.Fatal(err)
	}
	if info.SHA256 != sum(data) || info.Size != int64(len(data)) {
		t.Fatalf("info = %+v", info)
	}
	f, got, err := s.Open(info.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	if !bytes.Equal(b, data) || got != info {
		t.Fatal("content differs")
	}
	// Same content again: no error, same info.
	if again, err := s.Put(bytes.NewReader(data), 0); err != nil || again != info {
		t.Fatalf("second put: %+v %v", again, err)
	}
	if _, err := s.Stat(strings.Repeat("0", 64)); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("stat missing: %v", err)
	}
	for _, bad := range []string{"", "../etc/passwd", strings.Repeat("A", 64), strings.Repeat("0", 63)} {
		if _, _, err := s.Open(bad); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Open(%q) = %v", bad, err)
		}
	}
}

func TestLimitAndMismatch(t *testing.T) {
	s, _ := Open(t.TempDir())
	if _, err := s.Put(bytes.NewReader(make([]byte, 2000)), 1000); !errors.Is(err, blob.ErrTooLarge) {
		t.Fatalf("over limit: %v", err)
	}
	w, _ := s.Create(0)
	w.Write([]byte("abc"))
	if _, err := w.Commit(strings.Repeat("0", 64)); !errors.Is(err, blob.ErrMismatch) {
		t.Fatalf("mismatch: %v", err)
	}
	assertEmpty(t, s)
}

func assertEmpty(t *testing.T, s *Store) {
	t.Helper()
	var files []string
	filepath.Walk(s.dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 0 {
		t.Fatalf("store not empty: %v", files)
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

func TestInterruptedPutLeavesNothing(t *testing.T) {
	s, _ := Open(t.TempDir())
	if _, err := s.Put(&failingReader{n: 1 << 20}, 0); err == nil {
		t.Fatal("want error")
	}
	assertEmpty(t, s)
}

// TestKillMidWrite kills a process while it writes a blob and checks that
// reopening the store shows no partial blob and cleans the temporary file.
func TestKillMidWrite(t *testing.T) {
	if os.Getenv("UPDRAFT_BLOB_CHILD") != "" {
		s, err := Open(os.Getenv("UPDRAFT_BLOB_CHILD"))
		if err != nil {
			os.Exit(3)
		}
		w, _ := s.Create(0)
		chunk := bytes.Repeat([]byte{'x'}, 64<<10)
		fmt.Println("writing")
		for {
			w.Write(chunk)
		}
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillMidWrite$")
	cmd.Env = append(os.Environ(), "UPDRAFT_BLOB_CHILD="+dir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "writing" {
		t.Fatalf("child did not start: %q %v", buf, err)
	}
	// Let it write a few megabytes, then kill it without warning.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if tmpBytes(dir) > 4<<20 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if tmpBytes(dir) == 0 {
		t.Fatal("child wrote nothing")
	}
	cmd.Process.Kill()
	cmd.Wait()

	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, s)
}

func tmpBytes(dir string) int64 {
	var n int64
	es, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	for _, e := range es {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}
