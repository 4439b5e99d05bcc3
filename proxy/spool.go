package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/updraft-cdn/updraft/origin/blob"
	"github.com/updraft-cdn/updraft/origin/events"
)

// EventSink delivers one sealed spool segment to the origin. It must be
// idempotent on (edgeID, seq): a segment is re-sent until one delivery is
// acknowledged, so the origin may see it more than once.
type EventSink interface {
	DeliverEvents(ctx context.Context, edgeID string, seq uint64, segment []byte) error
}

// PermanentError marks a delivery the sink refused for good (a damaged
// segment): retrying cannot help, so the segment is set aside.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Spool errors: the request was not accepted (the device gets a 429 with
// Retry-After and the drop is counted).
var (
	errSpoolFull    = errors.New("stats spool: disk budget exhausted")
	errSpoolBusy    = errors.New("stats spool: write queue full")
	errSpoolClosed  = errors.New("stats spool: closed")
	errSpoolTimeout = errors.New("stats spool: write did not complete in time")
)

// spool is the edge's durable event queue. Accepted requests are appended
// to the open segment file and fsynced (group commit: one fsync for every
// request waiting) before the device gets its 200, so an accepted event
// survives a crash. Segments are sealed when large or old enough and
// forwarded in order, each until the sink acknowledges it; then deleted.
// Disk use is bounded by budget, memory by the pending queue.
type spool struct {
	dir        string
	edgeID     string
	budget     int64
	maxSegment int64
	maxAge     time.Duration
	sink       EventSink
	log        *slog.Logger
	m          *edgeMetrics

	used         atomic.Int64 // bytes on disk, sealed + open + bad
	bad          atomic.Int64 // bytes of segments the origin refused (kept, not delivered)
	pendingBytes atomic.Int64 // bytes queued for the writer
	maxPending   int64

	reqs    chan *spoolAppend
	sealed  chan struct{}   // nudges the forwarder
	ctx     context.Context // ends at Close
	stop    context.CancelFunc
	wg      sync.WaitGroup
	closed  atomic.Bool
	closeMu sync.RWMutex
	lock    *os.File // flock'ed: one process per spool folder

	// writer state (writer goroutine only)
	open     *os.File
	openSeq  uint64
	openSize int64
	openedAt time.Time
	nextSeq  uint64
}

type spoolAppend struct {
	rec  []byte
	done chan error
}

type spoolOptions struct {
	Dir        string
	Budget     int64
	MaxSegment int64
	MaxAge     time.Duration
	Sink       EventSink
	Log        *slog.Logger
	Metrics    *edgeMetrics
}

const (
	segSuffix  = ".seg"
	openSuffix = ".open"
	badSuffix  = ".bad"
)

// openSpool opens (or creates) the spool in dir, recovers what a crash left
// (an open segment is cut at its first damaged record and sealed) and starts
// the writer and the forwarder.
func openSpool(o spoolOptions) (*spool, error) {
	if o.MaxSegment <= 0 {
		o.MaxSegment = 1 << 20
	}
	if o.MaxAge < time.Millisecond {
		o.MaxAge = 250 * time.Millisecond
	}
	if o.Budget < 4*o.MaxSegment {
		o.Budget = 4 * o.MaxSegment
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("stats spool: %w", err)
	}
	s := &spool{dir: o.Dir, budget: o.Budget, maxSegment: o.MaxSegment, maxAge: o.MaxAge, sink: o.Sink,
		log: o.Log, m: o.Metrics, reqs: make(chan *spoolAppend, 4096), sealed: make(chan struct{}, 1),
		maxPending: 64 << 20}
	var err error
	if s.lock, err = lockDir(o.Dir); err != nil {
		return nil, err
	}
	fail := func(err error) (*spool, error) {
		s.lock.Close()
		return nil, err
	}
	if s.edgeID, err = loadEdgeID(o.Dir); err != nil {
		return fail(err)
	}
	if err := s.recover(); err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.ctx, s.stop = ctx, cancel
	s.wg.Add(2)
	go s.writer(ctx)
	go s.forwarder(ctx)
	return s, nil
}

