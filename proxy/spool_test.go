package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/updraft-cdn/updraft/origin/events"
)

// memDelivery is one call of memSink.DeliverEvents.
type memDelivery struct {
	edgeID  string
	seq     uint64
	segment []byte
	stored  bool  // the sink kept the segment (the origin has it)
	err     error // what the sink answered
}

// memSink is an in-memory origin. fail decides, per call, whether the
// delivery is refused (err, not stored), or stored but answered with an
// error (a lost acknowledgement: the spool must re-send the same segment).
type memSink struct {
	mu    sync.Mutex
	calls []memDelivery
	fail  func(call int, seq uint64) (err error, stored bool)
}

func (s *memSink) DeliverEvents(ctx context.Context, edgeID string, seq uint64, segment []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := memDelivery{edgeID: edgeID, seq: seq, segment: bytes.Clone(segment), stored: true}
	if s.fail != nil {
		d.err, d.stored = s.fail(len(s.calls), seq)
		if d.err == nil {
			d.stored = true
		}
	}
	s.calls = append(s.calls, d)
	return d.err
}

func (s *memSink) snapshot() []memDelivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]memDelivery(nil), s.calls...)
}

// acked returns the deliveries the sink acknowledged, in call order.
func (s *memSink) acked() []memDelivery {
	var out []memDelivery
	for _, d := range s.snapshot() {
		if d.err == nil {
			out = append(out, d)
		}
	}
	return out
}

// stored returns the segments the origin holds, deduplicated by (edge id,
// seq) as the origin does. Two stored copies of one (edge, seq) must be
// the same bytes.
func (s *memSink) stored(t *testing.T) map[uint64][]byte {
	t.Helper()
	out := map[uint64][]byte{}
	edge := ""
	for _, d := range s.snapshot() {
		if !d.stored {
			continue
		}
		if edge == "" {
			edge = d.edgeID
		} else if d.edgeID != edge {
			t.Fatalf("deliveries from two edge ids: %s and %s", edge, d.edgeID)
		}
		if prev, ok := out[d.seq]; ok && !bytes.Equal(prev, d.segment) {
			t.Fatalf("segment %d re-sent with different bytes", d.seq)
		}
		out[d.seq] = d.segment
	}
	return out
}

var errOriginDown = errors.New("origin unavailable")

// testEvents returns n events of one request, each stamped with id.
func testEvents(id int64, n int) []events.Event {
	evs := make([]events.Event, n)
	for i := range evs {
		evs[i] = events.Event{Timestamp: id, Received: int64(i), AppID: testAppID, DeviceID: testDeviceID,
			Action: "set", VersionName: "1.1.0", Platform: "android", Channel: "production", Segment: "default"}
	}
	return evs
}

func testRecord(id int64, n int) []byte { return events.AppendRecord(nil, testEvents(id, n)) }

// segmentEvents decodes a segment, failing the test if it is damaged.
func segmentEvents(t testing.TB, seg []byte) []events.Event {
	t.Helper()
	var out []events.Event
	if err := events.DecodeSegment(seg, func(e *events.Event) error { out = append(out, *e); return nil }); err != nil {
		t.Fatalf("delivered segment does not decode: %v", err)
	}
	return out
}

