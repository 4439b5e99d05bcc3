package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/updraft-cdn/updraft/internal/procs"
)

// The device port's HTTP/1.1 front: a narrow server of its own for the
// requests devices send by the million (POST /updates, POST /stats, POST
// and PUT /channel_self), in front of fasthttp, which serves everything
// else.
//
// Why not fasthttp for these too: measured on this machine
// (bench/answers-vs-nginx.sh, bench/RESULTS.md), an update check through
// fasthttp cost about 9.7 µs of CPU against 5.0 µs for a bare Go server
// writing the same bytes, with the handler itself about 1.5 µs: fasthttp's
// per-request machinery (its header and URI parsing into normalized maps,
// three deadline moves, the response header object, its state callbacks)
// was most of the rest, and kept the edge at 0.84–0.86× nginx on the
// swagger answer. This front parses only a strict subset of HTTP/1.1 in
// place, times connections out with a coarse sweep instead of per-request
// timers, and writes each answer with one write.
//
// It takes no risk with what it does not understand: a request that is not
// exactly one of those request lines, or has a Transfer-Encoding, an
// Expect, an Upgrade, a Connection other than keep-alive or close, no
// Content-Length or two, no Host or two, a folded or malformed header line,
// a control byte in a value, more than fastMaxHeaders headers, or does not
// fit the read buffer, is handed to fasthttp with every byte read so far,
// and fasthttp serves that connection from then on: its answers (400, 413,
// 431…) and limits stay the reference. FuzzDeviceFrontParse checks the
// parser against net/http's and fasthttp's reading of the same bytes.

// fastMaxHeaders bounds the header lines of a request served by the front.
const fastMaxHeaders = 48

// fastRoute is a request line the front serves.
type fastRoute struct {
	line         string // "POST /updates HTTP/1.1\r\n"
	method, path string
}

var fastRoutes = [...]fastRoute{
	{"POST /updates HTTP/1.1\r\n", "POST", "/updates"},
	{"POST /stats HTTP/1.1\r\n", "POST", "/stats"},
	{"POST /channel_self HTTP/1.1\r\n", "POST", "/channel_self"},
	{"PUT /channel_self HTTP/1.1\r\n", "PUT", "/channel_self"},
}

// fastRequest is one request parsed in place: its strings view the
// connection's read buffer.
type fastRequest struct {
	route  *fastRoute
	host   string
	length int  // Content-Length
	close  bool // Connection: close
	n      int
	kv     [fastMaxHeaders][2]string // names as sent, values trimmed
}

// get returns the first value of a header (names compare case-insensitively).
func (r *fastRequest) get(name string) string {
	for i := 0; i < r.n; i++ {
		if equalFoldASCII(r.kv[i][0], name) {
			return r.kv[i][1]
		}
	}
	return ""
}

// noQuery is the query of a request without one.
type noQuery struct{}

func (noQuery) get(string) string { return "" }
func (noQuery) empty() bool       { return true }

// parseState is what parse makes of the bytes read so far.
type parseState int

const (
	parseMore    parseState = iota // a request may follow: read more
	parseDone                      // one whole request, header and body
	parseHandOff                   // for fasthttp
)

