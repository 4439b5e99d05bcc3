package delta

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

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
		if !ValidPath(f.Path) {
			return nil, fmt.Errorf("%w: %q", ErrUnsafePath, f.Path)
		}
		sum := sha256.Sum256(f.Data)
		m := ManifestFile{Name: f.Path, Hash: hex.EncodeToString(sum[:]), Data: f.Data}
		if len(f.Data) >= BrotliMin && compressible(f.Data) {
			c, err := brrr.Compress(f.Data, brrr.BestCompression)
			if err != nil {
				return nil, fmt.Errorf("delta: manifest %s: %w", f.Path, err)
			}
			if len(c)+brotliGain < len(f.Data) {
				m.Name, m.Data = f.Path+".br", c
			}
		}
		out = append(out, m)
	}
	return out, nil
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
