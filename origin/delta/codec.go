package delta

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	brrr "github.com/molecule-man/go-brrr"
)

// Content encodings of RFC 9842 (Compression Dictionary Transport).
const (
	DCZ = "dcz" // dictionary-compressed zstd
	DCB = "dcb" // dictionary-compressed brotli
)

// RFC 9842 framing: a fixed magic, the SHA-256 of the dictionary, then the
// compressed stream.
var (
	dczMagic = []byte{0x5e, 0x2a, 0x4d, 0x18, 0x20, 0x00, 0x00, 0x00}
	dcbMagic = []byte{0xff, 0x44, 0x43, 0x42}
)

// Errors of Apply.
var (
	ErrWrongBase = errors.New("delta: built against another base")
	ErrFormat    = errors.New("delta: not a dcz or dcb stream")
	ErrTooLarge  = errors.New("delta: output too large")
)

// windowFor returns a zstd window covering dictionary plus target: only
// then can the encoder reference the whole base from anywhere in the target.
func windowFor(n int) int {
	w := 1 << 20
	for w < n && w < 1<<29 {
		w <<= 1
	}
	return w
}

// Build compresses target with base as the dictionary and frames the result
// for RFC 9842 (encoding DCZ or DCB). Strongest levels: only they find the
// long matches a release shares with the previous one (measured in
// bench/RESULTS.md).
func Build(base, target []byte, encoding string) ([]byte, error) {
	sum := sha256.Sum256(base)
	switch encoding {
	case DCZ:
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
			zstd.WithEncoderDictRaw(0, base), zstd.WithWindowSize(windowFor(len(base)+len(target))),
			zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(true))
		if err != nil {
			return nil, fmt.Errorf("delta: dcz: %w", err)
		}
		out := append(append([]byte{}, dczMagic...), sum[:]...)
		return enc.EncodeAll(target, out), nil
	case DCB:
		dict, err := brrr.PrepareDictionary(base)
		if err != nil {
			return nil, fmt.Errorf("delta: dcb: %w", err)
		}
		var buf bytes.Buffer
		buf.Write(dcbMagic)
		buf.Write(sum[:])
		w, err := brrr.NewWriterOptions(&buf, brrr.BestCompression, brrr.WriterOptions{
			Dictionaries: []*brrr.PreparedDictionary{dict}, LGWin: 24, SizeHint: uint(len(target))})
		if err != nil {
			return nil, fmt.Errorf("delta: dcb: %w", err)
		}
		if _, err := w.Write(target); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	return nil, fmt.Errorf("delta: encoding %q: want dcz or dcb", encoding)
}

// Encoding reports the RFC 9842 encoding of a framed delta and the SHA-256
// of the dictionary it names.
func Encoding(d []byte) (string, [32]byte, error) {
	var sum [32]byte
	switch {
	case len(d) >= len(dczMagic)+32 && bytes.Equal(d[:len(dczMagic)], dczMagic):
		copy(sum[:], d[len(dczMagic):])
		return DCZ, sum, nil
	case len(d) >= len(dcbMagic)+32 && bytes.Equal(d[:len(dcbMagic)], dcbMagic):
		copy(sum[:], d[len(dcbMagic):])
		return DCB, sum, nil
	}
	return "", sum, ErrFormat
}

// Apply decodes a framed delta against base. The frame's dictionary hash
// must be base's SHA-256, and the output is bounded by max bytes.
func Apply(base, d []byte, max int64) ([]byte, error) {
	enc, sum, err := Encoding(d)
	if err != nil {
		return nil, err
	}
	if sum != sha256.Sum256(base) {
		return nil, ErrWrongBase
	}
	switch enc {
	case DCZ:
		dec, err := zstd.NewReader(nil, zstd.WithDecoderDictRaw(0, base), zstd.WithDecoderMaxWindow(1<<30),
			zstd.WithDecoderMaxMemory(uint64(max)), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		defer dec.Close()
		out, err := dec.DecodeAll(d[len(dczMagic)+32:], nil)
		if err != nil {
			if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
				return nil, ErrTooLarge
			}
			return nil, fmt.Errorf("delta: dcz: %w", err)
		}
		return out, nil
	default:
		r, err := brrr.NewReaderOptions(bytes.NewReader(d[len(dcbMagic)+32:]), brrr.ReaderOptions{Dictionaries: [][]byte{base}})
		if err != nil {
			return nil, err
		}
		out, err := io.ReadAll(io.LimitReader(r, max+1))
		if err != nil {
			return nil, fmt.Errorf("delta: dcb: %w", err)
		}
		if int64(len(out)) > max {
			return nil, ErrTooLarge
		}
		return out, nil
	}
}

// BuildVerified builds a delta and decodes it against base, refusing it
// unless the result hashes to target's SHA-256.
func BuildVerified(base, target []byte, encoding string) ([]byte, error) {
	d, err := Build(base, target, encoding)
	if err != nil {
		return nil, err
	}
	got, err := Apply(base, d, int64(len(target)))
	if err != nil {
		return nil, fmt.Errorf("delta: verify %s: %w", encoding, err)
	}
	if sha256.Sum256(got) != sha256.Sum256(target) {
		return nil, fmt.Errorf("delta: verify %s: output does not hash to the target", encoding)
	}
	return d, nil
}
