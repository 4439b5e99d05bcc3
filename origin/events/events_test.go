package events

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// sampleEvents returns events that exercise every field: unicode, empty
// strings, long strings, every flag combination and extreme timestamps.
func sampleEvents() []Event {
	return []Event{
		{
			Timestamp: 1_700_000_000_123, Received: 1_700_000_000_456,
			AppID: "com.example.app", DeviceID: "00009a6b-eefe-490a-9c60-8e965132ae51", Action: "set",
			VersionName: "1.1.0", OldVersionName: "1.0.0", Platform: "android", VersionBuild: "1.0.0",
			PluginVersion: "8.51.14", CustomID: "user-42", IsEmulator: false, IsProd: true,
			Channel: "production", Segment: "default", Arm: "rollout", Metadata: `{"k":"v"}`,
		},
		{
			// Everything empty or zero.
		},
		{
			Timestamp: -1, Received: math.MaxInt64, IsEmulator: true, IsProd: false,
			AppID: "ünïcödé.app", DeviceID: "日本語", Action: "download_fail", VersionName: "1.0.0:main.js",
			Platform: "ios", Metadata: `{"emoji":"🚀","nul":"\u0000"}`, CustomID: "\x00\xff", Segment: "segment:β",
			Arm: "treatment-🅰",
		},
		{
			Timestamp: math.MinInt64, Received: 0, IsEmulator: true, IsProd: true,
			Action: "ping", Metadata: strings.Repeat("x", 70_000), // length needs a 3-byte uvarint
			OldVersionName: strings.Repeat("é", 200),
		},
	}
}

// segmentOf builds a segment holding one record per batch.
func segmentOf(batches ...[]Event) []byte {
	seg := []byte(Magic)
	for _, evs := range batches {
		seg = AppendRecord(seg, evs)
	}
	return seg
}

// frame wraps payload in a record header with the right length and CRC.
func frame(payload []byte) []byte {
	b := make([]byte, headerLen, headerLen+len(payload))
	binary.LittleEndian.PutUint32(b, uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(payload, crc32.MakeTable(crc32.Castagnoli)))
	return append(b, payload...)
}

func decodeAll(t *testing.T, seg []byte) []Event {
	t.Helper()
	var got []Event
	if err := DecodeSegment(seg, func(e *Event) error { got = append(got, *e); return nil }); err != nil {
		t.Fatalf("DecodeSegment: %v", err)
	}
	return got
}

func TestEventsRecordRoundTrip(t *testing.T) {
	evs := sampleEvents()
	for i := range evs {
		rec := AppendRecord(nil, evs[i:i+1])
		payload, rest, err := NextRecord(rec)
		if err != nil || len(rest) != 0 {
			t.Fatalf("event %d: NextRecord = %v, %d bytes left", i, err, len(rest))
		}
		if int(binary.LittleEndian.Uint32(rec)) != len(rec)-headerLen {
			t.Fatalf("event %d: length field %d, record payload is %d bytes", i, binary.LittleEndian.Uint32(rec), len(rec)-headerLen)
		}
		var got []Event
		if err := DecodeRecord(payload, func(e *Event) error { got = append(got, *e); return nil }); err != nil {
			t.Fatalf("event %d: DecodeRecord: %v", i, err)
		}
		if len(got) != 1 || !reflect.DeepEqual(got[0], evs[i]) {
			t.Fatalf("event %d round trip\n got %+v\nwant %+v", i, got, evs[i])
		}
	}
	// One record of all of them, appended after existing bytes.
	prefix := []byte("prefix")
	rec := AppendRecord(append([]byte(nil), prefix...), evs)
	if !bytes.HasPrefix(rec, prefix) {
		t.Fatal("AppendRecord changed the bytes before it")
	}
	payload, _, err := NextRecord(rec[len(prefix):])
	if err != nil {
		t.Fatal(err)
	}
	var got []Event
	if err := DecodeRecord(payload, func(e *Event) error { got = append(got, *e); return nil }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, evs) {
		t.Fatalf("multi-event record round trip\n got %+v\nwant %+v", got, evs)
	}
}

