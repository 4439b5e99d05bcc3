// Package cache is the edge's blob cache: immutable blobs named by SHA-256,
// kept in a byte-bounded memory tier and a byte-bounded disk tier, and
// filled from an upstream (the origin or a parent edge) on a miss.
// Concurrent misses for one blob share one upstream fetch, and no byte
// reaches a reader before its blob has been verified against its hash: on
// fill, on promotion from disk to memory, and on the first read of a disk
// file since start-up.
//
// cache owns the policy (Get reads top to bottom: memory → disk → coalesced
// upstream fill); it knows nothing of HTTP. Upstream is the one thing it
// needs from outside.
package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/updraft-cdn/updraft/origin/blob"
)

// ErrNotFound means neither the cache nor its upstream has the blob.
var ErrNotFound = errors.New("cache: blob not found")

// ErrCorrupt means the upstream sent bytes that do not hash to the name.
var ErrCorrupt = errors.New("cache: upstream blob failed verification")

// ErrTooLarge means the blob exceeds what the cache may hold.
var ErrTooLarge = errors.New("cache: blob larger than the cache allows")

// Upstream fetches a blob by hash. It returns ErrNotFound (or an error
// wrapping it) when the blob does not exist upstream.
type Upstream interface {
	Fetch(ctx context.Context, sha256 string) (io.ReadCloser, error)
}

// Tier names used in Blob.Tier and in Cache-Status.
const (
	TierMemory = "memory"
	TierDisk   = "disk"
	TierFill   = "fill" // fetched from upstream for this request (or a coalesced one)
)

// Blob is a verified blob: in memory (Data) or an open file (File). Data is
// shared and must not be modified. The caller must Close it.
type Blob struct {
	Data []byte
	File *os.File // positioned at 0
	Size int64
	Tier string
}

// Close releases the blob's file, if it has one.
func (b Blob) Close() error {
	if b.File != nil {
		return b.File.Close()
	}
	return nil
}

// Stats are the cache's counters since start-up and its current sizes.
type Stats struct {
	MemoryHits, DiskHits, Misses, Fills, Coalesced, NotFound, VerifyFailures uint64
	MemoryEvictions, DiskEvictions, Prefetches, BytesFilled                  uint64
	MemoryBytes, MemoryBudget, DiskBytes, DiskBudget                         int64
	MemoryItems, DiskItems                                                   int
}

// Options configure a Tiered cache.
type Options struct {
	Dir      string   // disk tier folder
	Upstream Upstream // where misses are filled from
	MaxBlob  int64    // largest blob accepted from upstream (default 1 GiB)
	Log      *slog.Logger

	MemoryBudget int64 // bytes of blob data kept in memory; 0: no memory tier
	// MemoryMaxFraction: a blob larger than this share of MemoryBudget is
	// served from disk only (default 1/8), so one big blob cannot flush
	// the memory tier.
	MemoryMaxFraction float64
	DiskBudget        int64 // bytes of blob files kept on disk (default 20 GiB)
}

// Tiered is the cache. It is safe for concurrent use.
type Tiered struct {
	mem      *memTier
	disk     *diskTier
	upstream Upstream
	log      *slog.Logger
	maxBlob  int64

	fills    singleflight.Group
	promos   singleflight.Group
	verified sync.Map // sha256 → struct{}: disk files checked since start-up
	negative sync.Map // sha256 → time.Time: upstream said 404 until then

	memHits, diskHits, misses, fillCount, coalesced, notFound, verifyFailures, prefetches, bytesFilled atomic.Uint64
}

// New opens a cache in opts.Dir, indexing the blob files already there.
func New(opts Options) (*Tiered, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.MaxBlob <= 0 {
		opts.MaxBlob = 1 << 30
	}
	if opts.DiskBudget <= 0 {
		opts.DiskBudget = 20 << 30
	}
	if opts.MemoryMaxFraction <= 0 || opts.MemoryMaxFraction > 1 {
		opts.MemoryMaxFraction = 0.125
	}
	start := time.Now()
	disk, err := openDisk(opts.Dir, opts.DiskBudget)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c := &Tiered{
		mem:      newMemTier(opts.MemoryBudget, int64(float64(opts.MemoryBudget)*opts.MemoryMaxFraction)),
		disk:     disk,
		upstream: opts.Upstream,
		log:      opts.Log,
		maxBlob:  opts.MaxBlob,
	}
	if n := disk.lru.Len(); n > 0 {
		c.log.Info("cache: indexed disk tier", "blobs", n, "bytes", disk.bytes, "took", time.Since(start).Round(time.Millisecond))
	}
	return c, nil
}