// idsOf returns the ids (Timestamp) of the requests in segs, in order,
// one per record.
func idsOf(t testing.TB, segs ...[]byte) []int64 {
	t.Helper()
	var ids []int64
	for _, seg := range segs {
		recs, err := events.Records(seg)
		if err != nil {
			t.Fatalf("delivered segment is damaged: %v", err)
		}
		for _, p := range recs {
			var id int64 = -1
			if err := events.DecodeRecord(p, func(e *events.Event) error {
				if id != -1 && e.Timestamp != id {
					return fmt.Errorf("record mixes ids %d and %d", id, e.Timestamp)
				}
				id = e.Timestamp
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
	}
	return ids
}

func openTestSpool(t testing.TB, dir string, sink EventSink, mod func(*spoolOptions)) *spool {
	t.Helper()
	o := spoolOptions{Dir: dir, Budget: 64 << 20, MaxSegment: 1 << 20, MaxAge: 10 * time.Millisecond,
		Sink: sink, Log: quiet, Metrics: newEdgeMetrics(nil)}
	if mod != nil {
		mod(&o)
	}
	sp, err := openSpool(o)
	if err != nil {
		t.Fatalf("openSpool: %v", err)
	}
	t.Cleanup(sp.Close)
	return sp
}

func appendOK(t testing.TB, sp *spool, rec []byte) {
	t.Helper()
	if err := sp.append(rec); err != nil {
		t.Fatalf("append: %v", err)
	}
}

func flushSpool(t testing.TB, sp *spool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := sp.flush(ctx); err != nil {
		n, b := sp.backlog()
		t.Fatalf("flush: %v (backlog: %d segments, %d bytes, %d pending)", err, n, b, sp.pendingBytes.Load())
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// spoolFiles lists the spool's segment files (name -> size).
func spoolFiles(t testing.TB, dir string) map[string]int64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, e := range ents {
		if _, _, ok := parseSegName(e.Name()); ok {
			fi, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			out[e.Name()] = fi.Size()
		}
	}
	return out
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An append returns only once its record is in the segment file and
// fsynced: one fsync per acknowledged append when appends come one by one.
func TestSpoolAppendOnDiskBeforeAck(t *testing.T) {
	dir := t.TempDir()
	sink := &memSink{}
	sp := openTestSpool(t, dir, sink, func(o *spoolOptions) { o.MaxAge = time.Hour })
	want := []byte(events.Magic)
	for i := int64(1); i <= 20; i++ {
		rec := testRecord(i, int(i%3)+1)
		appendOK(t, sp, rec)
		want = append(want, rec...)
		files := spoolFiles(t, dir)
		if len(files) != 1 {
			t.Fatalf("after append %d: segment files %v, want one open segment", i, files)
		}
		got := readFile(t, filepath.Join(dir, segName(0, openSuffix)))
		if !bytes.Equal(got, want) {
			t.Fatalf("after append %d: open segment holds %d bytes, want the %d bytes acknowledged so far", i, len(got), len(want))
		}
		// The writer counts its fsync just after answering the group.
		waitFor(t, 10*time.Second, fmt.Sprintf("fsync %d counted", i), func() bool {
			return testutil.ToFloat64(sp.m.statsFsyncs) >= float64(i)
		})
		if n := testutil.ToFloat64(sp.m.statsFsyncs); n != float64(i) {
			t.Fatalf("after %d acknowledged appends one at a time: %v fsyncs, want %d", i, n, i)
		}
		if used := sp.used.Load(); used != int64(len(want)) {
			t.Fatalf("used = %d, want %d", used, len(want))
		}
	}
	if c := sink.snapshot(); len(c) != 0 {
		t.Fatalf("an open (unsealed) segment was delivered: %d calls", len(c))
	}
	// Close seals; a new spool delivers the segment (the first may have
	// delivered it while stopping: both are fine, once).
	sp.Close()
	if err := sp.append(testRecord(99, 1)); !errors.Is(err, errSpoolClosed) {
		t.Fatalf("append after Close: %v, want errSpoolClosed", err)
	}
	sp2 := openTestSpool(t, dir, sink, nil)
	flushSpool(t, sp2)
	stored := sink.stored(t)
	if len(stored) != 1 || !bytes.Equal(stored[0], want) {
		t.Fatalf("delivered %d segments; want segment 0 holding exactly the acknowledged records", len(stored))
	}
}

// Segments are delivered in sequence order, each once, and deleted after
// the sink acknowledged them.
func TestSpoolDeliversInOrder(t *testing.T) {
	dir := t.TempDir()
	sink := &memSink{}
	sp := openTestSpool(t, dir, sink, func(o *spoolOptions) { o.MaxSegment = 600 })
	const n = 60
	for i := int64(1); i <= n; i++ {
		appendOK(t, sp, testRecord(i, 1))
	}
	flushSpool(t, sp)
	acked := sink.acked()
	if len(acked) < 5 {
		t.Fatalf("%d segments for %d records of ~150 bytes with MaxSegment 600, want several", len(acked), n)
	}
	var segs [][]byte
	for i, d := range acked {
		if d.seq != uint64(i) {
			t.Fatalf("delivery %d has seq %d, want %d (in order, none skipped or repeated)", i, d.seq, i)
		}
		if d.edgeID != sp.edgeID {
			t.Fatalf("delivery edge id %q, spool's %q", d.edgeID, sp.edgeID)
		}
		segs = append(segs, d.segment)
	}
	ids := idsOf(t, segs...)
	if len(ids) != n {
		t.Fatalf("%d records delivered, want %d", len(ids), n)
	}
	for i, id := range ids {
		if id != int64(i+1) {
			t.Fatalf("record %d is request %d, want %d (order kept)", i, id, i+1)
		}
	}
	if f := spoolFiles(t, dir); len(f) != 0 {
		t.Fatalf("segment files left after delivery: %v", f)
	}
	if segsLeft, b := sp.backlog(); segsLeft != 0 || b != 0 {
		t.Fatalf("backlog after flush: %d segments, %d bytes", segsLeft, b)
	}
	if got := testutil.ToFloat64(sp.m.statsForwardedBytes); got != float64(totalLen(segs)) {
		t.Fatalf("forwarded bytes metric %v, want %d", got, totalLen(segs))
	}
	id := strings.TrimSpace(string(readFile(t, filepath.Join(dir, "edge-id"))))
	if b, err := hex.DecodeString(id); err != nil || len(b) != 16 || id != sp.edgeID {
		t.Fatalf("edge-id file %q, spool edge id %q: want the same 32 hex digits", id, sp.edgeID)
	}
}

func totalLen(bs [][]byte) (n int) {
	for _, b := range bs {
		n += len(b)
	}
	return n
}

// MaxSegment bounds a segment whenever its records are smaller than
// MaxSegment: writeGroup promises a new segment "whenever the open one
// would grow past maxSegment".
func TestSpoolSegmentSizeBound(t *testing.T) {
	sink := &memSink{}
	const maxSeg = 600
	sp := openTestSpool(t, t.TempDir(), sink, func(o *spoolOptions) { o.MaxSegment = maxSeg; o.MaxAge = time.Hour })
	rec := testRecord(1, 1)
	for i := 0; i < 20; i++ {
		appendOK(t, sp, rec)
	}
	sp.Close()
	for _, d := range sink.acked() {
		if len(d.segment) > maxSeg {
			t.Errorf("segment %d is %d bytes, over MaxSegment %d (records are %d bytes)", d.seq, len(d.segment), maxSeg, len(rec))
		}
	}
	for name, size := range spoolFiles(t, sp.dir) {
		if size > maxSeg {
			t.Errorf("segment file %s is %d bytes, over MaxSegment %d (records are %d bytes)", name, size, maxSeg, len(rec))
		}
	}
}

// A sink that fails is retried until it acknowledges; nothing is lost, and
// the only duplicates the origin sees are re-sends of one (edge id, seq)
// with the same bytes.
func TestSpoolRetriesUntilAcknowledged(t *testing.T) {
	dir := t.TempDir()
	sink := &memSink{fail: func(call int, seq uint64) (error, bool) {
		switch call {
		case 0, 1, 2: // origin down
			return errOriginDown, false
		case 4, 6: // stored, but the acknowledgement was lost
			return errOriginDown, true
		}
		return nil, true
	}}
	sp := openTestSpool(t, dir, sink, func(o *spoolOptions) { o.MaxSegment = 1000 })
	const n = 30
	for i := int64(1); i <= n; i++ {
		appendOK(t, sp, testRecord(i, 2))
	}
	flushSpool(t, sp)

	calls := sink.snapshot()
	for i, c := range calls[:3] {
		if c.seq != 0 {
			t.Fatalf("call %d while the origin was down sent segment %d; want segment 0 retried before any later one", i, c.seq)
		}
	}
	// Each failed call is followed by a re-send of the same segment.
	for i, c := range calls {
		if c.err != nil && (i+1 >= len(calls) || calls[i+1].seq != c.seq || !bytes.Equal(calls[i+1].segment, c.segment)) {
			t.Fatalf("failed delivery %d of segment %d was not followed by a re-send of the same bytes", i, c.seq)
		}
	}
	if got := testutil.ToFloat64(sp.m.statsForwardErrors); got != 5 {
		t.Fatalf("forward errors metric %v, want 5", got)
	}
	stored := sink.stored(t)
	seqs := make([]uint64, 0, len(stored))
	for s := range stored {
		seqs = append(seqs, s)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	var segs [][]byte
	for i, s := range seqs {
		if s != uint64(i) {
			t.Fatalf("stored segments %v: want 0..%d", seqs, len(seqs)-1)
		}
		segs = append(segs, stored[s])
	}
	ids := idsOf(t, segs...)
	if len(ids) != n {
		t.Fatalf("origin holds %d records after deduplication, want %d", len(ids), n)
	}
	for i, id := range ids {
		if id != int64(i+1) {
			t.Fatalf("record %d is request %d, want %d", i, id, i+1)
		}
	}
	var events int
	for _, s := range segs {
		events += len(segmentEvents(t, s))
	}
	if events != 2*n {
		t.Fatalf("%d events stored, want %d", events, 2*n)
	}
}

// A segment the origin refuses for good is renamed .bad, kept (counted in
// the spool's disk use), not retried, and does not block later segments.
func TestSpoolPermanentError(t *testing.T) {
	dir := t.TempDir()
	sink := &memSink{fail: func(_ int, seq uint64) (error, bool) {
		if seq == 0 {
			return &PermanentError{errors.New("damaged")}, false
		}
		return nil, true
	}}
	sp := openTestSpool(t, dir, sink, func(o *spoolOptions) { o.MaxSegment = 500 })
	const n = 20
	for i := int64(1); i <= n; i++ {
		appendOK(t, sp, testRecord(i, 1))
	}
	bad := filepath.Join(dir, segName(0, badSuffix))
	// Done when the only bytes the spool holds are the .bad file's.
	waitFor(t, 30*time.Second, "every segment delivered or set aside", func() bool {
		fi, err := os.Stat(bad)
		return err == nil && sp.used.Load() == fi.Size() && sp.pendingBytes.Load() == 0
	})
	if f := spoolFiles(t, dir); len(f) != 1 {
		t.Fatalf("files %v, want only the .bad segment", f)
	}
	calls := sink.snapshot()
	var offered0 []byte
	var later [][]byte
	for _, c := range calls {
		switch {
		case c.seq == 0 && offered0 != nil:
			t.Fatalf("a segment refused for good was sent again")
		case c.seq == 0:
			offered0 = c.segment
		default:
			later = append(later, c.segment)
		}
	}
	badBytes := readFile(t, bad)
	if !bytes.Equal(badBytes, offered0) {
		t.Fatalf(".bad file (%d bytes) differs from the refused segment (%d bytes)", len(badBytes), len(offered0))
	}
	ids := append(idsOf(t, badBytes), idsOf(t, later...)...)
	if len(ids) != n {
		t.Fatalf("%d records between the .bad file and the deliveries, want %d", len(ids), n)
	}
	for i, id := range ids {
		if id != int64(i+1) {
			t.Fatalf("record %d is request %d, want %d", i, id, i+1)
		}
	}
	if used := sp.used.Load(); used != int64(len(badBytes)) {
		t.Fatalf("used = %d, want the .bad file's %d bytes", used, len(badBytes))
	}
	if segs, _ := sp.backlog(); segs != 0 {
		t.Fatalf("backlog lists %d segments; a .bad file is not waiting for delivery", segs)
	}
	if got := testutil.ToFloat64(sp.m.statsDropped.WithLabelValues("refused_by_origin")); got == 0 {
		t.Fatal("the refused segment was not counted as dropped")
	}
	// A reopened spool keeps the .bad file and does not offer it again.
	sp.Close()
	before := len(sink.snapshot())
	sp2 := openTestSpool(t, dir, sink, nil)
	appendOK(t, sp2, testRecord(n+1, 1))
	waitFor(t, 30*time.Second, "the new record delivered", func() bool { return len(sink.snapshot()) > before })
	for _, c := range sink.snapshot()[before:] {
		if c.seq == 0 {
			t.Fatal("reopened spool re-sent the .bad segment")
		}
	}
	if _, err := os.Stat(bad); err != nil {
		t.Fatalf(".bad file after reopen: %v", err)
	}
}

// updraft_edge_stats_dropped_total counts events ("Device events not kept,
// by reason"): a segment refused by the origin drops every event in it,
// including the intact records of a segment refused for damage.
func TestSpoolPermanentErrorCountsEvents(t *testing.T) {
	t.Run("intact segment", func(t *testing.T) {
		dir := t.TempDir()
		sink := &memSink{fail: func(int, uint64) (error, bool) { return &PermanentError{errors.New("refused")}, false }}
		sp := openTestSpool(t, dir, sink, func(o *spoolOptions) { o.MaxAge = time.Hour })
		for i := int64(1); i <= 4; i++ {
			appendOK(t, sp, testRecord(i, 3)) // 4 records, 12 events
		}
		sp.Close() // seals segment 0
		sp2 := openTestSpool(t, dir, sink, nil)
		waitFor(t, 30*time.Second, "segment 0 set aside", func() bool {
			_, err := os.Stat(filepath.Join(dir, segName(0, badSuffix)))
			return err == nil
		})
		dropped := testutil.ToFloat64(sp.m.statsDropped.WithLabelValues("refused_by_origin")) +
			testutil.ToFloat64(sp2.m.statsDropped.WithLabelValues("refused_by_origin"))
		if dropped != 12 {
			t.Errorf("dropped{refused_by_origin} = %v for a refused segment of 4 records holding 12 events, want 12", dropped)
		}
	})
	t.Run("damaged segment", func(t *testing.T) {
		dir := t.TempDir()
		r2 := testRecord(2, 3)
		r2[len(r2)-1] ^= 0xff
		seg := append(append([]byte(events.Magic), testRecord(1, 3)...), r2...)
		if err := os.WriteFile(filepath.Join(dir, segName(3, segSuffix)), seg, 0o644); err != nil {
			t.Fatal(err)
		}
		// The sink refuses what does not decode, like the origin.
		sink := &memSink{}
		validating := sinkFunc(func(ctx context.Context, edgeID string, seq uint64, segment []byte) error {
			if err := events.DecodeSegment(segment, func(*events.Event) error { return nil }); err != nil {
				return &PermanentError{err}
			}
			return sink.DeliverEvents(ctx, edgeID, seq, segment)
		})
		sp := openTestSpool(t, dir, validating, nil)
		waitFor(t, 30*time.Second, "damaged segment set aside", func() bool {
			_, err := os.Stat(filepath.Join(dir, segName(3, badSuffix)))
			return err == nil
		})
		if dropped := testutil.ToFloat64(sp.m.statsDropped.WithLabelValues("refused_by_origin")); dropped < 3 {
			t.Errorf("dropped{refused_by_origin} = %v for a refused segment whose intact record alone holds 3 events, want at least 3", dropped)
		}
	})
}

type sinkFunc func(ctx context.Context, edgeID string, seq uint64, segment []byte) error

func (f sinkFunc) DeliverEvents(ctx context.Context, edgeID string, seq uint64, segment []byte) error {
	return f(ctx, edgeID, seq, segment)
}

// Beyond the disk budget an append fails at once with errSpoolFull; once
// the origin takes the backlog, appends succeed again.
func TestSpoolBudget(t *testing.T) {
	dir := t.TempDir()
	var up atomic.Bool
	sink := &memSink{fail: func(int, uint64) (error, bool) {
		if up.Load() {
			return nil, true
		}
		return errOriginDown, false
	}}
	const budget = 4096
	sp := openTestSpool(t, dir, sink, func(o *spoolOptions) { o.MaxSegment = 1024; o.Budget = budget })
	if sp.budget != budget {
		t.Fatalf("budget %d, want %d", sp.budget, budget)
	}
	rec := testRecord(1, 2)
	accepted := 0
	var full error
	for i := 0; i < 100; i++ {
		err := sp.append(rec)
		if err != nil {
			full = err
			break
		}
		accepted++
	}
	if !errors.Is(full, errSpoolFull) {
		t.Fatalf("after %d appends of %d bytes into a %d-byte budget: %v, want errSpoolFull", accepted, len(rec), budget, full)
	}
	if accepted == 0 || accepted*len(rec) > budget {
		t.Fatalf("%d appends of %d bytes accepted into a %d-byte budget", accepted, len(rec), budget)
	}
	var onDisk int64
	for _, size := range spoolFiles(t, dir) {
		onDisk += size
	}
	if onDisk > budget || onDisk != sp.used.Load() {
		t.Fatalf("%d bytes on disk (used %d) with a budget of %d", onDisk, sp.used.Load(), budget)
	}
	if err := sp.append(rec); !errors.Is(err, errSpoolFull) {
		t.Fatalf("append while still full: %v, want errSpoolFull", err)
	}
	up.Store(true)
	flushSpool(t, sp)
	appendOK(t, sp, rec)
	flushSpool(t, sp)
	if ids := idsOf(t, segmentsOf(sink.acked())...); len(ids) != accepted+1 {
		t.Fatalf("%d records delivered, want the %d accepted", len(ids), accepted+1)
	}
}

func segmentsOf(ds []memDelivery) [][]byte {
	var out [][]byte
	for _, d := range ds {
		out = append(out, d.segment)
	}
	return out
}

// A segment left open by a crash is cut at its last intact record, sealed
// and delivered, in sequence order with segments sealed before the crash.
func TestSpoolRecoversTornTail(t *testing.T) {
	r0, r1, r2, r3 := testRecord(10, 1), testRecord(11, 2), testRecord(12, 1), testRecord(13, 3)
	magic := []byte(events.Magic)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	damaged := bytes.Clone(r2)
	damaged[len(damaged)/2] ^= 0x01
	cases := []struct {
		name  string
		open  []byte // content of 0000000000000007.open
		keeps []byte // the segment 7 delivered; nil: none
	}{
		{"torn tail", cat(magic, r1, r2, r3[:len(r3)/2]), cat(magic, r1, r2)},
		{"torn header", cat(magic, r1, r3[:5]), cat(magic, r1)},
		{"intact", cat(magic, r1, r2), cat(magic, r1, r2)},
		{"damage before the tail", cat(magic, r1, damaged, r3), cat(magic, r1)},
		{"magic and a torn record", cat(magic, r1[:len(r1)-1]), nil},
		{"magic only", magic, nil},
		{"torn magic", magic[:3], nil},
		{"empty", nil, nil},
		{"not a segment", []byte("garbage that is long enough to look like something"), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, segName(5, segSuffix)), cat(magic, r0), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, segName(7, openSuffix)), tc.open, 0o644); err != nil {
				t.Fatal(err)
			}
			sink := &memSink{}
			sp := openTestSpool(t, dir, sink, nil)
			flushSpool(t, sp)
			acked := sink.acked()
			want := []memDelivery{{seq: 5, segment: cat(magic, r0)}}
			if tc.keeps != nil {
				want = append(want, memDelivery{seq: 7, segment: tc.keeps})
			}
			if len(acked) != len(want) {
				t.Fatalf("%d segments delivered, want %d", len(acked), len(want))
			}
			for i, w := range want {
				if acked[i].seq != w.seq || !bytes.Equal(acked[i].segment, w.segment) {
					t.Fatalf("delivery %d: segment %d of %d bytes; want segment %d of %d bytes", i, acked[i].seq, len(acked[i].segment), w.seq, len(w.segment))
				}
				segmentEvents(t, acked[i].segment)
			}
			if f := spoolFiles(t, dir); len(f) != 0 {
				t.Fatalf("files left after recovery and delivery: %v", f)
			}
			// New segments continue after the highest number found.
			appendOK(t, sp, testRecord(20, 1))
			flushSpool(t, sp)
			acked = sink.acked()
			if last := acked[len(acked)-1]; last.seq != 8 || !slices.Equal(idsOf(t, last.segment), []int64{20}) {
				t.Fatalf("first new segment is %d with records %v, want 8 with request 20", last.seq, idsOf(t, last.segment))
			}
		})
	}
}

// Sequence numbers are never reused, even after the spool drains and is
// reopened; the edge id is stable.
func TestSpoolSeqNeverReused(t *testing.T) {
	dir := t.TempDir()
	sink := &memSink{}
	var edgeID string
	for round := 0; round < 3; round++ {
		sp := openTestSpool(t, dir, sink, nil)
		if round == 0 {
			edgeID = sp.edgeID
		} else if sp.edgeID != edgeID {
			t.Fatalf("round %d: edge id %s, was %s", round, sp.edgeID, edgeID)
		}
		appendOK(t, sp, testRecord(int64(round), 1))
		flushSpool(t, sp)
		sp.Close()
		if f := spoolFiles(t, dir); len(f) != 0 {
			t.Fatalf("round %d: files left %v", round, f)
		}
	}
	acked := sink.acked()
	if len(acked) != 3 {
		t.Fatalf("%d deliveries, want 3", len(acked))
	}
	for i, d := range acked {
		if d.seq != uint64(i) || d.edgeID != edgeID {
			t.Fatalf("delivery %d: (%s, %d), want (%s, %d)", i, d.edgeID, d.seq, edgeID, i)
		}
	}
	if got := strings.TrimSpace(string(readFile(t, filepath.Join(dir, "seq")))); got != "3" {
		t.Fatalf("seq file %q, want 3", got)
	}
	// A damaged edge id stops the spool rather than inventing a new one.
	if err := os.WriteFile(filepath.Join(dir, "edge-id"), []byte("not-hex\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if sp, err := openSpool(spoolOptions{Dir: dir, Sink: sink, Log: quiet, Metrics: newEdgeMetrics(nil)}); err == nil {
		sp.Close()
		t.Fatal("openSpool accepted a damaged edge-id file")
	}
}

// Close answers every append it let in, and each acknowledged one is on
// disk: a reopened spool delivers exactly the acknowledged records.
func TestSpoolCloseKeepsAcknowledged(t *testing.T) {
	dir := t.TempDir()
	down := &memSink{fail: func(int, uint64) (error, bool) { return errOriginDown, false }}
	sp := openTestSpool(t, dir, down, func(o *spoolOptions) { o.MaxSegment = 4096 })
	var (
		mu    sync.Mutex
		acked = map[int64]bool{}
		next  atomic.Int64
		wg    sync.WaitGroup
	)
	deadline := time.Now().Add(10 * time.Second)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000 && time.Now().Before(deadline); i++ {
				id := next.Add(1)
				err := sp.append(testRecord(id, 1))
				if errors.Is(err, errSpoolClosed) {
					return
				}
				if err != nil {
					t.Errorf("append %d: %v", id, err)
					return
				}
				mu.Lock()
				acked[id] = true
				mu.Unlock()
			}
		}()
	}
	waitFor(t, 10*time.Second, "200 acknowledged appends", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 200
	})
	sp.Close()
	wg.Wait()
	if err := sp.append(testRecord(0, 1)); !errors.Is(err, errSpoolClosed) {
		t.Fatalf("append after Close: %v", err)
	}
	sink := &memSink{}
	sp2 := openTestSpool(t, dir, sink, nil)
	flushSpool(t, sp2)
	seen := map[int64]bool{}
	for _, id := range idsOf(t, segmentsOf(sink.acked())...) {
		if seen[id] {
			t.Fatalf("request %d delivered twice", id)
		}
		seen[id] = true
	}
	for id := range acked {
		if !seen[id] {
			t.Fatalf("acknowledged request %d was not delivered", id)
		}
	}
	if len(seen) != len(acked) {
		t.Fatalf("%d requests delivered, %d acknowledged: every queued append must be answered", len(seen), len(acked))
	}
}

