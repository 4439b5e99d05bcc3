package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/updraft-cdn/updraft/config"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// HTTP1 serves the edge over HTTP/1.1 with fasthttp.
type HTTP1 struct {
	e       *Edge
	ctx     context.Context // cancelled at Shutdown, ends long-polls
	cancel  context.CancelFunc
	srv     *fasthttp.Server
	metrics fasthttp.RequestHandler
	replies sync.Pool

	mu      sync.Mutex
	serving bool
	closed  bool
	lns     []net.Listener // served by the front (h1fast.go)

	// The device front (h1fast.go): its connections, coarse clock (Unix
	// nanoseconds) and Date header line; the connections it hands to
	// fasthttp; down once Shutdown begins.
	front     fastConns
	frontOnce sync.Once
	loopsOnce sync.Once // the loops start with the first plain TCP connection
	clock     atomic.Int64
	started   time.Time
	date      atomic.Pointer[httpDate]
	sweepDone chan struct{}
	handoffs  *connQueue
	loops     atomic.Pointer[frontLoops] // nil: Go's poller serves every connection (h1loop_linux.go)
	down      atomic.Bool
	noFront   bool // serve everything with fasthttp (tests compare both)

	// altSvc advertises HTTP/3 on TCP answers (set when h3 is served).
	altSvc string
}

// AdvertiseHTTP3 makes TCP answers carry Alt-Svc for HTTP/3 on udpPort.
func (h *HTTP1) AdvertiseHTTP3(udpPort int) {
	h.altSvc = `h3=":` + strconv.Itoa(udpPort) + `"; ma=86400`
}

// NewHTTP1 returns the fasthttp adapter for e.
func NewHTTP1(e *Edge) *HTTP1 {
	h := &HTTP1{e: e, sweepDone: make(chan struct{}), handoffs: newConnQueue(nil)}
	h.front.m = make(map[*fastConn]struct{})
	h.noFront = !e.cfg.DeviceFront
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.replies.New = func() any { return &reply{body: make([]byte, 0, 512)} }
	h.metrics = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(e.metrics.reg, promhttp.HandlerOpts{}))
	h.srv = &fasthttp.Server{
		Handler:                      h.handle,
		Name:                         "updraft",
		ReadTimeout:                  e.cfg.ReadTimeout,
		WriteTimeout:                 e.cfg.WriteTimeout,
		IdleTimeout:                  2 * time.Minute,
		MaxRequestBodySize:           int(e.maxBody()),
		ReadBufferSize:               8 << 10, // also the header size limit
		NoDefaultContentType:         true,
		NoDefaultDate:                false,
		CloseOnShutdown:              true,
		ErrorHandler:                 h.transportError,
		TCPKeepalive:                 true,
		DisablePreParseMultipartForm: true,
	}
	return h
}

// Serve accepts connections on ln until Shutdown: the device front
// (h1fast.go) serves them, and hands fasthttp what it does not serve.
func (h *HTTP1) Serve(ln net.Listener) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		ln.Close()
		return nil
	}
	first := !h.serving
	h.serving = true
	h.lns = append(h.lns, ln)
	h.mu.Unlock()
	if h.noFront {
		if _, tls := ln.(*connQueue); !tls { // the TLS server wraps its TCP connections itself
			ln = lazyListener{ln}
		}
		return h.srv.Serve(ln)
	}
	if first {
		go h.srv.Serve(h.handoffs) // ends when Shutdown closes the queue
	}
	return h.serveFast(ln)
}

func (h *HTTP1) isClosed() bool { return h.down.Load() }

// Shutdown stops accepting, lets in-flight requests finish until ctx ends.
// Called before Serve, it makes a later Serve return at once (fasthttp alone
// would ignore a shutdown that precedes Serve).
func (h *HTTP1) Shutdown(ctx context.Context) error {
	h.cancel()
	h.down.Store(true)
	h.mu.Lock()
	already := h.closed
	h.closed = true
	serving, lns := h.serving, h.lns
	h.mu.Unlock()
	if !serving {
		return nil
	}
	if h.noFront {
		return h.srv.ShutdownWithContext(ctx)
	}
	if !already {
		for _, ln := range lns {
			ln.Close()
		}
	}
	err := h.front.shutdown(ctx) // the sweep still times out requests being read or answered
	if !already {
		close(h.sweepDone)
		h.frontOnce.Do(func() {}) // no front starts now
		h.loopsOnce.Do(func() {}) // nor loops
		h.loops.Load().stop()     // (the connections they still hold, if ctx ended, are closed)
	}
	h.handoffs.Close()
	return errors.Join(err, h.srv.ShutdownWithContext(ctx))
}

// Handler returns the fasthttp handler (for tests and embedding).
func (h *HTTP1) Handler() fasthttp.RequestHandler { return h.handle }

