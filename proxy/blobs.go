package proxy

import (
	"context"
	"errors"
	"io"
	"strconv"

	"github.com/updraft-cdn/updraft/cache"
	"github.com/updraft-cdn/updraft/origin/blob"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// blobRequest is a parsed GET or HEAD of /b/{sha256}.
type blobRequest struct {
	head           bool
	id             string // path segment after /b/
	rangeHdr       string
	ifRange        string
	ifNoneMatch    string
	acceptEncoding string
	availableDict  string // Available-Dictionary (RFC 9842)
	child          bool   // an authenticated child edge (/v1/blobs)
}

// blob answers GET|HEAD /b/{sha256} from the cache.
func (e *Edge) blob(ctx context.Context, r *blobRequest, out *reply) {
	if !blob.ValidHash(r.id) {
		out.jsonError(400, codeInvalidBlobID, "Blob id must be 64 lower-case hex characters (a SHA-256)")
		e.metrics.blob(codeInvalidBlobID)
		return
	}
	etag := r.id // quoted by the transport adapter
	// A named tag can only be our hash, so it matches without a lookup; "*"
	// matches only a blob that exists (RFC 9110 §13.1.2), checked below.
	if r.ifNoneMatch != "" && r.ifNoneMatch != "*" && etagMatch(r.ifNoneMatch, r.id) {
		out.status = 304
		out.etag = etag
		out.immutable = true
		e.metrics.blob("not_modified")
		return
	}
	if snap := e.snap.Load(); snap != nil {
		if !r.child && !snap.Deliverable(r.id) {
			// Devices get only what the snapshot lists (bundles, canonical
			// archives, deltas, manifest files): never override shards, which
			// edges replicate over the authenticated /v1/blobs, and no upstream
			// fetch for names nobody published.
			out.jsonError(404, codeBlobNotFound, "No blob with this SHA-256")
			e.metrics.blob(codeBlobNotFound)
			return
		}
		if target := snap.ByCanonical(r.id); target != nil {
			out.useAsDictionary, out.vary = true, true
			if r.availableDict != "" && e.deltaAnswer(ctx, target, r, out) {
				return
			}
		}
	}
	b, err := e.cache.Get(ctx, r.id)
	switch {
	case errors.Is(err, cache.ErrNotFound):
		out.jsonError(404, codeBlobNotFound, "No blob with this SHA-256")
		e.metrics.blob(codeBlobNotFound)
		return
	case err != nil:
		e.log.Error("blob: cache get", "sha256", r.id, "err", err)
		out.jsonError(502, codeUpstream, "Blob could not be fetched from upstream")
		e.metrics.blob(codeUpstream)
		return
	}
	if r.ifNoneMatch == "*" {
		b.Close()
		out.status = 304
		out.etag = etag
		out.immutable = true
		e.metrics.blob("not_modified")
		return
	}
	out.etag = etag
	out.immutable = true
	out.acceptRanges = true
	out.cacheStatus = cacheStatus(b.Tier)
	out.contentType = "application/octet-stream"
	start, length, status := int64(0), b.Size, 200
	if r.rangeHdr != "" && (r.ifRange == "" || isStrongTag(r.ifRange, r.id)) {
		s, n, res := parseRange(r.rangeHdr, b.Size)
		switch res {
		case rangeOK:
			start, length, status = s, n, 206
			out.contentRange = "bytes " + strconv.FormatInt(s, 10) + "-" + strconv.FormatInt(s+n-1, 10) + "/" + strconv.FormatInt(b.Size, 10)
		case rangeInvalid, rangeUnsatisfiable:
			b.Close()
			code, msg := codeRangeNotSatisf, "Range is outside the blob"
			if res == rangeInvalid {
				code, msg = codeInvalidRange, "Range must be one bytes=first-last, bytes=first- or bytes=-suffix"
			}
			out.jsonError(416, code, msg)
			out.contentRange = "bytes */" + strconv.FormatInt(b.Size, 10)
			e.metrics.blob(code)
			return
		case rangeIgnored:
		}
	}
	out.status = status
	out.length = length
	if r.head {
		b.Close()
		out.headLength = length
		e.metrics.blob("head")
		return
	}
	if b.Data != nil {
		out.data = b.Data[start : start+length] // shared, immutable: no copy
	} else {
		if start > 0 {
			if _, err := b.File.Seek(start, io.SeekStart); err != nil {
				b.Close()
				out.jsonError(500, codeInternal, "Blob could not be read")
				return
			}
		}
		out.file = b.File
	}
	if status == 206 {
		e.metrics.blob("206")
	} else {
		e.metrics.blob("200")
	}
	e.metrics.bytesServed.Add(float64(length))
}

// cacheStatus is the RFC 9211 Cache-Status value for a tier.
func cacheStatus(tier string) string {
	switch tier {
	case cache.TierFill:
		return "updraft; fwd=miss; stored"
	case cache.TierMemory:
		return "updraft; hit; detail=memory"
	}
	return "updraft; hit; detail=disk"
}

// isStrongTag reports whether tag is exactly the strong entity tag "sha".
func isStrongTag(tag, sha string) bool {
	return len(tag) == len(sha)+2 && tag[0] == '"' && tag[len(tag)-1] == '"' && tag[1:len(tag)-1] == sha
}

// etagMatch reports whether an If-None-Match list names our strong ETag.
func etagMatch(header, sha string) bool {
	if header == "*" {
		return true
	}
	for i := 0; i+len(sha)+2 <= len(header); i++ {
		if header[i] == '"' && header[i+1:i+1+len(sha)] == sha && header[i+1+len(sha)] == '"' {
			return true
		}
	}
	return false
}

type rangeResult int

const (
	rangeOK            rangeResult = iota
	rangeIgnored                   // not a bytes range, or several ranges: answered with the whole blob (200)
	rangeInvalid                   // a bytes range we cannot read
	rangeUnsatisfiable             // outside the blob
)

// parseRange reads a single "bytes=" range against a blob of size bytes,
// following RFC 9110 §14.2:
//   - a Range in another unit is ignored (the whole blob is sent with 200):
//     "An origin server MUST ignore a Range header field that contains a range
//     unit it does not understand". The unit is what precedes the first "=",
//     compared case-insensitively (§14.1: "All range unit names are
//     case-insensitive"); a header without "=" names no unit and is ignored too.
//   - several ranges are ignored: "A server MAY ignore the Range header
//     field"; multipart answers are rarely wanted by download clients and cost
//     a copy.
//   - a bytes range-set we cannot read (bytes=abc, bytes=5-2, bytes=-) is
//     rejected with 416 invalid_range: "A server that supports range requests
//     MAY ignore or reject a Range header field that contains an invalid
//     ranges-specifier", and rejecting tells a broken client why.
//   - a readable range outside the blob is 416 range_not_satisfiable (§15.5.17).
func parseRange(h string, size int64) (start, length int64, res rangeResult) {
	if !isBytesUnit(h) {
		return 0, 0, rangeIgnored
	}
	spec := h[len("bytes="):]
	for i := 0; i < len(spec); i++ {
		if spec[i] == ',' {
			return 0, 0, rangeIgnored
		}
	}
	dash := -1
	for i := 0; i < len(spec); i++ {
		if spec[i] == '-' {
			dash = i
			break
		}
	}
	if dash < 0 {
		return 0, 0, rangeInvalid
	}
	first, last := spec[:dash], spec[dash+1:]
	if first == "" { // suffix: last N bytes
		n, ok := parseDigits(last)
		if !ok {
			return 0, 0, rangeInvalid
		}
		if n == 0 || size == 0 {
			return 0, 0, rangeUnsatisfiable
		}
		n = min(n, size)
		return size - n, n, rangeOK
	}
	s, ok := parseDigits(first)
	if !ok {
		return 0, 0, rangeInvalid
	}
	end := size - 1
	if last != "" {
		l, ok := parseDigits(last)
		if !ok || l < s {
			return 0, 0, rangeInvalid
		}
		end = min(l, size-1)
	}
	if s >= size {
		return 0, 0, rangeUnsatisfiable
	}
	return s, end - s + 1, rangeOK
}

// isBytesUnit reports whether the Range header h starts with the range unit
// "bytes" in any case followed by "=".
func isBytesUnit(h string) bool {
	const unit = "bytes"
	if len(h) <= len(unit) || h[len(unit)] != '=' {
		return false
	}
	for i := 0; i < len(unit); i++ {
		if h[i]|0x20 != unit[i] { // ASCII lower-case; no other byte maps onto a-z
			return false
		}
	}
	return true
}

func parseDigits(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// deltaAnswer serves a delta to target's canonical archive from the
// dictionary the client has, if one was built and the client accepts its
// encoding (both accepted: the one the edge's device profile, --delta-link
// and --delta-decode-factor, finishes first). It reports false to fall
// back to the full archive.
func (e *Edge) deltaAnswer(ctx context.Context, target *snapshot.Bundle, r *blobRequest, out *reply) bool {
	base, ok := parseAvailableDictionary(r.availableDict)
	if !ok {
		return false
	}
	dcz, dcb := acceptsDictionaryEncodings(r.acceptEncoding)
	if !dcz && !dcb {
		return false
	}
	d := target.DeltaFrom(base, dcz, dcb, e.deltaCost) // among what the client accepts, by the edge's device profile
	if d == nil {
		return false
	}
	b, err := e.cache.Get(ctx, d.SHA256)
	if err != nil {
		e.log.Warn("blob: delta unavailable; sending the full archive", "delta", d.SHA256, "err", err)
		return false
	}
	out.status = 200
	out.etag = d.SHA256
	out.immutable = true
	out.contentEncoding = d.Encoding
	out.cacheStatus = cacheStatus(b.Tier)
	out.contentType = "application/x-tar"
	out.length = b.Size
	if r.head {
		b.Close()
		out.headLength = b.Size
	} else if b.Data != nil {
		out.data = b.Data
	} else {
		out.file = b.File
	}
	e.metrics.blob("delta_" + d.Encoding)
	e.metrics.bytesServed.Add(float64(b.Size))
	return true
}