// spoolChild is the process TestSpoolCrashSafety kills: it appends records
// from several goroutines to a spool whose origin is down and prints
// "ack ID" for each acknowledged append.
func spoolChild() {
	sp, err := openSpool(spoolOptions{Dir: os.Getenv("SPOOL_DIR"), Budget: 1 << 30, MaxSegment: 2048, MaxAge: 20 * time.Millisecond,
		Sink:    sinkFunc(func(context.Context, string, uint64, []byte) error { return errOriginDown }),
		Log:     quiet,
		Metrics: newEdgeMetrics(nil)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	var (
		mu   sync.Mutex
		next atomic.Int64
		wg   sync.WaitGroup
	)
	deadline := time.Now().Add(20 * time.Second)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				id := next.Add(1)
				if id > 1_000_000 {
					return
				}
				if err := sp.append(testRecord(id, int(id%3)+1)); err != nil {
					fmt.Fprintln(os.Stderr, "child: append:", err)
					continue
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "ack %d\n", id) // unbuffered: written before the next append
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	os.Exit(3) // ran out of time or ids without being killed
}

// TestSpoolCrashSafety kills a process that is appending (SIGKILL, mid-write)
// and checks that a spool opened on its folder delivers every event the
// process acknowledged.
func TestSpoolCrashSafety(t *testing.T) {
	if os.Getenv("SPOOL_CHILD") == "1" {
		spoolChild()
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSpoolCrashSafety$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SPOOL_CHILD=1", "SPOOL_DIR="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		acked = map[int64]bool{}
	)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if s, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
				if id, err := strconv.ParseInt(s, 10, 64); err == nil {
					mu.Lock()
					acked[id] = true
					mu.Unlock()
				}
			}
		}
		io.Copy(io.Discard, out)
	}()
	started := time.Now()
	deadline := started.Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 50 && time.Since(started) >= 300*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child acknowledged %d appends in 30s; stderr:\n%s", n, stderr.String())
		}
		select {
		case <-readDone:
			cmd.Wait()
			t.Fatalf("child exited early after %d acks: %v; stderr:\n%s", n, cmd.ProcessState, stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-readDone:
	case <-time.After(10 * time.Second):
		t.Fatal("child's stdout still open 10s after SIGKILL")
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed by SIGKILL: %v; stderr:\n%s", err, stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()

	files := spoolFiles(t, dir)
	openAtCrash := 0
	for name := range files {
		if strings.HasSuffix(name, openSuffix) {
			openAtCrash++
		}
	}
	sink := &memSink{}
	sp := openTestSpool(t, dir, sink, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := sp.flush(ctx); err != nil {
		t.Fatalf("flush after the crash: %v", err)
	}
	delivered := map[int64]int{}
	evCount := 0
	for _, d := range sink.acked() {
		evs := segmentEvents(t, d.segment) // every delivered record decodes
		evCount += len(evs)
		for _, id := range idsOf(t, d.segment) {
			delivered[id]++
		}
	}
	for id := range acked {
		if delivered[id] == 0 {
			t.Fatalf("request %d was acknowledged before the crash but not delivered after it", id)
		}
	}
	for id, n := range delivered {
		if n != 1 {
			t.Fatalf("request %d delivered %d times", id, n)
		}
	}
	if len(delivered) < len(acked) {
		t.Fatalf("%d requests delivered < %d acknowledged", len(delivered), len(acked))
	}
	t.Logf("child acknowledged %d requests; %d segment files at the crash (%d open); %d requests (%d events) delivered in %d segments",
		len(acked), len(files), openAtCrash, len(delivered), evCount, len(sink.acked()))
}

// HTTPEventSink posts a segment with the edge key, edge id and sequence
// number, and maps the origin's answers.
func TestSpoolHTTPEventSink(t *testing.T) {
	type got struct {
		method, path, auth, ctype, edge, seq string
		body                                 []byte
	}
	var (
		mu     sync.Mutex
		last   got
		status = 200
		answer = `{"status":"ok"}`
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		last = got{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"),
			r.Header.Get("X-Updraft-Edge-Id"), r.Header.Get("X-Updraft-Segment"), b}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, answer)
	}))
	defer srv.Close()
	sink := NewHTTPEventSink(srv.URL+"/", "edge-key-1")
	seg := append([]byte(events.Magic), testRecord(1, 2)...)
	const edge = "0123456789abcdef0123456789abcdef"

	if err := sink.DeliverEvents(context.Background(), edge, 42, seg); err != nil {
		t.Fatalf("200: %v", err)
	}
	mu.Lock()
	want := got{"POST", "/v1/events", "Bearer edge-key-1", "application/vnd.updraft.events", edge, "42", seg}
	if last.method != want.method || last.path != want.path || last.auth != want.auth || last.ctype != want.ctype ||
		last.edge != want.edge || last.seq != want.seq || !bytes.Equal(last.body, want.body) {
		t.Fatalf("request %+v\nwant %+v", last, want)
	}
	mu.Unlock()

	for _, c := range []struct {
		status    int
		answer    string
		permanent bool
	}{
		{400, `{"error":"corrupt_segment","message":"events: corrupt segment","moreInfo":{}}`, true},
		{400, `{"error":"body_read","message":"x"}`, false},
		{401, `{"error":"unauthorized"}`, false},
		{500, `oops`, false},
		{502, `{"error":"upstream_error"}`, false},
		{503, `{"error":"stats_unavailable"}`, false},
	} {
		mu.Lock()
		status, answer = c.status, c.answer
		mu.Unlock()
		err := sink.DeliverEvents(context.Background(), edge, 7, seg)
		var perm *PermanentError
		if err == nil || errors.As(err, &perm) != c.permanent {
			t.Errorf("HTTP %d %s: err %v, want permanent=%v", c.status, c.answer, err, c.permanent)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := sink.DeliverEvents(ctx, edge, 1, seg); err == nil {
		t.Error("delivery with a cancelled context succeeded")
	}
	if err := (&HTTPEventSink{BaseURL: "http://127.0.0.1:1", Client: &http.Client{Timeout: 5 * time.Second}}).
		DeliverEvents(context.Background(), edge, 1, seg); err == nil {
		t.Error("delivery to a closed port succeeded")
	}
}

// The origin answers 413 corrupt_segment for a segment over its body limit
// (origin/stats.go postEvents); retrying cannot help, so it is permanent.
func TestSpoolHTTPEventSinkOversizeIsPermanent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		io.WriteString(w, `{"error":"corrupt_segment","message":"a segment is at most 67108864 bytes","moreInfo":{}}`)
	}))
	defer srv.Close()
	err := NewHTTPEventSink(srv.URL, "k").DeliverEvents(context.Background(), "0123456789abcdef0123456789abcdef", 1,
		append([]byte(events.Magic), testRecord(1, 1)...))
	var perm *PermanentError
	if !errors.As(err, &perm) {
		t.Fatalf("413 corrupt_segment: err %v, want a PermanentError (else the spool retries it forever and blocks every later segment)", err)
	}
}

