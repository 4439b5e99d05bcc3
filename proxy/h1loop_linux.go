//go:build linux

package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/updraft-cdn/updraft/internal/procs"
)

// The device front's event loops: its plain TCP connections wait for their
// requests in epoll sets of the front's own, one per processor, each
// served by a goroutine that blocks in epoll_wait and answers the update
// checks of its connections itself, as an nginx worker does.
//
// Why: in Go's poller one thread waits for every socket; when a check
// arrives it readies the connection's goroutine and wakes another thread
// to run it, a second hop (a futex wake, a context switch, and on a
// virtual machine an interprocessor interrupt) that nginx's workers do not
// make, each woken by the kernel straight from its own epoll set. Measured
// with bench/gofloor on this kind of machine, the same bare server from
// epoll loops against a goroutine per connection: 41.6–47.7k against
// 37.7–38.8k checks/s on the 64 KB Ionic gzip answer (nginx 34.2–42.9k),
// 11.8k against 8.4–11.6k on the 326 KB one (docs/design-notes.md, "Event
// loops").
//
// A loop blocked in epoll_wait holds its processor (a goroutine in a
// system call keeps its P until sysmon takes it back, 20 µs to 10 ms
// later), so the loops run on processors lent for them (internal/procs):
// GOMAXPROCS is raised by their number while they run, and the rest of the
// program keeps the processors it had. A loop whose set waited in Go's
// poller instead (the set's descriptor is readable while it has events)
// still went through that second hop: on 2 cores the machine sat idle
// 5–9% of a loaded round against nginx's 1.5–3.5%, for the same CPU per
// answer (docs/design-notes.md, "Event loops").
//
// A loop only ever does what cannot block: it reads, parses, answers a
// POST /updates from the answer cache and writes without waiting. Anything
// else moves the connection back to Go's poller and a goroutine of its own
// (release), for the rest of its life: a request of another route (a
// /stats waits for its fsync, a channel change for the origin), a
// hand-over to fasthttp, or an answer the socket cannot take whole (the
// rest is written by that goroutine). Timeouts stay the sweep's: it shuts a loop's socket
// down (shutdown(2), under fdMu: the descriptor is never closed under
// the loop), and the loop, woken by it, closes the connection.

// frontLoops are the front's event loops.
type frontLoops struct {
	loops    []*frontLoop
	next     atomic.Uint32
	giveBack func() // the processors lent for the loops
}

// frontLoop is one epoll set and the goroutine that serves it.
type frontLoop struct {
	h    *HTTP1
	ep   int
	wake int // an eventfd in ep: written to stop the loop
	done chan struct{}

	mu      sync.Mutex
	conns   map[int32]*fastConn // by descriptor
	stopped bool
}

// loopConn is a connection's state in a loop: its loop (nil: Go's poller
// serves it), its own descriptor, and the iovec array of its writes.
type loopConn struct {
	lp   *frontLoop
	fd   int
	fdMu sync.Mutex // fd's close against shutLoop, and the move out of the loop
	iovs [3]unix.Iovec
}

// newFrontLoops starts n loops.
func newFrontLoops(h *HTTP1, n int) (*frontLoops, error) {
	ls := &frontLoops{giveBack: procs.Lend(n)}
	for range n {
		ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			ls.stop()
			return nil, err
		}
		wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			unix.Close(ep)
			ls.stop()
			return nil, err
		}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
			unix.Close(ep)
			unix.Close(wake)
			ls.stop()
			return nil, err
		}
		l := &frontLoop{h: h, ep: ep, wake: wake, done: make(chan struct{}), conns: make(map[int32]*fastConn)}
		ls.loops = append(ls.loops, l)
		go l.run()
	}
	return ls, nil
}

