package proxy

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/updraft-cdn/updraft/origin/blob"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// The Expo updates of one snapshot (docs/design-notes.md, "Expo updates at
// the edge"): which (bundle, platform) pairs can be offered, their
// manifest ids, the assets they reference, and their manifests and
// directives encoded (and signed) once, like the update answers of
// answers.go. The table is built at the first Expo request under a
// snapshot; an edge without Expo clients never builds one.

// expoUpdateKey names an update: a bundle for one platform.
type expoUpdateKey struct {
	bundle   *snapshot.Bundle
	platform string
}

// expoPrefix is the first 8 bytes of a manifest id: the update (bundle
// and platform) it names (expoManifestID). The zero prefix is no update
// (a device on its embedded update, or on an id the table does not know);
// a real prefix is never zero (its version bits are set).
type expoPrefix [8]byte

// expoIDKey finds an update by the prefix of a manifest id a device
// reports (expo-current-update-id, expo-recent-failed-update-ids), within
// its app.
type expoIDKey struct {
	app    string
	prefix expoPrefix
}

// expoAssetKey names an asset URL: /expo/{app}/a/{hash}.
type expoAssetKey struct {
	app  string
	hash string // SHA-256 of the file's bytes, lower-case hex
}

// expoAsset is where an asset's bytes are: a manifest file stored as is
// (raw) and/or brotli-compressed (br); at least one is set.
type expoAsset struct {
	raw, br     *snapshot.ManifestEntry
	contentType string
	// gzipETag is the ETag of the gzip variant (expo_gzip.go) of an asset
	// stored brotli (a file that compresses): "<sha256>-gzip".
	gzipETag string
	// launchOf lists the updates whose launch asset this is (the Android
	// and iOS bundles differ, so usually one): a full download of it is a
	// device taking that update (expo_events.go, expoDownload).
	launchOf []*expoUpdate
}

// expoAssetRef is an asset as a manifest lists it.
type expoAssetRef struct {
	hash        string // hex, the URL's last segment
	hash64      string // base64url without padding, the manifest's "hash"
	key         string
	contentType string
	ext         string // ".png"; "" for none (and for the launch asset)
}

// expoUpdate is a bundle that an Expo client of platform can take: every
// path its ExpoPlatform references is a file of its built manifest.
type expoUpdate struct {
	app      string
	bundle   *snapshot.Bundle
	platform string
	runtime  string
	prefix   expoPrefix // the first 8 bytes of its manifest ids
	launch   expoAssetRef
	assets   []expoAssetRef
	extra    []byte // a JSON object
}

type expoTable struct {
	snap *snapshot.Snapshot
	// createdAt is every manifest's createdAt and the rollBackToEmbedded
	// commitTime: the snapshot's signed issue time (design notes), issued
	// in Unix ms (it goes into the manifest ids).
	createdAt string
	issued    int64
	updates   map[expoUpdateKey]*expoUpdate
	// byPrefix maps the prefix of a manifest id to its update; nil for a
	// prefix two different updates of the app share (never expected: 60
	// bits of SHA-256), so that an ambiguous id maps to nothing.
	byPrefix map[expoIDKey]*expoUpdate
	assets   map[expoAssetKey]*expoAsset

	// Encoded manifests by (update, current update, base URL), a
	// cowTable like the update answers.
	answers *cowTable[expoAnswerKey, *expoAnswer]

	rollbackOnce sync.Once
	rollback     *expoDirective
}

// expoAnswerKey names an encoded manifest: update u for a device whose
// current update has prefix cur (zero: none of the app's), with asset URLs
// under base. base may alias a request buffer for a lookup; stored keys
// own theirs.
type expoAnswerKey struct {
	u    *expoUpdate
	cur  expoPrefix
	base string
}

// expoAnswer is one manifest's bytes, and its multipart answers once
// built (unsigned and signed).
type expoAnswer struct {
	key      expoAnswerKey
	manifest []byte
	used     atomic.Uint64
	enc      [2]expoEncoded
}

// expoDirective is a directive's body and its multipart answers.
type expoDirective struct {
	body []byte
	enc  [2]expoEncoded
}

// expoEncoded is a part body's signature and the multipart answer holding
// it, built once.
type expoEncoded struct {
	once      sync.Once
	sig       string // expo-signature value; "" unsigned
	multipart []byte
	ctype     string // multipart/mixed; boundary=...
	err       error  // signing failed
}

