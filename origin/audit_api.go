package origin

// The audit trail's API: the records of every operator change and of the
// origin's own (rollout guard, retention), and a channel's deployment
// history drawn from them. The records are appended by the store's write
// methods in each change's transaction (origin/store/audit.go).

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// maxAuditLimit bounds one page of audit records.
const maxAuditLimit = 1000

// ChannelHistoryActions are the audit actions that make a channel's
// deployment history: what it serves (bundle, rollout, A/B arms), its
// settings, and its rollout guard.
var ChannelHistoryActions = []string{
	"channel.created", "channel.changed", "channel.deleted", "channel.preview_created",
	"rollout.set", "rollout.paused", "rollout.resumed", "rollout.promoted", "rollout.rolled_back",
	"ab.set", "ab.deleted", "guard.set", "guard.deleted", "guard.acted",
}

// auditQuery reads the query of an audit request: since (RFC 3339 or a
// duration back from now, like 24h), after (id), action (comma list),
// target and limit (1..1000, default 100).
func auditQuery(r *http.Request) (store.AuditQuery, error) {
	q := r.URL.Query()
	var aq store.AuditQuery
	if v := q.Get("since"); v != "" {
		t, err := ParseSince(v, time.Now())
		if err != nil {
			return aq, errf(http.StatusBadRequest, "invalid_since", "since %q: want an RFC 3339 time (2026-01-02T15:04:05Z) or a duration like 24h", v)
		}
		aq.SinceMs = t.UnixMilli()
	}
	var err error
	if aq.AfterID, err = idParam(q.Get("after"), "after"); err != nil {
		return aq, err
	}
	if aq.BeforeID, err = idParam(q.Get("before"), "before"); err != nil {
		return aq, err
	}
	if v := q.Get("action"); v != "" {
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				aq.Actions = append(aq.Actions, a)
			}
		}
	}
	aq.Target = q.Get("target")
	aq.Limit = 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxAuditLimit {
			return aq, errf(http.StatusBadRequest, "invalid_limit", "limit %q: want 1..%d", v, maxAuditLimit)
		}
		aq.Limit = n
	}
	return aq, nil
}

func idParam(v, name string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, errf(http.StatusBadRequest, "invalid_"+name, "%s %q: want a record id (0 or more)", name, v)
	}
	return n, nil
}

// ParseSince reads a time as RFC 3339, or as a duration before now (24h,
// 90m; also 7d for days).
func ParseSince(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 {
			return time.Time{}, strconv.ErrSyntax
		}
		return now.Add(-time.Duration(n) * 24 * time.Hour), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, strconv.ErrSyntax
	}
	return now.Add(-d), nil
}

// getAudit is GET /api/v1/audit: the installation's audit records (every
// app's and its own), oldest first, with ?app= for one app.
func (s *Server) getAudit(w http.ResponseWriter, r *http.Request) error {
	aq, err := auditQuery(r)
	if err != nil {
		return err
	}
	if app := r.URL.Query().Get("app"); app != "" {
		if !snapshot.ValidAppID(app) {
			return errf(http.StatusBadRequest, "invalid_app_id", "app id %q: want a reverse-domain id like com.example.app", app)
		}
		aq.App = app
	}
	// A key limited to one app reads only that app's records.
	if own := ActorFrom(r.Context()).App; own != "" {
		if aq.App != "" && aq.App != own {
			return errf(http.StatusForbidden, "forbidden_app", "this key is limited to app %s", own)
		}
		aq.App = own
	}
	return s.writeAudit(r.Context(), w, aq)
}

// getAppAudit is GET /api/v1/apps/{app}/audit: one app's audit records
// (also after the app was deleted: the trail outlives it).
func (s *Server) getAppAudit(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	aq, err := auditQuery(r)
	if err != nil {
		return err
	}
	aq.App = appID
	return s.writeAudit(r.Context(), w, aq)
}

func (s *Server) writeAudit(ctx context.Context, w http.ResponseWriter, aq store.AuditQuery) error {
	recs, err := s.store.Audit(ctx, aq)
	if err != nil {
		return err
	}
	out := AuditPage{Records: recs, NextAfter: aq.AfterID}
	if out.Records == nil {
		out.Records = []store.AuditRecord{}
	}
	if n := len(recs); n > 0 {
		out.NextAfter = recs[n-1].ID
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// getChannelHistory is GET /api/v1/apps/{app}/channels/{name}/history: the
// channel's deployment history (ChannelHistoryActions), newest first, paged
// with ?before=ID (next_before) and ?limit= (default 100); ?since= as for
// the audit trail. The history outlives the channel, so an unknown channel
// is an empty history, not an error.
func (s *Server) getChannelHistory(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if !snapshot.ValidChannelName(name) {
		return errf(http.StatusBadRequest, "invalid_channel_name", "channel %q: want 1-64 letters, digits, '.', '_' or '-'", name)
	}
	aq, err := auditQuery(r)
	if err != nil {
		return err
	}
	out, err := s.channelHistory(r.Context(), appID, name, aq)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// channelHistory reads a page of a channel's history (aq: BeforeID, Limit,
// SinceMs).
func (s *Server) channelHistory(ctx context.Context, appID, channel string, aq store.AuditQuery) (HistoryPage, error) {
	aq.App, aq.Target, aq.Newest, aq.AfterID = appID, channel, true, 0
	if len(aq.Actions) == 0 {
		aq.Actions = ChannelHistoryActions
	}
	recs, err := s.store.Audit(ctx, aq)
	if err != nil {
		return HistoryPage{}, err
	}
	out := HistoryPage{Records: recs}
	if out.Records == nil {
		out.Records = []store.AuditRecord{}
	}
	if n := len(recs); n > 0 && n == aq.Limit {
		out.NextBefore = recs[n-1].ID
	}
	return out, nil
}