// negativeTTL is how long a 404 from upstream is remembered.
const negativeTTL = 2 * time.Second

// Get returns the blob named sha (a valid lower-case hex SHA-256): from
// memory, else from disk (promoted to memory when it fits), else from one
// upstream fill shared with every concurrent request for it. sha may alias
// the caller's buffer; Get copies what it keeps.
func (c *Tiered) Get(ctx context.Context, sha string) (Blob, error) {
	if data, ok := c.mem.get(sha); ok {
		c.memHits.Add(1)
		return Blob{Data: data, Size: int64(len(data)), Tier: TierMemory}, nil
	}
	if b, ok, err := c.fromDisk(sha); ok || err != nil {
		if ok {
			c.diskHits.Add(1)
		}
		return b, err
	}
	if until, ok := c.negative.Load(sha); ok && time.Now().Before(until.(time.Time)) {
		c.notFound.Add(1)
		return Blob{}, ErrNotFound
	}
	c.misses.Add(1)
	if err := c.fill(ctx, sha); err != nil {
		return Blob{}, err
	}
	if data, ok := c.mem.get(sha); ok {
		return Blob{Data: data, Size: int64(len(data)), Tier: TierFill}, nil
	}
	b, ok, err := c.fromDisk(sha)
	if err == nil && !ok {
		err = fmt.Errorf("cache: %s vanished after fill", sha)
	}
	b.Tier = TierFill
	return b, err
}

// Memory returns the blob's bytes when the memory tier holds it (shared,
// never modified), counted as a memory hit; it never reads the disk or
// fetches upstream.
func (c *Tiered) Memory(sha string) ([]byte, bool) {
	data, ok := c.mem.get(sha)
	if ok {
		c.memHits.Add(1)
	}
	return data, ok
}

// Has reports whether the blob is in memory or on disk, without touching
// recency.
func (c *Tiered) Has(sha string) bool {
	return c.mem.has(sha) || c.disk.has(sha)
}

// Prefetch fills the blob if no tier has it; used to warm the cache before
// devices ask.
func (c *Tiered) Prefetch(ctx context.Context, sha string) error {
	if c.Has(sha) {
		return nil
	}
	c.prefetches.Add(1)
	return c.fill(ctx, sha)
}

// fill runs one upstream fetch per blob, however many callers ask at once.
func (c *Tiered) fill(ctx context.Context, sha string) error {
	key := strings.Clone(sha)
	_, err, shared := c.fills.Do(key, func() (any, error) {
		return nil, c.fetch(context.WithoutCancel(ctx), key)
	})
	if shared {
		c.coalesced.Add(1)
	}
	if errors.Is(err, ErrNotFound) {
		c.notFound.Add(1)
	}
	return err
}

// fromDisk serves a disk file: promoted to memory (read whole, verified)
// when it fits, else opened and verified on its first read since start-up.
// A file that fails verification is removed and reported absent.
func (c *Tiered) fromDisk(sha string) (Blob, bool, error) {
	size, ok := c.disk.touch(sha)
	if !ok {
		return Blob{}, false, nil
	}
	if c.mem.fits(size) {
		v, err, _ := c.promos.Do(sha, func() (any, error) { return c.promote(sha) })
		if err != nil {
			return Blob{}, false, err
		}
		data := v.([]byte)
		if data == nil {
			return Blob{}, false, nil // failed verification: removed
		}
		return Blob{Data: data, Size: int64(len(data)), Tier: TierDisk}, true, nil
	}
	f, info, err := c.disk.fs.OpenFile(sha)
	if errors.Is(err, blob.ErrNotFound) {
		c.disk.evict(sha) // the file is gone: forget it
		return Blob{}, false, nil
	}
	if err != nil {
		return Blob{}, false, err
	}
	if _, ok := c.verified.Load(sha); !ok {
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			f.Close()
			return Blob{}, false, fmt.Errorf("cache: verify %s: %w", sha, err)
		}
		if hex.EncodeToString(h.Sum(nil)) != sha {
			f.Close()
			c.corrupt(sha)
			return Blob{}, false, nil
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			f.Close()
			return Blob{}, false, err
		}
		c.verified.Store(strings.Clone(sha), struct{}{})
	}
	return Blob{File: f, Size: info.Size, Tier: TierDisk}, true, nil
}