// End to end over HTTP: a spool delivering to an origin that is down for a
// while, then deduplicates by (edge id, seq).
func TestSpoolOverHTTP(t *testing.T) {
	var (
		mu       sync.Mutex
		requests int
		stored   = map[string][]byte{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		requests++
		if requests <= 2 {
			http.Error(w, `{"error":"unavailable"}`, 503)
			return
		}
		if r.Header.Get("Authorization") != "Bearer k" {
			http.Error(w, `{"error":"unauthorized"}`, 401)
			return
		}
		if err := events.DecodeSegment(b, func(*events.Event) error { return nil }); err != nil {
			w.WriteHeader(400)
			io.WriteString(w, `{"error":"corrupt_segment","message":"damaged"}`)
			return
		}
		stored[r.Header.Get("X-Updraft-Edge-Id")+"/"+r.Header.Get("X-Updraft-Segment")] = b
		io.WriteString(w, `{"status":"ok"}`)
	}))
	defer srv.Close()
	sp := openTestSpool(t, t.TempDir(), NewHTTPEventSink(srv.URL, "k"), func(o *spoolOptions) { o.MaxSegment = 800 })
	const n = 25
	for i := int64(1); i <= n; i++ {
		appendOK(t, sp, testRecord(i, 2))
	}
	flushSpool(t, sp)
	mu.Lock()
	defer mu.Unlock()
	keys := make([]string, 0, len(stored))
	for k := range stored {
		if !strings.HasPrefix(k, sp.edgeID+"/") {
			t.Fatalf("stored under %s, want edge id %s", k, sp.edgeID)
		}
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, _ := strconv.Atoi(strings.TrimPrefix(keys[i], sp.edgeID+"/"))
		b, _ := strconv.Atoi(strings.TrimPrefix(keys[j], sp.edgeID+"/"))
		return a < b
	})
	var segs [][]byte
	for _, k := range keys {
		segs = append(segs, stored[k])
	}
	ids := idsOf(t, segs...)
	if len(ids) != n {
		t.Fatalf("origin stored %d requests, want %d", len(ids), n)
	}
	for i, id := range ids {
		if id != int64(i+1) {
			t.Fatalf("record %d is request %d", i, id)
		}
	}
}

