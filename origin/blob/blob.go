// Package blob stores immutable blobs on the filesystem, named by the hex
// SHA-256 of their content. A blob becomes visible only once it is complete,
// fsynced and verified: it is written to a temporary file, hashed while
// written, synced, and renamed into place. Blobs are never modified or
// overwritten; deleting is left to garbage collection by the caller, which
// relies on a blob's modification time being the last time it was committed
// (see Delete).
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
	"strings"
	"sync"
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

// FS is a content-addressed blob store rooted at a folder:
// DIR/ab/abcdef… holds blob abcdef…; DIR/tmp holds writes in progress.
type FS struct {
	dir string
	tmp string
	// gcMu orders a commit that finds its blob already stored (and
	// refreshes its mtime) against Delete's "old enough? remove": either the
	// refresh comes first and Delete keeps the blob, or the removal does
	// and the commit stores the content again.
	gcMu sync.Mutex
}

// Open opens (creating if needed) a store in dir and removes temporary files
// left by writes that never finished (a crash or a killed upload).
func Open(dir string) (*FS, error) {
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("blob: open %s: %w", dir, err)
	}
	leftovers, err := os.ReadDir(tmp)
	if err != nil {
		return nil, fmt.Errorf("blob: open %s: %w", dir, err)
	}
	for _, e := range leftovers {
		_ = os.Remove(filepath.Join(tmp, e.Name()))
	}
	return &FS{dir: dir, tmp: tmp}, nil
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

// Path returns where the blob with this hash lives (whether or not it exists).
// The hash must be valid.
func (s *FS) Path(sha string) string {
	return filepath.Join(s.dir, sha[:2], sha)
}

// Stat returns the blob's size, or ErrNotFound.
func (s *FS) Stat(sha string) (Info, error) {
	if !ValidHash(sha) {
		return Info{}, ErrNotFound
	}
	fi, err := os.Stat(s.Path(sha))
	if errors.Is(err, os.ErrNotExist) {
		return Info{}, ErrNotFound
	}
	if err != nil {
		return Info{}, fmt.Errorf("blob: stat %s: %w", sha, err)
	}
	return Info{SHA256: sha, Size: fi.Size()}, nil
}

// Open opens a blob for reading. The caller closes the file.
func (s *FS) Open(sha string) (*os.File, Info, error) {
	if !ValidHash(sha) {
		return nil, Info{}, ErrNotFound
	}
	f, err := os.Open(s.Path(sha))
	if errors.Is(err, os.ErrNotExist) {
		return nil, Info{}, ErrNotFound
	}
	if err != nil {
		return nil, Info{}, fmt.Errorf("blob: open %s: %w", sha, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, Info{}, fmt.Errorf("blob: stat %s: %w", sha, err)
	}
	return f, Info{SHA256: sha, Size: fi.Size()}, nil
}

// Remove deletes a blob (absent: no error). Callers make sure nothing
// still refers to it.
func (s *FS) Remove(sha string) error {
	if !ValidHash(sha) {
		return ErrNotFound
	}
	if err := os.Remove(s.Path(sha)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("blob: remove %s: %w", sha, err)
	}
	return nil
}

// Touch sets a stored blob's modification time to now (absent: no error),
// restarting its garbage-collection grace period: the origin touches the
// blobs of a bundle it deletes, so that edges still following the snapshot
// before the deletion find them for a grace period.
func (s *FS) Touch(sha string) error {
	if !ValidHash(sha) {
		return ErrNotFound
	}
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	now := time.Now()
	if err := os.Chtimes(s.Path(sha), now, now); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("blob: touch %s: %w", sha, err)
	}
	return nil
}

// Delete removes a blob whose modification time is not after cutoff and
// reports whether it did, with the size it freed. A blob committed again
// (or touched) after cutoff is kept, even when the commit races this call.
// An absent blob is not an error. Readers that opened the blob before keep
// reading it (the file is unlinked, not truncated).
func (s *FS) Delete(sha string, cutoff time.Time) (size int64, deleted bool, err error) {
	if !ValidHash(sha) {
		return 0, false, ErrNotFound
	}
	p := s.Path(sha)
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("blob: delete %s: %w", sha, err)
	}
	if fi.ModTime().After(cutoff) {
		return 0, false, nil
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("blob: delete %s: %w", sha, err)
	}
	return fi.Size(), true, nil
}

