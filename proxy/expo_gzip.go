package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/klauspost/compress/gzip"
	brrr "github.com/molecule-man/go-brrr"

	"github.com/updraft-cdn/updraft/cache"
)

// gzip variants of Expo assets (docs/design-notes.md, "Expo updates at the
// edge"). A client that accepts gzip but not br — expo-updates' older
// Android client (FileDownloader.java: a plain OkHttpClient, whose
// transparent compression asks for gzip alone), generic HTTP clients, a CDN
// in front of the edge that reduces Accept-Encoding to gzip — would
// otherwise get a brotli-stored file decoded to its full size. The edge
// compresses such a file once, from the bytes it serves as identity (the
// stored copy, else the brotli one decoded), hashing them as they go: the
// result is kept only when they hash to the asset's SHA-256. Variants live
// in memory, in an LRU bounded in bytes and keyed by the asset's SHA-256
// (the same bytes in two apps are one variant); at most expoMaxGzips
// compressions run at once, and a request that finds them all busy gets the
// identity answer instead of waiting.

const (
	expoGzipBudget = 64 << 20 // bytes of variants held
	// expoGzipMaxEntry bounds one variant: a larger output stops the
	// compression and the asset is served as identity.
	expoGzipMaxEntry = 16 << 20
	expoMaxGzips     = 4
	// expoGzipLevel: klauspost's default (6). On Hermes bytecode and JS,
	// level 9 is 1–8% smaller for 4–20 times the CPU, level 1 10–25%
	// larger; a variant is made once but the first client waits for it.
	expoGzipLevel = gzip.DefaultCompression
	// expoGzipOverhead is what an entry costs besides its bytes.
	expoGzipOverhead = 256
)

// expoGzipped is an asset's gzip variant; data nil means none is worth
// having (no smaller than the file, or larger than expoGzipMaxEntry), so
// the asset is answered as identity without trying again.
type expoGzipped struct {
	data []byte
}

// expoGzipJob is a compression in progress; its waiters read res once done
// is closed (nil: it failed).
type expoGzipJob struct {
	done chan struct{}
	res  *expoGzipped
}

type expoGzipCache struct {
	mu      sync.Mutex
	lru     *simplelru.LRU[[sha256.Size]byte, *expoGzipped]
	bytes   int64 // under mu
	pending map[[sha256.Size]byte]*expoGzipJob
	slots   chan struct{}
}

func (c *expoGzipCache) init() {
	// The LRU is bounded in bytes by add; the entry count only caps what
	// the byte budget already does (negative entries cost
	// expoGzipOverhead).
	c.lru, _ = simplelru.NewLRU(expoGzipBudget/expoGzipOverhead, func(_ [sha256.Size]byte, g *expoGzipped) {
		c.bytes -= g.cost()
	})
	c.pending = map[[sha256.Size]byte]*expoGzipJob{}
	c.slots = make(chan struct{}, expoMaxGzips)
}

func (g *expoGzipped) cost() int64 { return int64(len(g.data)) + expoGzipOverhead }

// lookup returns the variant of key when it is held.
func (c *expoGzipCache) lookup(key [sha256.Size]byte) (*expoGzipped, bool) {
	c.mu.Lock()
	g, ok := c.lru.Get(key)
	c.mu.Unlock()
	return g, ok
}

// add keeps g, dropping the least recently used beyond the budget. Called
// under mu, for a key not held (one compression per key at a time).
func (c *expoGzipCache) add(key [sha256.Size]byte, g *expoGzipped) {
	if c.lru.Contains(key) {
		return
	}
	c.lru.Add(key, g)
	c.bytes += g.cost()
	for c.bytes > expoGzipBudget && c.lru.Len() > 1 {
		c.lru.RemoveOldest()
	}
}

// variant returns the variant of key, making it with build when no other
// request is: a request that finds one in progress waits for it (or its
// context); ok is false when every compression slot is busy or the
// compression failed, and the caller answers identity.
func (c *expoGzipCache) variant(ctx context.Context, key [sha256.Size]byte,
	build func() (*expoGzipped, error)) (g *expoGzipped, made, ok bool) {
	c.mu.Lock()
	if g, ok := c.lru.Get(key); ok {
		c.mu.Unlock()
		return g, false, true
	}
	if j := c.pending[key]; j != nil {
		c.mu.Unlock()
		select {
		case <-j.done:
			return j.res, false, j.res != nil
		case <-ctx.Done():
			return nil, false, false
		}
	}
	select {
	case c.slots <- struct{}{}:
	default:
		c.mu.Unlock()
		return nil, false, false
	}
	j := &expoGzipJob{done: make(chan struct{})}
	c.pending[key] = j
	c.mu.Unlock()

	res, err := build()
	<-c.slots
	c.mu.Lock()
	delete(c.pending, key)
	if err == nil {
		c.add(key, res)
		j.res = res
	}
	c.mu.Unlock()
	close(j.done)
	return j.res, err == nil, err == nil
}

