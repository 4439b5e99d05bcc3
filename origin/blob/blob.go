// Package blob defines Updraft's content-addressed blob store: immutable
// blobs named by the hex SHA-256 of their content. A blob becomes visible
// only once it is complete and verified; blobs are never modified or
// overwritten; deleting is left to garbage collection by the caller, which
// relies on a blob's modification time being the last time it was committed
// or touched (see Store.Delete).
//
// The implementations live in sub-packages: blob/fs (files in a folder, the
// default, also the edge's disk cache) and blob/s3 (an S3-compatible
// bucket). Both write through a Writer, which keeps the content in a local
// temporary file while it is written and hashed, so that callers can
// inspect it (validate a zip) before it is committed, and so that a
// back end receives a complete, verified file of known size.
//
// blob imports only the standard library.
package blob

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"
)

// ErrNotFound is returned for a hash the store does not hold.
var ErrNotFound = errors.New("blob: not found")

// ErrTooLarge is returned by Put when the content exceeds the limit.
var ErrTooLarge = errors.New("blob: too large")

// ErrMismatch is returned by Put when the content does not hash to the expected value.
var ErrMismatch = errors.New("blob: sha256 mismatch")

// Info describes a stored blob.
type Info struct {
	SHA256 string // lower-case hex
	Size   int64
}

// Reader is an open blob. Read and Seek serve whole downloads and HTTP
// Range requests (http.ServeContent), ReadAt serves zip readers; an
// implementation must not fetch more of the blob than these ask for. Both
// *os.File and the S3 back end's reader satisfy it.
type Reader interface {
	io.Reader
	io.ReaderAt
	io.Seeker
	io.Closer
}

// Store is a content-addressed blob store: what the origin needs of one.
// Methods given an invalid hash (see ValidHash) return ErrNotFound.
type Store interface {
	// Stat returns the blob's size, or ErrNotFound.
	Stat(sha string) (Info, error)
	// Open opens a blob for reading, or returns ErrNotFound. The caller
	// closes the reader.
	Open(sha string) (Reader, Info, error)
	// Create starts a new blob write of at most max bytes (max <= 0:
	// unbounded). Until its Commit succeeds nothing is visible.
	Create(max int64) (*Writer, error)
	// Put stores everything read from r (at most max bytes; max <= 0:
	// unbounded).
	Put(r io.Reader, max int64) (Info, error)
	// Touch sets a stored blob's modification time to now (absent: no
	// error), restarting its garbage-collection grace period.
	Touch(sha string) error
	// Delete removes a blob whose modification time is not after cutoff
	// and reports whether it did, with the size it freed. A blob
	// committed again (or touched) after cutoff is kept, even when the
	// commit races this call. An absent blob is not an error.
	Delete(sha string, cutoff time.Time) (size int64, deleted bool, err error)
	// Remove deletes a blob unconditionally (absent: no error). Callers
	// make sure nothing still refers to it.
	Remove(sha string) error
	// Walk calls fn for every committed blob (writes in progress are not
	// blobs), in no particular order. A blob committed or deleted during
	// the walk may or may not be seen. An error from fn stops the walk
	// and is returned.
	Walk(fn func(sha string, size int64, mtime time.Time) error) error
}

// ValidHash reports whether s is a lower-case hex SHA-256 (64 characters).
func ValidHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// CommitFunc stores a complete temporary file under info.SHA256, which the
// Writer has verified. f is open for reading and writing, its offset is
// unspecified. It returns only once the blob is durably stored (or was
// already). It may rename f.Name() into place and then reports moved;
// otherwise the Writer removes the temporary file. The Writer closes f.
type CommitFunc func(f *os.File, info Info) (moved bool, err error)

// Writer is a blob being written. Write to it, then Commit or Abort; until
// Commit succeeds nothing is visible in the store. The content goes to a
// local temporary file, hashed as it is written: every back end commits a
// complete file of known size, and callers may read it (TempPath) before
// committing.
type Writer struct {
	f      *os.File
	h      hash.Hash
	n      int64
	max    int64
	done   bool
	commit CommitFunc
}

// NewWriter starts a write into a new temporary file in tmpDir, of at most
// max bytes (max <= 0: unbounded); Commit hands it to commit. Back ends
// use it to implement Store.Create.
func NewWriter(tmpDir string, max int64, commit CommitFunc) (*Writer, error) {
	f, err := os.CreateTemp(tmpDir, "put-*")
	if err != nil {
		return nil, fmt.Errorf("blob: create: %w", err)
	}
	return &Writer{f: f, h: sha256.New(), max: max, commit: commit}, nil
}

// Write appends p to the blob.
func (w *Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("blob: write after commit or abort")
	}
	if w.max > 0 && w.n+int64(len(p)) > w.max {
		return 0, ErrTooLarge
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// Size is the number of bytes written so far.
func (w *Writer) Size() int64 { return w.n }

// TempPath is the temporary file's path, for readers that must inspect the
// content before it is committed (e.g. to validate a zip).
func (w *Writer) TempPath() string { return w.f.Name() }

// Sum returns the hex SHA-256 of what was written so far.
func (w *Writer) Sum() string { return hex.EncodeToString(w.h.Sum(nil)) }

// Commit makes the content visible under its hash. When want is not empty
// the content must hash to it, or ErrMismatch is returned and nothing
// becomes visible. Committing content that is already stored is not an
// error (and refreshes the stored blob's modification time). The
// temporary file is gone afterwards, whatever the outcome.
func (w *Writer) Commit(want string) (Info, error) {
	if w.done {
		return Info{}, errors.New("blob: commit after commit or abort")
	}
	sum := w.Sum()
	if want != "" && want != sum {
		w.Abort()
		return Info{}, fmt.Errorf("%w: got %s, want %s", ErrMismatch, sum, want)
	}
	w.done = true
	info := Info{SHA256: sum, Size: w.n}
	moved, err := w.commit(w.f, info)
	w.f.Close()
	if !moved {
		os.Remove(w.f.Name())
	}
	if err != nil {
		return Info{}, err
	}
	return info, nil
}

// Abort discards the write. It is safe to call after Commit (it does nothing).
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.f.Close()
	os.Remove(w.f.Name())
}

// Put writes everything read from r to a new blob of s (at most max bytes;
// max <= 0: unbounded) and commits it: Store.Put for any back end.
func Put(s Store, r io.Reader, max int64) (Info, error) {
	w, err := s.Create(max)
	if err != nil {
		return Info{}, err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Abort()
		return Info{}, fmt.Errorf("blob: put: %w", err)
	}
	return w.Commit("")
}

// CleanTemp creates dir if needed and removes the temporary files a
// Writer left there (a crash or a killed upload): back ends call it when
// they open, before any write of theirs can be in progress.
func CleanTemp(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	leftovers, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range leftovers {
		_ = os.Remove(filepath.Join(dir, e.Name()))
	}
	return nil
}

// SyncDir fsyncs a directory, making renames and creations in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// WriteFileAtomic replaces path with data crash-safely: a temporary file in
// the same folder, fsync, rename, fsync of the folder. Readers see the old
// content or the new, never a part.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return SyncDir(dir)
}