// promote reads a disk blob into memory, verifying it; nil data means it
// failed verification and was removed.
func (c *Tiered) promote(sha string) ([]byte, error) {
	if data, ok := c.mem.get(sha); ok {
		return data, nil
	}
	data, err := os.ReadFile(c.disk.fs.Path(sha))
	if errors.Is(err, os.ErrNotExist) {
		c.disk.evict(sha) // the file is gone: forget it
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cache: promote %s: %w", sha, err)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != sha {
		c.corrupt(sha)
		return nil, nil
	}
	c.mem.add(sha, data)
	return data, nil
}

func (c *Tiered) corrupt(sha string) {
	c.verifyFailures.Add(1)
	c.verified.Delete(sha)
	c.log.Error("cache: disk blob failed verification; removed", "sha256", sha)
	c.disk.evict(sha)
}

// fetch copies the blob from upstream to disk (and memory when it fits),
// verifying it on the way; a blob that does not hash to its name is never
// stored.
func (c *Tiered) fetch(ctx context.Context, sha string) error {
	if c.upstream == nil {
		return ErrNotFound
	}
	c.fillCount.Add(1)
	start := time.Now()
	rc, err := c.upstream.Fetch(ctx, sha)
	if errors.Is(err, ErrNotFound) {
		c.negative.Store(sha, time.Now().Add(negativeTTL))
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("cache: fill %s: %w", sha, err)
	}
	defer rc.Close()
	limit := min(c.maxBlob, c.disk.budget)
	w, err := c.disk.fs.Create(limit)
	if err != nil {
		return err
	}
	// Keep a copy in memory while writing if the blob may fit there.
	var keep *bytes.Buffer
	var dst io.Writer = w
	if c.mem.maxItem > 0 {
		keep = new(bytes.Buffer)
		dst = io.MultiWriter(w, &cappedBuffer{buf: keep, max: c.mem.maxItem})
	}
	if _, err := io.Copy(dst, rc); err != nil {
		w.Abort()
		if errors.Is(err, blob.ErrTooLarge) {
			return fmt.Errorf("%w: %s over %d bytes", ErrTooLarge, sha, limit)
		}
		return fmt.Errorf("cache: fill %s: %w", sha, err)
	}
	info, err := w.Commit(sha)
	if errors.Is(err, blob.ErrMismatch) {
		c.verifyFailures.Add(1)
		c.log.Error("cache: upstream blob failed verification; not stored", "sha256", sha, "err", err)
		return ErrCorrupt
	}
	if err != nil {
		return fmt.Errorf("cache: fill %s: %w", sha, err)
	}
	c.verified.Store(sha, struct{}{})
	c.disk.add(sha, info.Size)
	if keep != nil && int64(keep.Len()) == info.Size {
		c.mem.add(sha, keep.Bytes())
	}
	c.bytesFilled.Add(uint64(info.Size))
	c.log.Info("cache: filled", "sha256", sha, "bytes", info.Size, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// cappedBuffer keeps at most max bytes, then stops keeping (and drops what
// it had) without failing the copy.
type cappedBuffer struct {
	buf  *bytes.Buffer
	max  int64
	over bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if !b.over {
		if int64(b.buf.Len()+len(p)) > b.max {
			b.over = true
			*b.buf = bytes.Buffer{}
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

// Stats returns the counters and sizes.
func (c *Tiered) Stats() Stats {
	s := Stats{
		MemoryHits: c.memHits.Load(), DiskHits: c.diskHits.Load(), Misses: c.misses.Load(), Fills: c.fillCount.Load(),
		Coalesced: c.coalesced.Load(), NotFound: c.notFound.Load(), VerifyFailures: c.verifyFailures.Load(),
		Prefetches: c.prefetches.Load(), BytesFilled: c.bytesFilled.Load(),
	}
	s.MemoryBytes, s.MemoryBudget, s.MemoryItems, s.MemoryEvictions = c.mem.stats()
	s.DiskBytes, s.DiskBudget, s.DiskItems, s.DiskEvictions = c.disk.stats()
	return s
}