const (
	expoTimeLayout = "2006-01-02T15:04:05.000Z"
	// Bounds of a table's encoded manifests (distinct base URLs come from
	// Host headers when --public-url is not set): beyond, the least
	// recently used is dropped.
	expoAnswerMaxEntries = 256
	expoAnswerBudget     = 16 << 20
)

// table returns the Expo table of snapshot s, building it at the first
// request under s.
func (x *expoState) table(s *snapshot.Snapshot) *expoTable {
	if t := x.cur.Load(); t != nil && t.snap == s {
		return t
	}
	x.buildMu.Lock()
	defer x.buildMu.Unlock()
	if t := x.cur.Load(); t != nil && t.snap == s {
		return t
	}
	t := buildExpoTable(s, time.Now())
	if cur := x.cur.Load(); cur == nil || cur.snap.Rev <= s.Rev {
		x.cur.Store(t)
	}
	return t
}

func buildExpoTable(s *snapshot.Snapshot, now time.Time) *expoTable {
	t := &expoTable{snap: s, updates: map[expoUpdateKey]*expoUpdate{}, byPrefix: map[expoIDKey]*expoUpdate{},
		assets: map[expoAssetKey]*expoAsset{}}
	at := now.UnixMilli()
	if s.Issued > 0 {
		at = s.Issued
	}
	t.issued = at
	t.createdAt = time.UnixMilli(at).UTC().Format(expoTimeLayout)
	t.answers = newCowTable[expoAnswerKey, *expoAnswer](expoAnswerMaxEntries, expoAnswerBudget)
	for _, a := range s.Apps {
		for _, b := range a.Bundles {
			if b.Expo == nil || len(b.Manifest) == 0 {
				continue
			}
			files := make(map[string]*snapshot.ManifestEntry, len(b.Manifest))
			for i := range b.Manifest {
				f := &b.Manifest[i]
				name := f.Name
				if expoBrotli(f) {
					name = strings.TrimSuffix(name, ".br")
				}
				if _, dup := files[cleanExpoPath(name)]; !dup {
					files[cleanExpoPath(name)] = f
				}
			}
			extra := expoExtra(b.Expo.Extra)
			for _, platform := range []string{snapshot.PlatformIOS, snapshot.PlatformAndroid} {
				p, ok := b.Expo.Platforms[platform]
				if !ok {
					continue
				}
				u := t.addUpdate(a.ID, b, platform, &p, files, extra)
				if u == nil {
					continue
				}
				t.updates[expoUpdateKey{b, platform}] = u
				t.index(u)
			}
		}
	}
	return t
}

// index maps u's prefix to u. The same zip uploaded twice has one prefix:
// it maps to the first bundle. Two different updates (bundle hash or
// platform) with one prefix map to neither, so that no device is taken
// for running the other one.
func (t *expoTable) index(u *expoUpdate) {
	k := expoIDKey{u.app, u.prefix}
	switch old, seen := t.byPrefix[k]; {
	case !seen:
		t.byPrefix[k] = u
	case old != nil && (old.bundle.SHA256 != u.bundle.SHA256 || old.platform != u.platform):
		t.byPrefix[k] = nil
	}
}