// parse reads one request at the head of b; on parseDone, end is where it
// ends (header and body).
func (r *fastRequest) parse(b []byte, maxBody int) (state parseState, end int) {
	r.route, r.host, r.length, r.close, r.n = nil, "", -1, false, 0
	eol := bytes.IndexByte(b, '\n')
	if eol < 0 {
		if len(b) >= len(fastRoutes[0].line) && !fastLinePrefix(b) {
			return parseHandOff, 0 // not a line served here: no need to wait for the rest
		}
		return parseMore, 0
	}
	line := b[:eol+1]
	for i := range fastRoutes {
		if string(line) == fastRoutes[i].line {
			r.route = &fastRoutes[i]
			break
		}
	}
	if r.route == nil {
		return parseHandOff, 0
	}
	pos := eol + 1
	// First where each header line ends, until the blank line that ends
	// the header: nothing more is looked at until it has come (a header
	// trickled in is not parsed again from its first line at every read,
	// only searched for line ends), and each line is found once.
	var ends [fastMaxHeaders + 1]int32
	lines := 0
	for p := pos; ; {
		eol := bytes.IndexByte(b[p:], '\n')
		if eol < 0 {
			return parseMore, 0
		}
		p += eol + 1
		if eol == 0 || b[p-2] != '\r' {
			return parseHandOff, 0 // a bare LF
		}
		ends[lines] = int32(p)
		lines++
		if eol == 1 {
			break // CRLF: the end of the header
		}
		if lines == len(ends) {
			return parseHandOff, 0 // more than fastMaxHeaders lines
		}
	}
	for _, e := range ends[:lines-1] {
		line := b[pos : e-2] // without its CRLF
		pos = int(e)
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return parseHandOff, 0
		}
		name, value := line[:colon], line[colon+1:]
		for _, c := range name {
			if headerBytes[c]&tokenByte == 0 {
				return parseHandOff, 0 // obs-fold, space before the colon, …
			}
		}
		for len(value) > 0 && (value[0] == ' ' || value[0] == '\t') {
			value = value[1:]
		}
		for len(value) > 0 && (value[len(value)-1] == ' ' || value[len(value)-1] == '\t') {
			value = value[:len(value)-1]
		}
		for _, c := range value {
			if headerBytes[c]&controlByte != 0 {
				return parseHandOff, 0
			}
		}
		n, v := bstr(name), bstr(value)
		switch {
		case equalFoldASCII(n, "Content-Length"):
			if r.length >= 0 || len(v) == 0 || len(v) > 9 {
				return parseHandOff, 0
			}
			length := 0
			for i := 0; i < len(v); i++ {
				if v[i] < '0' || v[i] > '9' {
					return parseHandOff, 0
				}
				length = length*10 + int(v[i]-'0')
			}
			r.length = length
		case equalFoldASCII(n, "Host"):
			if r.host != "" || !plainHost(v) {
				return parseHandOff, 0
			}
			r.host = v
		case equalFoldASCII(n, "Connection"):
			switch {
			case equalFoldASCII(v, "close"):
				r.close = true
			case equalFoldASCII(v, "keep-alive"):
			default:
				return parseHandOff, 0
			}
		case equalFoldASCII(n, "Transfer-Encoding"), equalFoldASCII(n, "Expect"), equalFoldASCII(n, "Upgrade"):
			return parseHandOff, 0
		}
		r.kv[r.n] = [2]string{n, v}
		r.n++
	}
	pos = int(ends[lines-1]) // past the blank line
	if r.host == "" || r.length < 0 || r.length > maxBody {
		return parseHandOff, 0
	}
	if end = pos + r.length; end > len(b) {
		return parseMore, 0
	}
	return parseDone, end
}

// plainHost reports whether a Host value has only the bytes of a
// lower-case name, an IP address and a port (anything else is fasthttp's
// to judge; it lower-cases names).
func plainHost(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_') {
			return false
		}
	}
	return true
}

// fastLinePrefix reports whether b starts like a request line served here.
func fastLinePrefix(b []byte) bool {
	for i := range fastRoutes {
		l := fastRoutes[i].line
		if len(b) >= len(l) {
			if string(b[:len(l)]) == l {
				return true
			}
		} else if string(b) == l[:len(b)] {
			return true
		}
	}
	return false
}

// headerBytes classes every byte for parse's loops over header names and
// values (a table lookup per byte instead of isTokenByte's comparisons).
var headerBytes = func() (t [256]uint8) {
	for c := range 256 {
		if isTokenByte(byte(c)) {
			t[c] |= tokenByte
		}
		if c < 0x20 && c != '\t' || c == 0x7f {
			t[c] |= controlByte
		}
	}
	return t
}()

const (
	tokenByte   = 1 << iota // may appear in a header name (RFC 9110 tchar)
	controlByte             // may not appear in a header value
)

