package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// lazyConn makes the deadlines a server sets on every request cheap.
// fasthttp moves a connection's read deadline twice per request (idle
// wait, then ReadTimeout) and its write deadline once, each a runtime
// timer update: about 5–7% of a small update check's cost
// (bench/RESULTS.md). lazyConn keeps the deadline asked for and moves the
// connection's own deadline only when the new one is earlier than the one
// armed; a later one takes effect lazily: when the armed deadline fires
// before the one asked for, Read or Write arms the one asked for and goes
// on, so the caller never sees that timeout. Deadlines fire exactly when
// asked, as before; a keep-alive connection serving requests back to back
// moves its timer about once per ReadTimeout instead of three times per
// request.
//
// It wraps the TCP connection itself (below TLS: crypto/tls treats a
// write timeout as fatal, and never sees this one), and passes sendfile
// through (ReadFrom with a file).
type lazyConn struct {
	net.Conn
	// Asked-for and armed deadlines in Unix nanoseconds (0: none, or for
	// armed: none set on the connection).
	wantR, armedR atomic.Int64
	wantW, armedW atomic.Int64
	mu            sync.Mutex // orders the moves of the connection's deadlines
}

func newLazyConn(c net.Conn) net.Conn { return &lazyConn{Conn: c} }

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func timeOf(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// ask records want and arms it when it is earlier than what is armed (or
// nothing is).
func (c *lazyConn) ask(t time.Time, want, armed *atomic.Int64, set func(time.Time) error) error {
	n := unixNano(t)
	want.Store(n)
	if n == 0 {
		return nil // lifted lazily, when the armed deadline fires
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if a := armed.Load(); a != 0 && a <= n {
		return nil // an earlier deadline is armed: it re-arms to n when it fires
	}
	armed.Store(n)
	return set(t)
}

// rearm handles a timeout: true when it came before the deadline asked for
// (which is then armed), so the caller retries.
func (c *lazyConn) rearm(err error, want, armed *atomic.Int64, set func(time.Time) error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := want.Load()
	if n != 0 && time.Now().UnixNano() >= n {
		return false // the deadline asked for has passed: a real timeout
	}
	armed.Store(n)
	return set(timeOf(n)) == nil
}

func (c *lazyConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *lazyConn) SetReadDeadline(t time.Time) error {
	return c.ask(t, &c.wantR, &c.armedR, c.Conn.SetReadDeadline)
}

func (c *lazyConn) SetWriteDeadline(t time.Time) error {
	return c.ask(t, &c.wantW, &c.armedW, c.Conn.SetWriteDeadline)
}

func (c *lazyConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if n > 0 || err == nil || !c.rearm(err, &c.wantR, &c.armedR, c.Conn.SetReadDeadline) {
			return n, err
		}
	}
}

func (c *lazyConn) Write(p []byte) (int, error) {
	var done int
	for {
		n, err := c.Conn.Write(p[done:])
		done += n
		if err == nil || !c.rearm(err, &c.wantW, &c.armedW, c.Conn.SetWriteDeadline) {
			return done, err
		}
	}
}

// ReadFrom keeps the kernel's sendfile for files (blobs from the disk
// tier); any other reader is copied through Write.
func (c *lazyConn) ReadFrom(r io.Reader) (int64, error) {
	rf, ok := c.Conn.(io.ReaderFrom)
	if !ok || !sendfileReader(r) {
		return io.Copy(writerOnly{c}, r)
	}
	var total int64
	for {
		n, err := rf.ReadFrom(r)
		total += n
		if err == nil || !c.rearm(err, &c.wantW, &c.armedW, c.Conn.SetWriteDeadline) {
			return total, err
		}
	}
}

// sendfileReader: the readers net.TCPConn sends with sendfile, whose
// position follows what was sent (so a retry resumes where it stopped).
func sendfileReader(r io.Reader) bool {
	if lr, ok := r.(*io.LimitedReader); ok {
		r = lr.R
	}
	_, ok := r.(*os.File)
	return ok
}

// writerOnly hides lazyConn's ReadFrom from io.Copy.
type writerOnly struct{ io.Writer }

// lazyListener wraps every accepted connection in a lazyConn.
type lazyListener struct{ net.Listener }

func (l lazyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newLazyConn(c), nil
}