// addUpdate checks that every path of p is a file of the bundle and
// returns the update (nil when one is missing or unusable), registering
// its assets' URLs.
func (t *expoTable) addUpdate(app string, b *snapshot.Bundle, platform string, p *snapshot.ExpoPlatform,
	files map[string]*snapshot.ManifestEntry, extra []byte) *expoUpdate {
	if p.RuntimeVersion == "" || len(p.RuntimeVersion) > maxExpoHeader {
		return nil
	}
	u := &expoUpdate{app: app, bundle: b, platform: platform, runtime: p.RuntimeVersion, extra: extra}
	legacy := expoUpdateID(b.SHA256, platform)
	copy(u.prefix[:], legacy[:8])
	type found struct {
		ref expoAssetRef
		f   *snapshot.ManifestEntry
	}
	refs := make([]found, 0, len(p.Assets)+1)
	resolve := func(p, ext string, launch bool) bool {
		f := files[cleanExpoPath(p)]
		if f == nil || !blob.ValidHash(f.Hash) || !blob.ValidHash(f.Blob) {
			return false
		}
		raw, _ := hex.DecodeString(f.Hash)
		ext = strings.TrimPrefix(ext, ".")
		r := expoAssetRef{hash: f.Hash, hash64: base64.RawURLEncoding.EncodeToString(raw), key: path.Base(cleanExpoPath(p))}
		if launch {
			r.key = strings.TrimSuffix(r.key, path.Ext(r.key))
			r.contentType = "application/javascript"
		} else {
			if ext != "" {
				r.key = strings.TrimSuffix(r.key, "."+ext)
				r.ext = "." + ext
			}
			r.contentType = expoContentType(ext)
		}
		if r.key == "" || r.key == "." {
			r.key = f.Hash
		}
		refs = append(refs, found{r, f})
		return true
	}
	if !resolve(p.Launch, "", true) {
		return nil
	}
	for _, a := range p.Assets {
		if !resolve(a.Path, a.Ext, false) {
			return nil
		}
	}
	u.launch = refs[0].ref
	u.assets = make([]expoAssetRef, 0, len(refs)-1)
	for i, r := range refs {
		if i > 0 {
			u.assets = append(u.assets, r.ref)
		}
		k := expoAssetKey{app, r.ref.hash}
		loc := t.assets[k]
		if loc == nil {
			loc = &expoAsset{contentType: r.ref.contentType}
			t.assets[k] = loc
		}
		if expoBrotli(r.f) {
			if loc.br == nil {
				loc.br, loc.gzipETag = r.f, r.ref.hash+"-gzip"
			}
		} else if loc.raw == nil {
			loc.raw = r.f
		}
		if i == 0 {
			loc.launchOf = append(loc.launchOf, u)
		}
	}
	return u
}

// expoBrotli reports whether a manifest file is stored brotli-compressed:
// named ".br" and stored as other bytes than the file's (a file that is
// itself named ".br" and stored as is has Blob == Hash).
func expoBrotli(f *snapshot.ManifestEntry) bool {
	return strings.HasSuffix(f.Name, ".br") && f.Blob != f.Hash
}

// cleanExpoPath is a path of metadata.json or of a manifest file name
// without a leading "./" or "/".
func cleanExpoPath(p string) string {
	for {
		switch {
		case strings.HasPrefix(p, "./"):
			p = p[2:]
		case strings.HasPrefix(p, "/"):
			p = p[1:]
		default:
			return p
		}
	}
}

// expoUpdateID is the UUID (version 8, RFC 9562: custom) from the SHA-256
// of the bundle's hash and the platform that was a manifest's whole id
// before expoManifestID. Its first 8 bytes are the update's prefix, so that
// the ids devices got then still map to their bundle.
func expoUpdateID(bundleSHA, platform string) [16]byte {
	h := sha256.New()
	h.Write([]byte("updraft expo update id\x00"))
	h.Write([]byte(bundleSHA))
	h.Write([]byte{0})
	h.Write([]byte(platform))
	var id [16]byte
	copy(id[:], h.Sum(nil))
	id[6] = id[6]&0x0f | 0x80
	id[8] = id[8]&0x3f | 0x80
	return id
}

// expoManifestID is the id of update u's manifest for a device whose
// current update has prefix cur (zero: embedded, or none of the app's),
// under a snapshot issued at issued (Unix ms): a UUID (version 8, RFC 9562
// variant) whose first 8 bytes are u's prefix (the bundle: how
// expo-current-update-id maps back) and whose last 8 hash (u, cur,
// issued).
//
// Why not one id per bundle: the stock client keeps updates in a database
// by id. When a manifest's id is one it has stored, it reuses the stored
// entry, with the commitTime it was stored with, instead of the manifest's
// createdAt (expo/expo packages/expo-updates/android/.../loader/Loader.kt,
// processUpdate: "we already have this update downloaded and ready to
// go"), and it launches the stored update with the newest commitTime
// (selectionpolicy/LauncherSelectionPolicyFilterAware.kt), keeping one
// older update besides the one it runs (ReaperSelectionPolicyFilterAware.kt).
// Moving a channel back from B to an A the device still has would thus
// hand it its stored A, older than B, and it would go on launching B. With
// the issue time in the id, every snapshot that sends a device to a bundle
// it does not run gives it an id it has never stored, with createdAt the
// snapshot's issue time, newer than anything it stored before; every edge
// gives every device on the same update the same id for the same snapshot,
// so the manifest is encoded and signed once per (update, cur, base URL).
func expoManifestID(u, cur expoPrefix, issued int64) [16]byte {
	var in [len("updraft expo manifest id\x00") + 8 + 8 + 8]byte
	n := copy(in[:], "updraft expo manifest id\x00")
	n += copy(in[n:], u[:])
	n += copy(in[n:], cur[:])
	binary.BigEndian.PutUint64(in[n:], uint64(issued))
	sum := sha256.Sum256(in[:])
	var id [16]byte
	copy(id[:8], u[:])
	copy(id[8:], sum[:8])
	id[6] = id[6]&0x0f | 0x80 // already so in a prefix
	id[8] = id[8]&0x3f | 0x80
	return id
}

