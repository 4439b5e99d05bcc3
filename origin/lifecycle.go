package origin

// Bundle lifecycle: deleting a bundle, the per-app retention of the newest
// bundles, and how the delta builder copes with a bundle deleted under it.
// Blobs are freed by the blob garbage collection (gc.go), not here.

import (
	"context"
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/updraft-cdn/updraft/origin/store"
)

// lifecycleErr maps a store refusal of a bundle deletion or retention
// change onto an API error.
func lifecycleErr(err error, appID string) error {
	var iu *store.InUseError
	var inv *store.InvalidError
	switch {
	case errors.As(err, &iu):
		return errf(http.StatusConflict, store.CodeBundleInUse, "%s", iu.Error())
	case errors.As(err, &inv) && inv.Code == store.CodeBundleNotFound:
		return errf(http.StatusNotFound, inv.Code, "%s", inv.Msg)
	}
	return storeErr(err, appID)
}

// deleteBundle is DELETE /api/v1/apps/{app}/bundles/{version}: refused
// (409 bundle_in_use, naming every referrer) while a channel, a rollout or
// an A/B arm points at the bundle; 404 bundle_not_found when absent.
func (s *Server) deleteBundle(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	var d store.DeletedBundle
	_, err = s.deleteBundles("operator", func() ([]store.DeletedBundle, error) {
		d, err = s.store.DeleteBundle(r.Context(), appID, r.PathValue("version"))
		if err != nil {
			return nil, err
		}
		return []store.DeletedBundle{d}, nil
	})
	if err != nil {
		return lifecycleErr(err, appID)
	}
	s.awaitPublished(r.Context())
	writeJSON(w, http.StatusOK, d)
	return nil
}

// deleteBundles runs a store deletion of bundles, then restarts the grace
// period of their blobs (edges still on the snapshot before the deletion
// may fetch them for that long), as one step for the blob garbage
// collection: a collection either sees the bundles referenced or their
// blobs touched. Then the delta builder forgets them, each deletion is
// logged and counted, and a snapshot without them is published.
func (s *Server) deleteBundles(reason string, del func() ([]store.DeletedBundle, error)) ([]store.DeletedBundle, error) {
	s.gc.deletions.RLock()
	deleted, err := del()
	for _, d := range deleted {
		for _, sha := range d.Blobs {
			if err := s.blobs.Touch(sha); err != nil {
				s.log.Warn("origin: touch blob of a deleted bundle", "sha256", sha, "err", err)
			}
		}
	}
	s.gc.deletions.RUnlock()
	for _, d := range deleted {
		s.deltas.forget(d.AppID, d.Version)
		s.log.Info("origin: bundle deleted", "app", d.AppID, "version", d.Version, "reason", reason,
			"deltas", d.Deltas, "manifest_files", d.ManifestFiles)
		s.gc.bundlesDeleted.WithLabelValues(reason).Inc()
	}
	if len(deleted) > 0 {
		s.changedStore()
	}
	return deleted, err
}

// applyRetention deletes the app's bundles beyond its keep_bundles newest
// that nothing points at (see store.PruneBundles). It runs after each
// upload (once the upload's channel points at the new bundle) and when the
// setting changes; a failure is logged, not returned: what triggered it
// stands.
func (s *Server) applyRetention(ctx context.Context, appID string) []store.DeletedBundle {
	ctx = asOrigin(ctx, ActorRetention)
	deleted, err := s.deleteBundles("retention", func() ([]store.DeletedBundle, error) {
		return s.store.PruneBundles(ctx, appID)
	})
	if err != nil {
		s.log.Error("origin: bundle retention", "app", appID, "err", err)
	}
	return deleted
}