// isTokenByte reports whether c may appear in a header name (RFC 9110 tchar).
func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// fastConns is the set of connections the front serves, swept for timeouts.
type fastConns struct {
	mu     sync.Mutex
	m      map[*fastConn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// fastConn is one connection served by the front.
type fastConn struct {
	h         *HTTP1
	c         net.Conn
	tls       bool
	buf       []byte // the read buffer (ReadBufferSize: also the header limit)
	n         int    // bytes in buf
	wbuf      []byte
	bufs      *fastBuf        // where buf and wbuf come from (nil: none held, idle)
	rc        syscall.RawConn // a plain TCP connection's socket (nil: TLS, or another wrapper; no sendfile or writev then)
	readErr   error           // the read ended (EOF, or a TLS close_notify with the request): answer what came, then close
	drained   bool            // the last read came back short: the socket had nothing more then
	handedOff bool            // for fasthttp, with what was read
	first     [64]byte        // the first bytes of a request over TLS, read while idle (readIdleTLS)
	iov       net.Buffers     // header and body, written by writev (its array: iova)
	iova      [3][]byte
	req       *fastRequest // the request being read or answered (in bufs; nil with them)
	peer      netip.Addr
	// peerKnown: peer was read (it may be invalid: an in-memory pipe)
	peerKnown bool

	// deadline is when the sweep closes the connection (on the front's
	// coarse clock; 0: none); idle marks a connection waiting
	// for a request with nothing read (closed at once at shutdown).
	deadline atomic.Int64
	idle     atomic.Bool
	closing  atomic.Bool

	// In an event loop (h1loop_linux.go): its state there; moving: the
	// request read goes to a goroutine of the connection's own; pending:
	// what that goroutine writes first (the rest of an answer the socket
	// did not take), lastWrite: then it closes.
	loopConn
	moving    bool
	pending   func() error
	lastWrite bool
}

// fastBuffers pools the read and write buffers of the front's connections.
var fastBuffers = sync.Pool{New: func() any { return new(fastBuf) }}

type fastBuf struct {
	r, w []byte
	req  fastRequest // 1.6 KB of header views: held, like the buffers, only while a request is read or answered
}

// serveFast accepts connections on ln and serves them, until ln is closed.
func (h *HTTP1) serveFast(ln net.Listener) error {
	h.startFront()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if temporaryAccept(err) {
				// Out of file descriptors and the like: back off, as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				h.e.log.Warn("edge: accept failed; retrying", "err", err, "in", delay)
				time.Sleep(delay)
				continue
			}
			if h.isClosed() {
				return nil
			}
			return err
		}
		delay = 0 // (TCP keep-alive: on by default on Go's accepted connections)
		fc := &fastConn{h: h, c: c}
		_, fc.tls = c.(*tls.Conn)
		tc, plain := c.(*net.TCPConn)
		if plain {
			fc.rc, _ = tc.SyscallConn()
		}
		if !h.front.add(fc) {
			c.Close()
			return nil
		}
		if !plain {
			go fc.serve()
			continue
		}
		if ls := h.startLoops(); ls != nil {
			fc.peer, fc.peerKnown = peerOf(c), true
			fc.setDeadline(h.e.cfg.ReadTimeout)
			if !ls.adopt(fc, tc) {
				h.front.remove(fc)
			}
			continue
		}
		go fc.serve()
	}
}

// add registers fc unless the front is shut down.
func (s *fastConns) add(fc *fastConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.m[fc] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *fastConns) remove(fc *fastConn) {
	s.mu.Lock()
	delete(s.m, fc)
	s.mu.Unlock()
	s.wg.Done()
}

// shutdown closes the idle connections, and each busy one after its
// answer, until none is left or ctx ends (then it closes them all).
func (s *fastConns) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		s.shutWhere(func(fc *fastConn) bool { return fc.idle.Load() })
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			s.shutWhere(func(*fastConn) bool { return true })
			return ctx.Err()
		case <-t.C:
		}
	}
}

// shutWhere closes the connections for which cond holds.
func (s *fastConns) shutWhere(cond func(*fastConn) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for fc := range s.m {
		if cond(fc) {
			fc.shut()
		}
	}
}

