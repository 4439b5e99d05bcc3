package proxy

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"time"

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
}

// NewHTTP1 returns the fasthttp adapter for e.
func NewHTTP1(e *Edge) *HTTP1 {
	h := &HTTP1{e: e}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.replies.New = func() any { return &reply{body: make([]byte, 0, 512)} }
	h.metrics = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(e.metrics.reg, promhttp.HandlerOpts{}))
	h.srv = &fasthttp.Server{
		Handler:                      h.handle,
		Name:                         "updraft",
		ReadTimeout:                  e.cfg.ReadTimeout,
		WriteTimeout:                 e.cfg.WriteTimeout,
		IdleTimeout:                  2 * time.Minute,
		MaxRequestBodySize:           int(e.cfg.MaxUpdatesBody),
		ReadBufferSize:               8 << 10, // also the header size limit
		MaxConnsPerIP:                e.cfg.MaxConnsPerIP,
		NoDefaultContentType:         true,
		NoDefaultDate:                false,
		CloseOnShutdown:              true,
		ErrorHandler:                 h.transportError,
		TCPKeepalive:                 true,
		DisablePreParseMultipartForm: true,
	}
	return h
}

// Serve accepts connections on ln until Shutdown.
func (h *HTTP1) Serve(ln net.Listener) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		ln.Close()
		return nil
	}
	h.serving = true
	h.mu.Unlock()
	return h.srv.Serve(ln)
}

// Shutdown stops accepting, lets in-flight requests finish until ctx ends.
// Called before Serve, it makes a later Serve return at once (fasthttp alone
// would ignore a shutdown that precedes Serve).
func (h *HTTP1) Shutdown(ctx context.Context) error {
	h.cancel()
	h.mu.Lock()
	h.closed = true
	serving := h.serving
	h.mu.Unlock()
	if !serving {
		return nil
	}
	return h.srv.ShutdownWithContext(ctx)
}

// Handler returns the fasthttp handler (for tests and embedding).
func (h *HTTP1) Handler() fasthttp.RequestHandler { return h.handle }

func (h *HTTP1) transportError(ctx *fasthttp.RequestCtx, err error) {
	var out reply
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		out.jsonError(413, codeBodyTooLarge, "Request body is larger than "+h.e.cfg.MaxUpdatesBody.String())
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
	h.route(ctx, out)
	h.write(ctx, out)
	if cap(out.body) > 64<<10 {
		out.body = make([]byte, 0, 512) // do not pool huge buffers
	}
}

