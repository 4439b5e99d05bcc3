package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// TLSServer serves the edge's TLS listener: it accepts TCP connections,
// runs each TLS handshake on its own goroutine (a slow client holds up no
// other), and hands a connection that negotiated HTTP/2 (ALPN h2) to
// net/http's HTTP/2 server, through the same adapter as HTTP/3, and any
// other to the HTTP/1.1 server (fasthttp). HTTP/2 lets the stock plugin's
// stacks (OkHttp, URLSession, both built with h2) fetch a manifest's files
// as streams of one connection: one TCP and TLS handshake instead of one
// per file in flight.
//
// net/http rather than golang.org/x/net/http2 directly: its Server serves
// HTTP/2 on a *tls.Conn that negotiated h2 and shuts it down gracefully
// (GOAWAY) in Shutdown, so no second dependency is needed.
type TLSServer struct {
	h1   *HTTP1
	h2   netHTTP
	srv  *http.Server
	conf *tls.Config

	cancel context.CancelFunc
	h1q    *connQueue
	h2q    *connQueue

	mu     sync.Mutex
	ln     net.Listener
	closed bool
}

// tlsHandshakeTimeout bounds a connection's TLS handshake.
const tlsHandshakeTimeout = 10 * time.Second

// NewTLSServer returns the TLS server for e: h1 serves HTTP/1.1; HTTP/2 is
// offered when conf's NextProtos list h2.
func NewTLSServer(e *Edge, h1 *HTTP1, conf *tls.Config) *TLSServer {
	t := &TLSServer{h1: h1, conf: conf}
	ctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	t.h2.init(e, "h2", ctx)
	t.srv = &http.Server{
		Handler:           &t.h2,
		ReadHeaderTimeout: e.cfg.ReadTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(io.Discard, "", 0), // a client's protocol error is the client's
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: 128},
		// Only h2 connections reach this server; TLSConfig names h2 so
		// that Serve sets HTTP/2 up for them.
		TLSConfig: &tls.Config{NextProtos: []string{"h2"}},
	}
	return t
}

// HTTP2 reports whether the server offers HTTP/2.
func (t *TLSServer) HTTP2() bool { return slices.Contains(t.conf.NextProtos, "h2") }

// Serve accepts connections on ln (plain TCP) until Shutdown.
func (t *TLSServer) Serve(ln net.Listener) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		ln.Close()
		return nil
	}
	t.ln = ln
	t.h1q, t.h2q = newConnQueue(ln.Addr()), newConnQueue(ln.Addr())
	t.mu.Unlock()
	go t.h1.Serve(t.h1q)
	go t.srv.Serve(t.h2q)
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			t.mu.Lock()
			closed := t.closed
			t.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if temporaryAccept(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		go t.handshake(newLazyConn(c)) // below TLS (lazydeadline.go)
	}
}

// temporaryAccept: an accept error worth retrying after a pause (out of
// file descriptors, a connection reset before it was accepted).
func temporaryAccept(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}

func (t *TLSServer) handshake(c net.Conn) {
	tc := tls.Server(c, t.conf)
	c.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
	if err := tc.HandshakeContext(t.h2.ctx); err != nil {
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		t.h2q.push(tc)
		return
	}
	t.h1q.push(tc)
}

// Shutdown stops accepting and lets in-flight requests on both protocols
// finish until ctx ends.
func (t *TLSServer) Shutdown(ctx context.Context) error {
	t.mu.Lock()
	t.closed = true
	ln := t.ln
	t.mu.Unlock()
	t.cancel()
	if ln != nil {
		ln.Close()
	}
	err1 := t.h1.Shutdown(ctx)
	err2 := t.srv.Shutdown(ctx)
	return errors.Join(err1, err2)
}

// connQueue is a net.Listener whose connections are pushed to it (handed
// over after their TLS handshake).
type connQueue struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{ch: make(chan net.Conn), done: make(chan struct{}), addr: addr}
}

func (q *connQueue) push(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.done:
		c.Close()
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