// errGzipTooLarge stops a compression whose output passes expoGzipMaxEntry.
var errGzipTooLarge = errors.New("expo asset: gzip variant too large")

// cappedBuffer is a bytes.Buffer that refuses to grow past expoGzipMaxEntry.
type cappedBuffer struct{ bytes.Buffer }

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > expoGzipMaxEntry {
		return 0, errGzipTooLarge
	}
	return b.Buffer.Write(p)
}

// expoGzipMake compresses asset a (of SHA-256 sha): from its stored copy
// when it has one, else from its brotli copy decoded. The compressed bytes
// are kept only if what was compressed hashes to sha (errAssetMismatch
// otherwise); an output that is no smaller than the file, or too large, is
// the negative variant.
func (e *Edge) expoGzipMake(ctx context.Context, a *expoAsset, sha string) (*expoGzipped, error) {
	src := a.raw
	if src == nil {
		src = a.br
	}
	// The variant serves every later request: a client that goes away
	// does not cancel it.
	b, err := e.cache.Get(context.WithoutCancel(ctx), src.Blob)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	var in io.Reader = b.File
	if b.Data != nil {
		in = bytes.NewReader(b.Data)
	}
	if a.raw == nil {
		dec := brrr.NewReader(in)
		defer dec.Close()
		in = dec
	}
	var out cappedBuffer
	zw, err := gzip.NewWriterLevel(&out, expoGzipLevel)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	n, err := io.Copy(zw, io.TeeReader(in, h))
	if err == nil {
		err = zw.Close()
	}
	if errors.Is(err, errGzipTooLarge) {
		e.expo.assetsVec.WithLabelValues("gzip_too_large").Inc()
		return &expoGzipped{}, nil
	}
	if err != nil {
		e.log.Error("expo asset: gzip variant not made", "sha256", sha, "err", err)
		return nil, err
	}
	var sum [sha256.Size]byte
	if !hexEqual(sha, h.Sum(sum[:0])) {
		e.log.Error("expo asset: stored bytes do not match the asset's hash; no gzip variant", "sha256", sha, "blob", src.Blob)
		e.expo.assetsVec.WithLabelValues("hash_mismatch").Inc()
		return nil, errAssetMismatch
	}
	if int64(out.Len()) >= n {
		return &expoGzipped{}, nil // stored brotli, but gzip gains nothing
	}
	return &expoGzipped{data: bytes.Clone(out.Bytes())}, nil
}

// hexKey decodes a validated SHA-256 (64 lower-case hex digits).
func hexKey(sha string) (k [sha256.Size]byte) {
	for i := range k {
		k[i] = unhex(sha[2*i])<<4 | unhex(sha[2*i+1])
	}
	return k
}

func unhex(c byte) byte {
	if c >= 'a' {
		return c - 'a' + 10
	}
	return c - '0'
}

// hexEqual reports whether sum is the SHA-256 written sha (lower-case hex).
func hexEqual(sha string, sum []byte) bool {
	return len(sha) == 2*len(sum) && hexKey(sha) == [sha256.Size]byte(sum)
}

// expoGzipAnswer answers asset a (of SHA-256 sha) with its gzip variant,
// made at the first request. ok is false when there is none to send (busy,
// not worth it, failed): the caller answers identity.
func (e *Edge) expoGzipAnswer(r *request, a *expoAsset, sha string, br *blobRequest, out *reply) (string, bool) {
	if br.ifNoneMatch != "" && etagMatch(br.ifNoneMatch, a.gzipETag) {
		out.status, out.etag, out.immutable = 304, a.gzipETag, true
		out.contentEncoding, out.varyEncoding = encGzip, true
		return "not_modified", true
	}
	key := hexKey(sha)
	g, ok := e.expo.gzip.lookup(key)
	made := false
	if !ok {
		g, made, ok = e.expo.gzip.variant(r.ctx, key, func() (*expoGzipped, error) { return e.expoGzipMake(r.ctx, a, sha) })
	}
	if !ok || g.data == nil {
		return "", false
	}
	out.status, out.contentType, out.etag, out.immutable = 200, a.contentType, a.gzipETag, true
	out.contentEncoding, out.varyEncoding = encGzip, true
	out.cacheStatus = cacheStatus(cache.TierMemory)
	if made {
		out.cacheStatus = cacheStatus(cache.TierFill)
	}
	if br.head {
		out.headLength = int64(len(g.data))
		return encGzip, true
	}
	out.data = g.data // held by the LRU or not, never modified
	e.metrics.bytesServed.Add(float64(len(g.data)))
	return encGzip, true
}