func (h *HTTP1) route(ctx *fasthttp.RequestCtx, out *reply) {
	path := ctx.Path()
	method := ctx.Method()
	e := h.e
	switch {
	case string(path) == "/updates":
		switch string(method) {
		case fasthttp.MethodPost:
			base := e.baseURL
			if base == nil {
				var ok bool
				base, ok = appendBaseURL(out.scratch[:0], ctx.IsTLS(), ctx.Host())
				out.scratch = base
				if !ok {
					out.jsonError(400, "invalid_host", "Host header is missing or not a plain host name")
					return
				}
			}
			e.updates(ctx.PostBody(), base, out)
		case fasthttp.MethodGet:
			out.ok()
		default:
			out.jsonError(405, codeMethod, "Use POST to check for updates")
		}
	case string(path) == "/updates/manifest_size":
		if !ctx.IsPost() {
			out.jsonError(405, codeMethod, "Use POST")
			return
		}
		e.manifestSize(ctx.PostBody(), out)
	case len(path) > 3 && (string(path[:3]) == "/b/" || string(path[:3]) == "/f/"):
		if !ctx.IsGet() && !ctx.IsHead() {
			out.jsonError(405, codeMethod, "Use GET or HEAD for blobs")
			return
		}
		r := blobRequest{
			head:           ctx.IsHead(),
			id:             bstr(path[3:]), // views of the request: valid until write returns
			rangeHdr:       bstr(ctx.Request.Header.Peek("Range")),
			ifRange:        bstr(ctx.Request.Header.Peek("If-Range")),
			ifNoneMatch:    bstr(ctx.Request.Header.Peek("If-None-Match")),
			acceptEncoding: bstr(ctx.Request.Header.Peek("Accept-Encoding")),
			availableDict:  bstr(ctx.Request.Header.Peek("Available-Dictionary")),
		}
		e.blob(ctx, &r, out)
	case string(path) == "/v1/snapshot" || len(path) > 10 && string(path[:10]) == "/v1/blobs/":
		if !e.childAuthorized(ctx.Request.Header.Peek("Authorization")) {
			out.jsonError(401, "unauthorized", "child edges must send Authorization: Bearer EDGE_KEY")
			return
		}
		if !ctx.IsGet() {
			out.jsonError(405, codeMethod, "Use GET")
			return
		}
		if string(path) == "/v1/snapshot" {
			args := ctx.QueryArgs()
			e.childSnapshot(h.ctx, args.Peek("after"), args.Peek("wait"), out)
			return
		}
		e.blob(ctx, &blobRequest{id: bstr(path[10:]), child: true}, out)
	case string(path) == "/channel_self":
		switch string(method) {
		case fasthttp.MethodPost:
			e.channelSelfSet(ctx.PostBody(), out)
		case fasthttp.MethodPut:
			e.channelSelfGet(ctx.PostBody(), out)
		case fasthttp.MethodDelete:
			// unsetChannel: current plugins forget the channel locally; nothing is stored here.
			out.ok()
			e.metrics.channelSelf("unset", "ok")
		case fasthttp.MethodGet:
			a := ctx.QueryArgs()
			e.channelSelfList(bstr(a.Peek("app_id")), bstr(a.Peek("platform")), bstr(a.Peek("is_emulator")), bstr(a.Peek("is_prod")), out)
		default:
			out.jsonError(405, codeMethod, "Use POST, PUT, DELETE or GET")
		}
	case string(path) == "/stats" && ctx.IsGet():
		out.ok()
	case string(path) == "/healthz":
		out.ok()
	case string(path) == "/readyz":
		if s := e.snap.Load(); s != nil {
			out.status = 200
			out.contentType = contentTypeJSON
			out.body = append(out.body[:0], `{"status":"ok","rev":`...)
			out.body = strconv.AppendInt(out.body, s.Rev, 10)
			out.body = append(out.body, '}')
		} else {
			out.jsonError(503, codeNotReady, "Edge has no verified snapshot yet")
		}
	case string(path) == "/metrics":
		out.status = -1
		h.metrics(ctx)
	default:
		out.jsonError(404, codeNotFound, "Not found")
	}
}

// write puts a reply on the wire.
func (h *HTTP1) write(ctx *fasthttp.RequestCtx, out *reply) {
	if out.status < 0 { // handled directly
		return
	}
	resp := &ctx.Response
	resp.SetStatusCode(out.status)
	if out.contentType != "" {
		resp.Header.SetContentType(out.contentType)
	}
	if out.etag != "" {
		out.scratch = append(append(append(out.scratch[:0], '"'), out.etag...), '"')
		resp.Header.SetBytesV("ETag", out.scratch)
	}
	if out.immutable {
		resp.Header.Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	if out.acceptRanges {
		resp.Header.Set("Accept-Ranges", "bytes")
	}
	if out.contentRange != "" {
		resp.Header.Set("Content-Range", out.contentRange)
	}
	if out.rev > 0 {
		resp.Header.Set("X-Updraft-Rev", strconv.FormatInt(out.rev, 10))
	}
	if out.contentEncoding != "" {
		resp.Header.Set("Content-Encoding", out.contentEncoding)
	}
	if out.vary {
		resp.Header.Set("Vary", "accept-encoding, available-dictionary")
	}
	if out.useAsDictionary && out.status == 200 {
		resp.Header.Set("Use-As-Dictionary", dictionaryMatch)
	}
	if out.cacheStatus != "" {
		resp.Header.Set("Cache-Status", out.cacheStatus)
	}
	switch {
	case out.data != nil:
		resp.SetBodyRaw(out.data) // the cache's bytes, never modified: no copy
	case out.file != nil:
		ctx.SetBodyStream(out.file, int(out.length)) // fasthttp closes the file; sendfile for large ones
	case out.headLength > 0 || (ctx.IsHead() && out.status == 200):
		resp.Header.SetContentLength(int(out.headLength))
		resp.SkipBody = true
	default:
		resp.AppendBody(out.body) // copied: out returns to its pool before fasthttp writes
	}
}
