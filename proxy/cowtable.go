package proxy

import (
	"sync"
	"sync/atomic"
)

// cowEntry is what a cowTable holds: a pointer to a value that records the
// tick of its last use and knows the bytes it keeps.
type cowEntry interface {
	comparable
	lastUse() *atomic.Uint64
	size() int64
}

// cowTable is a bounded map for the hot path, shared by the update
// answers (answers.go) and the Expo manifests (expo_table.go): lookups read
// an immutable map through an atomic pointer, without a lock or an
// allocation; an insertion (rare: a new answer) copies the map under mu,
// evicting the least recently used entries until the new one fits in
// maxEntries and budget bytes. Use is recorded as the table's tick, which
// moves at every insertion, so a hit writes to its entry at most once
// between two insertions.
type cowTable[K comparable, V cowEntry] struct {
	m          atomic.Pointer[map[K]V]
	tick       atomic.Uint64
	mu         sync.Mutex
	bytes      int64 // under mu
	maxEntries int
	budget     int64
}

func newCowTable[K comparable, V cowEntry](maxEntries int, budget int64) *cowTable[K, V] {
	t := &cowTable[K, V]{maxEntries: maxEntries, budget: budget}
	t.m.Store(&map[K]V{})
	return t
}

// get returns the entry of k (the zero V when none), marking it used.
func (t *cowTable[K, V]) get(k K) V {
	v := (*t.m.Load())[k]
	var zero V
	if v != zero {
		if tk := t.tick.Load(); v.lastUse().Load() != tk {
			v.lastUse().Store(tk)
		}
	}
	return v
}

// insert stores v under k (k must own its memory) and returns it, or
// returns the entry another caller inserted under k meanwhile.
func (t *cowTable[K, V]) insert(k K, v V) V {
	size := v.size()
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := *t.m.Load()
	if old, ok := cur[k]; ok {
		return old
	}
	m := make(map[K]V, len(cur)+1)
	for k, e := range cur {
		m[k] = e
	}
	for len(m) > 0 && (len(m) >= t.maxEntries || t.bytes+size > t.budget) {
		var lruKey K
		var lru V
		var zero V
		for k, e := range m {
			if lru == zero || e.lastUse().Load() < lru.lastUse().Load() {
				lruKey, lru = k, e
			}
		}
		delete(m, lruKey)
		t.bytes -= lru.size()
	}
	v.lastUse().Store(t.tick.Add(1))
	m[k] = v
	t.bytes += size
	t.m.Store(&m)
	return v
}

// resize runs change, which alters the bytes v keeps, and accounts for the
// difference if v is still the entry of k.
func (t *cowTable[K, V]) resize(k K, v V, change func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	before := v.size()
	change()
	if (*t.m.Load())[k] == v {
		t.bytes += v.size() - before
	}
}

// all returns the current entries (read-only).
func (t *cowTable[K, V]) all() map[K]V { return *t.m.Load() }

// stats reports the entries held and their bytes.
func (t *cowTable[K, V]) stats() (entries int, bytes int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(*t.m.Load()), t.bytes
}
