package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sort"

	"github.com/zeebo/xxh3"
)

// Device overrides are the one part of a snapshot that grows with the fleet
// (a million pinned devices are 16 MB). They travel apart from the snapshot
// document, in ShardCount content-addressed blobs split by the first byte of
// the device id: the signed document lists the shards' SHA-256, an edge
// fetches (through its verified blob cache) only the shards it does not
// hold yet, and a change to one override rebuilds and ships one shard of
// ~1/256 of the overrides instead of the whole set.

// ShardCount is the number of override shards per app.
const ShardCount = 256

// ShardOf returns the shard a device id belongs to.
func ShardOf(dev [16]byte) int { return int(dev[0]) }

// OverrideShard is one decoded shard: device id → channel name. It is
// immutable and shared between snapshots that list the same hash.
type OverrideShard struct {
	channels []string            // distinct channel names, sorted
	m        map[[16]byte]uint16 // device → index in channels
	// cohorts holds the bits of the app's cohorts each key belongs to (bit
	// i: the cohort whose App.Cohorts entry has Bit i); keys are device ids
	// or CohortKeyOfCustomID. A map apart, so overrides cost no more memory
	// than before cohorts existed.
	cohorts map[[16]byte]uint64
}

// noChannel is a format-2 entry's channel index for a key only in cohorts.
const noChannel = 0xFFFF

// CohortKeyOfCustomID is the shard key of a custom id in cohorts: custom ids
// are not 16 bytes, so cohorts hold a 128-bit hash of them, and the edge
// hashes the request's custom id the same way (only when a segment of the
// app names a cohort).
func CohortKeyOfCustomID(id string) [16]byte {
	h := xxh3.HashString128Seed(id, customIDKeySeed)
	var k [16]byte
	binary.BigEndian.PutUint64(k[:8], h.Hi)
	binary.BigEndian.PutUint64(k[8:], h.Lo)
	return k
}

const customIDKeySeed = 0x636f686f72742d63 // "cohort-c"

// MaxCohorts is the number of cohorts an app may have (one bit each).
const MaxCohorts = 64

// ShardSource provides decoded override shards by SHA-256.
type ShardSource interface {
	OverrideShard(sha256 string) (*OverrideShard, error)
}

// NewOverrideShard builds a shard from device → channel pairs.
func NewOverrideShard(entries map[[16]byte]string) *OverrideShard {
	names := map[string]uint16{}
	var list []string
	for _, ch := range entries {
		if _, ok := names[ch]; !ok {
			names[ch] = 0
			list = append(list, ch)
		}
	}
	sort.Strings(list)
	for i, n := range list {
		names[n] = uint16(i)
	}
	sh := &OverrideShard{channels: list, m: make(map[[16]byte]uint16, len(entries))}
	for d, ch := range entries {
		sh.m[d] = names[ch]
	}
	return sh
}

// NewShard builds a shard from device → channel pairs and key → cohort
// bits (keys are device ids or CohortKeyOfCustomID of custom ids).
func NewShard(overrides map[[16]byte]string, cohorts map[[16]byte]uint64) *OverrideShard {
	sh := NewOverrideShard(overrides)
	for k, bits := range cohorts {
		if bits == 0 {
			continue
		}
		if sh.cohorts == nil {
			sh.cohorts = make(map[[16]byte]uint64, len(cohorts))
		}
		sh.cohorts[k] = bits
	}
	return sh
}

// Len is the number of devices pinned to a channel in the shard.
func (s *OverrideShard) Len() int { return len(s.m) }

// Channel returns the channel name a device is pinned to in this shard.
func (s *OverrideShard) Channel(dev [16]byte) (string, bool) {
	i, ok := s.m[dev]
	if !ok {
		return "", false
	}
	return s.channels[i], true
}

// Cohorts returns the cohort bits of a key in this shard.
func (s *OverrideShard) Cohorts(key [16]byte) uint64 { return s.cohorts[key] }

func (s *OverrideShard) hasCohorts() bool { return len(s.cohorts) > 0 }

const (
	shardMagic  = "UPDOVR1\x00"
	shardMagic2 = "UPDOVR2\x00"
)

// Encode serialises the shard deterministically (devices sorted), so equal
// shards have equal hashes:
//
//	magic "UPDOVR1\x00" | u16 channels | (u8 len, name)… | u32 devices | (16-byte id, u16 channel)…
//
// A shard that holds cohort membership is written as "UPDOVR2\x00", the
// same layout with each entry followed by its u64 cohort bits (channel
// 0xFFFF: not pinned). Shards without cohorts keep format 1, so their
// hashes do not change.
func (s *OverrideShard) Encode() []byte {
	if s.hasCohorts() {
		return s.encode(shardMagic2, 26)
	}
	return s.encode(shardMagic, 18)
}

