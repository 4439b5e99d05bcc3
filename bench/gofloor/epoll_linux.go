package main

import (
	"bytes"
	"errors"
	"log"
	"net"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// serveEpoll is the floor without goroutines per connection: GOMAXPROCS
// loops, each on its own epoll set (edge-triggered), reading a socket until
// a read comes back short (then it is drained: the next byte raises a new
// edge, as nginx relies on), answering every whole request read with one
// writev, and waiting for room to write when the socket is full.
func (a *answer) serveEpoll(ln net.Listener) {
	n := runtime.GOMAXPROCS(0)
	loops := make([]*eloop, n)
	for i := range loops {
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			log.Fatal(err)
		}
		loops[i] = &eloop{a: a, ep: fd, conns: map[int32]*econn{}}
		go loops[i].run()
	}
	for i := 0; ; i++ {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		// Take the socket from Go's poller: a duplicate, then close Go's.
		var fd int
		rc, _ := c.(*net.TCPConn).SyscallConn()
		rc.Control(func(s uintptr) { fd, err = unix.Dup(int(s)) })
		c.Close()
		if err != nil {
			continue
		}
		l := loops[i%n]
		l.add(fd)
	}
}

type eloop struct {
	a     *answer
	ep    int
	mu    sync.Mutex
	conns map[int32]*econn
}

type econn struct {
	fd  int
	buf []byte
	n   int
	out [][]byte // pending writev (its array: iov)
	iov [2][]byte
	// With -mode epoll -sendfile: an answer being sent is the header from
	// hdrOff (MSG_MORE), then the body's file from fileOff.
	sending bool
	hdrOff  int
	fileOff int64
}

func (l *eloop) add(fd int) {
	c := &econn{fd: fd, buf: make([]byte, 8192)}
	l.mu.Lock()
	l.conns[int32(fd)] = c
	l.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.close(c)
	}
}

func (l *eloop) close(c *econn) {
	l.mu.Lock()
	delete(l.conns, int32(c.fd))
	l.mu.Unlock()
	unix.Close(c.fd)
}

func (l *eloop) run() {
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(l.ep, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			log.Fatal(err)
		}
		for i := 0; i < n; i++ {
			l.mu.Lock()
			c := l.conns[events[i].Fd]
			l.mu.Unlock()
			if c == nil {
				continue
			}
			if !l.serve(c) {
				l.close(c)
			}
		}
	}
}

// serve writes what is pending, then answers and reads until the socket
// is drained or full; false: close it.
func (l *eloop) serve(c *econn) bool {
	for {
		if !l.answerAll(c) {
			return false
		}
		if len(c.out) > 0 || c.sending {
			return true // the socket is full: the next edge says when it has room
		}
		if c.n == len(c.buf) {
			return false
		}
		m, err := unix.Read(c.fd, c.buf[c.n:])
		switch {
		case errors.Is(err, unix.EAGAIN):
			return true
		case err != nil || m == 0:
			return false
		}
		short := m < len(c.buf)-c.n
		c.n += m
		if short {
			// Drained: answer what came; the next byte raises a new edge.
			return l.answerAll(c)
		}
	}
}

// answerAll writes what is pending, then answers the whole requests in the
// buffer; it stops when the socket is full (c.out left pending).
func (l *eloop) answerAll(c *econn) bool {
	if !l.flush(c) {
		return false
	}
	for len(c.out) == 0 && !c.sending {
		total, ok := requestEnd(c.buf[:c.n])
		if !ok {
			return true
		}
		c.n = copy(c.buf, c.buf[total:c.n])
		if l.a.sendfile {
			c.sending, c.hdrOff, c.fileOff = true, 0, 0
		} else {
			c.out = append(c.iov[:0], l.a.hdr, l.a.body)
		}
		if !l.flush(c) {
			return false
		}
	}
	return true
}

// flush sends what is pending: an answer by sendfile, or buffers.
func (l *eloop) flush(c *econn) bool {
	if !c.sending {
		return c.flush()
	}
	a := l.a
	for c.hdrOff < len(a.hdr) {
		m, err := unix.SendmsgN(c.fd, a.hdr[c.hdrOff:], nil, nil, unix.MSG_MORE)
		if errors.Is(err, unix.EAGAIN) {
			return true
		}
		if err != nil {
			return false
		}
		c.hdrOff += m
	}
	for c.fileOff < int64(len(a.body)) {
		_, err := unix.Sendfile(c.fd, a.memfd, &c.fileOff, len(a.body)-int(c.fileOff))
		if errors.Is(err, unix.EAGAIN) {
			return true
		}
		if err != nil {
			return false
		}
	}
	c.sending = false
	return true
}

// requestEnd is where the first whole request in b ends (its header and
// Content-Length bytes of body).
func requestEnd(b []byte) (int, bool) {
	n, i := 0, 0
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0, false
		}
		line := b[i : i+j+1]
		i += j + 1
		if len(line) <= 2 {
			break
		}
		if len(line) > len(contentLength) && bytes.EqualFold(line[:len(contentLength)], contentLength) {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(line[len(contentLength):])))
		}
	}
	if i+n > len(b) {
		return 0, false
	}
	return i + n, true
}

// flush writes the pending buffers until done or the socket is full; false
// on an error.
func (c *econn) flush() bool {
	for len(c.out) > 0 {
		m, err := unix.Writev(c.fd, c.out)
		if errors.Is(err, unix.EAGAIN) {
			return true
		}
		if err != nil {
			return false
		}
		for m > 0 && len(c.out) > 0 {
			if m >= len(c.out[0]) {
				m -= len(c.out[0])
				c.out = c.out[1:]
				continue
			}
			c.out[0] = c.out[0][m:]
			m = 0
		}
	}
	return true
}
