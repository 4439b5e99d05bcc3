package proxy

import (
	"context"
	"net/netip"
)

// request is a parsed request, independent of the transport that carried
// it. Strings may alias the transport's buffers: valid until the reply is
// written.
type request struct {
	ctx    context.Context
	method string
	path   string
	host   string
	tls    bool
	proto  string // "h1" or "h3", for metrics
	body   []byte
	header headerGetter
	query  queryGetter
	// early: the request arrived as TLS 1.3 / QUIC 0-RTT data (replayable).
	early bool
	// client is the client's address: the transport's peer, or what a
	// trusted proxy says (clients.go); invalid when unknown.
	client netip.Addr
}

// headerGetter reads one header (or query argument) by name; "" if absent.
type headerGetter interface {
	get(name string) string
}

// queryGetter reads query arguments; empty reports a request without any.
type queryGetter interface {
	headerGetter
	empty() bool
}

// route answers any request of the device and child-edge APIs. Both
// transports (fasthttp for HTTP/1.1, quic-go for HTTP/3) call it; no handler
// logic is written twice. A reply status of -1 means "metrics": the adapter
// serves the Prometheus handler itself.
func (e *Edge) route(r *request, out *reply) {
	e.metrics.requests(r.proto)
	if r.early && r.method != "GET" && r.method != "HEAD" {
		// 0-RTT data can be replayed: only idempotent reads are accepted early.
		out.jsonError(425, "too_early", "Retry after the handshake: only GET and HEAD are accepted as 0-RTT data")
		return
	}
	path := r.path
	// Transports read up to maxBody (room for a child edge's event
	// segment); device requests are held to MaxUpdatesBody.
	if len(r.body) > int(e.cfg.MaxUpdatesBody) && path != "/v1/events" {
		out.jsonError(413, codeBodyTooLarge, "Request body is larger than "+e.cfg.MaxUpdatesBody.String())
		return
	}
	switch {
	case path == "/updates":
		switch r.method {
		case "POST":
			if e.refuseStale(out) { // --max-snapshot-age (follow.go)
				return
			}
			if !e.clients.allow(e.clients.updates, "updates", r.client, 1, out) { // per client network (clients.go)
				e.metrics.updates("too_many_requests")
				return
			}
			base, ok := e.requestBase(r, out)
			if !ok {
				return
			}
			e.updatesInline(r.body, base, r.header.get("Accept-Encoding"), inlineMax(r.header.get(InlineDeltaHeader)), out)
		case "GET", "HEAD":
			out.ok()
		default:
			out.jsonError(405, codeMethod, "Use POST to check for updates")
		}
	case len(path) > 6 && path[:6] == "/expo/":
		e.expoRoute(r, path[6:], out) // the Expo Updates protocol (expo.go)
	case path == "/updates/manifest_size":
		if r.method != "POST" {
			out.jsonError(405, codeMethod, "Use POST")
			return
		}
		if e.refuseStale(out) {
			return
		}
		e.manifestSize(r.body, out)
	case len(path) > 3 && (path[:3] == "/b/" || path[:3] == "/f/"):
		if r.method != "GET" && r.method != "HEAD" {
			out.jsonError(405, codeMethod, "Use GET or HEAD for blobs")
			return
		}
		br := blobRequest{
			head:           r.method == "HEAD",
			id:             path[3:],
			rangeHdr:       r.header.get("Range"),
			ifRange:        r.header.get("If-Range"),
			ifNoneMatch:    r.header.get("If-None-Match"),
			acceptEncoding: r.header.get("Accept-Encoding"),
			availableDict:  r.header.get("Available-Dictionary"),
		}
		e.blob(r.ctx, &br, out)
	case path == "/v1/snapshot" || len(path) > 10 && path[:10] == "/v1/blobs/":
		if !e.childRequest(r, "GET", out) {
			return
		}
		if path == "/v1/snapshot" {
			e.childSnapshot(r.ctx, r.query.get("after"), r.query.get("wait"), out)
			return
		}
		e.blob(r.ctx, &blobRequest{id: path[10:], child: true}, out)
	case path == "/v1/events":
		if !e.childRequest(r, "POST", out) {
			return
		}
		e.relayEvents(r.ctx, r.header.get("X-Updraft-Edge-Id"), r.header.get("X-Updraft-Segment"), r.body, out)
	case path == "/v1/device-channel":
		if !e.childRequest(r, "POST", out) {
			return
		}
		e.relayDeviceChannel(r.ctx, r.body, out)
	case path == "/channel_self":
		if e.refuseStale(out) {
			return
		}
		switch r.method {
		case "POST":
			e.channelSelfSet(r.ctx, r.body, out)
		case "PUT":
			e.channelSelfGet(r.body, out)
		case "DELETE":
			e.channelSelfUnset(r.ctx, r.query, out)
		case "GET":
			e.channelSelfList(r.query, out)
		default:
			out.jsonError(405, codeMethod, "Use POST, PUT, DELETE or GET")
		}
	case len(path) > 9 && path[:9] == "/preview/":
		if r.method != "GET" && r.method != "HEAD" {
			out.jsonError(405, codeMethod, "Use GET")
			return
		}
		e.previewPage(path[9:], r.query.get("scheme"), out) // preview.go
	case path == "/stats":
		switch r.method {
		case "POST":
			e.stats(r.client, r.body, out)
		case "GET":
			out.ok()
		default:
			out.jsonError(405, codeMethod, "Use POST to send stats")
		}
	case path == "/healthz":
		out.ok()
	case path == "/readyz":
		e.readyz(out) // follow.go
	case path == "/metrics":
		out.status = -1
	default:
		out.jsonError(404, codeNotFound, "Not found")
	}
}

// childRequest admits a child edge's request: its edge key, then the one
// method the endpoint takes. It answers the refusals itself.
func (e *Edge) childRequest(r *request, method string, out *reply) bool {
	if !e.childAuthorized(r.header.get("Authorization")) {
		out.jsonError(401, "unauthorized", "child edges must send Authorization: Bearer EDGE_KEY")
		return false
	}
	if r.method != method {
		out.jsonError(405, codeMethod, "Use "+method)
		return false
	}
	return true
}

// inlineMax reads Updraft-Inline-Delta: the largest delta, in bytes, the
// client takes inside an update answer; 0 when absent or not a number.
func inlineMax(h string) int64 {
	if h == "" {
		return 0
	}
	n, ok := parseDigits(h)
	if !ok {
		return 0
	}
	return n
}
