package proxy

import (
	"bytes"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	kgzip "github.com/klauspost/compress/gzip"
	brrr "github.com/molecule-man/go-brrr"
	"github.com/zeebo/xxh3"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// Update answers built once (issue 17).
//
// An update answer ("new version") is a function of the snapshot and of
// what answerKey holds: the bundle the decision chose, the delta offered
// (which depends on the bundle the device runs), whether the plugin takes a
// manifest, whether the answer carries link/comment, and the base URL of
// the download URLs. Nothing else of the request reaches it, so the bytes
// (with a manifest, 6 KB for swagger-ui and 326 KB for the Ionic fixture's
// 1,455 files) are encoded once per snapshot and key and then handed to the
// transport without a copy; refusals are small and stay per request.
//
// Large answers also get pre-compressed variants, chosen by Accept-Encoding:
// gzip (the plugin's Android stack, OkHttp, asks for it) when the answer is
// served a second time, then brotli (iOS: Alamofire sends "br;q=1.0,
// gzip;q=0.9") at a quality that takes longer. Compression runs on the
// request that finds the variant missing, one at a time per edge, and at
// most 1/compressDuty of a core over time, so no Host header an attacker
// makes up can turn answers into a compression load.
//
// The cache of one snapshot is dropped with it: the next snapshot starts
// a new table, which re-uses the compressed variants of answers whose bytes
// did not change (most publications do not touch a bundle).
const (
	// answerBudget bounds the bytes (plain and compressed) one table holds;
	// answerMaxEntries its entries. Beyond, the least recently used answer
	// is dropped. Distinct base URLs (Host headers without --public-url)
	// are bounded by the same two limits. With the previous table's
	// variants kept for reuse until the next swap, the cache holds at most
	// twice the budget. An Ionic-sized answer (326 KB, gzip and brotli)
	// takes 450 KB: the budget holds 37 of them.
	answerBudget     = 16 << 20
	answerMaxEntries = 256
	// compressMin: smaller answers are never compressed. Measured
	// (docs/design-notes.md, "Update answers built once"): an answer
	// without a manifest is about 210 bytes and one with four files about
	// 1.1 KB; with the response headers either fits one TCP segment
	// compressed or not, so gzip would save a device nothing but cost it a
	// decoder.
	compressMin = 1024
	// compressDuty: compression may use at most 1/compressDuty of one
	// core, averaged: after a compression that took d, the next one waits
	// (compressDuty-1)·d.
	compressDuty = 10
	// gzipLevel and brQuality: measured on the fixtures' answers. gzip
	// levels 1 to 9 are within 4% of each other on hex-heavy manifests
	// (level 2: 64,248 of 326,424 bytes in 1 ms); brotli only beats gzip
	// clearly from quality 10 (58,407 bytes, 46 ms; quality 11: 57,845
	// bytes in 240 ms; quality 4: 63,978).
	gzipLevel = 2
	brQuality = 10
)

// answerKey names an answer within one snapshot. base may alias a request
// buffer when used for a lookup; stored keys own theirs.
type answerKey struct {
	bundle   *snapshot.Bundle
	delta    *snapshot.Delta // offered to an Updraft-aware client; nil: none
	manifest bool            // the plugin takes a manifest, the bundle has one, and it is not slower than the zip for the device (manifestchoice.go)
	metadata bool            // link/comment are answered and one is set
	base     string          // scheme://host of the download URLs
}

// encodedAnswer is one answer's bytes: plain, and the compressed variants
// once built. plain and the variants are never modified.
type encodedAnswer struct {
	key   answerKey
	plain []byte
	hash  uint64 // xxh3 of plain (large answers), to reuse variants across snapshots
	large bool   // len(plain) >= compressMin: negotiated, with Vary
	used  atomic.Uint64
	// variants is nil until the first compression; final once brotli has
	// been tried too.
	variants atomic.Pointer[answerVariants]
	// files: answer-file copies of the plain, gzip and br bytes for the
	// device front's sendfile, made at the first such request (answerfile_linux.go).
	files [3]atomic.Pointer[answerFile]
}

// sendfileMin: answers from this size are sent by sendfile where the
// transport can (on the device front, plain TCP). Below it one write of
// the header and body together is cheaper (bench/gofloor: writev does
// 1.22–1.29× nginx on the 6 KB swagger answer, sendfile 1.05–1.12×).
const sendfileMin = 32 << 10

// file returns the answer file holding data, the variant i of a; nil when
// it cannot be made. A variant replaced since (a final compression) gets
// a new file; of requests racing to make one, one file is kept (the
// others' closed at once).
func (a *encodedAnswer) file(i int, data []byte, dir string) *answerFile {
	for {
		f := a.files[i].Load()
		if f != nil && len(f.src) == len(data) && unsafe.SliceData(f.src) == unsafe.SliceData(data) {
			return f
		}
		nf := newAnswerFile(dir, data)
		if nf == nil {
			return nil
		}
		if a.files[i].CompareAndSwap(f, nf) {
			return nf
		}
		nf.close() // another request made it first
	}
}

// answerVariants holds the compressed encodings worth sending (nil: not
// small enough to pay, or not built).
type answerVariants struct {
	gzip, br []byte
	final    bool
}

var noVariants = &answerVariants{final: true}

func (a *encodedAnswer) size() int64 {
	n := int64(len(a.plain))
	if v := a.variants.Load(); v != nil {
		n += int64(len(v.gzip) + len(v.br))
	}
	return n // (answer files are bounded apart: maxAnswerFiles)
}

// answerTable holds the answers of one snapshot (a cowTable: lookups
// without a lock, insertions copy).
type answerTable struct {
	snap    *snapshot.Snapshot
	answers *cowTable[answerKey, *encodedAnswer]
	// inherit: the previous table's compressed answers by hash of their
	// bytes, read-only. It holds bytes, not the old snapshot's bundles.
	inherit map[uint64]inherited
	// choices: manifest or zip per bundle pair, decided once under this
	// snapshot (manifestchoice.go); copied on insertion under choicesMu.
	choices   atomic.Pointer[choiceMap]
	choicesMu sync.Mutex
}

func (a *encodedAnswer) lastUse() *atomic.Uint64 { return &a.used }

type inherited struct {
	plain    []byte
	variants *answerVariants
}

// answerCache is the edge's cache of encoded update answers.
type answerCache struct {
	table atomic.Pointer[answerTable]
	// busy: a compression is running; next: Unix ns before which none
	// starts (the duty cycle).
	busy atomic.Bool
	next atomic.Int64

	metrics *edgeMetrics
	// fileDir holds the answer files sent by sendfile (unnamed files:
	// answerfile_linux.go); empty: memory files.
	fileDir string
}

// swap starts the table of snapshot s, carrying over the compressed
// variants of the current table.
func (c *answerCache) swap(s *snapshot.Snapshot) {
	t := &answerTable{snap: s, answers: newCowTable[answerKey, *encodedAnswer](answerMaxEntries, answerBudget)}
	if old := c.table.Load(); old != nil {
		for _, a := range old.answers.all() {
			if v := a.variants.Load(); a.large && v != nil && (v.gzip != nil || v.br != nil) {
				if t.inherit == nil {
					t.inherit = make(map[uint64]inherited)
				}
				t.inherit[a.hash] = inherited{a.plain, v}
			}
		}
	}
	c.table.Store(t)
}

// stats reports the current table's entries and bytes.
func (c *answerCache) stats() (entries int, bytes int64) {
	t := c.table.Load()
	if t == nil {
		return 0, 0
	}
	return t.answers.stats()
}

// answer writes the answer for k under snap into out, encoded as
// acceptEncoding prefers, from the cache. It reports false when the cache
// cannot serve it (snap is no longer the cache's snapshot, or the answer
// is too large to keep); the caller then encodes it itself.
func (c *answerCache) answer(snap *snapshot.Snapshot, k *answerKey, acceptEncoding string, out *reply) bool {
	t := c.table.Load()
	if t == nil || t.snap != snap {
		return false
	}
	a := t.answers.get(*k)
	if a == nil {
		if a = c.add(t, k); a == nil {
			return false
		}
	} else {
		if v := a.variants.Load(); v == nil || !v.final {
			c.compress(t, a, v)
		}
	}
	c.write(a, acceptEncoding, out)
	return true
}

// write sets out to the variant of a that acceptEncoding prefers.
func (c *answerCache) write(a *encodedAnswer, acceptEncoding string, out *reply) {
	out.status, out.contentType = 200, contentTypeJSON
	if !a.large {
		out.data = a.plain
		c.metrics.answer(encIdentity, len(a.plain))
		return
	}
	out.varyEncoding = true
	v := a.variants.Load()
	if v == nil {
		v = noVariants
	}
	i := 0
	switch pickEncoding(acceptEncoding, v.br != nil, v.gzip != nil) {
	case encBrotli:
		out.data, out.contentEncoding, i = v.br, "br", 2
		c.metrics.answer(encBrotli, len(v.br))
	case encGzip:
		out.data, out.contentEncoding, i = v.gzip, "gzip", 1
		c.metrics.answer(encGzip, len(v.gzip))
	default:
		out.data = a.plain
		c.metrics.answer(encIdentity, len(a.plain))
	}
	if out.sendfile && len(out.data) >= sendfileMin {
		out.dataFile = a.file(i, out.data, c.fileDir)
	}
}

// add encodes the answer for k and stores it in t, evicting the least
// recently used answers beyond the budget. It returns nil for an answer
// too large to keep.
func (c *answerCache) add(t *answerTable, k *answerKey) *encodedAnswer {
	plain := appendAnswer(nil, k)
	if len(plain) > answerBudget/4 {
		return nil
	}
	a := &encodedAnswer{key: *k, plain: plain, large: len(plain) >= compressMin}
	a.key.base = strings.Clone(k.base)
	if !a.large {
		a.variants.Store(noVariants)
	} else {
		a.hash = xxh3.Hash(plain)
		if old, ok := t.inherit[a.hash]; ok && bytes.Equal(old.plain, plain) {
			a.plain = old.plain
			a.variants.Store(old.variants)
		}
	}
	return t.answers.insert(a.key, a)
}

// compress builds a's next variants (gzip first, then brotli, then none)
// if no other compression is running and the duty cycle allows one now;
// otherwise a is served as it is and tried again at a later request.
func (c *answerCache) compress(t *answerTable, a *encodedAnswer, v *answerVariants) {
	if now := time.Now().UnixNano(); now < c.next.Load() || !c.busy.CompareAndSwap(false, true) {
		return
	}
	start := time.Now()
	if a.variants.Load() != v { // done by another request meanwhile
		c.busy.Store(false)
		return
	}
	var nv *answerVariants
	if v == nil {
		nv = &answerVariants{gzip: gzipAnswer(a.plain)}
		c.metrics.answerCompressions.WithLabelValues(encGzip).Inc()
	} else {
		nv = &answerVariants{gzip: v.gzip, br: brotliAnswer(a.plain, v.gzip), final: true}
		c.metrics.answerCompressions.WithLabelValues(encBrotli).Inc()
	}
	d := time.Since(start)
	c.next.Store(time.Now().Add(d * (compressDuty - 1)).UnixNano())
	c.busy.Store(false)
	t.answers.resize(a.key, a, func() { a.variants.Store(nv) })
}

// pays reports whether a compressed form of n bytes is worth sending
// instead of plain: at least 1/8 smaller.
func pays(compressed, plain int) bool { return compressed <= plain-plain/8 }

func gzipAnswer(plain []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(plain) / 3)
	w, _ := kgzip.NewWriterLevel(&buf, gzipLevel)
	w.Write(plain)
	if w.Close() != nil || !pays(buf.Len(), len(plain)) {
		return nil
	}
	return bytes.Clone(buf.Bytes())
}

