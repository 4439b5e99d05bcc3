package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/updraft-cdn/updraft/internal/testenv"
	"golang.org/x/sys/unix"
)

// released is how many connections e's loops have released.
func released(e *Edge) int64 { return int64(testutil.ToFloat64(e.metrics.frontLoopReleases)) }

// loopConns lists the connections the front's event loops hold.
func loopConns(h *HTTP1) []*fastConn {
	var out []*fastConn
	ls := h.loops.Load()
	if ls == nil {
		return nil
	}
	for _, l := range ls.loops {
		l.mu.Lock()
		for _, fc := range l.conns {
			out = append(out, fc)
		}
		l.mu.Unlock()
	}
	return out
}

// An event loop answers a connection's update checks itself, the same
// bytes as fasthttp; a request it may not answer (here a channel_self, which
// may wait for the origin) moves the connection to a goroutine of its own,
// which answers it and the checks after it.
func TestDeviceFrontLoopServesChecks(t *testing.T) {
	e := newCoreEdge(t, manifestSnapshot(t, 1, 60, "a"))
	front, h := serveH1(t, e, false)
	plain, _ := serveH1(t, e, true)
	check := post("/updates", pluginBody, "Accept-Encoding", "identity")
	other := "PUT" + strings.TrimPrefix(post("/channel_self", pluginBody), "POST")
	want := rawExchange(t, plain, check, 0, 1)
	wantOther := rawExchange(t, plain, other, 0, 1)
	if len(want) != 1 || want[0].status != 200 || len(wantOther) != 1 {
		t.Fatalf("fasthttp: %s %s", brief(want), brief(wantOther))
	}

	c, err := net.Dial("tcp", front)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testenv.Patience(20 * time.Second)))
	br := bufio.NewReader(c)
	exchange := func(raw string, want rawAnswer) {
		t.Helper()
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		got := readAnswers(t, br, 1)
		if len(got) != 1 || got[0].status != want.status || got[0].body != want.body {
			t.Fatalf("answer %s, want fasthttp's %s", brief(got), brief([]rawAnswer{want}))
		}
	}
	before := released(e)
	for range 5 {
		exchange(check, want[0])
	}
	if n := len(loopConns(h)); n != 1 || released(e) != before {
		t.Fatalf("after 5 checks: %d connections in the loops (want 1), %d released (want 0)", n, released(e)-before)
	}
	exchange(other, wantOther[0])
	if n := len(loopConns(h)); n != 0 || released(e) != before+1 {
		t.Fatalf("after a channel_self: %d connections in the loops (want 0), %d released (want 1)", n, released(e)-before)
	}
	for range 3 {
		exchange(check, want[0])
	}
}

// An answer the socket cannot take at once is not waited for by the loop:
// its rest is written by a goroutine the connection moves to, which then
// answers the checks pipelined behind it. Both ways an answer leaves the
// loop are covered: writev (an answer under sendfileMin) and sendfile.
func TestDeviceFrontLoopFullSocket(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files int
	}{{"writev", 100}, {"sendfile", 1200}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newCoreEdge(t, manifestSnapshot(t, 1, tc.files, "a"))
			front, h := serveH1(t, e, false)
			plain, _ := serveH1(t, e, true)
			check := post("/updates", pluginBody, "Accept-Encoding", "identity")
			want := rawExchange(t, plain, check, 0, 1)
			if len(want) != 1 || want[0].status != 200 {
				t.Fatalf("fasthttp: %s", brief(want))
			}
			if big := len(want[0].body) >= sendfileMin; big != (tc.name == "sendfile") || len(want[0].body) < fastCopyMax {
				t.Fatalf("answer of %d bytes: not the %s case", len(want[0].body), tc.name)
			}
			// A small receive window, set before the handshake, and a small
			// send buffer on the edge's side: the answer cannot go out whole.
			d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
				rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
				return nil
			}}
			c, err := d.Dial("tcp", front)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(testenv.Patience(20 * time.Second)))
			waitFor(t, testenv.Patience(20*time.Second), "the connection in a loop", func() bool { return len(loopConns(h)) == 1 })
			fc := loopConns(h)[0]
			fc.fdMu.Lock()
			err = unix.SetsockoptInt(fc.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
			fc.fdMu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			before := released(e)
			if _, err := io.WriteString(c, strings.Repeat(check, 3)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, testenv.Patience(20*time.Second), "the loop to leave the answer's rest to a goroutine", func() bool {
				return released(e) > before
			})
			got := readAnswers(t, bufio.NewReader(c), 3)
			if len(got) != 3 {
				t.Fatalf("%s, want 3", brief(got))
			}
			for i, a := range got {
				if a.status != 200 || a.body != want[0].body {
					t.Fatalf("answer %d differs from fasthttp's: %s", i, brief(got[i:i+1]))
				}
			}
		})
	}
}

