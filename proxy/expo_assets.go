package proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"strconv"
	"sync"

	brrr "github.com/molecule-man/go-brrr"

	"github.com/updraft-cdn/updraft/cache"
	"github.com/updraft-cdn/updraft/origin/blob"
)

// expoAsset answers GET|HEAD /expo/{app}/a/{sha256}: the bytes of a file
// an Expo update of the app references, named by their SHA-256, with the
// content type of its extension and immutable caching. A file stored as is
// is the manifest file's blob (Range, ETag, every byte verified by the
// cache, as /f/); a brotli-stored one goes as it is stored with
// Content-Encoding: br to a client that accepts br (the stock clients do);
// to one that accepts gzip but not br, as its gzip variant (expo_gzip.go:
// made once, kept in memory, ETag "<sha256>-gzip"); else as identity: the
// stored copy when there is one, or the brotli one decoded on the fly:
// streamed (chunked) with bounded memory, its bytes hashed as they go, and
// the answer cut short (no last chunk) if they do not hash to the URL's
// SHA-256. Decoded and gzip answers ignore Range (RFC 9110 allows it: 200
// with the whole file). A GET answered in full with an update's launch
// asset is a download of that update by the device (expoDownload).
func (e *Edge) expoAsset(r *request, app, sha string, out *reply) {
	outcome, t, a := e.expoAssetAnswer(r, app, sha, out)
	e.expo.assetsVec.WithLabelValues(outcome).Inc()
	if a != nil && len(a.launchOf) > 0 && out.status == 200 && r.method == "GET" {
		e.expoDownload(r, t, a, app)
	}
}

func (e *Edge) expoAssetAnswer(r *request, app, sha string, out *reply) (string, *expoTable, *expoAsset) {
	if r.method != "GET" && r.method != "HEAD" {
		out.jsonError(405, codeMethod, "Use GET or HEAD for assets")
		return codeMethod, nil, nil
	}
	if !blob.ValidHash(sha) {
		out.jsonError(400, codeInvalidBlobID, "Asset id must be 64 lower-case hex characters (a SHA-256)")
		return codeInvalidBlobID, nil, nil
	}
	snap := e.snap.Load()
	if snap == nil || e.cache == nil {
		out.jsonError(503, codeNotReady, "Edge has no snapshot yet")
		return codeNotReady, nil, nil
	}
	t := e.expo.table(snap)
	a := t.assets[expoAssetKey{app, sha}]
	if a == nil {
		out.jsonError(404, codeBlobNotFound, "No asset with this SHA-256 in the app's Expo updates")
		return codeBlobNotFound, nil, nil
	}
	outcome := e.expoAssetBody(r, a, sha, out)
	return outcome, t, a
}

// expoAssetBody answers asset a (of SHA-256 sha) in the encoding the
// client takes.
func (e *Edge) expoAssetBody(r *request, a *expoAsset, sha string, out *reply) string {
	br := blobRequest{head: r.method == "HEAD", rangeHdr: r.header.get("Range"), ifRange: r.header.get("If-Range"),
		ifNoneMatch: r.header.get("If-None-Match")}
	enc := encIdentity
	if a.br != nil {
		// br whenever the client takes it (no work: as stored); else gzip
		// when it takes gzip over identity.
		ae := r.header.get("Accept-Encoding")
		if enc = pickEncoding(ae, true, false); enc != encBrotli && pickEncoding(ae, false, true) == encGzip {
			enc = encGzip
		}
	}
	if enc == encGzip {
		if outcome, ok := e.expoGzipAnswer(r, a, sha, &br, out); ok {
			return outcome
		}
		// Compressions busy, or gzip gains nothing: identity.
	}
	switch {
	case a.br != nil && enc == encBrotli:
		br.id = a.br.Blob
		e.blob(r.ctx, &br, out)
		if out.status == 200 || out.status == 206 || out.status == 304 {
			out.contentEncoding, out.varyEncoding = encBrotli, true
			out.contentType = a.contentType
			return encBrotli
		}
		return "http_" + strconv.Itoa(out.status)
	case a.raw != nil:
		br.id = a.raw.Blob
		e.blob(r.ctx, &br, out)
		if out.status == 200 || out.status == 206 || out.status == 304 {
			out.varyEncoding = a.br != nil
			out.contentType = a.contentType
			return encIdentity
		}
		return "http_" + strconv.Itoa(out.status)
	}
	// Only a brotli copy, and a client that does not take br.
	out.varyEncoding = true
	if br.ifNoneMatch != "" && etagMatch(br.ifNoneMatch, sha) {
		out.status, out.etag, out.immutable = 304, sha, true
		return "not_modified"
	}
	select {
	case e.expo.decodes <- struct{}{}:
	default:
		out.jsonError(503, codeExpoDecodeBusy, "Too many assets are being decoded; retry, or accept Content-Encoding: br")
		out.retryAfter = 1
		return codeExpoDecodeBusy
	}
	release := func() { <-e.expo.decodes }
	b, err := e.cache.Get(r.ctx, a.br.Blob)
	switch {
	case errors.Is(err, cache.ErrNotFound):
		release()
		out.jsonError(404, codeBlobNotFound, "No blob with this SHA-256")
		return codeBlobNotFound
	case err != nil:
		release()
		e.log.Error("expo asset: cache get", "sha256", a.br.Blob, "err", err)
		out.jsonError(502, codeUpstream, "Asset could not be fetched from upstream")
		return codeUpstream
	}
	out.status, out.contentType, out.etag, out.immutable = 200, a.contentType, sha, true
	out.cacheStatus = cacheStatus(b.Tier)
	out.stream = &expoDecoder{src: b, want: sha, release: release, e: e}
	return "decoded"
}

// errAssetMismatch ends a decoded asset whose bytes do not hash to its
// URL's SHA-256: the client gets a truncated answer, never wrong bytes
// it could take for the file.
var errAssetMismatch = errors.New("expo asset: decoded bytes do not match the asset's SHA-256")

// expoDecoder streams a brotli blob decoded, hashing what it serves. The
// decoder is made at the first Read (a HEAD never reads).
type expoDecoder struct {
	src     cache.Blob
	want    string
	release func()
	e       *Edge
	r       *brrr.Reader
	h       hash.Hash
	once    sync.Once
}

func (d *expoDecoder) Read(p []byte) (int, error) {
	if d.r == nil {
		var in io.Reader = d.src.File
		if d.src.Data != nil {
			in = bytes.NewReader(d.src.Data)
		}
		d.r, d.h = brrr.NewReader(in), sha256.New()
	}
	n, err := d.r.Read(p)
	d.h.Write(p[:n])
	d.e.metrics.bytesServed.Add(float64(n))
	if err == io.EOF {
		var sum [sha256.Size]byte
		if hex.EncodeToString(d.h.Sum(sum[:0])) != d.want {
			d.e.log.Error("expo asset: decoded bytes do not match the asset's hash; answer cut short", "sha256", d.want)
			d.e.expo.assetsVec.WithLabelValues("hash_mismatch").Inc()
			return n, errAssetMismatch
		}
	} else if err != nil {
		d.e.log.Error("expo asset: brotli decode failed; answer cut short", "sha256", d.want, "err", err)
		d.e.expo.assetsVec.WithLabelValues("decode_error").Inc()
	}
	return n, err
}

func (d *expoDecoder) Close() error {
	d.once.Do(func() {
		if d.r != nil {
			d.r.Close()
		}
		d.src.Close()
		d.release()
	})
	return nil
}