func (h *HTTP1) transportError(ctx *fasthttp.RequestCtx, err error) {
	var out reply
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		out.jsonError(413, codeBodyTooLarge, "Request body is larger than "+config.Size(h.e.maxBody()).String())
	case isTimeout(err):
		out.jsonError(408, "request_timeout", "Request was not received in time")
	default:
		out.jsonError(400, "bad_request", "Malformed HTTP request")
	}
	h.write(ctx, &out)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (h *HTTP1) handle(ctx *fasthttp.RequestCtx) {
	out := h.replies.Get().(*reply)
	defer h.replies.Put(out)
	out.reset()
	h.request(ctx, &out.req)
	h.e.route(&out.req, out)
	if out.status == -1 {
		h.metrics(ctx)
		return
	}
	h.write(ctx, out)
	if cap(out.body) > 64<<10 {
		out.body = make([]byte, 0, 512) // do not pool huge buffers
	}
}

// fastHeaders reads request headers from fasthttp without copying.
type fastHeaders struct{ h *fasthttp.RequestHeader }

func (f fastHeaders) get(name string) string { return bstr(f.h.Peek(name)) }

// fastQuery reads query arguments from fasthttp without copying; they are
// parsed at the first read (most requests have none to read).
type fastQuery struct{ ctx *fasthttp.RequestCtx }

func (f fastQuery) get(name string) string { return bstr(f.ctx.QueryArgs().Peek(name)) }

func (f fastQuery) empty() bool { return f.ctx.QueryArgs().Len() == 0 }

// request fills the transport-neutral request from fasthttp's context; its
// strings are views valid until the reply is written.
func (h *HTTP1) request(ctx *fasthttp.RequestCtx, r *request) {
	*r = request{ctx: h.ctx, method: bstr(ctx.Method()), path: bstr(ctx.Path()), host: bstr(ctx.Host()), tls: ctx.IsTLS(),
		proto: "h1", body: ctx.PostBody(), header: fastHeaders{&ctx.Request.Header}, query: fastQuery{ctx},
		client: h.client(ctx)}
}

// client is the request's client address: the TCP peer (the PROXY
// protocol's source with --proxy-protocol), or, when the peer is a trusted
// proxy, what its X-Forwarded-For says (clients.go).
func (h *HTTP1) client(ctx *fasthttp.RequestCtx) netip.Addr {
	return h.e.clients.clientOf(addrOf(ctx.RemoteIP()), fasthttpForwarded{&ctx.Request.Header})
}

// fasthttpForwarded reads X-Forwarded-For from fasthttp's request header.
type fasthttpForwarded struct{ h *fasthttp.RequestHeader }

func (f fasthttpForwarded) first() string { return bstr(f.h.Peek("X-Forwarded-For")) }

func (f fasthttpForwarded) behind(c *clients, peer netip.Addr) netip.Addr {
	s := forwardedScan{c: c, client: peer}
	lines := f.h.PeekAll("X-Forwarded-For")
	for i := len(lines) - 1; i >= 0 && !s.done; i-- {
		s.line(bstr(lines[i]))
	}
	return s.client
}

// write puts a reply on the wire.
func (h *HTTP1) write(ctx *fasthttp.RequestCtx, out *reply) {
	resp := &ctx.Response
	if h.altSvc != "" {
		resp.Header.Set("Alt-Svc", h.altSvc)
	}
	resp.SetStatusCode(out.status)
	if out.contentType != "" {
		resp.Header.SetContentType(out.contentType)
	}
	// The names are written as eachHeader spells them: no normalization.
	out.eachHeader(func(k, v string) { resp.Header.SetCanonical(sbytes(k), sbytes(v)) })
	switch {
	case out.tail != nil: // an update answer and its delta (updates.go, inlineDelta)
		// Streamed from the shared bytes, not copied into the response's
		// buffer: fasthttp pools those per connection, and a connection
		// would keep a delta-sized one.
		b := twoPartPool.Get().(*twoPart)
		b.parts = [2][]byte{out.data, out.tail}
		ctx.SetBodyStream(b, len(out.data)+len(out.tail)) // fasthttp closes it: back to the pool
	case out.data != nil:
		resp.SetBodyRaw(out.data) // the cache's bytes, never modified: no copy
	case out.file != nil:
		ctx.SetBodyStream(out.file, int(out.length)) // fasthttp closes the file; sendfile for large ones
	case out.stream != nil:
		ctx.SetBodyStream(out.stream, -1) // chunked; fasthttp closes it
	case out.headLength > 0 || (ctx.IsHead() && out.status == 200):
		resp.Header.SetContentLength(int(out.headLength))
		resp.SkipBody = true
	default:
		resp.AppendBody(out.body) // copied: out returns to its pool before fasthttp writes
	}
}

// twoPart is a body of two shared byte slices, read in order.
type twoPart struct{ parts [2][]byte }

var twoPartPool = sync.Pool{New: func() any { return new(twoPart) }}

func (b *twoPart) Read(p []byte) (int, error) {
	for i := range b.parts {
		if len(b.parts[i]) > 0 {
			n := copy(p, b.parts[i])
			b.parts[i] = b.parts[i][n:]
			return n, nil
		}
	}
	return 0, io.EOF
}

// WriteTo writes both parts as they are (fasthttp prefers it to Read: no
// copy through a buffer).
func (b *twoPart) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for i := range b.parts {
		n, err := w.Write(b.parts[i])
		total += int64(n)
		b.parts[i] = b.parts[i][n:]
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Close returns the body to its pool; fasthttp calls it once sent.
func (b *twoPart) Close() error {
	b.parts = [2][]byte{}
	twoPartPool.Put(b)
	return nil
}
