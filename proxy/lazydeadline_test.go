package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/internal/testenv"
)

// lazyPair is a lazyConn over one end of a loopback TCP connection, and
// the other end.
func lazyPair(t *testing.T) (*lazyConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	return newLazyConn(c).(*lazyConn), peer
}

// A read deadline moved later while an earlier one is armed: the earlier
// one fires inside Read, which arms the later one and goes on; the caller
// sees a timeout only once the deadline it asked for has passed.
func TestLazyDeadlineLaterRead(t *testing.T) {
	c, _ := lazyPair(t)
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	want := time.Now().Add(150 * time.Millisecond)
	c.SetReadDeadline(want)
	if got := c.armedR.Load(); got == want.UnixNano() {
		t.Fatal("a later deadline was armed at once; it must wait for the earlier one to fire")
	}
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read: %v, want a timeout", err)
	}
	if now := time.Now(); now.Before(want) {
		t.Fatalf("timed out %v before the deadline asked for", want.Sub(now))
	}
}

// An earlier deadline is armed at once: a Read blocked under a far
// deadline ends when a nearer one is set (as servers do to interrupt it).
func TestLazyDeadlineEarlierRead(t *testing.T) {
	c, _ := lazyPair(t)
	c.SetReadDeadline(time.Now().Add(time.Hour))
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read: %v, want a timeout", err)
		}
	case <-time.After(testenv.Patience(30 * time.Second)):
		t.Fatal("Read still blocked: the nearer deadline was not armed")
	}
}

// A deadline lifted (zero) while one is armed: the armed one fires inside
// Read, which lifts it and goes on reading; data sent later arrives.
func TestLazyDeadlineLifted(t *testing.T) {
	c, peer := lazyPair(t)
	first := time.Now().Add(10 * time.Millisecond)
	c.SetReadDeadline(first)
	c.SetReadDeadline(time.Time{})
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, 5)
		n, err := io.ReadFull(c, b)
		if err != nil {
			t.Errorf("Read: %v", err)
		}
		got <- b[:n]
	}()
	// Write only once the armed deadline has passed: the Read then
	// depends on the lazy lift.
	for time.Now().Before(first.Add(20*time.Millisecond)) || c.armedR.Load() != 0 {
		time.Sleep(5 * time.Millisecond)
	}
	peer.Write([]byte("hello"))
	select {
	case b := <-got:
		if string(b) != "hello" {
			t.Fatalf("read %q", b)
		}
	case <-time.After(testenv.Patience(30 * time.Second)):
		t.Fatal("Read never returned")
	}
}

// Writes: a write deadline moved later while the peer does not read; the
// earlier one fires inside Write, which goes on, and every byte arrives
// once the peer reads, with no error.
func TestLazyDeadlineLaterWrite(t *testing.T) {
	c, peer := lazyPair(t)
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4096)
	}
	data := bytes.Repeat([]byte("x"), 4<<20) // more than the socket buffers hold
	first := time.Now().Add(20 * time.Millisecond)
	c.SetWriteDeadline(first)
	c.SetWriteDeadline(time.Now().Add(time.Hour))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		werr <- err
	}()
	// Read only after the first deadline has passed (and fired inside
	// Write, re-armed to the later one).
	for time.Now().Before(first.Add(20*time.Millisecond)) || c.armedW.Load() == first.UnixNano() {
		time.Sleep(5 * time.Millisecond)
	}
	got, err := io.ReadAll(io.LimitReader(peer, int64(len(data))))
	if err != nil || len(got) != len(data) {
		t.Fatalf("peer read %d bytes: %v", len(got), err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("Write: %v", err)
	}
}

// The edge's read timeout still cuts a client that trickles a request's
// headers (slowloris), through the lazy deadlines: on the first request
// and on a later one of a keep-alive connection.
func TestLazyDeadlineSlowHeaders(t *testing.T) {
	te := startEdge(t, func(e *config.Edge) { e.ReadTimeout = 300 * time.Millisecond })
	for _, keepAlive := range []bool{false, true} {
		c, err := net.Dial("tcp", strings.TrimPrefix(te.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if keepAlive { // one whole request first
			fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("healthz: %v", err)
			}
			resp.Body.Close()
		}
		closed := make(chan struct{})
		go func() {
			io.Copy(io.Discard, c)
			close(closed)
		}()
		c.Write([]byte("POST /updates HTTP/1.1\r\nHost: x\r\n"))
		deadline := time.After(testenv.Patience(30 * time.Second))
	trickle:
		for {
			select {
			case <-closed:
				break trickle
			case <-deadline:
				t.Fatalf("keep-alive %v: a client trickling headers was never cut", keepAlive)
			case <-time.After(50 * time.Millisecond):
				c.Write([]byte("X"))
			}
		}
	}
}