// The sweep times out a connection waiting in a loop with a request begun,
// and Shutdown closes an idle one at once: the loop, woken by the
// socket's shutdown, closes it, and the peer sees the end.
func TestDeviceFrontLoopTimeouts(t *testing.T) {
	e := newCoreEdge(t, manifestSnapshot(t, 1, 10, "a"))
	e.cfg.ReadTimeout = 100 * time.Millisecond
	front, h := serveH1(t, e, false)
	check := post("/updates", pluginBody)
	dial := func(send string) (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", front)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(testenv.Patience(20 * time.Second)))
		if _, err := io.WriteString(c, send); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		if got := readAnswers(t, br, 1); len(got) != 1 || got[0].status != 200 {
			t.Fatalf("%s", brief(got))
		}
		return c, br
	}
	_, br := dial(check + check[:20])
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the read timeout: %v, want EOF", err)
	}
	waitFor(t, testenv.Patience(20*time.Second), "the loop to drop the timed-out connection", func() bool { return len(loopConns(h)) == 0 })

	_, br = dial(check)
	if n := len(loopConns(h)); n != 1 {
		t.Fatalf("%d connections in the loops, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Patience(20*time.Second))
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after Shutdown: %v, want EOF", err)
	}
	if n := len(loopConns(h)); n != 0 {
		t.Fatalf("%d connections left in the loops after Shutdown", n)
	}
}

// The loops block in epoll_wait on processors lent for them: GOMAXPROCS
// is raised by their number while the front serves (the rest of the
// program keeps its processors), and is back when it has shut down. A
// second front in the process has one loop per processor of the
// program's own, not per processor lent to the first front's loops.
func TestDeviceFrontLoopProcs(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	e := newCoreEdge(t, manifestSnapshot(t, 1, 60, "a"))
	start := func() *HTTP1 {
		t.Helper()
		front, h := serveH1(t, e, false)
		if got := rawExchange(t, front, post("/updates", pluginBody), 0, 1); len(got) != 1 || got[0].status != 200 {
			t.Fatalf("check: %s", brief(got))
		}
		if ls := h.loops.Load(); ls == nil || len(ls.loops) != procs {
			t.Fatalf("loops %v, want %d (one per processor)", ls, procs)
		}
		return h
	}
	shut := func(h *HTTP1) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), testenv.Patience(10*time.Second))
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	h := start()
	if got := runtime.GOMAXPROCS(0); got != 2*procs {
		t.Fatalf("GOMAXPROCS %d while %d loops run, want %d", got, procs, 2*procs)
	}
	h2 := start()
	if got := runtime.GOMAXPROCS(0); got != 3*procs {
		t.Fatalf("GOMAXPROCS %d while two fronts' loops run, want %d", got, 3*procs)
	}
	shut(h2)
	shut(h)
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Fatalf("GOMAXPROCS %d after shutdown, want %d", got, procs)
	}
}
