package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/updraft-cdn/updraft/config"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// HTTP3 serves the edge over HTTP/3 (QUIC, TLS 1.3) with quic-go. Requests
// go through the same route() as HTTP/1.1; 0-RTT data is accepted for GET
// and HEAD only (route answers other early requests 425).
type HTTP3 struct {
	netHTTP
	srv    *http3.Server
	cancel context.CancelFunc
}

// netHTTP maps net/http requests (HTTP/3 from quic-go, HTTP/2 from
// x/net/http2) onto route() and writes its replies.
type netHTTP struct {
	e       *Edge
	proto   string // "h3" or "h2": the requests metric's label
	metrics http.Handler
	replies sync.Pool
	ctx     context.Context // cancelled at Shutdown, ends long-polls
}

func (h *netHTTP) init(e *Edge, proto string, ctx context.Context) {
	h.e, h.proto, h.ctx = e, proto, ctx
	h.metrics = promhttp.HandlerFor(e.metrics.reg, promhttp.HandlerOpts{})
	h.replies.New = func() any { return &reply{body: make([]byte, 0, 512)} }
}

// NewHTTP3 returns the HTTP/3 adapter for e, serving certs.
func NewHTTP3(e *Edge, certs *Certificates) *HTTP3 {
	h := &HTTP3{}
	ctx, cancel := context.WithCancel(context.Background())
	h.init(e, "h3", ctx)
	h.cancel = cancel
	tlsConf := certs.Config(http3.NextProtoH3)
	tlsConf.MinVersion = tls.VersionTLS13
	h.srv = &http3.Server{
		Handler:     &h.netHTTP,
		TLSConfig:   http3.ConfigureTLSConfig(tlsConf),
		IdleTimeout: 2 * time.Minute,
		QUICConfig: &quic.Config{
			Allow0RTT:       true,
			MaxIdleTimeout:  2 * time.Minute,
			KeepAlivePeriod: 0,
		},
		MaxHeaderBytes: 16 << 10,
	}
	return h
}

// Serve accepts QUIC connections on conn until Shutdown.
func (h *HTTP3) Serve(conn net.PacketConn) error {
	err := h.srv.Serve(conn)
	if err == http.ErrServerClosed || err == quic.ErrServerClosed {
		return nil
	}
	return err
}

// Shutdown stops accepting and lets in-flight requests finish until ctx ends.
func (h *HTTP3) Shutdown(ctx context.Context) error {
	h.cancel()
	return h.srv.Shutdown(ctx)
}

type httpHeaders struct{ h http.Header }

func (x httpHeaders) get(name string) string { return x.h.Get(name) }

type urlQuery struct{ v url.Values }

func (q urlQuery) get(name string) string { return q.v.Get(name) }

func (q urlQuery) empty() bool { return len(q.v) == 0 }

// client is the request's client address: the UDP peer, or, when the peer
// is a trusted proxy, what its X-Forwarded-For says (clients.go).
func (h *netHTTP) client(r *http.Request) netip.Addr {
	c := h.e.clients
	ap, _ := netip.ParseAddrPort(r.RemoteAddr)
	peer := ap.Addr().Unmap()
	if !c.trustedPeer(peer) {
		return peer
	}
	s := forwardedScan{c: c, client: peer}
	lines := r.Header.Values("X-Forwarded-For")
	for i := len(lines) - 1; i >= 0 && !s.done; i-- {
		s.line(lines[i])
	}
	return s.client
}

// ServeHTTP maps a net/http request onto route() and writes its reply.
func (h *netHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	out := h.replies.Get().(*reply)
	defer h.replies.Put(out)
	out.reset()
	var body []byte
	if r.Body != nil && (r.Method == http.MethodPost || r.Method == http.MethodPut) {
		limit := h.e.maxBody()
		b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
		if err != nil {
			out.jsonError(400, "bad_request", "Request body could not be read")
			h.write(w, r, out)
			return
		}
		if int64(len(b)) > limit {
			out.jsonError(413, codeBodyTooLarge, "Request body is larger than "+config.Size(limit).String())
			h.write(w, r, out)
			return
		}
		body = b
	}
	req := &out.req
	*req = request{ctx: h.ctx, method: r.Method, path: r.URL.Path, host: r.Host, tls: true, proto: h.proto, body: body,
		header: httpHeaders{r.Header}, query: urlQuery{r.URL.Query()},
		early: r.TLS != nil && !r.TLS.HandshakeComplete, client: h.client(r)}
	h.e.route(req, out)
	if out.status == -1 {
		h.metrics.ServeHTTP(w, r)
		return
	}
	h.write(w, r, out)
}

func (h *netHTTP) write(w http.ResponseWriter, r *http.Request, out *reply) {
	hdr := w.Header()
	// Values may alias out's buffers (the ETag), which go back to the pool
	// when the handler returns, while HTTP/2 encodes the headers on its
	// frame writer's goroutine later: each value is copied.
	out.eachHeader(func(k, v string) { hdr.Set(k, strings.Clone(v)) })
	if out.contentType != "" {
		hdr.Set("Content-Type", out.contentType)
	}
	switch {
	case out.tail != nil: // an update answer and its delta (updates.go, inlineDelta)
		hdr.Set("Content-Length", strconv.Itoa(len(out.data)+len(out.tail)))
		w.WriteHeader(out.status)
		w.Write(out.data)
		w.Write(out.tail)
	case out.data != nil:
		hdr.Set("Content-Length", strconv.Itoa(len(out.data)))
		w.WriteHeader(out.status)
		w.Write(out.data)
	case out.file != nil:
		defer out.file.Close()
		hdr.Set("Content-Length", strconv.FormatInt(out.length, 10))
		w.WriteHeader(out.status)
		io.CopyN(w, out.file, out.length)
	case out.stream != nil:
		defer out.stream.Close()
		w.WriteHeader(out.status)
		if r.Method != http.MethodHead {
			if _, err := io.Copy(w, out.stream); err != nil {
				panic(http.ErrAbortHandler) // resets the stream: the client sees the answer fail
			}
		}
	case out.headLength > 0 || (r.Method == http.MethodHead && out.status == 200):
		hdr.Set("Content-Length", strconv.FormatInt(out.headLength, 10))
		w.WriteHeader(out.status)
	default:
		hdr.Set("Content-Length", strconv.Itoa(len(out.body)))
		w.WriteHeader(out.status)
		w.Write(out.body)
	}
}