// lockDir takes an exclusive lock on the spool folder: two processes
// appending to the same segments would lose acknowledged events.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("stats spool: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("stats spool: %s is in use by another updraft process (%v); give each edge its own --data", dir, err)
	}
	return f, nil
}

// loadEdgeID returns the spool's stable identity (the origin deduplicates
// segments by edge id and sequence), creating it on first start.
func loadEdgeID(dir string) (string, error) {
	p := filepath.Join(dir, "edge-id")
	if b, err := os.ReadFile(p); err == nil {
		id := strings.TrimSpace(string(b))
		if len(id) == 32 {
			if _, err := hex.DecodeString(id); err == nil {
				return id, nil
			}
		}
		return "", fmt.Errorf("stats spool: %s is damaged; remove the stats folder only if its segments were delivered", p)
	} else if !os.IsNotExist(err) {
		return "", fmt.Errorf("stats spool: %w", err)
	}
	var b [16]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	if err := blob.WriteFileAtomic(p, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("stats spool: %w", err)
	}
	return id, nil
}

func segName(seq uint64, suffix string) string { return fmt.Sprintf("%016x%s", seq, suffix) }

func parseSegName(name string) (uint64, string, bool) {
	ext := filepath.Ext(name)
	if ext != segSuffix && ext != openSuffix && ext != badSuffix {
		return 0, "", false
	}
	seq, err := strconv.ParseUint(strings.TrimSuffix(name, ext), 16, 64)
	return seq, ext, err == nil
}

// recover seals segments left open by a crash and sums the disk use. The
// next sequence number is one past the highest ever used (kept in "seq"
// so that a fully drained spool does not reuse numbers the origin has
// already seen).
func (s *spool) recover() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("stats spool: %w", err)
	}
	if b, err := os.ReadFile(filepath.Join(s.dir, "seq")); err == nil {
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return fmt.Errorf("stats spool: %s is damaged (%q): reusing sequence numbers would make the origin drop events as duplicates; write a number above every one this edge sent", filepath.Join(s.dir, "seq"), b)
		}
		s.nextSeq = n
	} else if !os.IsNotExist(err) {
		return fmt.Errorf("stats spool: %w", err)
	}
	for _, ent := range ents {
		seq, ext, ok := parseSegName(ent.Name())
		if !ok {
			continue
		}
		if seq >= s.nextSeq {
			s.nextSeq = seq + 1
		}
		p := filepath.Join(s.dir, ent.Name())
		if ext == openSuffix {
			if err := s.sealRecovered(p, seq); err != nil {
				return err
			}
			p = filepath.Join(s.dir, segName(seq, segSuffix))
		}
		if fi, err := os.Stat(p); err == nil {
			s.used.Add(fi.Size())
			if ext == badSuffix {
				s.bad.Add(fi.Size())
			}
		}
	}
	return nil
}

// sealRecovered keeps the intact records of a segment that was open at a
// crash. A torn tail was never acknowledged (its fsync did not return);
// damage before the tail is logged.
func (s *spool) sealRecovered(p string, seq uint64) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("stats spool: recover %s: %w", p, err)
	}
	keep := 0
	// Either format: a segment left open by an edge before format 2 is
	// kept as it is (the origin reads both).
	if events.Version(b) != 0 {
		keep = events.MagicLen
		for rest := b[keep:]; len(rest) > 0; {
			_, next, err := events.NextRecord(rest)
			if err != nil {
				break
			}
			keep += len(rest) - len(next)
			rest = next
		}
	}
	if keep < len(b) {
		s.log.Warn("stats spool: cut a segment left open by a crash at its last intact record",
			"segment", filepath.Base(p), "kept_bytes", keep, "cut_bytes", len(b)-keep)
	}
	if keep <= events.MagicLen {
		return os.Remove(p)
	}
	if err := os.Truncate(p, int64(keep)); err != nil {
		return fmt.Errorf("stats spool: recover: %w", err)
	}
	if err := os.Rename(p, filepath.Join(s.dir, segName(seq, segSuffix))); err != nil {
		return fmt.Errorf("stats spool: recover: %w", err)
	}
	return blob.SyncDir(s.dir)
}

