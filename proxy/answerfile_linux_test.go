package proxy

import (
	"bytes"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// An answer file holds its bytes wherever it is made: an unnamed file in a
// directory, or a memory file when the directory cannot hold one (here:
// it does not exist).
func TestAnswerFileBytes(t *testing.T) {
	b := make([]byte, 300<<10+17)
	for i := range b {
		b[i] = byte(i * 7 / 5)
	}
	for _, tc := range []struct {
		name, dir string
		tmp       int64
	}{{"unnamed", t.TempDir(), 1}, {"memfd", filepath.Join(t.TempDir(), "absent"), 0}} {
		t.Run(tc.name, func(t *testing.T) {
			made, tmp := answerFilesMade.Load(), answerFilesTmp.Load()
			f := newAnswerFile(tc.dir, b)
			if f == nil {
				t.Fatal("no answer file")
			}
			defer f.close()
			if got := answerFilesTmp.Load() - tmp; got != tc.tmp || answerFilesMade.Load()-made != 1 {
				t.Fatalf("%d unnamed of %d made, want %d of 1", got, answerFilesMade.Load()-made, tc.tmp)
			}
			got := make([]byte, len(b)+1)
			n, err := unix.Pread(f.fd, got, 0)
			if err != nil || n != len(b) || !bytes.Equal(got[:n], b) {
				t.Fatalf("the file holds %d bytes (%v), not the answer's %d", n, err, len(b))
			}
		})
	}
}
