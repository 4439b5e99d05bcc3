package delta

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	brrr "github.com/molecule-man/go-brrr"
)

// Manifest mode (the stock plugin's per-file download): every file of a
// bundle is listed with the SHA-256 of its content; files of at least
// BrotliMin bytes are stored brotli-compressed and named with a ".br"
// suffix, which tells the plugin to decompress them (it writes the file
// without the suffix and checks the hash of the decompressed bytes).
const (
	BrotliMin  = 8 << 10
	brotliGain = 10 // compressing must save more than this many bytes
	// StreamMin: files larger than this are compressed while they stream
	// (ManifestStream), at StreamQuality, in bounded memory; brotli at
	// quality 11 costs a second or more per MB and memory that grows
	// with the input.
	StreamMin     = 8 << 20
	StreamQuality = 5
)

// ManifestFile is one file of a bundle as the plugin downloads it.
type ManifestFile struct {
	Name string // file path as the plugin sees it, with ".br" when Data is brotli
	Hash string // SHA-256 (lower-case hex) of the uncompressed content
	Data []byte // what the edge serves (compressed or not)
}

// Manifest builds the per-file manifest of a bundle's files. Empty files are
// left out (the plugin cannot download them and they carry nothing).
func Manifest(files []File) ([]ManifestFile, error) {
	out := make([]ManifestFile, 0, len(files))
	for _, f := range files {
		if len(f.Data) == 0 {
			continue
		}
		m, err := ManifestOf(f)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// ManifestOf is one (non-empty) file's manifest entry, by Manifest's rule.
func ManifestOf(f File) (ManifestFile, error) {
	if !ValidPath(f.Path) {
		return ManifestFile{}, fmt.Errorf("%w: %q", ErrUnsafePath, f.Path)
	}
	sum := sha256.Sum256(f.Data)
	m := ManifestFile{Name: f.Path, Hash: hex.EncodeToString(sum[:]), Data: f.Data}
	if len(f.Data) >= BrotliMin && compressible(f.Data) {
		c, err := brrr.Compress(f.Data, brrr.BestCompression)
		if err != nil {
			return ManifestFile{}, fmt.Errorf("delta: manifest %s: %w", f.Path, err)
		}
		if len(c)+brotliGain < len(f.Data) {
			m.Name, m.Data = f.Path+".br", c
		}
	}
	return m, nil
}

// ManifestStream applies Manifest's rule to a file read from r, with
// memory that does not grow with it: the content goes to raw; when a
// sample of its start is compressible, it also goes to comp, brotli at
// StreamQuality. It returns the content's SHA-256 (lower-case hex) and
// whether comp holds the form to serve (named path + ".br"); otherwise
// raw does.
func ManifestStream(r io.Reader, raw, comp io.Writer) (hash string, compressed bool, err error) {
	br := bufio.NewReaderSize(r, 256<<10)
	sample, _ := br.Peek(256 << 10)
	h := sha256.New()
	cw := &countWriter{w: comp}
	var bw *brrr.Writer
	dst := io.MultiWriter(raw, h)
	if len(sample) >= BrotliMin && compressible(sample) {
		if bw, err = brrr.NewWriterOptions(cw, StreamQuality, brrr.WriterOptions{LGWin: 22}); err != nil {
			return "", false, err
		}
		dst = io.MultiWriter(raw, h, bw)
	}
	n, err := io.Copy(dst, br)
	if err != nil {
		return "", false, err
	}
	if bw != nil {
		if err := bw.Close(); err != nil {
			return "", false, err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), bw != nil && cw.n+brotliGain < n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// compressible reports whether brotli is worth quality 11 on data: a fast
// pass over a sample must save at least 5%. Images, fonts and other already
// compressed files fail it, which spares seconds of CPU per megabyte at the
// origin; they are then served as they are (Capgo's rule, more than 10 bytes
// saved, would compress them for nothing).
func compressible(data []byte) bool {
	sample := data
	if len(sample) > 256<<10 {
		sample = sample[:256<<10]
	}
	c, err := brrr.Compress(sample, 1)
	return err == nil && len(c) < len(sample)*95/100
}