func TestEventsSegmentRoundTrip(t *testing.T) {
	evs := sampleEvents()
	full := make([]Event, MaxBatch)
	for i := range full {
		full[i] = evs[i%len(evs)]
		full[i].Timestamp = int64(i)
	}
	batches := [][]Event{evs[:1], evs, evs[2:3], full}
	seg := segmentOf(batches...)
	if !bytes.HasPrefix(seg, []byte(Magic)) {
		t.Fatalf("segment starts %q", seg[:8])
	}
	recs, err := Records(seg)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(batches) {
		t.Fatalf("Records: %d records, want %d", len(recs), len(batches))
	}
	var want []Event
	for i, b := range batches {
		want = append(want, b...)
		if p := AppendRecord(nil, b)[headerLen:]; !bytes.Equal(recs[i], p) {
			t.Errorf("record %d payload differs from AppendRecord's", i)
		}
	}
	if got := decodeAll(t, seg); !reflect.DeepEqual(got, want) {
		t.Fatalf("segment round trip: got %d events, want %d (or fields differ)", len(got), len(want))
	}
	// An empty segment (magic only) holds no records.
	if recs, err := Records([]byte(Magic)); err != nil || len(recs) != 0 {
		t.Fatalf("Records(magic only) = %d records, %v", len(recs), err)
	}
	// fn's error stops decoding and is returned as is.
	stop := errors.New("stop")
	n := 0
	if err := DecodeSegment(seg, func(*Event) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("DecodeSegment with a failing fn: err %v after %d calls, want stop after 1", err, n)
	}
}

// The decoded strings are copies: changing the segment afterwards does not
// change events fn kept.
func TestEventsDecodeCopiesStrings(t *testing.T) {
	seg := segmentOf(sampleEvents()[:1])
	var kept Event
	if err := DecodeSegment(seg, func(e *Event) error { kept = *e; return nil }); err != nil {
		t.Fatal(err)
	}
	for i := range seg {
		seg[i] = 'Z'
	}
	if want := sampleEvents()[0]; !reflect.DeepEqual(kept, want) {
		t.Fatalf("kept event changed with its segment: %+v", kept)
	}
}

// Every single-bit flip anywhere in a segment (magic, header, payload) is
// detected, and DecodeSegment calls fn for none of its events.
func TestEventsBitFlipsDetected(t *testing.T) {
	evs := sampleEvents()
	seg := segmentOf(evs[:1], evs[1:3], evs[:1])
	for i := range seg {
		for bit := 0; bit < 8; bit++ {
			bad := bytes.Clone(seg)
			bad[i] ^= 1 << bit
			if _, err := Records(bad); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d bit %d: Records err = %v, want ErrCorrupt", i, bit, err)
			}
			calls := 0
			err := DecodeSegment(bad, func(*Event) error { calls++; return nil })
			if !errors.Is(err, ErrCorrupt) || calls != 0 {
				t.Fatalf("byte %d bit %d: DecodeSegment err = %v after %d calls, want ErrCorrupt before any", i, bit, err, calls)
			}
		}
	}
}

// A segment cut anywhere but at a record boundary is refused; cut at a
// boundary it is a valid segment of the records before the cut.
func TestEventsTruncatedSegment(t *testing.T) {
	evs := sampleEvents()
	seg := segmentOf(evs[:1], evs[2:3], evs[:2])
	boundaries := map[int]int{len(Magic): 0} // offset -> records before it
	off := len(Magic)
	for n, rest := 1, seg[len(Magic):]; len(rest) > 0; n++ {
		_, next, err := NextRecord(rest)
		if err != nil {
			t.Fatal(err)
		}
		off += len(rest) - len(next)
		boundaries[off] = n
		rest = next
	}
	if len(boundaries) != 4 {
		t.Fatalf("found %d boundaries, want 4", len(boundaries))
	}
	for cut := 0; cut < len(seg); cut++ {
		recs, err := Records(seg[:cut])
		if n, ok := boundaries[cut]; ok {
			if err != nil || len(recs) != n {
				t.Fatalf("cut at boundary %d: %d records, %v; want %d", cut, len(recs), err, n)
			}
			continue
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("cut at %d: Records err = %v, want ErrCorrupt", cut, err)
		}
		if err := DecodeSegment(seg[:cut], func(*Event) error { return nil }); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("cut at %d: DecodeSegment err = %v, want ErrCorrupt", cut, err)
		}
	}
}

