// Package delta turns bundle updates into small downloads. It owns the
// canonical form deltas are computed on, the binary deltas themselves (zstd
// with the old bundle as a raw dictionary, brotli with it as a compound
// dictionary) and their RFC 9842 framing (dcz, dcb), and applies deltas with
// the base checked by hash.
//
// Canonical form: a bundle's zip has its entries deflated, so two zips of
// nearly equal content differ almost everywhere and a delta between them is
// poor. Deltas are computed between canonical archives instead: an
// uncompressed POSIX tar (PAX) of the bundle's regular files, sorted by path,
// with mode 0644, uid/gid 0, no user names and zero timestamps. The same
// files always give the same bytes, so the canonical archive has a stable
// SHA-256, and a device that applies a delta ends up with a byte-exact,
// checksum-verified canonical archive of the new bundle.
package delta

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Limits on what is read from bundles and produced by deltas.
const (
	MaxCanonical = 1 << 30 // bytes of a canonical archive
	maxFiles     = 20000
)

// ErrUnsafePath refuses bundle entries that could escape the install folder.
var ErrUnsafePath = errors.New("delta: unsafe path")

// ValidPath reports whether a bundle file path is safe: relative, no "..",
// no backslashes, no empty or dot segments, no NUL.
func ValidPath(p string) bool {
	if p == "" || len(p) > 1024 || strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\x00") {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// File is one file of a bundle.
type File struct {
	Path string
	Data []byte
}

// ReadZip returns the regular files of a zip bundle, sorted by path, with
// their paths validated (no traversal, no absolute paths, no duplicates).
// macOS resource forks (__MACOSX/) are dropped.
func ReadZip(r io.ReaderAt, size int64) ([]File, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("delta: read zip: %w", err)
	}
	if len(zr.File) > maxFiles {
		return nil, fmt.Errorf("delta: %d files, limit %d", len(zr.File), maxFiles)
	}
	var files []File
	seen := map[string]bool{}
	var total int64
	for _, f := range zr.File {
		if f.FileInfo().IsDir() || strings.HasPrefix(f.Name, "__MACOSX/") {
			continue
		}
		if !ValidPath(f.Name) {
			return nil, fmt.Errorf("%w: %q", ErrUnsafePath, f.Name)
		}
		if seen[f.Name] {
			return nil, fmt.Errorf("delta: duplicate path %q", f.Name)
		}
		seen[f.Name] = true
		total += int64(f.UncompressedSize64)
		if total > MaxCanonical {
			return nil, fmt.Errorf("delta: bundle unpacks to more than %d bytes", MaxCanonical)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("delta: %s: %w", f.Name, err)
		}
		data, err := io.ReadAll(io.LimitReader(rc, MaxCanonical+1))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("delta: %s: %w", f.Name, err)
		}
		files = append(files, File{Path: f.Name, Data: data})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// Canonical writes files (sorted by path) as the canonical tar.
func Canonical(files []File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.Path, Mode: 0o644, Size: int64(len(f.Data)),
			ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("delta: canonical %s: %w", f.Path, err)
		}
		tw.Write(f.Data)
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// CanonicalZip is ReadZip followed by Canonical.
func CanonicalZip(zipData []byte) ([]byte, error) {
	files, err := ReadZip(bytes.NewReader(zipData), int64(len(zipData)))
	if err != nil {
		return nil, err
	}
	return Canonical(files)
}

// Sum is the SHA-256 of b.
func Sum(b []byte) [32]byte { return sha256.Sum256(b) }