// append queues one record and waits until it is on disk (fsynced). It
// fails fast, without waiting, when the disk budget or the write queue is
// exhausted.
func (s *spool) append(rec []byte) error {
	s.closeMu.RLock()
	if s.closed.Load() {
		s.closeMu.RUnlock()
		return errSpoolClosed
	}
	n := int64(len(rec))
	if s.used.Load()+s.pendingBytes.Load()+n > s.budget {
		s.closeMu.RUnlock()
		return errSpoolFull
	}
	if s.pendingBytes.Add(n) > s.maxPending {
		s.pendingBytes.Add(-n)
		s.closeMu.RUnlock()
		return errSpoolBusy
	}
	a := &spoolAppend{rec: rec, done: make(chan error, 1)}
	select {
	case s.reqs <- a:
	default:
		s.pendingBytes.Add(-n)
		s.closeMu.RUnlock()
		return errSpoolBusy
	}
	s.closeMu.RUnlock()
	// Once queued, the record will be written: wait for the verdict even if
	// the request's context ends (a shutdown), or the device would retry a
	// batch that is already kept. A disk that hangs is the only bound.
	select {
	case err := <-a.done:
		return err
	case <-time.After(appendTimeout):
		return errSpoolTimeout
	}
}

// appendTimeout bounds how long a request waits for its fsync.
const appendTimeout = 30 * time.Second

// writer appends queued records in groups: write them all, fsync once,
// answer them all. It seals the open segment when it is full or old.
func (s *spool) writer(ctx context.Context) {
	defer s.wg.Done()
	tick := time.NewTicker(s.maxAge / 2)
	defer tick.Stop()
	batch := make([]*spoolAppend, 0, 256)
	var buf []byte
	for {
		select {
		case a := <-s.reqs:
			batch = append(batch[:0], a)
		drain:
			for len(batch) < cap(batch) {
				select {
				case a := <-s.reqs:
					batch = append(batch, a)
				default:
					break drain
				}
			}
			if err := s.writeGroup(batch, &buf); err != nil {
				s.log.Error("stats spool: write", "err", err)
			}
			s.m.statsFsyncs.Inc()
			if s.open != nil && s.openSize >= s.maxSegment {
				s.seal()
			}
		case <-tick.C:
			if s.open != nil && time.Since(s.openedAt) >= s.maxAge {
				s.seal()
			}
		case <-ctx.Done():
			// Close stopped new appends; answer what is queued, then seal.
			for {
				select {
				case a := <-s.reqs:
					s.writeGroup([]*spoolAppend{a}, &buf)
					continue
				default:
				}
				break
			}
			if s.open != nil {
				s.seal()
			}
			return
		}
	}
}

// writeGroup appends the requests of a group and answers each of them.
// A request's records stay together in one segment; a new segment starts
// before a request that would push the open one past maxSegment. Requests
// are answered per flush: when a write fails, the requests already fsynced
// (in a segment sealed earlier in the group) still get their nil, so no
// request is refused whose events will be delivered.
func (s *spool) writeGroup(group []*spoolAppend, buf *[]byte) error {
	b := (*buf)[:0]
	defer func() { *buf = b[:0] }()
	magic := int64(len(events.Magic))
	var firstErr error
	pending := group[:0:0] // requests in b, answered at the next flush
	flush := func() error {
		var err error
		if len(b) > 0 {
			err = s.write(b)
		}
		for _, a := range pending {
			s.pendingBytes.Add(-int64(len(a.rec)))
			a.done <- err
		}
		pending, b = pending[:0], b[:0]
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return err
	}
	for _, a := range group {
		cur := magic
		if s.open != nil {
			cur = s.openSize
		}
		if cur+int64(len(b)) > magic && cur+int64(len(b)+len(a.rec)) > s.maxSegment {
			if flush() == nil && s.open != nil {
				s.seal()
			}
		}
		b = append(b, a.rec...)
		pending = append(pending, a)
	}
	flush()
	return firstErr
}