func TestEventsNextRecordTornTail(t *testing.T) {
	rec1 := AppendRecord(nil, sampleEvents()[:1])
	rec2 := AppendRecord(nil, sampleEvents()[2:3])
	buf := append(bytes.Clone(rec1), rec2...)
	for cut := 0; cut < len(rec2); cut++ {
		b := buf[:len(rec1)+cut]
		p, rest, err := NextRecord(b)
		if err != nil || !bytes.Equal(p, rec1[headerLen:]) || len(rest) != cut {
			t.Fatalf("cut %d: first record: err %v, %d bytes left; want it whole with %d left", cut, err, len(rest), cut)
		}
		p, rest2, err := NextRecord(rest)
		if !errors.Is(err, ErrCorrupt) || p != nil {
			t.Fatalf("cut %d of %d: torn record read as %d bytes, err %v; want ErrCorrupt", cut, len(rec2), len(p), err)
		}
		if len(rest2) != len(rest) {
			t.Fatalf("cut %d: NextRecord on a torn record returned rest of %d bytes, want the input (%d)", cut, len(rest2), len(rest))
		}
	}
	// A header claiming more than MaxRecord is refused even with the bytes present.
	big := make([]byte, headerLen)
	binary.LittleEndian.PutUint32(big, MaxRecord+1)
	if _, _, err := NextRecord(big); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("length over MaxRecord: err %v, want ErrCorrupt", err)
	}
	binary.LittleEndian.PutUint32(big, math.MaxUint32)
	if _, _, err := NextRecord(big); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("length 2^32-1: err %v, want ErrCorrupt", err)
	}
}