// startFront starts the sweep (once): the coarse clock, the Date header,
// and the timeouts of the front's connections.
func (h *HTTP1) startFront() {
	h.frontOnce.Do(func() {
		h.started = time.Now()
		h.tickClock(h.started)
		go h.sweep()
	})
}

// startLoops starts the front's event loops (once), unless configured
// off: with the first plain TCP connection, so that a front that never has
// one (the TLS listener's) lends no processors to loops it would not use.
func (h *HTTP1) startLoops() *frontLoops {
	h.loopsOnce.Do(func() {
		if n := h.e.cfg.FrontLoops; n >= 0 {
			if n == 0 {
				n = procs.Own() // not the processors lent (another front's loops, a build job)
			}
			ls, err := newFrontLoops(h, n)
			if err != nil && !errors.Is(err, errors.ErrUnsupported) {
				h.e.log.Warn("edge: device front without event loops", "err", err)
			}
			h.loops.Store(ls)
		}
	})
	return h.loops.Load()
}

// sweepEvery is how often the front's clock ticks: fine enough for the
// shortest timeout, at most twice a second (the Date header's resolution).
func (h *HTTP1) sweepEvery() time.Duration {
	d := 5 * time.Second
	for _, t := range []time.Duration{h.e.cfg.ReadTimeout, h.e.cfg.WriteTimeout, h.srv.IdleTimeout} {
		if t > 0 {
			d = min(d, t/10)
		}
	}
	return min(max(d, 10*time.Millisecond), 500*time.Millisecond)
}

// tickClock advances the coarse clock (monotonic: nanoseconds since the
// front started, so a step of the wall clock moves no deadline) and the
// Date line (wall time).
func (h *HTTP1) tickClock(now time.Time) {
	h.clock.Store(int64(now.Sub(h.started)))
	sec := now.Unix()
	if d := h.date.Load(); d != nil && d.sec == sec {
		return
	}
	d := &httpDate{sec: sec}
	d.line = now.UTC().AppendFormat(append(d.line, "Date: "...), http.TimeFormat)
	d.line = append(d.line, "\r\n"...)
	h.date.Store(d)
}

type httpDate struct {
	sec  int64
	line []byte // "Date: …\r\n"
}

func (h *HTTP1) sweep() {
	t := time.NewTicker(h.sweepEvery())
	defer t.Stop()
	for {
		select {
		case <-h.sweepDone:
			return
		case now := <-t.C:
			h.tickClock(now)
			n := h.clock.Load()
			h.front.shutWhere(func(fc *fastConn) bool { d := fc.deadline.Load(); return d != 0 && d <= n })
		}
	}
}

// shut closes the connection from outside its goroutine (once). A TLS
// connection's close may write an alert, and a busy plain one's waits
// until its goroutine leaves the socket (serve's loop runs inside
// RawConn.Read: a POST /stats waiting for its fsync, a channel change for
// the origin): neither on the sweep's goroutine.
func (fc *fastConn) shut() {
	if fc.closing.Swap(true) || fc.shutLoop() {
		return
	}
	if fc.tls || !fc.idle.Load() {
		go fc.c.Close()
		return
	}
	fc.c.Close()
}

// setDeadline gives the connection d from now (0: no limit).
func (fc *fastConn) setDeadline(d time.Duration) {
	if d <= 0 {
		fc.deadline.Store(0)
		return
	}
	fc.deadline.Store(fc.h.clock.Load() + int64(d))
}

// serve serves the connection's requests until it closes, or hands it to
// fasthttp.
//
// On a plain TCP connection the whole loop runs inside one RawConn.Read
// (step): Go's poller forgets a readiness only when a read begins
// (RawConn.Read's reset, before its first call of step), so within one
// RawConn.Read a byte that arrives after a read marks the socket readable
// until step is called again. A read that comes back short therefore
// means the socket was drained then, and once its requests are answered
// step parks without reading again, as nginx does with edge-triggered
// epoll: one read per update check instead of two (the second always
// found nothing: the device sends its next check only after reading this
// answer).
func (fc *fastConn) serve() {
	fc.takeBufs()
	fc.setDeadline(fc.h.e.cfg.ReadTimeout)
	fc.run(nil, false)
}

