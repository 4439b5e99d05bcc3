package origin

import (
	"context"
	"crypto/rand"
	"net/http"
	"time"

	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// Preview channels (issue 20, `updraft channel preview`): a short-lived,
// unlisted channel serving one bundle, and the token, signed with the
// snapshot signing key, that lets a tester's device join it through
// /channel_self (snapshot/preview.go, proxy/preview.go). Expired previews
// are deleted in the background (sweepPreviews), which publishes a
// snapshot without them; until then edges refuse them by their expiry.

// Preview TTL bounds.
const (
	DefaultPreviewTTL = 24 * time.Hour
	MaxPreviewTTL     = 30 * 24 * time.Hour
	minPreviewTTL     = time.Second
)

// PreviewRequest and Preview: see origin/api.
type (
	PreviewRequest = api.PreviewRequest
	Preview        = api.Preview
)

// preview builds the API answer for a preview channel, signing its token
// (Ed25519 is deterministic: the same token every time, while the signing
// key stays).
func (s *Server) preview(c store.Channel) (Preview, error) {
	tok, err := snapshot.SignPreviewToken(s.signingKey(), c.AppID, c.Name, c.PreviewExpires)
	if err != nil {
		return Preview{}, err
	}
	exp := time.Unix(c.PreviewExpires, 0).UTC()
	return Preview{AppID: c.AppID, Channel: c.Name, Bundle: c.Bundle, ExpiresAt: exp, Expired: !time.Now().Before(exp), Token: tok}, nil
}

func randomPreviewName() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
	var b [8]byte
	rand.Read(b[:])
	out := []byte("pv-")
	for _, c := range b {
		out = append(out, alphabet[int(c)%len(alphabet)])
	}
	return string(out)
}

// createPreview serves POST /api/v1/apps/{app}/previews.
func (s *Server) createPreview(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	var in PreviewRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.Bundle == "" {
		return errf(http.StatusBadRequest, "invalid_preview", "a preview needs bundle (a version of the app)")
	}
	ttl := time.Duration(in.TTLSeconds) * time.Second
	if in.TTLSeconds == 0 {
		ttl = DefaultPreviewTTL
	}
	if ttl < minPreviewTTL || ttl > MaxPreviewTTL {
		return errf(http.StatusBadRequest, "invalid_ttl", "ttl_seconds %d: want 1 to %d (30 days)", in.TTLSeconds, int64(MaxPreviewTTL/time.Second))
	}
	name := in.Name
	if name == "" {
		name = randomPreviewName()
	}
	if !snapshot.ValidPreviewName(name) {
		return errf(http.StatusBadRequest, "invalid_channel_name", "preview name %q: want 1-%d letters, digits, '.', '_' or '-'", name, snapshot.MaxPreviewName)
	}
	// Whole seconds, rounded up: the token carries seconds.
	expires := time.Now().Add(ttl + time.Second - 1).Truncate(time.Second)
	actor := ActorFrom(r.Context())
	ch, err := s.store.CreatePreview(r.Context(), appID, name, in.Bundle, expires, store.AuditRecord{Actor: actor.Key, Addr: actor.Addr})
	if err != nil {
		if inv, ok := err.(*store.InvalidError); ok && inv.Code == store.CodeChannelExists {
			return errf(http.StatusConflict, inv.Code, "%s", inv.Msg)
		}
		return storeErr(err, appID)
	}
	s.log.Info("origin: preview channel created", "app", appID, "channel", name, "bundle", in.Bundle, "expires", expires)
	s.kickPreviewSweep()
	s.awaitPublished(r.Context())
	p, err := s.preview(ch)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, p)
	return nil
}

// listPreviews serves GET /api/v1/apps/{app}/previews.
func (s *Server) listPreviews(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	chs, err := s.store.ListPreviews(r.Context(), appID)
	if err != nil {
		return storeErr(err, appID)
	}
	out := []Preview{}
	for _, c := range chs {
		p, err := s.preview(c)
		if err != nil {
			return err
		}
		out = append(out, p)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// deletePreview serves DELETE /api/v1/apps/{app}/previews/{name}.
func (s *Server) deletePreview(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	actor := ActorFrom(r.Context())
	// Overrides pinned to it go with it: their shards are rebuilt.
	err = s.shards.writeApps([]string{appID}, func() error {
		return s.store.DeletePreview(r.Context(), appID, name, store.AuditRecord{Actor: actor.Key, Addr: actor.Addr})
	})
	if err != nil {
		if inv, ok := err.(*store.InvalidError); ok && inv.Code == store.CodeNotPreview {
			return errf(http.StatusConflict, inv.Code, "%s", inv.Msg)
		}
		return storeErr(err, appID)
	}
	s.log.Info("origin: preview channel deleted", "app", appID, "channel", name)
	s.awaitPublished(r.Context())
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// previewSweepMax bounds the sweeper's sleep, so that a preview created at
// another origin of a shared store is swept in time too.
const previewSweepMax = time.Minute

// kickPreviewSweep wakes the sweeper (a new preview may expire first).
func (s *Server) kickPreviewSweep() {
	select {
	case s.previewKick <- struct{}{}:
	default:
	}
}

// sweepPreviews deletes expired preview channels (actor "expiry" in the
// audit trail) and publishes, sleeping until the next expiry.
func (s *Server) sweepPreviews(ctx context.Context) {
	for {
		now := time.Now()
		expired, err := s.store.ExpiredPreviews(ctx, now)
		var gone []store.Channel
		if err == nil && len(expired) > 0 {
			var apps []string
			for _, c := range expired {
				apps = append(apps, c.AppID)
			}
			// The same cutoff: the same channels (a preview created since
			// expires later), whose apps' override shards are rebuilt.
			err = s.shards.writeApps(apps, func() error {
				var err error
				gone, err = s.store.DeleteExpiredPreviews(ctx, now, "expiry")
				return err
			})
		}
		if err != nil && ctx.Err() == nil {
			s.log.Error("origin: sweep expired previews", "err", err)
		}
		if len(gone) > 0 {
			for _, c := range gone {
				s.log.Info("origin: preview channel expired", "app", c.AppID, "channel", c.Name)
			}
			s.changedStore()
		}
		wait := previewSweepMax
		if next, err := s.store.NextPreviewExpiry(ctx); err == nil && !next.IsZero() {
			wait = min(wait, max(time.Until(next), 0)+10*time.Millisecond)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.previewKick:
		case <-t.C:
		}
		t.Stop()
	}
}
