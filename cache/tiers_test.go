package cache

import (
	"bytes"
	"context"
	"io"
	"log/slog"

	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestBudgetsHold runs a random workload of blobs of random sizes and checks
// after every operation that neither tier holds more than its budget, and
// that every answer has the right bytes.
func TestBudgetsHold(t *testing.T) {
	blobs := map[string][]byte{}
	var shas []string
	for i := 0; i < 60; i++ {
		sha, data := randomBlob(t, 1+rand.IntN(300<<10))
		blobs[sha] = data
		shas = append(shas, sha)
	}
	up := &mapUpstream{blobs: blobs}
	dir := t.TempDir()
	c, err := New(Options{Dir: dir, Upstream: up, MemoryBudget: 1 << 20, MemoryMaxFraction: 0.25, DiskBudget: 3 << 20, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for step := 0; step < 2000; step++ {
		sha := shas[rand.IntN(len(shas))]
		b, err := c.Get(context.Background(), sha)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if got := read(t, b); !bytes.Equal(got, blobs[sha]) {
			t.Fatalf("step %d: wrong bytes from %s", step, b.Tier)
		}
		s := c.Stats()
		if s.MemoryBytes > s.MemoryBudget || s.DiskBytes > s.DiskBudget {
			t.Fatalf("step %d: memory %d/%d, disk %d/%d", step, s.MemoryBytes, s.MemoryBudget, s.DiskBytes, s.DiskBudget)
		}
		if step%250 == 0 {
			if onDisk := dirBytes(t, dir); onDisk != s.DiskBytes {
				t.Fatalf("step %d: %d bytes of blob files, %d accounted", step, onDisk, s.DiskBytes)
			}
		}
	}
	s := c.Stats()
	if s.MemoryEvictions == 0 || s.DiskEvictions == 0 || s.MemoryHits == 0 || s.DiskHits == 0 {
		t.Fatalf("workload did not exercise both tiers: %+v", s)
	}
	t.Logf("%+v", s)

	// A restart indexes what is on disk, within budget.
	c2, err := New(Options{Dir: dir, Upstream: up, DiskBudget: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if s2 := c2.Stats(); s2.DiskBytes > 2<<20 || s2.DiskItems == 0 || dirBytes(t, dir) != s2.DiskBytes {
		t.Fatalf("after restart with a smaller budget: %+v, %d on disk", s2, dirBytes(t, dir))
	}
}

func dirBytes(t *testing.T, dir string) int64 {
	var n int64
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && filepath.Base(filepath.Dir(p)) != "tmp" {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func TestMemoryTierServesHitsAndVerifiesPromotion(t *testing.T) {
	sha, data := randomBlob(t, 200<<10)
	dir := t.TempDir()
	up := &mapUpstream{blobs: map[string][]byte{sha: data}}
	c, _ := New(Options{Dir: dir, Upstream: up, MemoryBudget: 8 << 20})
	for i, want := range []string{TierFill, TierMemory, TierMemory} {
		b, err := c.Get(context.Background(), sha)
		if err != nil || b.Tier != want || b.Data == nil || !bytes.Equal(b.Data, data) {
			t.Fatalf("get %d: tier %s (want %s), %v", i, b.Tier, want, err)
		}
	}
	// Corrupt the disk copy; a fresh cache (empty memory) must detect it on
	// promotion, remove it, refetch, and never serve the bad bytes.
	path := filepath.Join(dir, sha[:2], sha)
	raw, _ := os.ReadFile(path)
	raw[100] ^= 1
	os.Chmod(path, 0o644)
	os.WriteFile(path, raw, 0o644)
	c2, _ := New(Options{Dir: dir, Upstream: up, MemoryBudget: 8 << 20})
	b, err := c2.Get(context.Background(), sha)
	if err != nil || !bytes.Equal(read(t, b), data) || b.Tier != TierFill {
		t.Fatalf("after corruption: tier %s, %v", b.Tier, err)
	}
	if s := c2.Stats(); s.VerifyFailures != 1 || s.Fills != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestBigBlobBypassesMemory(t *testing.T) {
	sha, data := randomBlob(t, 3<<20)
	c, _ := New(Options{Dir: t.TempDir(), Upstream: &mapUpstream{blobs: map[string][]byte{sha: data}}, MemoryBudget: 8 << 20})
	for i := 0; i < 2; i++ {
		b, err := c.Get(context.Background(), sha)
		if err != nil || b.File == nil || b.Data != nil || !bytes.Equal(read(t, b), data) {
			t.Fatalf("get %d: %+v %v", i, b.Tier, err)
		}
	}
	if s := c.Stats(); s.MemoryBytes != 0 {
		t.Fatalf("a 3 MiB blob entered a memory tier whose item limit is 1 MiB: %+v", s)
	}
}

func TestPrefetch(t *testing.T) {
	sha, data := randomBlob(t, 10<<10)
	up := &mapUpstream{blobs: map[string][]byte{sha: data}}
	c, _ := New(Options{Dir: t.TempDir(), Upstream: up, MemoryBudget: 1 << 20})
	if err := c.Prefetch(context.Background(), sha); err != nil || !c.Has(sha) {
		t.Fatalf("prefetch: %v", err)
	}
	c.Prefetch(context.Background(), sha)
	b, _ := c.Get(context.Background(), sha)
	if b.Tier != TierMemory || up.fetches.Load() != 1 || c.Stats().Prefetches != 1 {
		t.Fatalf("tier %s, fetches %d, stats %+v", b.Tier, up.fetches.Load(), c.Stats())
	}
}

func benchCache(b *testing.B, size int, mem int64) (*Tiered, string) {
	sha, data := randomBlob(nil, size)
	c, err := New(Options{Dir: b.TempDir(), Upstream: &mapUpstream{blobs: map[string][]byte{sha: data}}, MemoryBudget: mem, Log: quiet})
	if err != nil {
		b.Fatal(err)
	}
	bl, err := c.Get(context.Background(), sha)
	if err != nil {
		b.Fatal(err)
	}
	bl.Close()
	return c, sha
}

func BenchmarkMemoryHit(b *testing.B) {
	c, sha := benchCache(b, 5<<20, 512<<20)
	b.ReportAllocs()
	for b.Loop() {
		bl, _ := c.Get(context.Background(), sha)
		if bl.Tier != TierMemory {
			b.Fatal(bl.Tier)
		}
	}
}

func BenchmarkDiskHit(b *testing.B) {
	c, sha := benchCache(b, 5<<20, 0)
	b.ReportAllocs()
	for b.Loop() {
		bl, _ := c.Get(context.Background(), sha)
		bl.Close()
	}
}

// BenchmarkCoalescedMiss: 16 concurrent requests for each of b.N cold blobs
// share one upstream fetch per blob.
func BenchmarkCoalescedMiss(b *testing.B) {
	const waiters = 16
	blobs := map[string][]byte{}
	var shas []string
	for i := 0; i < b.N; i++ {
		sha, data := randomBlob(nil, 64<<10)
		blobs[sha] = data
		shas = append(shas, sha)
	}
	up := &mapUpstream{blobs: blobs, delay: time.Millisecond}
	c, _ := New(Options{Dir: b.TempDir(), Upstream: up, MemoryBudget: 64 << 20, Log: quiet})
	b.ReportAllocs()
	b.ResetTimer()
	for _, sha := range shas {
		var wg sync.WaitGroup
		for j := 0; j < waiters; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.Get(context.Background(), sha); err != nil {
					panic(err)
				}
			}()
		}
		wg.Wait()
	}
	b.StopTimer()
	if got := up.fetches.Load(); got != int64(b.N) {
		b.Fatalf("%d fetches for %d blobs", got, b.N)
	}
	b.ReportMetric(float64(waiters), "waiters/blob")
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