// Records whose CRC is right but whose payload is not a valid list of
// events are refused by DecodeRecord (and DecodeSegment).
func TestEventsDecodeRecordRefusesBadPayloads(t *testing.T) {
	one := AppendRecord(nil, []Event{{AppID: "a.b", Action: "set"}})[headerLen:]
	// Layout of one: kind(1) | count(1) | ts(1) | received(1) | flags | 13 strings | prefix | reserved.
	const flagsAt = 4
	if one[0] != kindEvents || one[1] != 1 || one[2] != 0 || one[3] != 0 || one[flagsAt] != 0 {
		t.Fatalf("unexpected layout % x", one[:5])
	}
	edit := func(f func(p []byte) []byte) []byte { return f(bytes.Clone(one)) }
	cases := map[string][]byte{
		"empty payload":       {},
		"kind only":           {kindEvents},
		"unknown kind":        edit(func(p []byte) []byte { p[0] = 3; return p }),
		"kind 0":              edit(func(p []byte) []byte { p[0] = 0; return p }),
		"format 1 payload":    one[1:],
		"no events":           {kindEvents, 0},
		"201 events":          append(append([]byte{kindEvents}, binary.AppendUvarint(nil, MaxBatch+1)...), one[2:]...),
		"count overflow":      append([]byte{kindEvents}, bytes.Repeat([]byte{0xff}, 11)...),
		"count says 2":        edit(func(p []byte) []byte { p[1] = 2; return p }),
		"trailing byte":       edit(func(p []byte) []byte { return append(p, 0) }),
		"unknown flag bit":    edit(func(p []byte) []byte { p[flagsAt] = 4; return p }),
		"all flag bits":       edit(func(p []byte) []byte { p[flagsAt] = 0xff; return p }),
		"string overruns":     edit(func(p []byte) []byte { p[len(p)-3] = 5; return p }),
		"prefix length 4":     edit(func(p []byte) []byte { p[len(p)-2] = 4; return append(p, 0, 0, 0, 0) }),
		"prefix overruns":     edit(func(p []byte) []byte { p[len(p)-2] = 6; return p }),
		"no reserved string":  edit(func(p []byte) []byte { return p[:len(p)-1] }),
		"torn varint":         {kindEvents, 1, 0x80},
		"missing flags":       {kindEvents, 1, 0, 0},
		"missing strings":     {kindEvents, 1, 0, 0, 0, 0},
		"check-ins none":      append(AppendCheckIns(nil, &CheckIns{AppID: "a.b", Devices: [][16]byte{{}}})[headerLen:headerLen+6], 0),
		"check-ins short":     AppendCheckIns(nil, &CheckIns{AppID: "a.b", Devices: [][16]byte{{1}}})[headerLen : headerLen+20],
		"check-ins trailing":  append(AppendCheckIns(nil, &CheckIns{AppID: "a.b", Devices: [][16]byte{{1}}})[headerLen:], 0),
		"check-ins app overs": {kindCheckIns, 9, 'a'},
		"details trailing":    append(AppendCheckIns(nil, detailedCheckIns())[headerLen:], 0),
		"details truncated":   func() []byte { p := AppendCheckIns(nil, detailedCheckIns())[headerLen:]; return p[:len(p)-1] }(),
		"details reserved":    func() []byte { p := AppendCheckIns(nil, detailedCheckIns())[headerLen:]; p[len(p)-1] = 1; return p }(),
		"details long string": func() []byte {
			c := detailedCheckIns()
			c.Details[0].Bundle = ""
			p := AppendCheckIns(nil, c)[headerLen:]
			p[len(p)-2] = MaxDetailString + 1
			return append(p[:len(p)-1], append(make([]byte, MaxDetailString+1), 0)...)
		}(),
	}
	for name, p := range cases {
		calls := 0
		v := Visitor{Event: func(*Event) error { calls++; return nil }, CheckIns: func(*CheckIns) error { calls++; return nil }}
		if err := decodeRecord(2, p, v); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: decodeRecord err = %v, want ErrCorrupt", name, err)
		}
		seg := append([]byte(Magic), frame(p)...)
		if _, err := Records(seg); err != nil {
			t.Errorf("%s: Records refused a record with a valid frame: %v", name, err)
		}
		if err := Decode(seg, v); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Decode err = %v, want ErrCorrupt", name, err)
		}
	}
	// Exactly MaxBatch events is fine.
	evs := make([]Event, MaxBatch)
	n := 0
	if err := DecodeRecord(AppendRecord(nil, evs)[headerLen:], func(*Event) error { n++; return nil }); err != nil || n != MaxBatch {
		t.Fatalf("MaxBatch events: %d decoded, %v", n, err)
	}
	// A bad magic is refused.
	for _, seg := range [][]byte{nil, []byte("UPDEVT1"), []byte("UPDEVT3\n"), append([]byte("updevt2\n"), frame(one)...)} {
		if _, err := Records(seg); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Records(%q): err %v, want ErrCorrupt", seg, err)
		}
	}
	// A format 2 record in a format 1 segment (and the reverse) is refused.
	if err := DecodeSegment(append([]byte(MagicV1), frame(one)...), func(*Event) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Errorf("format 2 record in a format 1 segment: err %v, want ErrCorrupt", err)
	}
	if err := DecodeSegment(append([]byte(Magic), AppendRecordV1(nil, []Event{{AppID: "a.b", Action: "set"}})...), func(*Event) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Errorf("format 1 record in a format 2 segment: err %v, want ErrCorrupt", err)
	}
}

