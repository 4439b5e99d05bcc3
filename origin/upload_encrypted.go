package origin

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/updraft-cdn/updraft/bundlecrypt"
	"github.com/updraft-cdn/updraft/origin/blob"
	"github.com/updraft-cdn/updraft/origin/delta"
	"github.com/updraft-cdn/updraft/origin/store"
)

// An end-to-end encrypted bundle arrives as multipart/form-data, in order:
//
//	meta    JSON EncryptedMeta: session key, encrypted checksum, key id and
//	        the manifest (file name, encrypted hash, blob SHA-256, size)
//	bundle  the AES-128-CBC ciphertext of the zip
//	file    one part per distinct manifest blob, the ciphertext the edge serves
//
// The origin cannot read any of it (it never sees a key), so it checks what
// it can: the shapes of the session key, checksum and key id, that the
// ciphertexts are whole AES blocks, that every manifest blob arrived and
// hashes to its name, and the manifest's paths. The CLI checked the
// plaintext zip before encrypting it. The bundle and its manifest are
// recorded in one transaction, only after every blob is stored and fsynced.

const maxMetaBytes = 16 << 20 // a manifest of maxZipEntries files is ~12 MB

// checkEncryptedMeta validates the meta part; it returns the set of blobs
// the manifest names.
func checkEncryptedMeta(m *EncryptedMeta) (map[string]int64, error) {
	bad := func(format string, args ...any) error {
		return errf(http.StatusBadRequest, "invalid_encryption", format, args...)
	}
	if !bundlecrypt.ValidSessionKey(m.SessionKey) {
		return nil, bad("session_key: want base64(16-byte IV):base64(256-byte RSA-2048 block), as `updraft bundle upload --encrypt-key` and Capgo's CLI produce")
	}
	if !bundlecrypt.ValidChecksum(m.Checksum) {
		return nil, bad("checksum: want the %d lower-case hex characters of an RSA-2048 block", bundlecrypt.ChecksumHexLen)
	}
	if !bundlecrypt.ValidKeyID(m.KeyID) {
		return nil, bad("key_id: want 1 to %d base64 characters (the start of the public key)", bundlecrypt.KeyIDLen)
	}
	if len(m.Manifest) > maxZipEntries {
		return nil, bad("manifest: %d files; the limit is %d", len(m.Manifest), maxZipEntries)
	}
	blobs := make(map[string]int64, len(m.Manifest))
	names := make(map[string]bool, len(m.Manifest))
	for _, f := range m.Manifest {
		// "a.js" and "a.js.br" are the same file on the device.
		path := strings.TrimSuffix(f.Name, ".br")
		if !delta.ValidPath(path) || names[path] {
			return nil, bad("manifest: unsafe or duplicate file name %q", f.Name)
		}
		names[path] = true
		if !bundlecrypt.ValidChecksum(f.Hash) {
			return nil, bad("manifest %s: file_hash must be an encrypted SHA-256 (%d hex characters)", f.Name, bundlecrypt.ChecksumHexLen)
		}
		if !blob.ValidHash(f.Blob) || f.Size <= 0 || f.Size%16 != 0 {
			return nil, bad("manifest %s: want the blob's SHA-256 and its size, a positive multiple of 16 (AES blocks)", f.Name)
		}
		if n, ok := blobs[f.Blob]; ok && n != f.Size {
			return nil, bad("manifest %s: blob %s listed with two sizes", f.Name, f.Blob)
		}
		blobs[f.Blob] = f.Size
	}
	return blobs, nil
}

// uploadParts stores a multipart/form-data upload: an encrypted bundle
// when its first part is "meta" (below), an Expo update when it is "expo"
// (upload_expo.go). b carries the validated query fields.
func (s *Server) uploadParts(w http.ResponseWriter, r *http.Request, b store.Bundle, channel string) error {
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		return errf(http.StatusBadRequest, "invalid_upload", "multipart upload without a boundary")
	}
	max := int64(s.cfg.MaxBundleSize)
	// The zip and its files, each at most the bundle limit; the whole
	// request at most twice that plus the manifest (an Expo update: the
	// zip and its metadata, less).
	body := http.MaxBytesReader(w, r.Body, 2*max+maxMetaBytes)
	mr := multipart.NewReader(body, params["boundary"])
	const kinds = "meta (an encrypted bundle: meta, bundle, file...) or expo (an Expo update: expo, bundle)"
	p, err := mr.NextPart()
	if err == io.EOF {
		return errf(http.StatusBadRequest, "invalid_upload", "multipart upload without parts: want %s", kinds)
	}
	if err != nil {
		return uploadErr(err, s.cfg.MaxBundleSize.String())
	}
	switch p.FormName() {
	case "meta":
		return s.uploadEncrypted(w, r, b, channel, mr, p)
	case "expo":
		return s.uploadExpo(w, r, b, channel, mr, p)
	}
	return errf(http.StatusBadRequest, "invalid_upload", "multipart part %q: want %s", p.FormName(), kinds)
}

// errExpoEncrypted refuses an upload that is both encrypted and an Expo
// update.
func errExpoEncrypted() error {
	return errf(http.StatusBadRequest, "invalid_expo_metadata",
		"an Expo update cannot be encrypted end to end: Expo clients check each asset by the SHA-256 of its content, which the edge must read (upload it without --encrypt-key; Expo's code signing protects the manifest)")
}

