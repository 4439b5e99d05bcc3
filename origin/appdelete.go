package origin

import (
	"context"
	"net/http"

	"github.com/updraft-cdn/updraft/origin/store"
)

// CodeConfirmRequired refuses DELETE /api/v1/apps/{app} without
// ?confirm=APPID: deleting an app is irreversible.
const CodeConfirmRequired = "confirm_required"

// deleteApp is DELETE /api/v1/apps/{app}?confirm={app}: deletes the app,
// its bundles (their blobs then age out through the blob collection),
// channels, rollouts, A/B splits, segments, overrides, guards and jobs in
// one transaction, then its statistics from the event database. Refused
// with 400 confirm_required unless confirm names the app; 404
// app_not_found when absent.
func (s *Server) deleteApp(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	if r.URL.Query().Get("confirm") != appID {
		return errf(http.StatusBadRequest, CodeConfirmRequired,
			"deleting app %s removes its bundles, channels and statistics for good: repeat its id as ?confirm=%s", appID, appID)
	}
	var out store.DeletedApp
	_, err = s.deleteBundles("app_deleted", func() ([]store.DeletedBundle, error) {
		out, err = s.store.DeleteApp(r.Context(), appID)
		if err != nil {
			return nil, err
		}
		if len(out.Bundles) == 0 {
			s.changedStore() // deleteBundles publishes only when bundles went
		}
		return out.Bundles, nil
	})
	if err != nil {
		return storeErr(err, appID)
	}
	if s.events != nil {
		// The app is gone whatever happens here; a failure is logged, the
		// orphaned statistics are harmless (no app shows them).
		if out.EventRows, err = s.events.DeleteApp(context.WithoutCancel(r.Context()), appID); err != nil {
			s.log.Error("origin: delete app statistics", "app", appID, "err", err)
		}
	}
	s.revokeAppKeys(r, appID) // apikeys.go
	s.log.Info("origin: app deleted", "app", appID, "bundles", len(out.Bundles), "rows", out.Rows, "event_rows", out.EventRows)
	s.awaitPublished(r.Context())
	writeJSON(w, http.StatusOK, out)
	return nil
}