// brotliAnswer compresses plain, keeping the result only when it is
// smaller than the gzip variant (or pays, without one).
func brotliAnswer(plain, gz []byte) []byte {
	b, err := brrr.Compress(plain, brQuality)
	if err != nil || !pays(len(b), len(plain)) || gz != nil && len(b) >= len(gz) {
		return nil
	}
	return b
}

// appendAnswer encodes the update answer k names.
func appendAnswer(dst []byte, k *answerKey) []byte {
	dst = appendUpdate(dst, k.bundle, k.base, k.manifest, k.metadata)
	if k.delta != nil {
		dst = appendDeltaOffer(dst[:len(dst)-1], k.delta, k.bundle, k.base)
	}
	return dst
}

// Content codings the edge answers update checks with.
const (
	encIdentity = "identity"
	encGzip     = "gzip"
	encBrotli   = "br"
)

// pickEncoding chooses the content coding of an answer from the request's
// Accept-Encoding (RFC 9110, 12.5.3) among those available: the highest
// q-value wins, brotli before gzip before identity on a tie. A coding not
// listed takes the q of "*", or is not acceptable; identity, when not
// listed and without "*", is acceptable with the lowest preference. An
// absent or empty header gets identity, and so does a request that
// accepts nothing available (identity;q=0 before the variants exist): the
// plain answer is better than a 406 for the plugin.
func pickEncoding(ae string, haveBr, haveGzip bool) string {
	if ae == "" || !haveBr && !haveGzip {
		return encIdentity
	}
	qBr, qGzip, qIdentity, qAny := -1, -1, -1, -1
	for len(ae) > 0 {
		var elem string
		if i := strings.IndexByte(ae, ','); i >= 0 {
			elem, ae = ae[:i], ae[i+1:]
		} else {
			elem, ae = ae, ""
		}
		name, params, _ := strings.Cut(elem, ";")
		name = trimOWS(name)
		if name == "" {
			continue
		}
		q, ok := qValue(params)
		if !ok {
			continue // a malformed weight: the element is ignored
		}
		switch {
		case strings.EqualFold(name, "br"):
			qBr = max(qBr, q)
		case strings.EqualFold(name, "gzip"), strings.EqualFold(name, "x-gzip"):
			qGzip = max(qGzip, q)
		case strings.EqualFold(name, "identity"):
			qIdentity = max(qIdentity, q)
		case name == "*":
			qAny = max(qAny, q)
		}
	}
	if qBr < 0 {
		qBr = max(qAny, 0)
	}
	if qGzip < 0 {
		qGzip = max(qAny, 0)
	}
	if qIdentity < 0 {
		qIdentity = 1 // acceptable, least preferred
		if qAny >= 0 {
			qIdentity = qAny
		}
	}
	best, bestQ := encIdentity, qIdentity
	if haveGzip && qGzip > 0 && qGzip >= bestQ {
		best, bestQ = encGzip, qGzip
	}
	if haveBr && qBr > 0 && qBr >= bestQ {
		best = encBrotli
	}
	return best
}

// qValue reads the weight among an Accept-Encoding element's parameters
// (";q=0.8"), as thousandths: 1000 when absent. ok is false for a weight
// that is not a qvalue (0, 0.xxx, 1, 1.000).
func qValue(params string) (q int, ok bool) {
	q = 1000
	for len(params) > 0 {
		var p string
		if i := strings.IndexByte(params, ';'); i >= 0 {
			p, params = params[:i], params[i+1:]
		} else {
			p, params = params, ""
		}
		k, v, found := strings.Cut(p, "=")
		if k = trimOWS(k); !found || !(k == "q" || k == "Q") {
			continue
		}
		v = trimOWS(v)
		if v == "" || len(v) > 5 || v[0] != '0' && v[0] != '1' || len(v) > 1 && v[1] != '.' {
			return 0, false
		}
		q = int(v[0]-'0') * 1000
		scale := 100
		for i := 2; i < len(v); i++ {
			c := v[i]
			if c < '0' || c > '9' || q == 1000 && c != '0' {
				return 0, false
			}
			q += int(c-'0') * scale
			scale /= 10
		}
	}
	return q, true
}

// trimOWS removes the spaces and tabs HTTP allows around list elements.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
