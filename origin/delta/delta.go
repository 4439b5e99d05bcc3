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
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// MaxCanonical bounds a canonical archive (and so what a delta may decode to).
const MaxCanonical = 1 << 30

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

// ReadZip returns the regular files of a zip bundle, sorted by path, read
// with OpenZip's rules under DefaultLimits. macOS resource forks
// (__MACOSX/) are dropped.
func ReadZip(r io.ReaderAt, size int64) ([]File, error) {
	z, err := OpenZip(r, size, DefaultLimits)
	if err != nil {
		return nil, err
	}
	files := make([]File, 0, len(z.Files))
	for _, e := range z.Files {
		data, err := z.ReadAll(e)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Path: e.Path, Data: data})
	}
	return files, nil
}

// Canonical writes files (sorted by path) as the canonical tar.
func Canonical(files []File) ([]byte, error) {
	var buf bytes.Buffer
	cw := NewCanonicalWriter(&buf)
	for _, f := range files {
		if err := cw.Add(f.Path, int64(len(f.Data)), bytes.NewReader(f.Data)); err != nil {
			return nil, err
		}
	}
	if err := cw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// CanonicalWriter writes a canonical archive file by file, so that a
// bundle of any size is written with bounded memory. Files must be added
// in path order.
type CanonicalWriter struct {
	tw   *tar.Writer
	last string
	n    int
}

// NewCanonicalWriter starts a canonical archive on w.
func NewCanonicalWriter(w io.Writer) *CanonicalWriter { return &CanonicalWriter{tw: tar.NewWriter(w)} }

// Add appends a file of size bytes read from r.
func (c *CanonicalWriter) Add(path string, size int64, r io.Reader) error {
	w, err := c.Begin(path, size)
	if err != nil {
		return err
	}
	if n, err := io.Copy(w, r); err != nil {
		return err
	} else if n != size {
		return fmt.Errorf("delta: canonical %s: %d bytes, want %d", path, n, size)
	}
	return nil
}

// Begin starts a file of size bytes: write exactly its content to the
// returned writer before the next Begin or Close (which fail otherwise).
func (c *CanonicalWriter) Begin(path string, size int64) (io.Writer, error) {
	if c.n > 0 && path <= c.last {
		return nil, fmt.Errorf("delta: canonical %s: added after %s (want path order, no duplicates)", path, c.last)
	}
	c.last, c.n = path, c.n+1
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: path, Mode: 0o644, Size: size,
		ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
	if err := c.tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("delta: canonical %s: %w", path, err)
	}
	return c.tw, nil
}

// Close ends the archive (it does not close the underlying writer).
func (c *CanonicalWriter) Close() error { return c.tw.Close() }

// WriteCanonical writes the canonical archive of a zip to w, one file at a
// time (memory does not grow with the bundle). ctx stops it between reads.
func (z *Zip) WriteCanonical(ctx context.Context, w io.Writer) error {
	cw := NewCanonicalWriter(w)
	for _, e := range z.Files {
		rc, err := z.Open(e)
		if err != nil {
			return err
		}
		err = cw.Add(e.Path, e.Size, ContextReader(ctx, rc))
		rc.Close()
		if err != nil {
			return err
		}
	}
	return cw.Close()
}

// CanonicalZip is ReadZip followed by Canonical.
func CanonicalZip(zipData []byte) ([]byte, error) {
	z, err := OpenZip(bytes.NewReader(zipData), int64(len(zipData)), DefaultLimits)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := z.WriteCanonical(context.Background(), &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ContextReader reads r until ctx is done: long builds stop within one
// read of a cancellation.
func ContextReader(ctx context.Context, r io.Reader) io.Reader {
	if ctx.Done() == nil {
		return r
	}
	return ctxReader{ctx, r}
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Sum is the SHA-256 of b.
func Sum(b []byte) [32]byte { return sha256.Sum256(b) }