// resume serves, on a goroutine of its own, a connection an event loop
// released: what the loop could not write first, then the request read
// (if any) and the next ones.
func (fc *fastConn) resume() {
	pending, last := fc.pending, fc.lastWrite
	fc.pending, fc.moving, fc.lastWrite = nil, false, false
	fc.run(pending, last)
}

// run is serve's body: pending (if any) written first, then the loop; it
// closes the connection at the end, unless handed over.
func (fc *fastConn) run(pending func() error, last bool) {
	h := fc.h
	defer func() {
		fc.deadline.Store(0)
		if !fc.handedOff {
			fc.closing.Store(true)
			fc.c.Close()
		}
		fc.releaseBufs()
		h.front.remove(fc) // last: Shutdown returns once every connection is done with all of it
	}()
	if pending != nil {
		if err := pending(); err != nil || last {
			return
		}
		fc.afterAnswer()
	}
	if fc.rc != nil {
		if err := fc.rc.Read(fc.step); err != nil {
			return // closed (by the sweep, or at shutdown) while it waited
		}
	} else {
		for !fc.loop(-1) {
		}
	}
	if fc.handedOff {
		h.handOff(fc) // after the bytes read, fasthttp reads the same end
	}
}

// step is serve's loop on a plain TCP socket, called by RawConn.Read:
// false parks it until the socket is readable.
func (fc *fastConn) step(fd uintptr) bool { return fc.loop(int(fd)) }

// loop answers the whole requests read and reads more, until the
// connection ends or is handed over (true) or, on a socket read by fd (not
// -1), until it has nothing more to read (false). Without fd it reads
// through the connection (TLS, or a wrapper), blocking.
func (fc *fastConn) loop(fd int) bool {
	h := fc.h
	maxBody := int(h.e.maxBody())
	for {
		fc.takeBufs() // none while parked with nothing read
		state, end := fc.req.parse(fc.buf[:fc.n], maxBody)
		switch state {
		case parseHandOff:
			fc.handedOff = true
			return true
		case parseMore:
			if fc.readErr != nil {
				return true
			}
			if fc.n == len(fc.buf) {
				fc.handedOff = true // fasthttp answers 431 or 413
				return true
			}
			if fc.n == 0 {
				fc.idle.Store(true)
				if h.isClosed() {
					return true
				}
			}
			var m int
			var err error
			if fd >= 0 {
				if fc.drained {
					fc.drained = false
					fc.park()
					return false
				}
				if m, err = readFD(fd, fc.buf[fc.n:]); err == syscall.EAGAIN {
					fc.park()
					return false
				}
				fc.drained = err == nil && m < len(fc.buf)-fc.n
				if fc.closing.Load() {
					return true // shut (the sweep or shutdown) as it read: not served, and its Close not kept waiting
				}
			} else if fc.n == 0 && fc.tls {
				m, err = fc.readIdleTLS()
			} else {
				m, err = fc.c.Read(fc.buf[fc.n:])
			}
			if fc.n == 0 && m > 0 {
				fc.idle.Store(false)
				fc.setDeadline(h.e.cfg.ReadTimeout) // the header and body, from their first byte
			}
			fc.n += m
			fc.readErr = err
			continue
		}
		if fc.inLoop() && !fc.inlineSafe() {
			fc.moving = true // to a goroutine of its own, which answers it
			return true
		}
		fc.setDeadline(h.e.cfg.WriteTimeout)
		if fc.readErr != nil {
			fc.req.close = true
		}
		keep := fc.answer(fc.buf[end-fc.req.length : end])
		if fc.pending != nil { // in a loop: the socket took part of the answer
			fc.n = copy(fc.buf, fc.buf[end:fc.n])
			fc.moving, fc.lastWrite = true, !keep || h.isClosed()
			return true
		}
		if !keep || h.isClosed() {
			return true
		}
		fc.n = copy(fc.buf, fc.buf[end:fc.n]) // a pipelined request, if any
		fc.afterAnswer()
	}
}

