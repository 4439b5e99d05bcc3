package origin

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/updraft-cdn/updraft/origin/store"
)

// rebuildBundle queues a bundle's build again (deltas.go): 202 with the
// bundle, its build queued. 404 bundle_not_found, 409 bundle_encrypted
// (nothing to build from ciphertext), 409 build_running (--force while the
// build runs).
func (s *Server) rebuildBundle(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	version := r.PathValue("version")
	var in RebuildRequest
	if body, err := io.ReadAll(io.LimitReader(r.Body, 1<<10)); err != nil {
		return err
	} else if len(body) > 0 {
		if err := decodeJSONBytes(body, &in); err != nil {
			return err
		}
	}
	ctx := r.Context()
	err = s.store.RequeueBuild(ctx, appID, version, in.Force)
	var inv *store.InvalidError
	switch {
	case errors.As(err, &inv) && inv.Code == store.CodeBundleNotFound:
		return errf(http.StatusNotFound, inv.Code, "%s", inv.Msg)
	case errors.As(err, &inv) && (inv.Code == store.CodeBundleEncrypted || inv.Code == store.CodeBuildRunning):
		return errf(http.StatusConflict, inv.Code, "%s", inv.Msg)
	case err != nil:
		return storeErr(err, appID)
	}
	s.log.Info("origin: bundle build queued again", "app", appID, "version", version, "force", in.Force)
	s.deltas.notify()
	if in.Force {
		s.awaitPublished(ctx) // the bundle without its manifest and deltas, until the build is done
	}
	bundles, err := s.store.ListBundles(ctx, appID)
	if err != nil {
		return err
	}
	for _, b := range bundles {
		if b.Version == version {
			writeJSON(w, http.StatusAccepted, BundleInfo{Bundle: b, DeltaStatus: s.deltas.Status(appID, version)})
			return nil
		}
	}
	return errf(http.StatusNotFound, store.CodeBundleNotFound, "app %s has no bundle %q", appID, version)
}

func decodeJSONBytes(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errf(http.StatusBadRequest, "invalid_json", "request body: %v", err)
	}
	return nil
}
