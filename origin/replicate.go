package origin

import (
	"net/http"
	"strconv"
	"time"
)

// Long-poll bounds of GET /v1/snapshot.
const (
	defaultPollWait = 30 * time.Second
	maxPollWait     = 60 * time.Second
)

// getSnapshot serves GET /v1/snapshot?after=REV[&wait=SECONDS]: the signed
// snapshot at once when one newer than REV exists, else holds the request
// until one is published or the wait ends (304 Not Modified).
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
			WriteSnapshot(w, cur.Snap.Rev, cur.Wire)
			return nil
		}
		select {
		case <-changed:
		case <-timer.C:
			w.Header().Set("X-Updraft-Rev", strconv.FormatInt(cur.Snap.Rev, 10))
			w.WriteHeader(http.StatusNotModified)
			return nil
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