// afterAnswer times the connection after an answer: for its next request,
// or for the rest of one read already.
func (fc *fastConn) afterAnswer() {
	if fc.n == 0 {
		fc.setDeadline(fc.h.srv.IdleTimeout)
	} else {
		fc.setDeadline(fc.h.e.cfg.ReadTimeout)
	}
}

// inlineSafe reports whether an event loop may answer the request read
// itself: an update check (answered from the answer cache, an inline delta
// only from the memory tier: nothing waited for). The other routes may
// wait (a /stats for its fsync, a channel change for the origin).
func (fc *fastConn) inlineSafe() bool { return fc.req.route == &fastRoutes[0] }

// park readies the connection to wait for its socket: with nothing read,
// it holds no buffers while it waits (an idle keep-alive connection, a
// device between two checks, costs about 2 KB of heap and its goroutine's
// stack instead of 8 KiB + up to 17 KiB of buffers and the 1.6 KB parsed
// request: BenchmarkDeviceFrontIdleConns).
func (fc *fastConn) park() {
	if fc.n == 0 {
		fc.releaseBufs()
	}
}

// readIdleTLS waits for a request over TLS without holding the pooled
// buffers: its first bytes are read into the connection's own small
// array (crypto/tls decrypts the whole record into a buffer of its own and
// keeps the rest for the next read), then the buffers are taken again and
// those bytes put at the head of the read buffer. An idle TLS connection
// so holds crypto/tls's buffers but not the front's 8 KiB read buffer,
// write buffer of up to 17 KiB (the copy of each answer: one record) and
// parsed request.
func (fc *fastConn) readIdleTLS() (int, error) {
	fc.releaseBufs()
	m, err := fc.c.Read(fc.first[:])
	fc.takeBufs()
	return copy(fc.buf, fc.first[:m]), err
}

