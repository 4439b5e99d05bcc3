package proxy

import (
	"sync/atomic"
	"testing"
)

type cowTestEntry struct {
	used atomic.Uint64
	n    int64
}

func (e *cowTestEntry) lastUse() *atomic.Uint64 { return &e.used }
func (e *cowTestEntry) size() int64             { return e.n }

// The table keeps at most maxEntries entries and budget bytes, evicting
// the least recently used first; a second insertion of a key returns the
// first entry; resize accounts for bytes only while the entry is held.
func TestCowTableEvictsLeastRecentlyUsed(t *testing.T) {
	tb := newCowTable[string, *cowTestEntry](3, 100)
	a, b, c := &cowTestEntry{n: 10}, &cowTestEntry{n: 10}, &cowTestEntry{n: 10}
	tb.insert("a", a)
	tb.insert("b", b)
	tb.insert("c", c)
	if got := tb.insert("a", &cowTestEntry{n: 1}); got != a {
		t.Fatal("a second insertion of a replaced the first entry")
	}
	if tb.get("a") != a { // a is now the most recently used
		t.Fatal("a not found")
	}
	tb.insert("d", &cowTestEntry{n: 10}) // 3 entries max: b (least recent) goes
	if tb.get("b") != nil || tb.get("a") == nil || tb.get("c") == nil || tb.get("d") == nil {
		t.Fatalf("after d: entries %v", keysOf(tb))
	}
	if n, bytes := tb.stats(); n != 3 || bytes != 30 {
		t.Fatalf("stats %d entries, %d bytes; want 3, 30", n, bytes)
	}
	tb.resize("c", c, func() { c.n = 60 })
	if _, bytes := tb.stats(); bytes != 80 {
		t.Fatalf("after resize: %d bytes, want 80", bytes)
	}
	tb.insert("e", &cowTestEntry{n: 50}) // over the budget: evict until it fits
	if _, bytes := tb.stats(); bytes > 100 {
		t.Fatalf("%d bytes held, budget 100 (entries %v)", bytes, keysOf(tb))
	}
	if tb.get("e") == nil {
		t.Fatal("the new entry was not kept")
	}
	stale := &cowTestEntry{n: 5}
	before, _ := tb.stats()
	_, b0 := tb.stats()
	tb.resize("zz", stale, func() { stale.n = 500 })
	if n, b1 := tb.stats(); n != before || b1 != b0 {
		t.Fatalf("resize of an entry not held changed the accounting: %d bytes → %d", b0, b1)
	}
}

func keysOf(tb *cowTable[string, *cowTestEntry]) []string {
	var ks []string
	for k := range tb.all() {
		ks = append(ks, k)
	}
	return ks
}