// expoPrefixOf is the prefix of a manifest id.
func expoPrefixOf(id [16]byte) expoPrefix {
	var p expoPrefix
	copy(p[:], id[:8])
	return p
}

// current returns the update of app for platform that the manifest id a
// device reports (expo-current-update-id, as text) names, or nil: by its
// first 8 bytes, so that the ids of every snapshot, and those issued
// before expoManifestID, map to their bundle.
func (t *expoTable) current(app, platform, id string) *expoUpdate {
	uuid, ok := snapshot.ParseDeviceID(id)
	if !ok {
		return nil
	}
	if u := t.byPrefix[expoIDKey{app, expoPrefixOf(uuid)}]; u != nil && u.platform == platform {
		return u
	}
	return nil
}

// expoExtra is the manifest's extra: the uploaded object, compacted, or
// {} when it is absent or not a JSON object in UTF-8.
func expoExtra(raw json.RawMessage) []byte {
	var buf bytes.Buffer
	if len(raw) == 0 || !utf8.Valid(raw) || json.Compact(&buf, raw) != nil || buf.Len() == 0 || buf.Bytes()[0] != '{' {
		return []byte("{}")
	}
	return buf.Bytes()
}

// expoContentTypes maps a file extension (metadata.json's "ext") to the
// asset's content type; others are application/octet-stream.
var expoContentTypes = map[string]string{
	"js": "application/javascript", "hbc": "application/javascript", "bundle": "application/javascript",
	"mjs": "application/javascript", "json": "application/json", "map": "application/json",
	"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp",
	"bmp": "image/bmp", "svg": "image/svg+xml", "ico": "image/x-icon", "heic": "image/heic", "heif": "image/heif",
	"avif": "image/avif", "tif": "image/tiff", "tiff": "image/tiff",
	"ttf": "font/ttf", "otf": "font/otf", "woff": "font/woff", "woff2": "font/woff2",
	"mp3": "audio/mpeg", "wav": "audio/wav", "m4a": "audio/mp4", "aac": "audio/aac", "ogg": "audio/ogg",
	"mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm", "m4v": "video/mp4",
	"txt": "text/plain", "html": "text/html", "htm": "text/html", "css": "text/css", "xml": "application/xml",
	"pdf": "application/pdf", "wasm": "application/wasm", "lottie": "application/zip", "zip": "application/zip",
}

func expoContentType(ext string) string {
	if t, ok := expoContentTypes[strings.ToLower(ext)]; ok {
		return t
	}
	return "application/octet-stream"
}

// update returns the Expo update of bundle b for platform, or nil.
func (t *expoTable) update(b *snapshot.Bundle, platform string) *expoUpdate {
	return t.updates[expoUpdateKey{b, platform}]
}

// answer returns the encoded manifest of u for a device on the update of
// prefix cur (zero: none) and base URL base.
func (t *expoTable) answer(u *expoUpdate, cur expoPrefix, base string) *expoAnswer {
	k := expoAnswerKey{u, cur, base}
	if a := t.answers.get(k); a != nil {
		return a
	}
	a := &expoAnswer{key: k, manifest: appendExpoManifest(nil, t, u, cur, base)}
	a.key.base = strings.Clone(base)
	return t.answers.insert(a.key, a)
}

func (a *expoAnswer) lastUse() *atomic.Uint64 { return &a.used }

// size is what an answer may hold: its manifest and two multipart copies.
func (a *expoAnswer) size() int64 { return 3*int64(len(a.manifest)) + 1024 }

