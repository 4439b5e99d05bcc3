package snapshot

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"testing"
	"time"
)

// testdata/format1-rev7.snap was written by the format-1 encoder (before
// snapshots carried an issued time) with the key below: an edge upgraded
// past format 2 must still load the snapshot it persisted.
func TestReadsFormat1Snapshot(t *testing.T) {
	seed := sha256.Sum256([]byte("updraft test key v1"))
	pub := ed25519.NewKeyFromSeed(seed[:]).Public().(ed25519.PublicKey)
	wire, err := os.ReadFile("testdata/format1-rev7.snap")
	if err != nil {
		t.Fatal(err)
	}
	h, err := Verify(wire, pub)
	if err != nil || h.Format != 1 || h.Rev != 7 || h.Issued != 0 {
		t.Fatalf("verify format 1: %+v %v", h, err)
	}
	s, err := Decode(wire, pub, MapShards{})
	if err != nil || s.Rev != 7 || s.Issued != 0 || s.App("com.example.app") == nil {
		t.Fatalf("decode format 1: %+v %v", s, err)
	}
}

// Format 2 signs the issued time in the header; it round-trips, any of
// several trusted keys verifies, and no other key does.
func TestIssuedSignedAndKeyList(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	issued := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli()
	wire, err := Encode(&Snapshot{Rev: 9, Issued: issued, Apps: []*App{{ID: "com.example.app"}}}, priv)
	if err != nil {
		t.Fatal(err)
	}
	s, err := DecodeDocument(wire, other, pub)
	if err != nil || s.Rev != 9 || s.Issued != issued || s.Format != 2 {
		t.Fatalf("decode with a key list: %+v %v", s, err)
	}
	if _, err := DecodeDocument(wire, other); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("untrusted key: %v", err)
	}
	if _, err := DecodeDocument(wire); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("no key: %v", err)
	}
	// The issued time is covered by the signature.
	bad := append([]byte(nil), wire...)
	bad[30] ^= 1
	if _, err := Verify(bad, pub); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("issued time changed: %v", err)
	}
	// Encode stamps a snapshot without an issued time.
	before := time.Now().UnixMilli()
	fresh := &Snapshot{Rev: 10}
	if _, err := Encode(fresh, priv); err != nil || fresh.Issued < before {
		t.Fatalf("issued %d, want ≥ %d (%v)", fresh.Issued, before, err)
	}
}

func TestHeartbeat(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	other, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	at := time.UnixMilli(1_800_000_000_123)
	b := SignHeartbeat(12, 1_700_000_000_000, at, priv)
	h, err := VerifyHeartbeat(b, other, pub)
	if err != nil || h != (Heartbeat{Rev: 12, SnapIssued: 1_700_000_000_000, At: at.UnixMilli()}) {
		t.Fatalf("heartbeat: %+v %v", h, err)
	}
	if !h.Vouches(&Snapshot{Rev: 12, Issued: 1_700_000_000_000}) || h.Vouches(&Snapshot{Rev: 12, Issued: 1}) || h.Vouches(nil) {
		t.Fatal("Vouches")
	}
	if _, err := VerifyHeartbeat(SignHeartbeat(12, 1, at, otherPriv), pub); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("foreign heartbeat: %v", err)
	}
	b[20] ^= 1
	if _, err := VerifyHeartbeat(b, pub); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered heartbeat: %v", err)
	}
	// A snapshot is never taken for a heartbeat, nor the reverse.
	wire, _ := Encode(&Snapshot{Rev: 1}, priv)
	if _, err := VerifyHeartbeat(wire, pub); !errors.Is(err, ErrMalformed) {
		t.Fatalf("snapshot as heartbeat: %v", err)
	}
	if _, err := Verify(SignHeartbeat(1, 1, at, priv), pub); err == nil {
		t.Fatal("heartbeat as snapshot")
	}
}