// Walk calls fn for every committed blob (writes in progress are not
// blobs), in no particular order. A blob committed or deleted during the
// walk may or may not be seen.
func (s *FS) Walk(fn func(sha string, size int64, mtime time.Time) error) error {
	subs, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("blob: walk: %w", err)
	}
	for _, sub := range subs {
		name := sub.Name()
		if !sub.IsDir() || len(name) != 2 || !ValidHash(strings.Repeat(name, 32)) {
			continue
		}
		es, err := os.ReadDir(filepath.Join(s.dir, name))
		if err != nil {
			return fmt.Errorf("blob: walk: %w", err)
		}
		for _, e := range es {
			if !ValidHash(e.Name()) || e.Name()[:2] != name {
				continue
			}
			fi, err := e.Info()
			if errors.Is(err, os.ErrNotExist) {
				continue // deleted meanwhile
			}
			if err != nil {
				return fmt.Errorf("blob: walk: %w", err)
			}
			if !fi.Mode().IsRegular() {
				continue
			}
			if err := fn(e.Name(), fi.Size(), fi.ModTime()); err != nil {
				return err
			}
		}
	}
	return nil
}

// Writer is a blob being written. Write to it, then Commit or Abort; until
// Commit succeeds nothing is visible in the store.
type Writer struct {
	s    *FS
	f    *os.File
	h    hash.Hash
	n    int64
	max  int64
	done bool
}

// Create starts a new blob write of at most max bytes (max <= 0: unbounded).
func (s *FS) Create(max int64) (*Writer, error) {
	f, err := os.CreateTemp(s.tmp, "put-*")
	if err != nil {
		return nil, fmt.Errorf("blob: create: %w", err)
	}
	return &Writer{s: s, f: f, h: sha256.New(), max: max}, nil
}

// Write appends p to the blob.
func (w *Writer) Write(p []byte) (int, error) {
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

// Commit syncs the content and makes it visible under its hash. When want is
// not empty the content must hash to it, or ErrMismatch is returned and nothing
// becomes visible. Committing content that is already stored is not an error.
func (w *Writer) Commit(want string) (Info, error) {
	if w.done {
		return Info{}, errors.New("blob: commit after commit or abort")
	}
	sum := w.Sum()
	if want != "" && want != sum {
		w.Abort()
		return Info{}, fmt.Errorf("%w: got %s, want %s", ErrMismatch, sum, want)
	}
	if err := w.f.Sync(); err != nil {
		w.Abort()
		return Info{}, fmt.Errorf("blob: sync: %w", err)
	}
	if err := w.f.Close(); err != nil {
		w.Abort()
		return Info{}, fmt.Errorf("blob: close: %w", err)
	}
	w.done = true
	info := Info{SHA256: sum, Size: w.n}
	dst := w.s.Path(sum)
	w.s.gcMu.Lock()
	// Already stored: refresh its mtime instead, so that garbage collection
	// (which deletes only blobs older than its grace period) does not take
	// old content that is being referenced again before the reference is
	// written. If that fails, the new copy replaces it (same content).
	now := time.Now()
	if err := os.Chtimes(dst, now, now); err == nil {
		w.s.gcMu.Unlock()
		os.Remove(w.f.Name())
		return info, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		w.s.gcMu.Unlock()
		os.Remove(w.f.Name())
		return Info{}, fmt.Errorf("blob: commit %s: %w", sum, err)
	}
	err := os.Rename(w.f.Name(), dst)
	w.s.gcMu.Unlock()
	if err != nil {
		os.Remove(w.f.Name())
		return Info{}, fmt.Errorf("blob: commit %s: %w", sum, err)
	}
	if err := SyncDir(filepath.Dir(dst)); err != nil {
		return Info{}, fmt.Errorf("blob: commit %s: %w", sum, err)
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

// Put stores everything read from r (at most max bytes; max <= 0: unbounded).
func (s *FS) Put(r io.Reader, max int64) (Info, error) {
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
