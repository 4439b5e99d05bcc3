package snapshot

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"testing"
)

// pairBundle is a bundle with a dcb delta 4,000 bytes smaller than its dcz
// delta from base "A" but 8 ms slower to decode at the origin (32 ms on a
// device 4 times slower): the two cost a device the same at 1 Mbit/s.
// Base "B" has a dcz delta only.
func pairBundle() *Bundle {
	return &Bundle{Version: "1.0.1", Deltas: []Delta{
		{From: "1.0.0", Base: "A", Encoding: "dcb", SHA256: "a-dcb", Size: 40_000, DecodeNs: 10_000_000},
		{From: "1.0.0", Base: "A", Encoding: "dcz", SHA256: "a-dcz", Size: 44_000, DecodeNs: 2_000_000},
		{From: "0.9.0", Base: "B", Encoding: "dcz", SHA256: "b-dcz", Size: 70_000, DecodeNs: 3_000_000},
	}}
}

func sha(d *Delta) string {
	if d == nil {
		return "none"
	}
	return d.SHA256
}

func TestDeltaFromWeighsDecodeCost(t *testing.T) {
	b := pairBundle()
	profile := func(mbit, factor float64) DeltaCost {
		return DeltaCost{LinkBitsPerSecond: mbit * 1e6, DecodeFactor: factor}
	}
	for _, c := range []struct {
		name     string
		base     string
		dcz, dcb bool
		cost     DeltaCost
		want     string
	}{
		// A fast link: the 4 KB more of dcz cost 0.3 ms, dcb's decode 32 ms more.
		{"fast link: larger dcz decodes sooner", "A", true, true, profile(100, 4), "a-dcz"},
		{"default profile", "A", true, true, profile(20, 4), "a-dcz"},
		// A slow link: the 4 KB cost 125 ms, more than the decode.
		{"slow link: smaller dcb", "A", true, true, profile(0.256, 4), "a-dcb"},
		// The same fast link with a device as fast as the origin and the
		// decode gap down to 8 ms: still dcz; at 1 Mbit/s the 32 ms of
		// transfer outweigh it.
		{"fast device, fast link", "A", true, true, profile(100, 1), "a-dcz"},
		{"fast device, 1 Mbit/s", "A", true, true, profile(1, 1), "a-dcb"},
		// Only what the client accepts.
		{"only dcb accepted", "A", false, true, profile(100, 4), "a-dcb"},
		{"only dcz accepted", "A", true, false, profile(0.256, 4), "a-dcz"},
		{"nothing accepted", "A", false, false, profile(20, 4), "none"},
		// Another base, or none.
		{"other base", "B", true, true, profile(20, 4), "b-dcz"},
		{"unknown base", "C", true, true, profile(20, 4), "none"},
		// No profile: the smallest, as before.
		{"no profile", "A", true, true, DeltaCost{}, "a-dcb"},
		{"link 0", "A", true, true, profile(0, 4), "a-dcb"},
		{"decode factor 0", "A", true, true, profile(100, 0), "a-dcb"},
	} {
		if got := sha(b.DeltaFrom(c.base, c.dcz, c.dcb, c.cost)); got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}

	// Rows built before decode costs were measured (DecodeNs 0): the
	// smallest, whatever the profile, as soon as one candidate lacks it.
	fast := profile(100, 4)
	old := pairBundle()
	for i := range old.Deltas {
		old.Deltas[i].DecodeNs = 0
	}
	if got := sha(old.DeltaFrom("A", true, true, fast)); got != "a-dcb" {
		t.Errorf("unmeasured deltas: got %s, want the smallest", got)
	}
	for i := range 2 {
		half := pairBundle()
		half.Deltas[i].DecodeNs = 0
		if got := sha(half.DeltaFrom("A", true, true, fast)); got != "a-dcb" {
			t.Errorf("%s unmeasured: got %s, want the smallest", half.Deltas[i].Encoding, got)
		}
	}

	// Equal estimates: the smaller; equal sizes too: the first listed.
	tie := &Bundle{Deltas: []Delta{
		{Base: "A", Encoding: "dcz", SHA256: "big", Size: 2_000, DecodeNs: 1_000_000},
		{Base: "A", Encoding: "dcb", SHA256: "small", Size: 1_000, DecodeNs: 1_000_000 + 1_000*8*1_000/8}, // 1 ms more at 8 Mbit/s, factor 1
	}}
	if got := sha(tie.DeltaFrom("A", true, true, profile(8, 1))); got != "small" {
		t.Errorf("tie: got %s, want the smaller", got)
	}
	same := &Bundle{Deltas: []Delta{
		{Base: "A", Encoding: "dcz", SHA256: "first", Size: 1_000, DecodeNs: 5},
		{Base: "A", Encoding: "dcb", SHA256: "second", Size: 1_000, DecodeNs: 5},
	}}
	if got := sha(same.DeltaFrom("A", true, true, fast)); got != "first" {
		t.Errorf("identical: got %s, want the first", got)
	}

	// The choice runs per update check: it allocates nothing.
	if n := testing.AllocsPerRun(100, func() { b.DeltaFrom("A", true, true, fast) }); n != 0 {
		t.Errorf("DeltaFrom: %g allocations", n)
	}
}

func BenchmarkDeltaFrom(b *testing.B) {
	bd := pairBundle()
	base := string(bytes.Repeat([]byte("a"), 64)) // a SHA-256 in hex, as in snapshots
	for i := range bd.Deltas {
		bd.Deltas[i].Base = base
	}
	cost := DeltaCost{LinkBitsPerSecond: 20e6, DecodeFactor: 4}
	b.ReportAllocs()
	for b.Loop() {
		if bd.DeltaFrom(base, true, true, cost) == nil {
			b.Fatal("no delta")
		}
	}
}

// decode_ns travels in the signed snapshot (it is part of the signed
// payload like every field; nothing is re-encoded to be checked), is left
// out when 0 (snapshots of unmeasured rows are unchanged), and an edge
// whose Delta does not know it decodes the document all the same.
func TestDeltaDecodeNsInSnapshot(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	s := &Snapshot{Rev: 3, Apps: []*App{{ID: "com.example.app", Bundles: []*Bundle{pairBundle()}}}}
	s.Apps[0].Bundles[0].Deltas[2].DecodeNs = 0
	wire, err := Encode(s, priv)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(wire, pub, nil)
	if err != nil {
		t.Fatal(err)
	}
	ds := got.App("com.example.app").Bundle("1.0.1").Deltas
	if ds[0].DecodeNs != 10_000_000 || ds[1].DecodeNs != 2_000_000 || ds[2].DecodeNs != 0 {
		t.Fatalf("decoded deltas: %+v", ds)
	}
	unmeasured, _ := json.Marshal(ds[2])
	if bytes.Contains(unmeasured, []byte("decode_ns")) {
		t.Fatalf("unmeasured delta encodes %s", unmeasured)
	}
	measured, _ := json.Marshal(ds[0])
	if !bytes.Contains(measured, []byte(`"decode_ns":10000000`)) {
		t.Fatalf("measured delta encodes %s", measured)
	}
	// An older edge's Delta, without the field.
	var older struct {
		From, Base, Encoding, SHA256 string
		Size                         int64
	}
	if err := json.Unmarshal(measured, &older); err != nil || older.SHA256 != "a-dcb" || older.Size != 40_000 {
		t.Fatalf("older Delta: %+v, %v", older, err)
	}
}