// A record is canonical: the decoder accepts only the bytes AppendRecord
// writes for the events it returns, so that a segment decodes to events
// that encode back to the same bytes.
func TestEventsRecordCanonical(t *testing.T) {
	one := AppendRecord(nil, []Event{{AppID: "a.b", Action: "set"}})[headerLen:]
	cases := map[string][]byte{
		// Timestamp 0 written as a two-byte varint (0x80 0x00).
		"non-minimal varint": append([]byte{kindEvents, 1, 0x80, 0x00}, one[3:]...),
		// The reserved string is not empty.
		"reserved string set": append(append(bytes.Clone(one[:len(one)-1]), 1), 'x'),
	}
	for name, p := range cases {
		var evs []Event
		err := DecodeRecord(p, func(e *Event) error { evs = append(evs, *e); return nil })
		if err != nil {
			continue // refused: fine
		}
		if re := AppendRecord(nil, evs)[headerLen:]; !bytes.Equal(re, p) {
			t.Errorf("%s: DecodeRecord accepted % x, which re-encodes as % x (not canonical; want ErrCorrupt)", name, p, re)
		}
	}
}

// Client prefixes round-trip as the /24 or /48 PrefixOf gives, in 3 or 6
// bytes; unknown prefixes take one byte.
func TestEventsClientPrefix(t *testing.T) {
	cases := []struct{ addr, want string }{
		{"203.0.113.77", "203.0.113.0/24"},
		{"::ffff:198.51.100.9", "198.51.100.0/24"},
		{"2001:db8:1234:5678::1", "2001:db8:1234::/48"},
		{"fe80::1%eth0", "fe80::/48"},
	}
	for _, c := range cases {
		p := PrefixOf(netip.MustParseAddr(c.addr))
		if p.String() != c.want {
			t.Fatalf("PrefixOf(%s) = %s, want %s", c.addr, p, c.want)
		}
		ev := sampleEvents()[0]
		ev.ClientPrefix = p
		rec := AppendRecord(nil, []Event{ev})
		plain := AppendRecord(nil, sampleEvents()[:1])
		if d, want := len(rec)-len(plain), prefixBytes(p); d != want {
			t.Fatalf("%s: prefix takes %d more bytes, want %d", c.want, d, want)
		}
		var got []Event
		if err := DecodeRecord(rec[headerLen:], func(e *Event) error { got = append(got, *e); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].ClientPrefix != p || got[0].ClientPrefix.String() != c.want {
			t.Fatalf("%s: decoded %+v", c.want, got)
		}
		checkSegment(t, append([]byte(Magic), rec...))
	}
	if p := PrefixOf(netip.Addr{}); p.IsValid() {
		t.Fatalf("PrefixOf(invalid) = %v", p)
	}
}

// Segments of format 1 (older edges: no client prefix) still decode, to
// the same events with an unknown prefix.
func TestEventsFormat1StillRead(t *testing.T) {
	evs := sampleEvents()
	seg := []byte(MagicV1)
	seg = AppendRecordV1(seg, evs[:1])
	seg = AppendRecordV1(seg, evs)
	if Version(seg) != 1 {
		t.Fatalf("Version = %d", Version(seg))
	}
	got := decodeAll(t, seg)
	want := append(append([]Event{}, evs[:1]...), evs...)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("format 1 segment: got %+v", got)
	}
	// A format 1 event record is the format 2 one without kind and prefix.
	v1 := AppendRecordV1(nil, evs[:1])[headerLen:]
	v2 := AppendRecord(nil, evs[:1])[headerLen:]
	if len(v2) != len(v1)+2 || v2[0] != kindEvents {
		t.Fatalf("format 1 record %d bytes, format 2 %d bytes", len(v1), len(v2))
	}
	if RecordEvents(1, v1) != 1 || RecordEvents(2, v2) != 1 || RecordEvents(2, v1) != 0 {
		t.Fatal("RecordEvents")
	}
	checkSegment(t, seg)
}

func detailedCheckIns() *CheckIns {
	return &CheckIns{AppID: "a.b", At: 5, Devices: [][16]byte{{1}}, Details: []CheckInDetail{{At: 4, Platform: "ios", Bundle: "1.0.0"}}}
}