// adopt moves a new connection's socket from Go's poller into a loop;
// false when it cannot (fc is then closed: its descriptor, or c).
func (ls *frontLoops) adopt(fc *fastConn, c *net.TCPConn) bool {
	fd := -1
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(s uintptr) { fd, _ = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) })
	}
	c.Close() // Go's poller forgets the socket; the duplicate keeps it open (and non-blocking)
	if fd < 0 {
		return false
	}
	l := ls.loops[ls.next.Add(1)%uint32(len(ls.loops))]
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		unix.Close(fd)
		return false
	}
	fc.fdMu.Lock() // the sweep may shut fc already
	fc.c, fc.rc, fc.fd, fc.lp = nil, nil, fd, l
	fc.fdMu.Unlock()
	l.conns[int32(fd)] = fc
	l.mu.Unlock()
	// Edge-triggered: a socket already readable is reported once now.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.mu.Lock()
		delete(l.conns, int32(fd))
		l.mu.Unlock()
		fc.closeFD()
		return false
	}
	return true
}

// stop ends the loops; the connections they still hold are closed.
func (ls *frontLoops) stop() {
	if ls == nil {
		return
	}
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	for _, l := range ls.loops {
		unix.Write(l.wake, one)
	}
	for _, l := range ls.loops {
		<-l.done
	}
	ls.giveBack()
}

func (l *frontLoop) run() {
	defer func() {
		l.mu.Lock()
		l.stopped = true
		left := make([]*fastConn, 0, len(l.conns))
		for _, fc := range l.conns {
			left = append(left, fc)
		}
		l.mu.Unlock()
		for _, fc := range left {
			l.end(fc)
		}
		unix.Close(l.ep)
		unix.Close(l.wake)
		close(l.done)
	}()
	events := make([]unix.EpollEvent, 128)
	for {
		// Blocks in the kernel, holding a processor lent for the loop
		// (newFrontLoops), woken by the kernel itself when one of the
		// set's sockets becomes readable.
		n, err := unix.EpollWait(l.ep, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			l.h.e.log.Error("edge: device front loop failed", "err", err)
			return
		}
		for i := range n {
			fd := events[i].Fd
			if fd == int32(l.wake) {
				return
			}
			l.mu.Lock()
			fc := l.conns[fd]
			l.mu.Unlock()
			if fc != nil {
				l.serve(fc)
			}
		}
	}
}

// serve runs fc's loop on its socket's edge: until the socket is drained
// (it parks: the next edge), or the connection ends or leaves the loop.
func (l *frontLoop) serve(fc *fastConn) {
	if !fc.closing.Load() && !fc.loop(fc.fd) {
		return
	}
	switch {
	case fc.closing.Load():
		l.end(fc)
	case fc.handedOff:
		if !l.release(fc) {
			l.end(fc)
			return
		}
		fc.deadline.Store(0)
		fc.h.handOff(fc) // with the bytes read, before the buffers go back
		fc.releaseBufs()
		fc.h.front.remove(fc)
	case fc.moving:
		if !l.release(fc) {
			l.end(fc)
			return
		}
		go fc.resume()
	default:
		l.end(fc)
	}
}

// end closes a connection of the loop.
func (l *frontLoop) end(fc *fastConn) {
	l.mu.Lock()
	delete(l.conns, int32(fc.fd))
	l.mu.Unlock()
	fc.closing.Store(true)
	fc.closeFD()
	fc.deadline.Store(0)
	fc.pending = nil
	fc.releaseBufs()
	fc.h.front.remove(fc)
}

// release moves fc from the loop to Go's poller: a net.Conn on the same
// socket; false when none can be made (the socket is closed then).
func (l *frontLoop) release(fc *fastConn) bool {
	l.mu.Lock()
	delete(l.conns, int32(fc.fd))
	l.mu.Unlock()
	unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, fc.fd, nil)
	f := os.NewFile(uintptr(fc.fd), "") // f owns fd from here: closing it closes fd
	c, err := net.FileConn(f)           // a duplicate, in Go's poller
	var rc syscall.RawConn
	if err == nil {
		if tc, ok := c.(*net.TCPConn); ok {
			rc, err = tc.SyscallConn()
		} else {
			err = errors.ErrUnsupported
		}
		if err != nil {
			c.Close()
		}
	}
	fc.fdMu.Lock()
	f.Close()
	fc.fd = -1 // (end closes nothing more)
	if err == nil {
		fc.c, fc.rc, fc.lp = c, rc, nil
	}
	fc.fdMu.Unlock()
	if err != nil {
		return false // fc is closed: end tells the front
	}
	fc.drained = false // the poller knows the socket anew: one read tells
	fc.h.e.metrics.frontLoopReleases.Inc()
	return true
}