// appendExpoManifest encodes u's manifest (expo-updates-1.mdx, "Manifest
// Body") for a device on the update of prefix cur, with asset URLs under
// base (scheme://host, validated).
func appendExpoManifest(dst []byte, t *expoTable, u *expoUpdate, cur expoPrefix, base string) []byte {
	dst = append(dst, `{"id":"`...)
	dst = append(dst, snapshot.FormatDeviceID(expoManifestID(u.prefix, cur, t.issued))...)
	dst = append(dst, `","createdAt":"`...)
	dst = append(dst, t.createdAt...)
	dst = append(dst, `","runtimeVersion":`...)
	dst = appendString(dst, u.runtime)
	dst = append(dst, `,"launchAsset":`...)
	dst = appendExpoAsset(dst, &u.launch, u.app, base)
	dst = append(dst, `,"assets":[`...)
	for i := range u.assets {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendExpoAsset(dst, &u.assets[i], u.app, base)
	}
	dst = append(dst, `],"metadata":{},"extra":`...)
	dst = append(dst, u.extra...)
	return append(dst, '}')
}

func appendExpoAsset(dst []byte, r *expoAssetRef, app, base string) []byte {
	dst = append(dst, `{"hash":"`...)
	dst = append(dst, r.hash64...)
	dst = append(dst, `","key":`...)
	dst = appendString(dst, r.key)
	dst = append(dst, `,"contentType":"`...)
	dst = append(dst, r.contentType...)
	dst = append(dst, '"')
	if r.ext != "" {
		dst = append(dst, `,"fileExtension":`...)
		dst = appendString(dst, r.ext)
	}
	dst = append(dst, `,"url":"`...)
	dst = append(dst, base...)
	dst = append(dst, "/expo/"...)
	dst = append(dst, app...) // a valid app id: nothing to escape
	dst = append(dst, "/a/"...)
	dst = append(dst, r.hash...)
	return append(dst, `"}`...)
}

// rollbackDirective is the table's rollBackToEmbedded directive.
func (t *expoTable) rollbackDirective() *expoDirective {
	t.rollbackOnce.Do(func() {
		t.rollback = &expoDirective{body: []byte(`{"type":"rollBackToEmbedded","parameters":{"commitTime":"` + t.createdAt + `"}}`)}
	})
	return t.rollback
}

// encode returns enc built once: the signature of body (when signed) and
// the multipart answer with body as part name (plus the extensions part
// for a manifest).
func (x *expoState) encode(enc *expoEncoded, name string, body []byte, signed bool) *expoEncoded {
	enc.once.Do(func() {
		if signed {
			if enc.sig, enc.err = x.sign(body); enc.err != nil {
				return
			}
		}
		boundary := x.boundary
		for n := 0; bytes.Contains(body, []byte(boundary)); n++ {
			sum := sha256.Sum256(append(strconv.AppendInt(nil, int64(n), 10), body...))
			boundary = "updraft-" + hex.EncodeToString(sum[:12])
		}
		mp := make([]byte, 0, len(body)+320+len(enc.sig))
		mp = appendExpoPart(mp, boundary, name, enc.sig, body)
		if name == "manifest" {
			mp = appendExpoPart(mp, boundary, "extensions", "", expoExtensions)
		}
		mp = append(append(append(mp, "--"...), boundary...), "--\r\n"...)
		enc.multipart, enc.ctype = mp, "multipart/mixed; boundary="+boundary
	})
	return enc
}

// expoExtensions is the extensions part: no asset request headers.
var expoExtensions = []byte(`{"assetRequestHeaders":{}}`)

// appendExpoPart writes one part of a multipart/mixed body (RFC 2046
// §5.1.1): the delimiter, the part headers, a blank line, the body; the
// CRLF before the next delimiter belongs to it, so the part's bytes are
// exactly body — the bytes the signature covers.
func appendExpoPart(dst []byte, boundary, name, sig string, body []byte) []byte {
	dst = append(dst, "--"...)
	dst = append(dst, boundary...)
	dst = append(dst, "\r\ncontent-disposition: inline; name=\""...)
	dst = append(dst, name...)
	dst = append(dst, "\"\r\ncontent-type: application/json\r\n"...)
	if sig != "" {
		dst = append(dst, "expo-signature: "...)
		dst = append(dst, sig...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	dst = append(dst, body...)
	return append(dst, "\r\n"...)
}

// sign returns the expo-signature dictionary for body: RSASSA-PKCS1-v1_5
// with SHA-256 over its exact bytes, base64 (standard, padded) as the
// clients decode it, with the key id and the algorithm's name.
func (x *expoState) sign(body []byte) (string, error) {
	sum := sha256.Sum256(body)
	sig, err := rsa.SignPKCS1v15(rand.Reader, x.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	x.signatures.Inc()
	return `sig="` + base64.StdEncoding.EncodeToString(sig) + `", keyid="` + x.keyID + `", alg="rsa-v1_5-sha256"`, nil
}