// Detailed check-in records (kind 3) round-trip, with their strings cut at
// MaxDetailString.
func TestEventsCheckInDetails(t *testing.T) {
	long := strings.Repeat("x", MaxDetailString+10)
	ci := CheckIns{AppID: "com.example.app", At: 1_700_000_000_500, Devices: [][16]byte{{1, 2}, {3}},
		Details: []CheckInDetail{
			{At: 1_700_000_000_100, Platform: "ios", VersionBuild: "1.2.0", VersionName: "1.0.1", PluginVersion: "7.0.0",
				CustomID: long, Channel: "production", Segment: "segment:beta", Arm: "rollout", Outcome: "update", Bundle: "1.0.2"},
			{At: 1_700_000_000_200, Platform: "android", Outcome: "no_channel"},
		}}
	seg := AppendCheckIns([]byte(Magic), &ci)
	var got []CheckIns
	if err := Decode(seg, Visitor{CheckIns: func(c *CheckIns) error { got = append(got, *c); return nil }}); err != nil {
		t.Fatal(err)
	}
	want := ci
	want.Details = append([]CheckInDetail(nil), ci.Details...)
	want.Details[0].CustomID = long[:MaxDetailString]
	if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Fatalf("decoded %+v\nwant %+v", got, want)
	}
	checkSegment(t, seg)
}

// Check-in records round-trip and are skipped by DecodeSegment.
func TestEventsCheckIns(t *testing.T) {
	devs := make([][16]byte, 300)
	for i := range devs {
		devs[i][0], devs[i][15] = byte(i), byte(i>>8)
	}
	ci := CheckIns{AppID: "com.example.app", At: 1_700_000_000_000, Devices: devs}
	seg := []byte(Magic)
	seg = AppendRecord(seg, sampleEvents()[:1])
	seg = AppendCheckIns(seg, &ci)
	seg = AppendRecord(seg, sampleEvents()[2:3])
	var evs int
	var cis []CheckIns
	if err := Decode(seg, Visitor{Event: func(*Event) error { evs++; return nil },
		CheckIns: func(c *CheckIns) error { cis = append(cis, *c); return nil }}); err != nil {
		t.Fatal(err)
	}
	if evs != 2 || len(cis) != 1 || !reflect.DeepEqual(cis[0], ci) {
		t.Fatalf("decoded %d events and %+v", evs, cis)
	}
	if n := len(decodeAll(t, seg)); n != 2 {
		t.Fatalf("DecodeSegment: %d events, want 2 (check-ins skipped)", n)
	}
	recs, _ := Records(seg)
	if RecordEvents(2, recs[1]) != 0 {
		t.Fatal("RecordEvents counts check-ins")
	}
	checkSegment(t, seg)
	// MaxCheckIns fit a record; one more does not decode.
	big := CheckIns{AppID: "a.b", Devices: make([][16]byte, MaxCheckIns+1)}
	if err := DecodeSegment(append([]byte(Magic), AppendCheckIns(nil, &big)...), nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("%d check-ins: err %v, want ErrCorrupt", MaxCheckIns+1, err)
	}
	big.Devices = big.Devices[:MaxCheckIns]
	checkSegment(t, append([]byte(Magic), AppendCheckIns(nil, &big)...))
}

func TestEventsFailure(t *testing.T) {
	for action, want := range map[string]bool{
		"set_fail": true, "update_fail": true, "download_fail": true, "checksum_fail": true, "decrypt_fail": true,
		"download_manifest_checksum_fail": true, "finish_download_fail": true, "low_mem_fail": true,
		"set": false, "get": false, "ping": false, "download_complete": false, "app_crash": false,
		"fail": false, "": false, "_fail_": false, "failure": false, "download_failed": false,
		"x_fail": true, // any *_fail counts, as in Capgo
	} {
		if got := Failure(action); got != want {
			t.Errorf("Failure(%q) = %v, want %v", action, got, want)
		}
	}
	n := 0
	for a := range Actions {
		if Failure(a) {
			n++
		}
	}
	if n != 15 {
		t.Errorf("%d failure actions in the vocabulary, want 15", n)
	}
}