// closeFD closes a loop connection's descriptor (under fdMu: shut may be
// shutting it down).
func (fc *fastConn) closeFD() {
	fc.fdMu.Lock()
	if fc.fd >= 0 {
		unix.Close(fc.fd)
		fc.fd = -1
	}
	fc.fdMu.Unlock()
}

// shutLoop shuts a loop connection's socket down, if it is still in its
// loop: the loop, woken by the socket's end, closes it. False when the
// connection is not (or no longer) a loop's.
func (fc *fastConn) shutLoop() bool {
	fc.fdMu.Lock()
	defer fc.fdMu.Unlock()
	if fc.lp == nil {
		return false
	}
	if fc.fd >= 0 {
		unix.Shutdown(fc.fd, unix.SHUT_RDWR)
	}
	return true
}

// inLoop reports whether the connection is served by a loop.
func (fc *fastConn) inLoop() bool { return fc.lp != nil }

// writeLoop writes w, then body and tail (when given), without waiting:
// what the socket does not take is left to fc.pending, for the goroutine
// the connection moves to. body and tail are cloned then when they are the
// pooled reply's (owned).
func (fc *fastConn) writeLoop(w, body, tail []byte, owned bool) error {
	fc.iovs[0] = unix.Iovec{Base: unsafe.SliceData(w)}
	fc.iovs[0].SetLen(len(w))
	n := 1
	for _, b := range [2][]byte{body, tail} {
		if len(b) > 0 {
			fc.iovs[n] = unix.Iovec{Base: unsafe.SliceData(b)}
			fc.iovs[n].SetLen(len(b))
			n++
		}
	}
	total := len(w) + len(body) + len(tail)
	var wrote int
	for {
		r, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(fc.fd), uintptr(unsafe.Pointer(&fc.iovs[0])), uintptr(n))
		if e == unix.EINTR {
			continue
		}
		fc.iovs = [3]unix.Iovec{}
		if e != 0 && e != unix.EAGAIN {
			return e
		}
		if e == 0 {
			wrote = int(r)
		}
		break
	}
	if wrote == total {
		return nil
	}
	// The rest, from where the socket stopped.
	rest := make(net.Buffers, 0, 3)
	for i, b := range [3][]byte{w, body, tail} {
		if wrote >= len(b) {
			wrote -= len(b)
			continue
		}
		b = b[wrote:]
		wrote = 0
		if i > 0 && owned {
			b = append([]byte(nil), b...)
		}
		rest = append(rest, b)
	}
	fc.pending = func() error { _, err := rest.WriteTo(fc.c); return err }
	return errWait
}

// sendFileLoop writes hdr (MSG_MORE), then m by sendfile, without
// waiting: what the socket does not take is left to fc.pending.
func (fc *fastConn) sendFileLoop(hdr []byte, m *answerFile) error {
	off, pos := 0, int64(0)
	if err := sendFileNow(fc.fd, hdr, &off, m, &pos); err != unix.EAGAIN {
		return err
	}
	return fc.sendFileLater(hdr[off:], m, pos)
}

func (fc *fastConn) sendFileLater(hdr []byte, m *answerFile, pos int64) error {
	fc.pending = func() error { _, err := sendFile(fc.c, hdr, m, pos); return err }
	return errWait
}

// copyLater leaves a file answer (w, then length bytes of f) to fc.pending.
func (fc *fastConn) copyLater(w []byte, f io.ReadCloser, length int64) error {
	fc.pending = func() error {
		defer f.Close()
		_, err := fc.c.Write(w)
		if err == nil {
			_, err = io.CopyN(fc.c, f, length)
		}
		return err
	}
	return errWait
}