func (s *Server) patchApp(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	var in AppOptions
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	ctx := r.Context()
	// One change, one audit record: the retention and the protocol options
	// in one transaction.
	if in.KeepBundles != nil {
		if err := s.store.SetAppOptions(ctx, appID, store.AppOptions{KeepBundles: in.KeepBundles,
			ExposeMetadata: in.ExposeMetadata, AllowDeviceCustomID: in.AllowDeviceCustomID}); err != nil {
			return storeErr(err, appID)
		}
		s.log.Info("origin: app retention set", "app", appID, "keep_bundles", *in.KeepBundles)
		if in.ExposeMetadata != nil || in.AllowDeviceCustomID != nil {
			s.log.Info("origin: app protocol options", "app", appID, "expose_metadata", in.ExposeMetadata, "allow_device_custom_id", in.AllowDeviceCustomID)
			s.awaitPublished(ctx)
		}
	} else if err := s.applyProtocolOptions(ctx, appID, in.ExposeMetadata, in.AllowDeviceCustomID); err != nil {
		return err
	}
	keep, err := s.store.KeepBundles(ctx, appID)
	if err != nil {
		return storeErr(err, appID)
	}
	out := AppSettings{ID: appID, KeepBundles: keep, Deleted: []string{}}
	if a, err := s.store.GetApp(ctx, appID); err == nil {
		out.ExposeMetadata, out.AllowDeviceCustomID = a.ExposeMetadata, a.AllowDeviceCustomID
	}
	if in.KeepBundles != nil {
		for _, d := range s.applyRetention(ctx, appID) {
			out.Deleted = append(out.Deleted, d.Version)
		}
		s.awaitPublished(ctx)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// forget drops a deleted bundle's build progress.
func (b *deltaBuilder) forget(app, version string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.progress, app+"\x00"+version)
}

// bundleGone reports whether a bundle no longer exists (a store error is
// not "gone": the build reports it as a failure).
func (b *deltaBuilder) bundleGone(ctx context.Context, app, version string) bool {
	ok, err := b.s.store.BundleExists(ctx, app, version)
	return err == nil && !ok
}

// targetDeleted is checked when a build fails: a bundle deleted while its
// deltas were being built (or while it waited in the queue) is not a
// failure. It is logged at Info and its progress dropped.
func (b *deltaBuilder) targetDeleted(ctx context.Context, j deltaJob, cause error) bool {
	if !b.bundleGone(ctx, j.app, j.version) {
		return false
	}
	b.forget(j.app, j.version)
	b.s.log.Info("origin: bundle deleted during its delta build; build stopped", "app", j.app, "version", j.version, "cause", cause)
	return true
}

// baseDeleted reports whether err comes from a delta base deleted during
// the build while the target still exists: the build skips that base
// (logged at Info) instead of failing.
func (b *deltaBuilder) baseDeleted(ctx context.Context, j deltaJob, base string, err error) bool {
	if err == nil || !b.bundleGone(ctx, j.app, base) || b.bundleGone(ctx, j.app, j.version) {
		return false
	}
	b.s.log.Info("origin: delta base deleted during the build; skipped", "app", j.app, "version", j.version, "base", base, "cause", err)
	return true
}

// lifecycleMetrics counts deletions and blob collection.
func newLifecycleMetrics(reg *prometheus.Registry) (bundles *prometheus.CounterVec, blobs, bytes prometheus.Counter, runs *prometheus.CounterVec) {
	bundles = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "updraft_origin_bundles_deleted_total", Help: "Bundles deleted, by reason (operator, retention).",
	}, []string{"reason"})
	blobs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "updraft_origin_gc_blobs_deleted_total", Help: "Unreferenced blobs deleted by garbage collection.",
	})
	bytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "updraft_origin_gc_bytes_deleted_total", Help: "Bytes freed by blob garbage collection.",
	})
	runs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "updraft_origin_gc_runs_total", Help: "Blob garbage collections, by outcome (ok, error).",
	}, []string{"outcome"})
	reg.MustRegister(bundles, blobs, bytes, runs)
	return bundles, blobs, bytes, runs
}
