package cache

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// mapUpstream serves blobs from memory, slowly, counting fetches.
type mapUpstream struct {
	blobs   map[string][]byte
	fetches atomic.Int64
	delay   time.Duration
	corrupt bool
}

func (u *mapUpstream) Fetch(ctx context.Context, sha string) (io.ReadCloser, error) {
	u.fetches.Add(1)
	time.Sleep(u.delay)
	b, ok := u.blobs[sha]
	if !ok {
		return nil, ErrNotFound
	}
	if u.corrupt {
		b = append([]byte{b[0] ^ 1}, b[1:]...)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func randomBlob(t *testing.T, n int) (string, []byte) {
	b := make([]byte, n)
	rand.Read(b)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), b
}

func read(t *testing.T, b Blob) []byte {
	t.Helper()
	defer b.Close()
	if b.Data != nil {
		return b.Data
	}
	got, err := io.ReadAll(b.File)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestCoalescedFill(t *testing.T) {
	sha, data := randomBlob(t, 1<<20)
	up := &mapUpstream{blobs: map[string][]byte{sha: data}, delay: 100 * time.Millisecond}
	c, err := New(Options{Dir: t.TempDir(), Upstream: up})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := c.Get(context.Background(), sha)
			if err != nil {
				errs <- err
				return
			}
			if got := read(t, b); !bytes.Equal(got, data) {
				errs <- errors.New("wrong bytes")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := up.fetches.Load(); n != 1 {
		t.Fatalf("upstream fetches = %d, want 1", n)
	}
	if s := c.Stats(); s.Fills != 1 || s.Coalesced == 0 {
		t.Fatalf("stats = %+v", s)
	}
	b, err := c.Get(context.Background(), sha)
	if err != nil || b.Tier != TierDisk {
		t.Fatalf("second get: %v %s", err, b.Tier)
	}
	b.Close()
}

func TestCorruptDiskFileIsRefetched(t *testing.T) {
	sha, data := randomBlob(t, 100<<10)
	dir := t.TempDir()
	up := &mapUpstream{blobs: map[string][]byte{sha: data}}
	c, _ := New(Options{Dir: dir, Upstream: up})
	b, err := c.Get(context.Background(), sha)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	// Flip a byte on disk, then start a new cache (as after a restart).
	path := filepath.Join(dir, sha[:2], sha)
	raw, _ := os.ReadFile(path)
	raw[len(raw)/2] ^= 0xff
	os.Chmod(path, 0o644)
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	c2, _ := New(Options{Dir: dir, Upstream: up})
	b, err = c2.Get(context.Background(), sha)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, b); !bytes.Equal(got, data) {
		t.Fatal("served corrupted bytes")
	}
	if s := c2.Stats(); s.VerifyFailures != 1 || s.Fills != 1 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestCorruptUpstreamNeverStored(t *testing.T) {
	sha, data := randomBlob(t, 10<<10)
	dir := t.TempDir()
	up := &mapUpstream{blobs: map[string][]byte{sha: data}, corrupt: true}
	c, _ := New(Options{Dir: dir, Upstream: up})
	if _, err := c.Get(context.Background(), sha); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
	if _, err := os.Stat(filepath.Join(dir, sha[:2], sha)); !os.IsNotExist(err) {
		t.Fatalf("corrupt blob stored: %v", err)
	}
	up.corrupt = false
	b, err := c.Get(context.Background(), sha)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read(t, b), data) {
		t.Fatal("wrong bytes")
	}
}

func TestNegativeCaching(t *testing.T) {
	up := &mapUpstream{blobs: map[string][]byte{}}
	c, _ := New(Options{Dir: t.TempDir(), Upstream: up})
	sha, _ := randomBlob(t, 10)
	for i := 0; i < 5; i++ {
		if _, err := c.Get(context.Background(), sha); !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v", err)
		}
	}
	if n := up.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1 (404 remembered)", n)
	}
}