// readFD reads a non-blocking socket once: io.EOF at its end,
// syscall.EAGAIN when it has nothing yet.
func readFD(fd int, p []byte) (int, error) {
	for {
		n, err := syscall.Read(fd, p)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// fastBufsHeld, when set (by tests, before the front starts), is told of
// each take (+1) and release (-1) of a connection's buffers.
var fastBufsHeld func(delta int)

// takeBufs gives the connection its read and write buffers (from a pool
// shared by all connections).
func (fc *fastConn) takeBufs() {
	if fc.bufs != nil {
		return
	}
	if fastBufsHeld != nil {
		fastBufsHeld(1)
	}
	b := fastBuffers.Get().(*fastBuf)
	if len(b.r) != fc.h.srv.ReadBufferSize {
		b.r = make([]byte, fc.h.srv.ReadBufferSize)
	}
	fc.bufs, fc.buf, fc.wbuf, fc.req = b, b.r, b.w[:0], &b.req
}

// releaseBufs puts the connection's buffers back in the pool (a write
// buffer grown past 64 KiB is dropped).
func (fc *fastConn) releaseBufs() {
	b := fc.bufs
	if b == nil {
		return
	}
	if cap(fc.wbuf) <= 64<<10 {
		b.w = fc.wbuf[:0]
	} else {
		b.w = nil
	}
	fc.bufs, fc.buf, fc.wbuf, fc.req = nil, nil, nil, nil
	fastBuffers.Put(b)
	if fastBufsHeld != nil {
		fastBufsHeld(-1)
	}
}

// handOff gives the connection, with what was read of it, to fasthttp
// (which closes it, as push does at shutdown).
func (h *HTTP1) handOff(fc *fastConn) {
	h.e.metrics.h1HandOffs.Inc()
	var c net.Conn
	prefix := bytes.Clone(fc.buf[:fc.n])
	if fc.tls {
		c = &prefixTLSConn{fc.c.(*tls.Conn), prefix}
	} else {
		c = newLazyConn(&prefixConn{fc.c, prefix})
	}
	h.handoffs.push(c)
}

// answer routes the request and writes the reply; false when the
// connection must close.
func (fc *fastConn) answer(body []byte) bool {
	h := fc.h
	out := h.replies.Get().(*reply)
	defer h.replies.Put(out)
	out.reset()
	out.sendfile = fc.rc != nil || fc.inLoop()
	if !fc.peerKnown { // after the first read: a PROXY protocol header is read by then
		fc.peer, fc.peerKnown = peerOf(fc.c), true
	}
	r := &out.req
	*r = request{ctx: h.ctx, method: fc.req.route.method, path: fc.req.route.path, host: fc.req.host, tls: fc.tls,
		proto: "h1", body: body, header: fc.req, query: noQuery{}, client: h.e.clients.clientOf(fc.peer, frontForwarded{fc.req})}
	h.e.route(r, out)
	keep := !fc.req.close && !h.isClosed()
	err := fc.write(out, keep)
	out.dataFile, out.req.header = nil, nil // nothing pinned while pooled
	if cap(out.body) > 64<<10 {
		out.body = make([]byte, 0, 512) // do not pool huge buffers
	}
	return (err == nil || err == errWait) && keep // errWait: the rest is pending, written by the connection's goroutine
}

// write puts the reply on the wire: the header and, when it fits, the
// body in one write; a larger body from its shared bytes (writev on TCP).
func (fc *fastConn) write(out *reply, keep bool) error {
	h := fc.h
	if out.status == -1 || out.stream != nil || out.headLength > 0 {
		// The routes served here never answer so (the metrics, an Expo
		// asset stream, a HEAD): refuse rather than guess.
		if out.stream != nil {
			out.stream.Close()
		}
		out.reset()
		out.jsonError(500, "internal_error", "Unexpected answer")
		keep = false
	}
	body := out.data
	if body == nil && out.file == nil {
		body = out.body
	}
	length := len(body) + len(out.tail)
	if out.file != nil {
		length = int(out.length)
	}
	w := append(fc.wbuf[:0], "HTTP/1.1 "...)
	w = strconv.AppendInt(w, int64(out.status), 10)
	w = append(w, ' ')
	w = append(w, statusText(out.status)...)
	w = append(w, "\r\nServer: updraft\r\n"...)
	w = append(w, h.date.Load().line...)
	if out.contentType != "" {
		w = append(append(append(w, "Content-Type: "...), out.contentType...), "\r\n"...)
	}
	w = strconv.AppendInt(append(w, "Content-Length: "...), int64(length), 10)
	w = append(w, "\r\n"...)
	if !keep {
		w = append(w, "Connection: close\r\n"...)
	}
	if h.altSvc != "" {
		w = append(append(append(w, "Alt-Svc: "...), h.altSvc...), "\r\n"...)
	}
	fc.wbuf = w
	out.eachHeader(fc.header)
	w = append(fc.wbuf, "\r\n"...)
	if fc.inLoop() {
		return fc.writeInLoop(out, w, body, length)
	}
	var err error
	switch {
	case out.file != nil:
		fc.wbuf = w
		if _, err = fc.c.Write(w); err == nil {
			_, err = io.CopyN(fc.c, out.file, out.length) // sendfile on TCP
		}
		out.file.Close()
		out.file = nil
	case out.dataFile != nil && out.tail == nil:
		fc.wbuf = w
		var handled bool
		if handled, err = sendFile(fc.c, w, out.dataFile, 0); !handled {
			err = fc.writev(w, body, nil)
		}
	case len(w)+length <= fastCopyMax && (fc.rc == nil || length < fastWritevMin):
		w = append(append(w, body...), out.tail...)
		fc.wbuf = w
		_, err = fc.c.Write(w)
	default:
		fc.wbuf = w
		err = fc.writev(w, body, out.tail)
	}
	return err
}

// errWait: in an event loop, the socket took part of an answer; the rest
// is in fc.pending, for the goroutine the connection moves to.
var errWait = errors.New("edge: socket full")

// writeInLoop is write's last step in an event loop: the same writes,
// none waiting (what the socket does not take is left to fc.pending).
func (fc *fastConn) writeInLoop(out *reply, w, body []byte, length int) error {
	fc.wbuf = w
	switch {
	case out.file != nil:
		f := out.file
		out.file = nil
		return fc.copyLater(w, f, out.length)
	case out.dataFile != nil && out.tail == nil:
		return fc.sendFileLoop(w, out.dataFile)
	case len(w)+length <= fastCopyMax && length < fastWritevMin:
		w = append(append(w, body...), out.tail...)
		fc.wbuf = w
		return fc.writeLoop(w, nil, nil, false)
	default:
		return fc.writeLoop(w, body, out.tail, out.data == nil)
	}
}

// writev writes header, body and tail (if any) from their own bytes: one
// writev on TCP, through the connection's own iovec array.
func (fc *fastConn) writev(header, body, tail []byte) error {
	fc.iov = append(fc.iova[:0], header, body)
	if len(tail) > 0 {
		fc.iov = append(fc.iov, tail)
	}
	_, err := fc.iov.WriteTo(fc.c) // it clears what it wrote: nothing pinned
	return err
}

// fastCopyMax is the largest answer written with one copy into the
// connection's buffer; larger ones go out from their own bytes. On plain
// TCP a body of fastWritevMin bytes or more goes out from its own bytes
// too, header and body in one writev: copying the 6 KB swagger answer was
// 0.3 µs of a 10 µs update check in perf's profile of the edge under wrk
// (docs/design-notes.md, "The device front"). Over TLS the copy stays:
// one record instead of two.
const (
	fastCopyMax   = 16 << 10
	fastWritevMin = 2 << 10
)

func (fc *fastConn) header(k, v string) {
	fc.wbuf = append(append(append(append(fc.wbuf, k...), ": "...), v...), "\r\n"...)
}

// statusText is the reason phrase of a status code.
func statusText(code int) string {
	if code == 200 {
		return "OK"
	}
	if t := http.StatusText(code); t != "" {
		return t
	}
	return "Unknown Status Code" // as fasthttp
}

// peerOf is the connection's peer address (the PROXY protocol's source
// with --proxy-protocol).
func peerOf(c net.Conn) netip.Addr {
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case nil:
		return netip.Addr{}
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}
		}
		return ap.Addr().Unmap()
	}
}

