package snapshot

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Wire format of a signed snapshot (all integers big-endian):
//
//	magic    "UPDSNAP\x00"  8 bytes
//	format   uint16         format version of the payload document (1 or 2)
//	codec    uint8          1 = zstd-compressed JSON
//	_        uint8          reserved, 0
//	rev      int64
//	length   uint32         payload bytes
//	issued   int64          format 2 only: when the origin signed it, Unix ms
//	payload  [length]byte
//	sig      [64]byte       Ed25519 over everything before it
//
// The signature is checked before anything is decompressed or parsed, so
// unauthenticated bytes never reach the decoder. Format 1 (no issued time)
// is still read, so that an edge loads a snapshot persisted by an older
// version; Encode writes format 2.
const (
	wireMagic    = "UPDSNAP\x00"
	headerSizeV1 = 8 + 2 + 1 + 1 + 8 + 4
	headerSize   = headerSizeV1 + 8 // format 2
	codecZstd    = 1
	maxPayload   = 512 << 20 // compressed
	maxDocument  = 4 << 30   // decompressed
	signatureLen = ed25519.SignatureSize
)

// Refusal reasons, stable for metrics and logs.
var (
	ErrBadSignature = errors.New("snapshot: bad signature")
	ErrMalformed    = errors.New("snapshot: malformed")
	ErrFormat       = errors.New("snapshot: unsupported format version")
)

var (
	encoders = sync.Pool{New: func() any {
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
		return e
	}}
	decoders = sync.Pool{New: func() any {
		d, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxDocument))
		return d
	}}
)

// Encode serialises and signs s with the origin's private key, in the
// current format. s.Format is set to FormatVersion, and s.Issued to now
// when it is zero.
func Encode(s *Snapshot, key ed25519.PrivateKey) ([]byte, error) {
	s.Format = FormatVersion
	if s.Issued == 0 {
		s.Issued = time.Now().UnixMilli()
	}
	doc, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("snapshot rev %d: encode: %w", s.Rev, err)
	}
	enc := encoders.Get().(*zstd.Encoder)
	payload := enc.EncodeAll(doc, make([]byte, 0, len(doc)/4))
	encoders.Put(enc)
	if len(payload) > maxPayload {
		return nil, fmt.Errorf("snapshot rev %d: %d bytes compressed, over the %d limit", s.Rev, len(payload), maxPayload)
	}
	out := make([]byte, headerSize, headerSize+len(payload)+signatureLen)
	copy(out, wireMagic)
	binary.BigEndian.PutUint16(out[8:], FormatVersion)
	out[10] = codecZstd
	binary.BigEndian.PutUint64(out[12:], uint64(s.Rev))
	binary.BigEndian.PutUint32(out[20:], uint32(len(payload)))
	binary.BigEndian.PutUint64(out[24:], uint64(s.Issued))
	out = append(out, payload...)
	return append(out, ed25519.Sign(key, out)...), nil
}

// Header is what can be read of a signed snapshot after its signature
// checks, without decoding the payload.
type Header struct {
	Format int
	Rev    int64
	Issued int64 // Unix ms; 0 for format 1
	size   int   // header bytes
}

// verifySignature reports whether any of keys signed body.
func verifySignature(body, sig []byte, keys []ed25519.PublicKey) bool {
	for _, k := range keys {
		if len(k) == ed25519.PublicKeySize && ed25519.Verify(k, body, sig) {
			return true
		}
	}
	return false
}

// Verify checks the signature of a wire snapshot with the trusted keys (any
// one of them may have signed it: the overlap of a key rotation) and returns
// its header.
func Verify(b []byte, keys ...ed25519.PublicKey) (Header, error) {
	if len(b) < headerSizeV1+signatureLen || string(b[:8]) != wireMagic {
		return Header{}, fmt.Errorf("%w: short or wrong magic", ErrMalformed)
	}
	body, sig := b[:len(b)-signatureLen], b[len(b)-signatureLen:]
	if !verifySignature(body, sig, keys) {
		return Header{}, ErrBadSignature
	}
	h := Header{Format: int(binary.BigEndian.Uint16(b[8:])), Rev: int64(binary.BigEndian.Uint64(b[12:])), size: headerSizeV1}
	if (h.Format != 1 && h.Format != FormatVersion) || b[10] != codecZstd {
		return h, fmt.Errorf("%w: format %d codec %d", ErrFormat, h.Format, b[10])
	}
	if h.Format >= 2 {
		if len(body) < headerSize {
			return h, fmt.Errorf("%w: short format %d header", ErrMalformed, h.Format)
		}
		h.size = headerSize
		h.Issued = int64(binary.BigEndian.Uint64(b[24:]))
	}
	if n := binary.BigEndian.Uint32(b[20:]); int(n) != len(body)-h.size {
		return h, fmt.Errorf("%w: payload length %d, have %d", ErrMalformed, n, len(body)-h.size)
	}
	return h, nil
}

// Decode verifies a wire snapshot with the origin's public key, then
// decompresses, parses and indexes it, taking override shards from src.
func Decode(b []byte, pub ed25519.PublicKey, src ShardSource) (*Snapshot, error) {
	s, err := DecodeDocument(b, pub)
	if err != nil {
		return nil, err
	}
	if err := s.Index(src); err != nil {
		return nil, fmt.Errorf("snapshot rev %d: %w", s.Rev, err)
	}
	return s, nil
}

// DecodeDocument verifies (with any of the trusted keys) and parses a wire
// snapshot without indexing it, so that the caller can gather the override
// shards it lists first.
func DecodeDocument(b []byte, keys ...ed25519.PublicKey) (*Snapshot, error) {
	h, err := Verify(b, keys...)
	if err != nil {
		return nil, err
	}
	dec := decoders.Get().(*zstd.Decoder)
	defer decoders.Put(dec)
	if err := dec.Reset(bytes.NewReader(b[h.size : len(b)-signatureLen])); err != nil {
		return nil, fmt.Errorf("%w: rev %d: %v", ErrMalformed, h.Rev, err)
	}
	s := new(Snapshot)
	jd := json.NewDecoder(io.LimitReader(dec, maxDocument))
	if err := jd.Decode(s); err != nil {
		return nil, fmt.Errorf("%w: rev %d: %v", ErrMalformed, h.Rev, err)
	}
	if s.Rev != h.Rev || s.Format != h.Format || s.Issued != h.Issued {
		return nil, fmt.Errorf("%w: header rev %d format %d issued %d, document rev %d format %d issued %d",
			ErrMalformed, h.Rev, h.Format, h.Issued, s.Rev, s.Format, s.Issued)
	}
	return s, nil
}