// capgoActions is Capgo's ALLOWED_STATS_ACTIONS in its order
// (supabase/functions/_backend/plugin_runtime/plugins/stats_actions.ts).
const capgoActions = `ping delete reset set get set_fail update_fail download_fail windows_path_fail
canonical_path_fail directory_path_fail unzip_fail low_mem_fail download_0 download_10 download_20 download_30
download_40 download_50 download_60 download_70 download_80 download_90 download_complete download_manifest_start
download_manifest_complete download_zip_start download_zip_complete download_manifest_file_fail
download_manifest_checksum_fail download_manifest_brotli_fail finish_download_fail manifest_path_fail decrypt_fail
checksum_required insufficient_disk_space app_moved_to_foreground app_moved_to_background app_launch_start
app_launch_ready app_launch_timeout uninstall needPlanUpgrade missingBundle noNew disablePlatformIos
disablePlatformAndroid disableAutoUpdateToMajor cannotUpdateViaPrivateChannel disableAutoUpdateToMinor
disableAutoUpdateToPatch channelMisconfigured disableAutoUpdateMetadata disableAutoUpdateUnderNative disableDevBuild
disableProdBuild disableEmulator disableDevice cannotGetBundle checksum_fail NoChannelOrOverride setChannel getChannel
rateLimited rate_limit_reached disableAutoUpdate keyMismatch InvalidIp blocked_by_server_url backend_refusal
disablePlatformElectron customIdBlocked app_crash app_crash_native app_anr app_killed_low_memory
app_killed_excessive_resource_usage app_initialization_failure app_memory_warning webview_javascript_error
webview_unhandled_rejection webview_resource_error webview_security_policy_violation webview_unclean_restart
webview_render_process_gone webview_content_process_terminated webview_dom_content_loaded webview_page_loaded
set_next os_version_changed native_app_version_changed`

func TestEventsActions(t *testing.T) {
	want := strings.Fields(capgoActions)
	// Capgo's list (and so this package's) holds 91 actions.
	if len(want) != 91 {
		t.Fatalf("test list has %d actions", len(want))
	}
	if len(Actions) != len(want) {
		t.Errorf("Actions has %d entries, want %d", len(Actions), len(want))
	}
	for _, a := range want {
		if !Actions[a] {
			t.Errorf("Actions lacks %q", a)
		}
	}
	for a := range Actions {
		if !strings.Contains(" "+strings.Join(want, " ")+" ", " "+a+" ") {
			t.Errorf("Actions has %q, which Capgo does not accept", a)
		}
	}
	if got := strings.Join(want, ", "); ActionList != got {
		t.Errorf("ActionList is not Capgo's list in Capgo's order:\n got %s\nwant %s", ActionList, got)
	}
	for _, a := range []string{"", "Set", "download_100", "unknown", "set "} {
		if Actions[a] {
			t.Errorf("Actions accepts %q", a)
		}
	}
}