// A write that fails once (here: the file size limit, standing in for a
// full disk) must not wedge the spool: the next append works and is
// delivered; the failed one is not acknowledged and not delivered. The
// limit applies to the whole process, so the appends run in a child
// process (the test binary's own files must not hit it).
func TestSpoolRecoversFromFailedWrite(t *testing.T) {
	if dir := os.Getenv("SPOOL_FAILWRITE_DIR"); dir != "" {
		failedWriteChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSpoolRecoversFromFailedWrite$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SPOOL_FAILWRITE_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, want := range []string{"first append refused: true", "backlog after failure: 0\n", "second append ok"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("child output lacks %q:\n%s", want, out)
		}
	}
	sink := &memSink{}
	sp := openTestSpool(t, dir, sink, nil)
	flushSpool(t, sp)
	var ids []int64
	for _, d := range sink.acked() {
		ids = append(ids, idsOf(t, d.segment)...)
	}
	if len(ids) != 1 || ids[0] != 2 {
		t.Fatalf("delivered %v, want only the acknowledged record 2", ids)
	}
}

// failedWriteChild appends under a file size limit with room for the
// segment's magic but not the record, so the write itself fails half-way
// (the truncate-and-cut path), then appends again without the limit.
func failedWriteChild(dir string) {
	down := &memSink{fail: func(int, uint64) (error, bool) { return errOriginDown, false }}
	sp, err := openSpool(spoolOptions{Dir: dir, Sink: down, Log: slog.New(slog.DiscardHandler), Metrics: newEdgeMetrics(nil)})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	var old syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old)
	lim := old
	lim.Cur = uint64(len(events.Magic)) + 8
	signal.Ignore(syscall.SIGXFSZ)
	syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim)
	err = sp.append(testRecord(1, 1))
	syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old)
	fmt.Println("first append refused:", err != nil, err)
	_, bytes := sp.backlog()
	fmt.Println("backlog after failure:", bytes)
	if err := sp.append(testRecord(2, 1)); err == nil {
		fmt.Println("second append ok")
	}
	sp.Close()
	os.Exit(0)
}

// Two processes must not share a spool folder: the second open fails.
func TestSpoolFolderLocked(t *testing.T) {
	dir := t.TempDir()
	a := openTestSpool(t, dir, &memSink{}, nil)
	_, err := openSpool(spoolOptions{Dir: dir, Sink: &memSink{}, Log: a.log, Metrics: a.m})
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open of %s: %v, want an in-use error", dir, err)
	}
	a.Close()
	b, err := openSpool(spoolOptions{Dir: dir, Sink: &memSink{}, Log: a.log, Metrics: a.m})
	if err != nil {
		t.Fatalf("open after the first closed: %v", err)
	}
	b.Close()
}

// A damaged seq file stops the spool instead of reusing numbers.
func TestSpoolDamagedSeqFile(t *testing.T) {
	dir := t.TempDir()
	a := openTestSpool(t, dir, &memSink{}, nil)
	log, m := a.log, a.m
	a.Close()
	os.WriteFile(filepath.Join(dir, "seq"), []byte("garbage\n"), 0o644)
	if _, err := openSpool(spoolOptions{Dir: dir, Sink: &memSink{}, Log: log, Metrics: m}); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("open with a damaged seq file: %v", err)
	}
}