// write appends b to the open segment (opening one if needed) and fsyncs.
// On a failed write the segment is cut back to its last good size and
// sealed, so that a partial record never precedes later ones.
func (s *spool) write(b []byte) error {
	if s.open == nil {
		if err := s.openSegment(); err != nil {
			return err
		}
	}
	n, err := s.open.Write(b)
	if err == nil {
		err = s.open.Sync()
	}
	if err != nil {
		// Not acknowledged: cut the segment back to what was, and seal it
		// through the crash-recovery cut, which also drops a torn record if
		// the truncation itself failed.
		s.open.Truncate(s.openSize)
		s.open.Close()
		s.open = nil
		s.used.Add(-s.openSize)
		path := filepath.Join(s.dir, segName(s.openSeq, openSuffix))
		if rerr := s.sealRecovered(path, s.openSeq); rerr != nil {
			s.log.Error("stats spool: seal after a failed write (retried at the next start)", "segment", s.openSeq, "err", rerr)
			if fi, serr := os.Stat(path); serr == nil {
				s.used.Add(fi.Size()) // still on disk
			}
		}
		if fi, serr := os.Stat(filepath.Join(s.dir, segName(s.openSeq, segSuffix))); serr == nil {
			s.used.Add(fi.Size())
			s.nudge()
		}
		return err
	}
	s.openSize += int64(n)
	s.used.Add(int64(n))
	return nil
}

func (s *spool) openSegment() error {
	seq := s.nextSeq
	// Persist the high-water mark before the number is used.
	if err := blob.WriteFileAtomic(filepath.Join(s.dir, "seq"), []byte(strconv.FormatUint(seq+1, 10)+"\n"), 0o644); err != nil {
		return err
	}
	// The number is spent from here on, whatever happens next.
	s.nextSeq = seq + 1
	path := filepath.Join(s.dir, segName(seq, openSuffix))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write([]byte(events.Magic)); err != nil {
		f.Close()
		os.Remove(path) // holds no record; a later segment takes the next number
		return err
	}
	s.open, s.openSeq, s.openSize, s.openedAt = f, seq, int64(len(events.Magic)), time.Now()
	s.used.Add(s.openSize)
	return blob.SyncDir(s.dir)
}

// seal closes the open segment and renames it for the forwarder.
func (s *spool) seal() {
	f, seq := s.open, s.openSeq
	s.open = nil
	f.Close()
	from := filepath.Join(s.dir, segName(seq, openSuffix))
	if s.openSize <= int64(len(events.Magic)) {
		os.Remove(from)
		s.used.Add(-s.openSize)
		return
	}
	if err := os.Rename(from, filepath.Join(s.dir, segName(seq, segSuffix))); err != nil {
		s.log.Error("stats spool: seal", "segment", seq, "err", err)
		return
	}
	blob.SyncDir(s.dir)
	s.nudge()
}

// nudge wakes the forwarder.
func (s *spool) nudge() {
	select {
	case s.sealed <- struct{}{}:
	default:
	}
}