// frontForwarded reads X-Forwarded-For from a request parsed by the front.
type frontForwarded struct{ r *fastRequest }

func (f frontForwarded) first() string { return f.r.get("X-Forwarded-For") }

func (f frontForwarded) behind(c *clients, peer netip.Addr) netip.Addr {
	s := forwardedScan{c: c, client: peer}
	for i := f.r.n - 1; i >= 0 && !s.done; i-- {
		if equalFoldASCII(f.r.kv[i][0], "X-Forwarded-For") {
			s.line(f.r.kv[i][1])
		}
	}
	return s.client
}

// prefixConn replays the bytes the front read before handing a connection
// to fasthttp.
type prefixConn struct {
	net.Conn
	prefix []byte
}

// prefixTLSConn is prefixConn over TLS: fasthttp still sees a TLS
// connection (IsTLS, the connection state).
type prefixTLSConn struct {
	*tls.Conn
	prefix []byte
}

func (c *prefixTLSConn) Read(p []byte) (int, error) {
	if n, ok := replay(&c.prefix, p); ok {
		return n, nil
	}
	return c.Conn.Read(p)
}

// replay reads from the bytes read before the hand-over while any are left.
func replay(prefix *[]byte, p []byte) (int, bool) {
	if len(*prefix) == 0 {
		return 0, false
	}
	n := copy(p, *prefix)
	*prefix = (*prefix)[n:]
	return n, true
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if n, ok := replay(&c.prefix, p); ok {
		return n, nil
	}
	return c.Conn.Read(p)
}

// ReadFrom keeps sendfile for fasthttp's file answers.
func (c *prefixConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}
