// Package fs is the filesystem blob store: blobs are files in a folder,
// DIR/ab/abcdef… holds blob abcdef…, DIR/tmp holds writes in progress. A
// commit fsyncs the temporary file and renames it into place, so a blob is
// visible only once complete and durable. A blob's modification time is
// its last commit or touch (garbage collection relies on it, see Delete).
//
// It is the origin's default blob store (DATA/blobs) and the edge's disk
// cache tier.
package fs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/updraft-cdn/updraft/origin/blob"
)

// Store is a content-addressed blob store rooted at a folder.
type Store struct {
	dir string
	tmp string
	// gcMu orders a commit that finds its blob already stored (and
	// refreshes its mtime) against Delete's "old enough? remove": either the
	// refresh comes first and Delete keeps the blob, or the removal does
	// and the commit stores the content again.
	gcMu sync.Mutex
}

var _ blob.Store = (*Store)(nil)

// Open opens (creating if needed) a store in dir and removes temporary files
// left by writes that never finished (a crash or a killed upload).
func Open(dir string) (*Store, error) {
	tmp := filepath.Join(dir, "tmp")
	if err := blob.CleanTemp(tmp); err != nil {
		return nil, fmt.Errorf("blob: open %s: %w", dir, err)
	}
	return &Store{dir: dir, tmp: tmp}, nil
}

// Dir is the store's folder.
func (s *Store) Dir() string { return s.dir }

// Path returns where the blob with this hash lives (whether or not it exists).
// The hash must be valid.
func (s *Store) Path(sha string) string {
	return filepath.Join(s.dir, sha[:2], sha)
}

// Stat returns the blob's size, or blob.ErrNotFound.
func (s *Store) Stat(sha string) (blob.Info, error) {
	if !blob.ValidHash(sha) {
		return blob.Info{}, blob.ErrNotFound
	}
	fi, err := os.Stat(s.Path(sha))
	if errors.Is(err, os.ErrNotExist) {
		return blob.Info{}, blob.ErrNotFound
	}
	if err != nil {
		return blob.Info{}, fmt.Errorf("blob: stat %s: %w", sha, err)
	}
	return blob.Info{SHA256: sha, Size: fi.Size()}, nil
}

// Open opens a blob for reading (the file, see OpenFile).
func (s *Store) Open(sha string) (blob.Reader, blob.Info, error) {
	f, info, err := s.OpenFile(sha)
	if err != nil {
		return nil, info, err // not a typed nil in the interface
	}
	return f, info, nil
}

// OpenFile opens a blob's file for reading. The caller closes the file. A
// reader keeps reading a blob deleted meanwhile (the file is unlinked, not
// truncated).
func (s *Store) OpenFile(sha string) (*os.File, blob.Info, error) {
	if !blob.ValidHash(sha) {
		return nil, blob.Info{}, blob.ErrNotFound
	}
	f, err := os.Open(s.Path(sha))
	if errors.Is(err, os.ErrNotExist) {
		return nil, blob.Info{}, blob.ErrNotFound
	}
	if err != nil {
		return nil, blob.Info{}, fmt.Errorf("blob: open %s: %w", sha, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, blob.Info{}, fmt.Errorf("blob: stat %s: %w", sha, err)
	}
	return f, blob.Info{SHA256: sha, Size: fi.Size()}, nil
}

// Remove deletes a blob (absent: no error). Callers make sure nothing
// still refers to it.
func (s *Store) Remove(sha string) error {
	if !blob.ValidHash(sha) {
		return blob.ErrNotFound
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
func (s *Store) Touch(sha string) error {
	if !blob.ValidHash(sha) {
		return blob.ErrNotFound
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
func (s *Store) Delete(sha string, cutoff time.Time) (size int64, deleted bool, err error) {
	if !blob.ValidHash(sha) {
		return 0, false, blob.ErrNotFound
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
func (s *Store) Walk(fn func(sha string, size int64, mtime time.Time) error) error {
	subs, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("blob: walk: %w", err)
	}
	for _, sub := range subs {
		name := sub.Name()
		if !sub.IsDir() || len(name) != 2 || !blob.ValidHash(strings.Repeat(name, 32)) {
			continue
		}
		es, err := os.ReadDir(filepath.Join(s.dir, name))
		if err != nil {
			return fmt.Errorf("blob: walk: %w", err)
		}
		for _, e := range es {
			if !blob.ValidHash(e.Name()) || e.Name()[:2] != name {
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

// Create starts a new blob write of at most max bytes (max <= 0: unbounded).
func (s *Store) Create(max int64) (*blob.Writer, error) {
	return blob.NewWriter(s.tmp, max, s.commit)
}

// Put stores everything read from r (at most max bytes; max <= 0: unbounded).
func (s *Store) Put(r io.Reader, max int64) (blob.Info, error) {
	return blob.Put(s, r, max)
}

// commit fsyncs the temporary file and renames it into place.
func (s *Store) commit(f *os.File, info blob.Info) (moved bool, err error) {
	if err := f.Sync(); err != nil {
		return false, fmt.Errorf("blob: sync: %w", err)
	}
	dst := s.Path(info.SHA256)
	s.gcMu.Lock()
	// Already stored: refresh its mtime instead, so that garbage collection
	// (which deletes only blobs older than its grace period) does not take
	// old content that is being referenced again before the reference is
	// written. If that fails, the new copy replaces it (same content).
	now := time.Now()
	if err := os.Chtimes(dst, now, now); err == nil {
		s.gcMu.Unlock()
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		s.gcMu.Unlock()
		return false, fmt.Errorf("blob: commit %s: %w", info.SHA256, err)
	}
	err = os.Rename(f.Name(), dst)
	s.gcMu.Unlock()
	if err != nil {
		return false, fmt.Errorf("blob: commit %s: %w", info.SHA256, err)
	}
	if err := blob.SyncDir(filepath.Dir(dst)); err != nil {
		return true, fmt.Errorf("blob: commit %s: %w", info.SHA256, err)
	}
	return true, nil
}
