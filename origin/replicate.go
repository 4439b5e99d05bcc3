package origin

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// Long-poll bounds of GET /v1/snapshot.
const (
	defaultPollWait = 30 * time.Second
	maxPollWait     = 60 * time.Second
)

// heartbeatEvery bounds how often the origin signs a heartbeat: answers
// within a second of each other share one.
const heartbeatEvery = time.Second

// HeartbeatHeader carries a signed heartbeat (base64) on snapshot answers.
const HeartbeatHeader = "X-Updraft-Heartbeat"

// heartbeat is a signed heartbeat for one publication.
type heartbeat struct {
	pub   *Published
	at    time.Time
	value string // base64, the header value
}

// currentHeartbeat returns a heartbeat for pub signed within the last
// heartbeatEvery, signing a new one when needed.
func (s *Server) currentHeartbeat(pub *Published) string {
	now := time.Now()
	if hb := s.heartbeat.Load(); hb != nil && hb.pub == pub && now.Sub(hb.at) < heartbeatEvery {
		return hb.value
	}
	b := snapshot.SignHeartbeat(pub.Snap.Rev, pub.Snap.Issued, now, s.signingKey())
	hb := &heartbeat{pub: pub, at: now, value: base64.StdEncoding.EncodeToString(b)}
	s.heartbeat.Store(hb)
	return hb.value
}

// getSnapshot serves GET /v1/snapshot?after=REV[&wait=SECONDS]: the signed
// snapshot at once when one newer than REV exists, else holds the request
// until one is published or the wait ends (304 Not Modified). Both answers
// carry a fresh signed heartbeat (X-Updraft-Heartbeat) vouching that the
// current snapshot is still current now, so that edges can tell a live
// upstream from a replayed or stale one (--max-snapshot-age). At shutdown
// (StopLongPolls) a held request answers 503 at once.
func (s *Server) getSnapshot(w http.ResponseWriter, r *http.Request) error {
	after, wait, err := pollParams(r)
	if err != nil {
		return err
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		cur, changed := s.currentAndChanged()
		if cur.Snap.Rev > after {
			w.Header().Set(HeartbeatHeader, s.currentHeartbeat(cur))
			WriteSnapshot(w, cur.Snap.Rev, cur.Wire)
			return nil
		}
		select {
		case <-changed:
		case <-timer.C:
			w.Header().Set(HeartbeatHeader, s.currentHeartbeat(cur))
			w.Header().Set("X-Updraft-Rev", strconv.FormatInt(cur.Snap.Rev, 10))
			w.WriteHeader(http.StatusNotModified)
			return nil
		case <-s.closing:
			w.Header().Set("Retry-After", "1")
			return errf(http.StatusServiceUnavailable, "shutting_down", "origin is shutting down")
		case <-r.Context().Done():
			return nil
		}
	}
}

// pollParams reads after (default -1: any snapshot) and wait.
func pollParams(r *http.Request) (after int64, wait time.Duration, err error) {
	after = -1
	if v := r.URL.Query().Get("after"); v != "" {
		after, err = strconv.ParseInt(v, 10, 64)
		if err != nil || after < -1 {
			return 0, 0, errf(http.StatusBadRequest, "invalid_after", "after=%q: want a revision number", v)
		}
	}
	wait = defaultPollWait
	if v := r.URL.Query().Get("wait"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, 0, errf(http.StatusBadRequest, "invalid_wait", "wait=%q: want seconds", v)
		}
		wait = min(time.Duration(n)*time.Second, maxPollWait)
	}
	return after, wait, nil
}

// WriteSnapshot writes a signed snapshot answer.
func WriteSnapshot(w http.ResponseWriter, rev int64, wire []byte) {
	w.Header().Set("Content-Type", "application/vnd.updraft.snapshot")
	w.Header().Set("X-Updraft-Rev", strconv.FormatInt(rev, 10))
	w.Header().Set("Content-Length", strconv.Itoa(len(wire)))
	w.Write(wire)
}
