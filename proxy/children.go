package proxy

import (
	"context"
	"crypto/subtle"
	"strconv"
	"time"
)

// Child edges replicate from this edge exactly as from the origin, so
// edge → shield → origin needs no special code: the signed snapshot bytes are
// forwarded verbatim (children verify the origin's signature themselves) and
// blobs come out of this edge's cache.

// childAuthorized checks a child's bearer key against this edge's own
// upstream key (one edge key per tier tree), or the previous one during an
// edge key rotation (--previous-edge-key-file).
func (e *Edge) childAuthorized(authz string) bool {
	const prefix = "Bearer "
	if len(e.childKey) == 0 || len(authz) <= len(prefix) || authz[:len(prefix)] != prefix {
		return false
	}
	key := []byte(authz[len(prefix):])
	ok := subtle.ConstantTimeCompare(key, e.childKey)
	if len(e.prevChildKey) > 0 {
		ok |= subtle.ConstantTimeCompare(key, e.prevChildKey)
	}
	return ok == 1
}

// childSnapshot answers GET /v1/snapshot?after=REV&wait=S for a child edge.
// Answers carry the origin's latest heartbeat this edge accepted, verbatim
// (children verify it as they verify snapshots). Long-polls end at shutdown
// (the transports cancel ctx).
func (e *Edge) childSnapshot(ctx context.Context, afterArg, waitArg string, out *reply) {
	after := int64(-1)
	if len(afterArg) > 0 {
		v, err := strconv.ParseInt(afterArg, 10, 64)
		if err != nil || v < -1 {
			out.jsonError(400, "invalid_after", "after: want a revision number")
			return
		}
		after = v
	}
	wait := 30 * time.Second
	if len(waitArg) > 0 {
		n, err := strconv.Atoi(waitArg)
		if err != nil || n < 0 {
			out.jsonError(400, "invalid_wait", "wait: want seconds")
			return
		}
		wait = min(time.Duration(n)*time.Second, 60*time.Second)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		rev, wire, changed := e.wireAndChanged()
		if rev > after && wire != nil {
			out.status = 200
			out.contentType = "application/vnd.updraft.snapshot"
			out.body = append(out.body[:0], wire...)
			out.rev = rev
			out.heartbeat = e.follow.relayHeartbeat()
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			out.status = 304
			out.rev = rev
			out.heartbeat = e.follow.relayHeartbeat()
			return
		case <-ctx.Done():
			out.jsonError(503, "shutting_down", "edge is shutting down")
			return
		}
	}
}
