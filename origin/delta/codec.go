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
	var buf bytes.Buffer
	if err := BuildTo(&buf, base, bytes.NewReader(target), int64(len(target)), encoding); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// BuildTo is Build streaming: it reads the target's size bytes from r and
// writes the framed delta to w as it is produced, so memory holds the base
// and the encoder's window, not the target or the delta. An error from w
// (say, a writer that gives up once the delta is too large to be worth
// it) stops the build.
//
// A dcz delta is one zstd frame marked single-segment with the target's
// size (a decoder needs a window of the target's size, plus the base),
// whatever the encoder's window, as zstd's one-shot API writes it.
func BuildTo(w io.Writer, base []byte, r io.Reader, size int64, encoding string) error {
	sum := sha256.Sum256(base)
	switch encoding {
	case DCZ:
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
			zstd.WithEncoderDictRaw(0, base), zstd.WithWindowSize(windowFor(len(base)+int(min(size, 1<<30)))),
			zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(true), zstd.WithLowerEncoderMem(true))
		if err != nil {
			return fmt.Errorf("delta: dcz: %w", err)
		}
		if _, err := w.Write(append(append([]byte{}, dczMagic...), sum[:]...)); err != nil {
			return err
		}
		sw := &singleSegment{w: w}
		enc.ResetContentSize(sw, size)
		if _, err := io.Copy(enc, r); err != nil {
			enc.Close()
			return err
		}
		return enc.Close()
	case DCB:
		dict, err := brrr.PrepareDictionary(base)
		if err != nil {
			return fmt.Errorf("delta: dcb: %w", err)
		}
		if _, err := w.Write(append(append([]byte{}, dcbMagic...), sum[:]...)); err != nil {
			return err
		}
		bw, err := brrr.NewWriterOptions(w, brrr.BestCompression, brrr.WriterOptions{
			Dictionaries: []*brrr.PreparedDictionary{dict}, LGWin: 24, SizeHint: uint(size)})
		if err != nil {
			return fmt.Errorf("delta: dcb: %w", err)
		}
		if n, err := io.Copy(bw, r); err != nil {
			return err
		} else if n != size {
			return fmt.Errorf("delta: dcb: target is %d bytes, want %d", n, size)
		}
		return bw.Close()
	}
	return fmt.Errorf("delta: encoding %q: want dcz or dcb", encoding)
}

// singleSegment rewrites the header of the zstd frame written through it
// to single-segment form: the window descriptor goes, the frame's content
// size becomes its window. The streaming encoder writes a window
// descriptor (a power of two at least the content size); the one-shot
// encoder, and so every delta before streaming builds, writes this form,
// which asks decoders for no more than the content's size (RFC 9842
// clients bound the window they accept).
type singleSegment struct {
	w    io.Writer
	hdr  []byte
	done bool
}

func (s *singleSegment) Write(p []byte) (int, error) {
	if s.done {
		return s.w.Write(p)
	}
	n := len(p)
	s.hdr = append(s.hdr, p...)
	// Magic (4) and frame header descriptor (1) tell the header's length.
	if len(s.hdr) < 5 {
		return n, nil
	}
	fhd := s.hdr[4]
	single := fhd&(1<<5) != 0
	dictLen := [4]int{0, 1, 2, 4}[fhd&3]
	fcsFlag := fhd >> 6
	fcsLen := [4]int{0, 2, 4, 8}[fcsFlag]
	if single && fcsFlag == 0 {
		fcsLen = 1
	}
	hdrLen := 5 + dictLen + fcsLen
	if !single {
		hdrLen++ // window descriptor
	}
	if len(s.hdr) < hdrLen {
		return n, nil
	}
	s.done = true
	out := s.hdr
	if !single && fcsFlag != 0 {
		// Drop the window descriptor; the content size stays as it is
		// (its field size depends only on the size, for sizes ≥ 256).
		out = append(append(append([]byte{}, s.hdr[:4]...), fhd|1<<5), s.hdr[6:]...)
	}
	_, err := s.w.Write(out)
	s.hdr = nil
	return n, err
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
	if err := Verify(base, bytes.NewReader(d), int64(len(target)), sha256.Sum256(target)); err != nil {
		return nil, err
	}
	return d, nil
}

// Verify decodes the framed delta read from d against base, streaming,
// and checks that it yields exactly size bytes hashing to want.
func Verify(base []byte, d io.Reader, size int64, want [32]byte) error {
	enc, err := readFrame(d, base)
	if err != nil {
		return fmt.Errorf("delta: verify: %w", err)
	}
	var r io.Reader
	switch enc {
	case DCZ:
		dec, err := zstd.NewReader(d, zstd.WithDecoderDictRaw(0, base), zstd.WithDecoderMaxWindow(1<<30),
			zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return fmt.Errorf("delta: verify dcz: %w", err)
		}
		defer dec.Close()
		r = dec
	default:
		br, err := brrr.NewReaderOptions(d, brrr.ReaderOptions{Dictionaries: [][]byte{base}})
		if err != nil {
			return fmt.Errorf("delta: verify dcb: %w", err)
		}
		r = br
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(r, size+1))
	if err != nil {
		return fmt.Errorf("delta: verify %s: %w", enc, err)
	}
	if n != size || !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("delta: verify %s: output does not hash to the target", enc)
	}
	return nil
}

// readFrame reads the RFC 9842 frame header from d and checks that it
// names base.
func readFrame(d io.Reader, base []byte) (string, error) {
	head := make([]byte, 8+32, 8+32) // dcz's magic is 8 bytes, dcb's 4
	if _, err := io.ReadFull(d, head[:4+32]); err != nil {
		return "", ErrFormat
	}
	enc, sum, err := Encoding(head[:4+32])
	if err != nil {
		if _, err := io.ReadFull(d, head[4+32:]); err != nil {
			return "", ErrFormat
		}
		if enc, sum, err = Encoding(head); err != nil {
			return "", ErrFormat
		}
	}
	if sum != sha256.Sum256(base) {
		return "", ErrWrongBase
	}
	return enc, nil
}
