// Package cache is the edge's blob cache: immutable blobs named by SHA-256,
// kept on local disk and filled from an upstream (the origin or a parent
// edge) on a miss. Concurrent misses for one blob share one upstream fetch,
// and no byte reaches a reader before its blob has been verified against its
// hash: on fill, and on the first read of a disk file after start-up.
//
// cache owns the policy (Get reads top to bottom: disk → coalesced upstream
// fill); it knows nothing of HTTP. Upstream is the one thing it needs from
// outside.
package cache

import (
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

// Upstream fetches a blob by hash. It returns ErrNotFound (or an error
// wrapping it) when the blob does not exist upstream.
type Upstream interface {
	Fetch(ctx context.Context, sha256 string) (io.ReadCloser, error)
}

// Tier names used in Blob.Tier and in Cache-Status.
const (
	TierDisk = "disk"
	TierFill = "fill" // fetched from upstream for this request (or a coalesced one)
)

// Blob is an open, verified blob. The caller must Close it.
type Blob struct {
	File *os.File
	Size int64
	Tier string
}

// Close releases the blob's file.
func (b *Blob) Close() error { return b.File.Close() }

// Stats are the cache's counters since start-up.
type Stats struct {
	DiskHits, Fills, Coalesced, NotFound, VerifyFailures uint64
}

// Tiered is the cache. It is safe for concurrent use.
type Tiered struct {
	disk     *blob.FS
	upstream Upstream
	log      *slog.Logger
	maxBlob  int64

	fills    singleflight.Group
	verified sync.Map // sha256 → struct{}: disk files checked since start-up
	negative sync.Map // sha256 → time.Time: upstream said 404 until then

	diskHits, fillCount, coalesced, notFound, verifyFailures atomic.Uint64
}

// Options configure a Tiered cache.
type Options struct {
	Dir      string   // disk tier folder
	Upstream Upstream // where misses are filled from
	MaxBlob  int64    // largest blob accepted from upstream
	Log      *slog.Logger
}

// New opens a cache in opts.Dir.
func New(opts Options) (*Tiered, error) {
	disk, err := blob.Open(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.MaxBlob <= 0 {
		opts.MaxBlob = 1 << 30
	}
	return &Tiered{disk: disk, upstream: opts.Upstream, log: opts.Log, maxBlob: opts.MaxBlob}, nil
}

// negativeTTL is how long a 404 from upstream is remembered.
const negativeTTL = 2 * time.Second

// Get returns the blob named sha (a valid lower-case hex SHA-256):
// from disk when present and verified, else from one upstream fill shared
// with every concurrent request for it.
func (c *Tiered) Get(ctx context.Context, sha string) (*Blob, error) {
	if b, err := c.fromDisk(sha); b != nil || err != nil {
		if b != nil {
			c.diskHits.Add(1)
		}
		return b, err
	}
	if until, ok := c.negative.Load(sha); ok && time.Now().Before(until.(time.Time)) {
		c.notFound.Add(1)
		return nil, ErrNotFound
	}
	_, err, shared := c.fills.Do(sha, func() (any, error) {
		return nil, c.fill(context.WithoutCancel(ctx), sha)
	})
	if shared {
		c.coalesced.Add(1)
	}
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			c.notFound.Add(1)
		}
		return nil, err
	}
	b, err := c.fromDisk(sha)
	if b == nil && err == nil {
		return nil, fmt.Errorf("cache: %s vanished after fill", sha)
	}
	if b != nil {
		b.Tier = TierFill
	}
	return b, err
}

// fromDisk opens a disk file, verifying it on its first read since start-up.
// A file that fails verification is removed and reported as absent.
func (c *Tiered) fromDisk(sha string) (*Blob, error) {
	f, info, err := c.disk.Open(sha)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if _, ok := c.verified.Load(sha); !ok {
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			f.Close()
			return nil, fmt.Errorf("cache: verify %s: %w", sha, err)
		}
		if hex.EncodeToString(h.Sum(nil)) != sha {
			f.Close()
			c.verifyFailures.Add(1)
			c.log.Error("cache: disk blob failed verification; removed", "sha256", sha)
			os.Remove(c.disk.Path(sha))
			return nil, nil
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		c.verified.Store(strings.Clone(sha), struct{}{})
	}
	return &Blob{File: f, Size: info.Size, Tier: TierDisk}, nil
}

// fill copies the blob from upstream to disk, verifying it on the way; a
// blob that does not hash to its name is never stored.
func (c *Tiered) fill(ctx context.Context, sha string) error {
	if c.upstream == nil {
		return ErrNotFound
	}
	c.fillCount.Add(1)
	start := time.Now()
	rc, err := c.upstream.Fetch(ctx, sha)
	if errors.Is(err, ErrNotFound) {
		c.negative.Store(strings.Clone(sha), time.Now().Add(negativeTTL))
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("cache: fill %s: %w", sha, err)
	}
	defer rc.Close()
	w, err := c.disk.Create(c.maxBlob)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, rc); err != nil {
		w.Abort()
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
	c.verified.Store(strings.Clone(sha), struct{}{})
	c.log.Info("cache: filled", "sha256", sha, "bytes", info.Size, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Stats returns the counters.
func (c *Tiered) Stats() Stats {
	return Stats{DiskHits: c.diskHits.Load(), Fills: c.fillCount.Load(), Coalesced: c.coalesced.Load(),
		NotFound: c.notFound.Load(), VerifyFailures: c.verifyFailures.Load()}
}