// sealedSegments lists sealed segments in sequence order.
func (s *spool) sealedSegments() []uint64 {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		s.log.Error("stats spool: list", "err", err)
		return nil
	}
	var seqs []uint64
	for _, ent := range ents {
		if seq, ext, ok := parseSegName(ent.Name()); ok && ext == segSuffix {
			seqs = append(seqs, seq)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	return seqs
}

// forwarder delivers sealed segments in order, retrying each with capped
// exponential backoff and jitter until the sink acknowledges it.
func (s *spool) forwarder(ctx context.Context) {
	defer s.wg.Done()
	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for {
		for _, seq := range s.sealedSegments() {
			for {
				err := s.deliver(ctx, seq)
				if err == nil {
					backoff = minBackoff
					break
				}
				if ctx.Err() != nil {
					return
				}
				s.m.statsForwardErrors.Inc()
				s.log.Warn("stats spool: delivery failed; retrying", "segment", seq, "err", err, "backoff", backoff)
				select {
				case <-time.After(backoff/2 + mrand.N(backoff/2+1)):
				case <-ctx.Done():
					return
				}
				backoff = min(2*backoff, maxBackoff)
			}
		}
		select {
		case <-s.sealed:
		case <-poll.C:
		case <-ctx.Done():
			return
		}
	}
}

// deliver sends one sealed segment and removes it once acknowledged. A
// segment the origin refuses as damaged is renamed .bad, counted and kept
// for inspection (within the budget) instead of blocking the queue.
func (s *spool) deliver(ctx context.Context, seq uint64) error {
	p := filepath.Join(s.dir, segName(seq, segSuffix))
	b, err := os.ReadFile(p)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	start := time.Now()
	err = s.sink.DeliverEvents(ctx, s.edgeID, seq, b)
	var perm *PermanentError
	if errors.As(err, &perm) {
		s.m.statsDropped.WithLabelValues("refused_by_origin").Add(float64(countEvents(b)))
		s.log.Error("stats spool: origin refused a segment; kept as .bad", "segment", seq, "err", err)
		if err := os.Rename(p, filepath.Join(s.dir, segName(seq, badSuffix))); err != nil {
			return err
		}
		s.bad.Add(int64(len(b)))
		s.trimBad()
		return nil
	}
	if err != nil {
		return err
	}
	s.m.statsForwardSeconds.Observe(time.Since(start).Seconds())
	s.m.statsForwardedBytes.Add(float64(len(b)))
	if err := os.Remove(p); err != nil {
		return err
	}
	s.used.Add(-int64(len(b)))
	return nil
}

// maxBadBytes bounds the refused segments kept for inspection (and a
// quarter of the budget); the oldest go first.
const maxBadBytes = 64 << 20

func (s *spool) trimBad() {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return
	}
	for _, ent := range ents { // ReadDir sorts by name: oldest sequence first
		if s.bad.Load() <= min(maxBadBytes, s.budget/4) {
			return
		}
		if _, ext, ok := parseSegName(ent.Name()); ok && ext == badSuffix {
			if fi, err := ent.Info(); err == nil && os.Remove(filepath.Join(s.dir, ent.Name())) == nil {
				s.bad.Add(-fi.Size())
				s.used.Add(-fi.Size())
				s.log.Warn("stats spool: deleted an old refused segment (over the 64 MiB kept for inspection)", "segment", ent.Name())
			}
		}
	}
}

// countEvents counts the events of a segment's intact records (those before
// the first damaged one).
func countEvents(seg []byte) int {
	version := events.Version(seg)
	if version == 0 {
		return 0
	}
	n := 0
	for rest := seg[events.MagicLen:]; len(rest) > 0; {
		p, next, err := events.NextRecord(rest)
		if err != nil {
			break
		}
		n += events.RecordEvents(version, p)
		rest = next
	}
	return n
}

// backlog returns the number of sealed segments waiting and the bytes the
// spool holds on disk.
func (s *spool) backlog() (segments int, bytes int64) {
	return len(s.sealedSegments()), s.used.Load()
}

// background runs fn in a goroutine with a context that ends at Close,
// which waits for it (the check-in reports, clients.go).
func (s *spool) background(fn func(ctx context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn(s.ctx)
	}()
}

// Close stops accepting, writes and seals what was queued, and stops the
// forwarder (undelivered segments stay on disk for the next start).
func (s *spool) Close() {
	s.closeMu.Lock()
	if s.closed.Swap(true) {
		s.closeMu.Unlock()
		return
	}
	s.closeMu.Unlock()
	s.stop()
	s.wg.Wait()
	s.lock.Close()
}

// flush waits until every accepted event is delivered (the open segment
// is sealed within maxAge) or ctx ends.
func (s *spool) flush(ctx context.Context) error {
	for {
		if s.used.Load()-s.bad.Load() == 0 && s.pendingBytes.Load() == 0 {
			return nil
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// spoolCollector exports the spool's backlog at scrape time.
type spoolCollector struct{ s *spool }

var (
	spoolBytesDesc    = prometheus.NewDesc("updraft_edge_stats_spool_bytes", "Bytes of undelivered device events on disk.", nil, nil)
	spoolSegmentsDesc = prometheus.NewDesc("updraft_edge_stats_spool_segments", "Sealed spool segments waiting for delivery.", nil, nil)
)

func (c spoolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- spoolBytesDesc
	ch <- spoolSegmentsDesc
}

func (c spoolCollector) Collect(ch chan<- prometheus.Metric) {
	n, b := c.s.backlog()
	ch <- prometheus.MustNewConstMetric(spoolBytesDesc, prometheus.GaugeValue, float64(b))
	ch <- prometheus.MustNewConstMetric(spoolSegmentsDesc, prometheus.GaugeValue, float64(n))
}