// uploadEncrypted stores an encrypted bundle (see above) whose meta part,
// read from mr, is p.
func (s *Server) uploadEncrypted(w http.ResponseWriter, r *http.Request, b store.Bundle, channel string, mr *multipart.Reader, p *multipart.Part) error {
	max := int64(s.cfg.MaxBundleSize)
	next := func(want string) (*multipart.Part, error) {
		p, err := mr.NextPart()
		if err == io.EOF {
			return nil, io.EOF
		}
		if err != nil {
			return nil, uploadErr(err, s.cfg.MaxBundleSize.String())
		}
		if p.FormName() == "expo" {
			return nil, errExpoEncrypted()
		}
		if want != "" && p.FormName() != want {
			return nil, errf(http.StatusBadRequest, "invalid_upload", "multipart part %q: want %q (parts in order: meta, bundle, file...)", p.FormName(), want)
		}
		return p, nil
	}
	var meta EncryptedMeta
	dec := json.NewDecoder(io.LimitReader(p, maxMetaBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&meta); err != nil {
		return errf(http.StatusBadRequest, "invalid_json", "meta part: %v", err)
	}
	want, err := checkEncryptedMeta(&meta)
	if err != nil {
		return err
	}
	p, err = next("bundle")
	if err != nil {
		return notEOF(err, "bundle")
	}
	info, err := s.putPart(p, max, "")
	if err != nil {
		return err
	}
	if info.Size == 0 || info.Size%16 != 0 || s.plainZip(info.SHA256) {
		return errf(http.StatusBadRequest, "invalid_encryption", "the bundle part (%d bytes) is not AES-CBC ciphertext: a plain zip, or not a positive multiple of 16 bytes", info.Size)
	}
	b.SHA256, b.Size = info.SHA256, info.Size
	got := map[string]bool{}
	for {
		p, err := next("file")
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		sha := p.FileName()
		size, listed := want[sha]
		if !listed || got[sha] {
			return errf(http.StatusBadRequest, "invalid_upload", "file part %q: not a blob of the manifest, or sent twice", sha)
		}
		fi, err := s.putPart(p, size, sha)
		if err != nil {
			return err
		}
		if fi.Size != size {
			return errf(http.StatusBadRequest, "invalid_upload", "file part %s: %d bytes, the manifest says %d", sha, fi.Size, size)
		}
		got[sha] = true
	}
	// Every blob the bundle will reference is made young again right
	// before the rows are written: garbage collection deletes only blobs
	// older than its grace period, re-checked under the lock commits and
	// touches take, so neither a blob this upload did not resend (already
	// stored) nor the zip part committed at the start of a long upload can
	// be collected before its reference exists.
	for _, sha := range append([]string{b.SHA256}, keys(want)...) {
		if err := s.blobs.Touch(sha); err != nil {
			return err
		}
		if _, err := s.blobs.Stat(sha); err != nil {
			if got[sha] || sha == b.SHA256 {
				return errf(http.StatusServiceUnavailable, "blob_collected", "blob %s was collected during the upload; retry", sha)
			}
			return errf(http.StatusBadRequest, "invalid_upload", "manifest blob %s was not sent", sha)
		}
	}
	b.SessionKey, b.Checksum, b.KeyID = meta.SessionKey, meta.Checksum, meta.KeyID
	return s.saveBundle(w, r, b, meta.Manifest, channel)
}

// putPart stores one part as a blob of at most max bytes, verified against
// want when given.
func (s *Server) putPart(p *multipart.Part, max int64, want string) (blob.Info, error) {
	bw, err := s.blobs.Create(max)
	if err != nil {
		return blob.Info{}, err
	}
	defer bw.Abort()
	if _, err := io.Copy(bw, p); err != nil {
		return blob.Info{}, uploadErr(err, s.cfg.MaxBundleSize.String())
	}
	info, err := bw.Commit(want)
	if errors.Is(err, blob.ErrMismatch) {
		return blob.Info{}, errf(http.StatusBadRequest, "checksum_mismatch", "part %s: content does not hash to its name", want)
	}
	return info, err
}

func uploadErr(err error, limit string) error {
	var mbe *http.MaxBytesError
	if errors.Is(err, blob.ErrTooLarge) || errors.As(err, &mbe) {
		return errf(http.StatusRequestEntityTooLarge, "bundle_too_large", "upload is larger than the limit of %s", limit)
	}
	return errf(http.StatusBadRequest, "upload_incomplete", "upload interrupted: %v", err)
}

func notEOF(err error, part string) error {
	if err == io.EOF {
		return errf(http.StatusBadRequest, "invalid_upload", "multipart upload ends before its %q part", part)
	}
	return err
}

func keys(m map[string]int64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// plainZip reports whether a stored blob starts like a zip file (a local
// file header): an "encrypted" bundle that is not.
func (s *Server) plainZip(sha string) bool {
	f, _, err := s.blobs.Open(sha)
	if err != nil {
		return false
	}
	defer f.Close()
	var head [4]byte
	_, err = io.ReadFull(f, head[:])
	return err == nil && string(head[:]) == "PK\x03\x04"
}
