package snapshot

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"time"
)

// A heartbeat is the origin's signed statement "revision Rev, issued at
// SnapIssued, is still my current snapshot at time At". The origin sends one
// with every answer to GET /v1/snapshot (header X-Updraft-Heartbeat, base64),
// so that an edge whose snapshot has not changed for hours can still prove
// that it is fresh, and parent edges relay it verbatim to their children.
// Wire (big-endian):
//
//	magic       "UPDBEAT\x00"  8 bytes (never a snapshot's magic)
//	rev         int64
//	snapIssued  int64          Issued of the snapshot it vouches for, Unix ms
//	at          int64          when it was signed, Unix ms
//	sig         [64]byte       Ed25519 over everything before it
const (
	heartbeatMagic = "UPDBEAT\x00"
	// HeartbeatSize is the length of an encoded heartbeat.
	HeartbeatSize = 8 + 8 + 8 + 8 + signatureLen
)

// Heartbeat is a verified heartbeat.
type Heartbeat struct {
	Rev        int64
	SnapIssued int64 // Unix ms
	At         int64 // Unix ms
}

// Vouches reports whether the heartbeat is about this very snapshot (same
// revision, same issue time).
func (h Heartbeat) Vouches(s *Snapshot) bool {
	return s != nil && h.Rev == s.Rev && h.SnapIssued == s.Issued
}

// SignHeartbeat encodes and signs a heartbeat for the snapshot (rev,
// snapIssued) at time at.
func SignHeartbeat(rev, snapIssued int64, at time.Time, key ed25519.PrivateKey) []byte {
	b := make([]byte, HeartbeatSize-signatureLen, HeartbeatSize)
	copy(b, heartbeatMagic)
	binary.BigEndian.PutUint64(b[8:], uint64(rev))
	binary.BigEndian.PutUint64(b[16:], uint64(snapIssued))
	binary.BigEndian.PutUint64(b[24:], uint64(at.UnixMilli()))
	return append(b, ed25519.Sign(key, b)...)
}

// VerifyHeartbeat checks a heartbeat's signature with the trusted keys.
func VerifyHeartbeat(b []byte, keys ...ed25519.PublicKey) (Heartbeat, error) {
	if len(b) != HeartbeatSize || string(b[:8]) != heartbeatMagic {
		return Heartbeat{}, fmt.Errorf("%w: heartbeat of %d bytes or wrong magic", ErrMalformed, len(b))
	}
	body, sig := b[:len(b)-signatureLen], b[len(b)-signatureLen:]
	if !verifySignature(body, sig, keys) {
		return Heartbeat{}, ErrBadSignature
	}
	return Heartbeat{
		Rev:        int64(binary.BigEndian.Uint64(b[8:])),
		SnapIssued: int64(binary.BigEndian.Uint64(b[16:])),
		At:         int64(binary.BigEndian.Uint64(b[24:])),
	}, nil
}