func (s *OverrideShard) encode(magic string, entry int) []byte {
	devs := make([][16]byte, 0, len(s.m)+len(s.cohorts))
	for d := range s.m {
		devs = append(devs, d)
	}
	for k := range s.cohorts {
		if _, pinned := s.m[k]; !pinned {
			devs = append(devs, k)
		}
	}
	sort.Slice(devs, func(i, j int) bool { return bytes.Compare(devs[i][:], devs[j][:]) < 0 })
	out := make([]byte, 0, len(magic)+2+len(s.channels)*16+4+len(devs)*entry)
	out = append(out, magic...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(s.channels)))
	for _, c := range s.channels {
		out = append(out, byte(len(c)))
		out = append(out, c...)
	}
	out = binary.BigEndian.AppendUint32(out, uint32(len(devs)))
	for _, d := range devs {
		out = append(out, d[:]...)
		ch, pinned := s.m[d]
		if !pinned {
			ch = noChannel
		}
		out = binary.BigEndian.AppendUint16(out, ch)
		if entry == 26 {
			out = binary.BigEndian.AppendUint64(out, s.cohorts[d])
		}
	}
	return out
}

// DecodeOverrideShard parses an encoded shard. The caller has verified the
// bytes against the hash the signed snapshot lists.
func DecodeOverrideShard(b []byte) (*OverrideShard, error) {
	bad := func(what string) (*OverrideShard, error) {
		return nil, fmt.Errorf("%w: override shard: %s", ErrMalformed, what)
	}
	entry := 18
	switch {
	case len(b) < len(shardMagic)+6:
		return bad("truncated")
	case string(b[:len(shardMagic)]) == shardMagic:
	case string(b[:len(shardMagic2)]) == shardMagic2:
		entry = 26
	default:
		return bad("wrong magic")
	}
	p := b[len(shardMagic):]
	nch := int(binary.BigEndian.Uint16(p))
	p = p[2:]
	s := &OverrideShard{channels: make([]string, 0, nch)}
	for i := 0; i < nch; i++ {
		if len(p) < 1 || len(p) < 1+int(p[0]) {
			return bad("truncated channel table")
		}
		name := string(p[1 : 1+int(p[0])])
		if !ValidChannelName(name) {
			return bad("invalid channel name")
		}
		s.channels = append(s.channels, name)
		p = p[1+int(p[0]):]
	}
	if len(p) < 4 {
		return bad("truncated")
	}
	n := int(binary.BigEndian.Uint32(p))
	p = p[4:]
	if len(p) != n*entry {
		return bad("device table length")
	}
	s.m = make(map[[16]byte]uint16, n)
	if entry == 26 {
		s.cohorts = make(map[[16]byte]uint64, n)
	}
	for i := 0; i < n; i++ {
		e := p[i*entry:]
		key := [16]byte(e[:16])
		ch := binary.BigEndian.Uint16(e[16:])
		var bits uint64
		if entry == 26 {
			bits = binary.BigEndian.Uint64(e[18:])
		}
		switch {
		case ch == noChannel && entry == 26:
			if bits == 0 {
				return bad("entry with neither channel nor cohort")
			}
		case int(ch) >= nch:
			return bad("channel index out of range")
		default:
			s.m[key] = ch
		}
		if bits != 0 {
			s.cohorts[key] = bits
		}
	}
	return s, nil
}

// MapShards is a ShardSource over decoded shards in memory.
type MapShards map[string]*OverrideShard

// OverrideShard returns the shard or an error naming the missing hash.
func (m MapShards) OverrideShard(sha string) (*OverrideShard, error) {
	if s := m[sha]; s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("override shard %s not available", sha)
}

// ShardOverrides splits device → channel pairs into ShardCount shards and
// returns the App.OverrideShards list and the shards by hash. Encoded shards
// are returned too, for storing as blobs.
func ShardOverrides(entries map[[16]byte]string) (hashes []string, shards MapShards, encoded map[string][]byte) {
	return ShardEntries(entries, nil)
}

// ShardEntries is ShardOverrides with cohort membership: key → cohort bits.
func ShardEntries(entries map[[16]byte]string, cohorts map[[16]byte]uint64) (hashes []string, shards MapShards, encoded map[string][]byte) {
	var split [ShardCount]map[[16]byte]string
	var csplit [ShardCount]map[[16]byte]uint64
	for d, ch := range entries {
		i := ShardOf(d)
		if split[i] == nil {
			split[i] = map[[16]byte]string{}
		}
		split[i][d] = ch
	}
	for k, bits := range cohorts {
		i := ShardOf(k)
		if csplit[i] == nil {
			csplit[i] = map[[16]byte]uint64{}
		}
		csplit[i][k] = bits
	}
	hashes = make([]string, ShardCount)
	shards, encoded = MapShards{}, map[string][]byte{}
	for i, part := range split {
		if len(part) == 0 && len(csplit[i]) == 0 {
			continue
		}
		sh := NewShard(part, csplit[i])
		b := sh.Encode()
		h := sha256Hex(b)
		hashes[i], shards[h], encoded[h] = h, sh, b
	}
	return hashes, shards, encoded
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