// checkSegment asserts what must hold for any input: no panic, errors wrap
// ErrCorrupt, a damaged frame is refused before fn runs, and a segment that
// decodes is canonical (each record re-encodes to its own bytes).
func checkSegment(t *testing.T, seg []byte) {
	recs, rerr := Records(seg)
	calls := 0
	count := Visitor{Event: func(*Event) error { calls++; return nil }, CheckIns: func(*CheckIns) error { calls++; return nil }}
	derr := Decode(seg, count)
	if rerr != nil {
		if !errors.Is(rerr, ErrCorrupt) || !errors.Is(derr, ErrCorrupt) {
			t.Fatalf("Records err %v, Decode err %v: want ErrCorrupt from both", rerr, derr)
		}
		if calls != 0 {
			t.Fatalf("Decode called a func %d times on a segment Records refuses", calls)
		}
		return
	}
	if derr != nil {
		if !errors.Is(derr, ErrCorrupt) {
			t.Fatalf("Decode err %v, want ErrCorrupt", derr)
		}
		return
	}
	version := Version(seg)
	re := []byte(seg[:MagicLen])
	total := 0
	for i, p := range recs {
		var evs []Event
		var cis []CheckIns
		if err := decodeRecord(version, p, Visitor{Event: func(e *Event) error { evs = append(evs, *e); return nil },
			CheckIns: func(c *CheckIns) error { cis = append(cis, *c); return nil }}); err != nil {
			t.Fatalf("record %d: decodeRecord: %v after Decode accepted the segment", i, err)
		}
		var rec []byte
		switch {
		case len(cis) == 1 && len(evs) == 0:
			if n := len(cis[0].Devices); n == 0 || n > MaxCheckIns {
				t.Fatalf("record %d decoded to %d check-ins", i, n)
			}
			total++
			rec = AppendCheckIns(nil, &cis[0])
		case len(cis) == 0 && len(evs) > 0 && len(evs) <= MaxBatch:
			total += len(evs)
			if version == 1 {
				rec = AppendRecordV1(nil, evs)
			} else {
				rec = AppendRecord(nil, evs)
			}
			if RecordEvents(version, p) != len(evs) {
				t.Fatalf("record %d: RecordEvents %d, decoded %d", i, RecordEvents(version, p), len(evs))
			}
		default:
			t.Fatalf("record %d decoded to %d events and %d check-in batches", i, len(evs), len(cis))
		}
		if !bytes.Equal(rec[headerLen:], p) {
			t.Fatalf("record %d is not canonical:\n  read  % x\n  write % x", i, p, rec[headerLen:])
		}
		re = append(re, rec...)
	}
	if calls != total {
		t.Fatalf("Decode called the visitor %d times for %d events and check-in batches", calls, total)
	}
	if !bytes.Equal(re, seg) {
		t.Fatalf("segment re-encodes differently")
	}
}

func FuzzDecodeSegment(f *testing.F) {
	evs := sampleEvents()[:3] // small seeds: the fourth event is 70 KB
	evs[0].ClientPrefix = PrefixOf(netip.MustParseAddr("203.0.113.9"))
	evs[2].ClientPrefix = PrefixOf(netip.MustParseAddr("2001:db8::1"))
	valid := segmentOf(evs[:1], evs, evs[1:2])
	f.Add(valid)
	f.Add(segmentOf(evs[:1]))
	f.Add(segmentOf([]Event{{}}))
	f.Add(AppendCheckIns([]byte(Magic), &CheckIns{AppID: "com.example.app", At: 1, Devices: [][16]byte{{1}, {2}}}))
	f.Add(AppendRecordV1([]byte(MagicV1), evs))
	f.Add([]byte(Magic))
	f.Add([]byte(MagicV1))
	f.Add([]byte{})
	f.Add([]byte("UPDEVT2\nnot a record at all"))
	f.Add(valid[:len(valid)-3])
	flipped := bytes.Clone(valid)
	flipped[len(flipped)/2] ^= 0x10
	f.Add(flipped)
	f.Add(AppendRecord(nil, evs[:1])[headerLen:])                                         // a bare payload (see the framed check below)
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})          // payload of one empty event
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 0}) // ... with an IPv4 prefix
	f.Add([]byte{2, 3, 'a', '.', 'b', 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkSegment(t, data)
		// The CRC keeps random bytes from ever reaching the event decoder:
		// also try data as the payload of a correctly framed record, in a
		// segment of either format.
		if len(data) <= MaxRecord {
			checkSegment(t, append([]byte(Magic), frame(data)...))
			checkSegment(t, append([]byte(MagicV1), frame(data)...))
		}
	})
}

func TestEventSize(t *testing.T) {
	for _, e := range []Event{{}, {Timestamp: -1, Received: 1 << 40, AppID: "a.b", Metadata: strings.Repeat("x", 300)},
		{DeviceID: strings.Repeat("d", 128), Action: "set", Timestamp: 1764331200000, Received: 1764331200123},
		{ClientPrefix: PrefixOf(netip.MustParseAddr("10.1.2.3"))}, {ClientPrefix: PrefixOf(netip.MustParseAddr("2001:db8::1"))}} {
		if got, want := eventSize(&e), len(appendEvent(nil, &e, 2)); got != want {
			t.Fatalf("eventSize %d, encoded %d bytes (%+v)", got, want, e)
		}
	}
}
