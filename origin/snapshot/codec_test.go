package snapshot

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, ids := bigSnapshot(t, 1000)
	s.Rev = 42
	wire, err := Encode(s, priv)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(wire, pub, testShards)
	if err != nil {
		t.Fatal(err)
	}
	if got.Rev != 42 || got.App("com.example.app").OverrideCount() != 1000 || len(got.App("com.example.app").Rules) != 50 {
		t.Fatalf("decoded snapshot differs: rev %d", got.Rev)
	}
	if c := got.App("com.example.app").Override(ids[3]); c == nil || c.Name != "beta" {
		t.Fatalf("override lost: %v", c)
	}
	if ro := got.App("com.example.app").Channel("production").Rollout; ro == nil || ro.BPS != 1000 || ro.seed != seedOf("r1") {
		t.Fatalf("rollout lost: %+v", ro)
	}
	// Every single-byte change is refused by the signature check.
	for i := 0; i < len(wire); i += max(1, len(wire)/97) {
		bad := append([]byte(nil), wire...)
		bad[i] ^= 0x40
		if _, err := Decode(bad, pub, testShards); err == nil {
			t.Fatalf("flipped byte %d accepted", i)
		}
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	wrong, _ := Encode(s, other)
	if _, err := Decode(wrong, pub, testShards); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("wrong key: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, _ := bigSnapshot(f, 10)
	wire, _ := Encode(s, priv)
	f.Add(wire)
	f.Add([]byte("UPDSNAP\x00garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := Decode(b, pub, testShards); err == nil && s == nil {
			t.Fatal("nil snapshot without error")
		}
	})
}

// BenchmarkSnapshot measures, at 10k and 1M device overrides (and 50
// rules), the signed document an edge receives at every change (overrides
// are only listed in it, by shard hash) and one override shard, which is what
// a change to one device's override ships.
func BenchmarkSnapshot(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	for _, n := range []int{10000, 1000000} {
		s, _ := bigSnapshot(b, n)
		wire, err := Encode(s, priv)
		if err != nil {
			b.Fatal(err)
		}
		var shard []byte
		for _, h := range s.Apps[0].OverrideShards {
			if h != "" {
				shard = testShards[h].Encode()
				break
			}
		}
		b.Run(fmt.Sprintf("document/encode/overrides=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Encode(s, priv)
			}
			b.ReportMetric(float64(len(wire)), "wire-bytes")
		})
		b.Run(fmt.Sprintf("document/verify+decode+index/overrides=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(wire, pub, testShards); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("shard/encode/overrides=%d", n), func(b *testing.B) {
			sh, _ := DecodeOverrideShard(shard)
			b.ReportAllocs()
			for b.Loop() {
				sh.Encode()
			}
			b.ReportMetric(float64(len(shard)), "shard-bytes")
		})
		b.Run(fmt.Sprintf("shard/decode/overrides=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeOverrideShard(shard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
