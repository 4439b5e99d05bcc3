package cache

import (
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/updraft-cdn/updraft/origin/blob"
	blobfs "github.com/updraft-cdn/updraft/origin/blob/fs"
)

// memTier is an LRU of blob bytes bounded in bytes: golang-lru's list and
// map plus a byte counter, evicting the oldest until the new blob fits.
type memTier struct {
	mu        sync.Mutex
	lru       *simplelru.LRU[string, []byte]
	bytes     int64
	budget    int64
	maxItem   int64
	evictions uint64
}

func newMemTier(budget, maxItem int64) *memTier {
	m := &memTier{budget: budget, maxItem: maxItem}
	m.lru, _ = simplelru.NewLRU[string, []byte](math.MaxInt, func(_ string, v []byte) {
		m.bytes -= int64(len(v))
		m.evictions++
	})
	return m
}

func (m *memTier) fits(size int64) bool { return size <= m.maxItem && m.maxItem > 0 }

func (m *memTier) get(sha string) ([]byte, bool) {
	if m.budget <= 0 {
		return nil, false
	}
	m.mu.Lock()
	v, ok := m.lru.Get(sha)
	m.mu.Unlock()
	return v, ok
}

func (m *memTier) has(sha string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.Contains(sha)
}

// add keeps data (which must not be modified afterwards) if it fits.
func (m *memTier) add(sha string, data []byte) {
	if !m.fits(int64(len(data))) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lru.Contains(sha) {
		return
	}
	for m.bytes+int64(len(data)) > m.budget && m.lru.Len() > 0 {
		m.lru.RemoveOldest()
	}
	m.lru.Add(strings.Clone(sha), data)
	m.bytes += int64(len(data))
}

func (m *memTier) stats() (bytes, budget int64, items int, evictions uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bytes, m.budget, m.lru.Len(), m.evictions
}

// diskTier indexes the blob files of the disk folder in an LRU bounded in
// bytes; evicting removes the file (readers holding it open finish).
type diskTier struct {
	fs        *blobfs.Store
	mu        sync.Mutex
	lru       *simplelru.LRU[string, int64]
	bytes     int64
	budget    int64
	evictions uint64
}

// openDisk opens the folder and indexes existing files, oldest first (by
// modification time, i.e. fill time), evicting down to the budget.
func openDisk(dir string, budget int64) (*diskTier, error) {
	store, err := blobfs.Open(dir)
	if err != nil {
		return nil, err
	}
	d := &diskTier{fs: store, budget: budget}
	d.lru, _ = simplelru.NewLRU[string, int64](math.MaxInt, func(sha string, size int64) {
		d.bytes -= size
		d.evictions++
		os.Remove(store.Path(sha))
	})
	type file struct {
		sha  string
		size int64
		mod  time.Time
	}
	var files []file
	subs, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, sub := range subs {
		if !sub.IsDir() || len(sub.Name()) != 2 {
			continue
		}
		es, err := os.ReadDir(filepath.Join(dir, sub.Name()))
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			if !blob.ValidHash(e.Name()) || e.Name()[:2] != sub.Name() {
				continue
			}
			if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
				files = append(files, file{e.Name(), info.Size(), info.ModTime()})
			}
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].mod.Before(files[j].mod) })
	for _, f := range files {
		d.add(f.sha, f.size)
	}
	return d, nil
}

func (d *diskTier) add(sha string, size int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lru.Contains(sha) {
		return
	}
	d.lru.Add(strings.Clone(sha), size)
	d.bytes += size
	for d.bytes > d.budget && d.lru.Len() > 0 {
		d.lru.RemoveOldest()
	}
}

// touch marks the blob recently used and returns its size.
func (d *diskTier) touch(sha string) (int64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lru.Get(sha)
}

func (d *diskTier) has(sha string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lru.Contains(sha)
}

// evict drops a blob and its file.
func (d *diskTier) evict(sha string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.lru.Remove(sha) {
		os.Remove(d.fs.Path(sha))
	}
}

func (d *diskTier) stats() (bytes, budget int64, items int, evictions uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.bytes, d.budget, d.lru.Len(), d.evictions
}
