package origin

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/blob"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// apiError is the operator API's error body: a stable code and a message.
type apiError = api.Error

func errf(status int, code, format string, args ...any) *apiError {
	return api.Errorf(status, code, format, args...)
}

// Handler returns the origin's HTTP handler: the operator API under /api/v1
// and the edge endpoints under /v1, each behind a key of the scope its
// route declares (the route table below), plus /healthz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.routes = nil // the patterns registered, for the OpenAPI test
	s.routeAccess = map[string]access{}
	// api registers a route with the access it needs (scopes.go): the key
	// is checked before fn runs, and fn finds the caller in
	// ActorFrom(r.Context()).
	api := func(pattern string, need access, fn func(w http.ResponseWriter, r *http.Request) error) {
		s.routes = append(s.routes, pattern)
		s.routeAccess[pattern] = need
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			actor, ae := s.authorize(r, need)
			if ae != nil {
				writeErr(w, ae)
				return
			}
			r = r.WithContext(withActor(r.Context(), actor))
			if err := fn(w, r); err != nil {
				var ae *apiError
				if !errors.As(err, &ae) {
					s.log.Error("origin: api", "method", r.Method, "path", r.URL.Path, "err", err)
					ae = errf(http.StatusInternalServerError, "internal_error", "internal error; see the origin log")
				}
				writeErr(w, ae)
			}
		})
	}
	// The route table: every route and the scope of key it needs
	// (scopes.go; TestScopes walks every route with every kind of key).
	//   scopeRead          admin, deploy, read
	//   scopeBundleStatus  admin, deploy, read, upload
	//   scopeUpload        admin, deploy, upload
	//   scopeDeploy        admin, deploy
	//   scopeAdmin         admin
	//   scopeEdge          edge, admin
	// A key limited to one app reaches only the {app} routes of its app,
	// and the routes without {app} marked forAppKeys(), which show it only
	// its app; every other route without {app} needs a key for all apps.
	api("GET /api/v1/apps", scopeRead.forAppKeys(), s.listApps)
	api("POST /api/v1/apps", scopeAdmin, s.createApp)
	api("PATCH /api/v1/apps/{app}", scopeAdmin, s.patchApp)   // lifecycle.go
	api("DELETE /api/v1/apps/{app}", scopeAdmin, s.deleteApp) // appdelete.go
	api("GET /api/v1/apps/{app}/bundles", scopeBundleStatus, s.listBundles)
	api("POST /api/v1/apps/{app}/bundles", scopeUpload, s.uploadBundle)
	api("DELETE /api/v1/apps/{app}/bundles/{version}", scopeDeploy, s.deleteBundle)        // lifecycle.go
	api("POST /api/v1/apps/{app}/bundles/{version}/rebuild", scopeDeploy, s.rebuildBundle) // jobs.go
	api("GET /api/v1/apps/{app}/channels", scopeRead, s.listChannels)
	api("POST /api/v1/apps/{app}/channels", scopeDeploy, s.createChannel)
	api("PUT /api/v1/apps/{app}/channels/{name}", scopeDeploy, s.putChannel)
	api("POST /api/v1/apps/{app}/channels/{name}/rollout", scopeDeploy, s.rollout)
	api("PUT /api/v1/apps/{app}/channels/{name}/ab", scopeDeploy, s.putAB)
	api("DELETE /api/v1/apps/{app}/channels/{name}/ab", scopeDeploy, s.deleteAB)
	api("GET /api/v1/apps/{app}/channels/{name}/guard", scopeRead, s.getGuard)
	api("PUT /api/v1/apps/{app}/channels/{name}/guard", scopeDeploy, s.putGuard)
	api("DELETE /api/v1/apps/{app}/channels/{name}/guard", scopeDeploy, s.deleteGuard)
	api("GET /api/v1/apps/{app}/segments", scopeRead, s.listSegments)
	api("POST /api/v1/apps/{app}/segments", scopeDeploy, s.addSegment)
	api("DELETE /api/v1/apps/{app}/segments/{name}", scopeDeploy, s.removeSegment)
	api("GET /api/v1/apps/{app}/cohorts", scopeRead, s.listCohorts)
	api("POST /api/v1/apps/{app}/cohorts", scopeDeploy, s.addCohort)
	api("PUT /api/v1/apps/{app}/cohorts/{name}", scopeDeploy, s.importCohort)
	api("DELETE /api/v1/apps/{app}/cohorts/{name}", scopeDeploy, s.removeCohort)
	api("GET /api/v1/apps/{app}/cohorts/{name}/members", scopeRead, s.cohortMembers)
	api("GET /api/v1/apps/{app}/overrides", scopeRead, s.listOverrides)
	api("PUT /api/v1/apps/{app}/overrides", scopeDeploy, s.putOverrides)
	api("POST /api/v1/apps/{app}/resolve", scopeRead, s.resolve)
	api("GET /api/v1/apps/{app}/stats", scopeRead, s.getStats)
	api("GET /api/v1/apps/{app}/adoption", scopeRead, s.getAdoption)
	api("POST /api/v1/gc", scopeAdmin, s.postGC)                 // gc.go
	api("POST /api/v1/keys", scopeAdmin, s.postKey)              // apikeys.go
	api("GET /api/v1/keys", scopeAdmin, s.listKeys)              // apikeys.go
	api("DELETE /api/v1/keys/{name}", scopeAdmin, s.revokeKey)   // apikeys.go
	api("POST /api/v1/keys/rotate", scopeAdmin, s.postRotateKey) // keys.go
	api("GET /v1/blobs/{sha}", scopeEdge, s.getBlob)
	api("GET /v1/snapshot", scopeEdge, s.getSnapshot)
	api("POST /v1/events", scopeEdge, s.postEvents)
	api("POST /v1/device-channel", scopeEdge, s.postDeviceChannel)
	// The audit trail (audit_api.go); GET /api/v1/audit shows a key
	// limited to one app only that app's records.
	api("GET /api/v1/audit", scopeRead.forAppKeys(), s.getAudit)
	api("GET /api/v1/apps/{app}/audit", scopeRead, s.getAppAudit)
	api("GET /api/v1/apps/{app}/channels/{name}/history", scopeRead, s.getChannelHistory)
	// Preview channels (previews.go): they route devices, so deploy.
	api("POST /api/v1/apps/{app}/previews", scopeDeploy, s.createPreview)
	api("GET /api/v1/apps/{app}/previews", scopeRead, s.listPreviews)
	api("DELETE /api/v1/apps/{app}/previews/{name}", scopeDeploy, s.deletePreview)
	// Webhooks (webhooks.go); a key limited to one app sees and manages
	// only that app's webhooks.
	api("GET /api/v1/webhooks", scopeRead.forAppKeys(), s.listWebhooks)
	api("POST /api/v1/webhooks", scopeAdmin.forAppKeys(), s.addWebhook)
	api("DELETE /api/v1/webhooks/{id}", scopeAdmin.forAppKeys(), s.removeWebhook)
	api("GET /api/v1/webhooks/{id}/deliveries", scopeRead.forAppKeys(), s.webhookDeliveries)
	api("POST /api/v1/webhooks/{id}/test", scopeAdmin.forAppKeys(), s.testWebhook)
	// Native compatibility (native_api.go).
	api("GET /api/v1/apps/{app}/bundles/{version}/compatibility", scopeRead, s.getCompatibility)
	// The device inventory (devices.go).
	api("GET /api/v1/apps/{app}/devices", scopeRead, s.listDevices)
	api("GET /api/v1/apps/{app}/devices/count", scopeRead, s.countDevices)
	api("GET /api/v1/apps/{app}/devices/{id}", scopeRead, s.getDevice)
	api("GET /api/v1/apps/{app}/devices/{id}/tail", scopeRead, s.tailDevice)
	s.routes = append(s.routes, "GET /api/v1/openapi.json")
	s.routeAccess["GET /api/v1/openapi.json"] = scopePublic
	mux.HandleFunc("GET /api/v1/openapi.json", serveOpenAPI) // openapi.go: no API key, it documents and exposes no data
	mux.HandleFunc("GET /ui", s.ui)
	mux.HandleFunc("POST /ui", s.ui)
	mux.HandleFunc("GET /ui/apps/{app}", s.ui)
	mux.HandleFunc("GET /ui/apps/{app}/device", s.ui) // a device's inventory record (ui.go)
	mux.HandleFunc("POST /ui/apps/{app}", s.ui)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "rev": s.Current().Snap.Rev})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, errf(http.StatusNotFound, "not_found", "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeErr(w http.ResponseWriter, e *apiError) { writeJSON(w, e.Status, e) }

// decodeJSON reads a small JSON body into v, refusing unknown fields.
func decodeJSON(r *http.Request, v any) error { return decodeJSONLimit(r, v, 1<<20) }

func decodeJSONLimit(r *http.Request, v any, limit int64) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errf(http.StatusBadRequest, "invalid_json", "request body: %v", err)
	}
	return nil
}

func (s *Server) appParam(r *http.Request) (string, error) {
	id := r.PathValue("app")
	if !snapshot.ValidAppID(id) {
		return "", errf(http.StatusBadRequest, "invalid_app_id", "app id %q: want a reverse-domain id like com.example.app", id)
	}
	return id, nil
}

func notFoundApp(id string) error {
	return errf(http.StatusNotFound, "app_not_found", "no app %q; create it with: updraft app create %s", id, id)
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) error {
	apps, err := s.store.ListApps(r.Context())
	if err != nil {
		return err
	}
	if only := ActorFrom(r.Context()).App; only != "" { // a key limited to one app
		apps = slices.DeleteFunc(apps, func(a store.App) bool { return a.ID != only })
	}
	writeJSON(w, http.StatusOK, apps)
	return nil
}

func (s *Server) createApp(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if !snapshot.ValidAppID(in.ID) {
		return errf(http.StatusBadRequest, "invalid_app_id", "app id %q: want a reverse-domain id like com.example.app", in.ID)
	}
	if len(in.Name) > 200 {
		return errf(http.StatusBadRequest, "invalid_name", "name: at most 200 bytes")
	}
	if in.Name == "" {
		in.Name = in.ID
	}
	app, err := s.store.CreateApp(r.Context(), in.ID, in.Name)
	if errors.Is(err, store.ErrExists) {
		return errf(http.StatusConflict, "app_exists", "app %q already exists", in.ID)
	}
	if err != nil {
		return err
	}
	s.log.Info("origin: app created", "app", app.ID)
	s.awaitPublished(r.Context())
	writeJSON(w, http.StatusCreated, app)
	return nil
}

func (s *Server) listBundles(w http.ResponseWriter, r *http.Request) error {
	id, err := s.appParam(r)
	if err != nil {
		return err
	}
	// Build statuses first, bundles second: a build records its deltas
	// before its job is done, so a "ready" read first guarantees the
	// bundle read after it lists every delta (read the other way round, a
	// build finishing between the two reads showed "ready" with deltas
	// missing).
	status, err := s.deltas.statuses(r.Context(), id)
	if err != nil {
		return err
	}
	bundles, err := s.store.ListBundles(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return notFoundApp(id)
	}
	if err != nil {
		return err
	}
	out := make([]BundleInfo, len(bundles))
	for i, b := range bundles {
		out[i] = BundleInfo{Bundle: b, DeltaStatus: status[b.Version]}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// uploadBundle stores a zip sent as the raw request body (or, as
// multipart/form-data, an end-to-end encrypted bundle or an Expo update).
// The query carries version (semver, required) and optionally channel (set
// the channel to the new bundle), min_update_version, comment and link. The
// bundle is durable (blob fsynced and renamed, row committed) before 201 is
// sent; an upload cut short leaves nothing behind.
func (s *Server) uploadBundle(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	b := store.Bundle{AppID: appID, Version: q.Get("version"), MinUpdateVersion: q.Get("min_update_version"),
		Comment: q.Get("comment"), Link: q.Get("link")}
	if _, ok := snapshot.ParseVersion(b.Version); !ok || len(b.Version) > 64 {
		return errf(http.StatusBadRequest, "invalid_version", "version %q: want a semantic version like 1.2.3", b.Version)
	}
	if b.MinUpdateVersion != "" {
		if _, ok := snapshot.ParseVersion(b.MinUpdateVersion); !ok {
			return errf(http.StatusBadRequest, "invalid_version", "min_update_version %q: want a semantic version like 1.0.0", b.MinUpdateVersion)
		}
	}
	if len(b.Comment) > 1024 || len(b.Link) > 2048 {
		return errf(http.StatusBadRequest, "invalid_metadata", "comment is limited to 1024 bytes and link to 2048")
	}
	channel := q.Get("channel")
	if channel != "" && !snapshot.ValidChannelName(channel) {
		return errf(http.StatusBadRequest, "invalid_channel_name", "channel %q: want 1-64 letters, digits, '.', '_' or '-'", channel)
	}
	// Native packages (native_api.go): recorded with the bundle, and
	// checked against the channel it goes to before anything is stored.
	_, hasNative := q["native_packages"]
	if b.NativePackages, err = parseNativePackages(q.Get("native_packages"), hasNative); err != nil {
		return err
	}
	minNative, err := minNativeParam(q)
	if err != nil {
		return err
	}
	if channel != "" {
		if err := requireScope(r, scopeDeploy, "setting a channel at upload (channel="+channel+")"); err != nil {
			return err
		}
		if err := s.checkNative(ctx, appID, channel, b.Version, b.NativePackages, boolParam(q, "force"), minNative); err != nil {
			return err
		}
	} else if minNative != nil || boolParam(q, "force") {
		return errf(http.StatusBadRequest, "invalid_upload", "min_native_build and force go with channel")
	}
	if _, err := s.store.GetApp(ctx, appID); errors.Is(err, store.ErrNotFound) {
		return notFoundApp(appID)
	} else if err != nil {
		return err
	}
	if exists, err := s.store.BundleExists(ctx, appID, b.Version); err != nil {
		return err
	} else if exists {
		return errf(http.StatusConflict, "version_exists", "app %s already has bundle %s; bundles are immutable, upload a new version", appID, b.Version)
	}
	max := int64(s.cfg.MaxBundleSize)
	if r.ContentLength > max {
		return errf(http.StatusRequestEntityTooLarge, "bundle_too_large", "bundle is %d bytes; the limit is %s", r.ContentLength, s.cfg.MaxBundleSize)
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "multipart/form-data" {
		return s.uploadParts(w, r, b, channel) // upload_encrypted.go, upload_expo.go
	}
	bw, err := s.blobs.Create(max)
	if err != nil {
		return err
	}
	defer bw.Abort() // no-op after Commit
	if _, err := io.Copy(bw, r.Body); err != nil {
		if errors.Is(err, blob.ErrTooLarge) {
			return errf(http.StatusRequestEntityTooLarge, "bundle_too_large", "bundle is larger than the limit of %s", s.cfg.MaxBundleSize)
		}
		s.log.Warn("origin: upload interrupted", "app", appID, "version", b.Version, "bytes", bw.Size(), "err", err)
		return errf(http.StatusBadRequest, "upload_incomplete", "upload interrupted after %d bytes: %v", bw.Size(), err)
	}
	if err := checkZipLimits(ctx, bw.TempPath(), zipLimits(s.cfg)); err != nil {
		if ae := (*apiError)(nil); errors.As(err, &ae) && ae.Code == "invalid_bundle" {
			s.log.Warn("origin: upload refused", "app", appID, "version", b.Version, "bytes", bw.Size(), "reason", ae.Message)
		}
		return err
	}
	info, err := bw.Commit("")
	if err != nil {
		return err
	}
	b.SHA256, b.Size = info.SHA256, info.Size
	return s.saveBundle(w, r, b, nil, channel)
}

// saveBundle records an uploaded bundle whose blobs are stored, schedules
// its background work, points channel at it if asked, and answers 201 once
// the snapshot that lists it is published.
func (s *Server) saveBundle(w http.ResponseWriter, r *http.Request, b store.Bundle, manifest []snapshot.ManifestEntry, channel string) error {
	ctx, appID := r.Context(), b.AppID
	saved, err := s.store.CreateBundleWithManifest(ctx, b, manifest)
	if errors.Is(err, store.ErrExists) {
		return errf(http.StatusConflict, "version_exists", "app %s already has bundle %s", appID, b.Version)
	}
	if err != nil {
		return err
	}
	s.log.Info("origin: bundle stored", "app", appID, "version", b.Version, "sha256", b.SHA256, "bytes", b.Size, "encrypted", b.SessionKey != "", "expo", b.Expo != nil)
	s.deltas.enqueue(appID, b.Version)
	if channel != "" {
		v := b.Version
		minNative, _ := minNativeParam(r.URL.Query()) // validated by uploadBundle
		if _, _, _, err := s.store.PutChannel(ctx, appID, channel, store.ChannelPatch{Bundle: &v, MinNativeBuild: minNative}, false); err != nil {
			return err
		}
	}
	s.applyRetention(ctx, appID) // after the channel moved: a bundle it left may go
	s.awaitPublished(ctx)
	writeJSON(w, http.StatusCreated, saved)
	return nil
}

func (s *Server) listChannels(w http.ResponseWriter, r *http.Request) error {
	id, err := s.appParam(r)
	if err != nil {
		return err
	}
	chs, err := s.store.ListChannels(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return notFoundApp(id)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, chs)
	return nil
}

type channelBody struct {
	Name string `json:"name"`
	store.ChannelPatch
	// Force skips the native compatibility check of a new bundle.
	Force bool `json:"force,omitempty"`
}

func (s *Server) createChannel(w http.ResponseWriter, r *http.Request) error {
	var in channelBody
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	return s.saveChannel(w, r, in.Name, in.ChannelPatch, true, in.Force)
}

func (s *Server) putChannel(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		store.ChannelPatch
		Force bool `json:"force,omitempty"` // skip the native compatibility check
	}
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	return s.saveChannel(w, r, r.PathValue("name"), in.ChannelPatch, false, in.Force)
}

func (s *Server) saveChannel(w http.ResponseWriter, r *http.Request, name string, p store.ChannelPatch, create, force bool) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	if !snapshot.ValidChannelName(name) {
		return errf(http.StatusBadRequest, "invalid_channel_name", "channel %q: want 1-64 letters, digits, '.', '_' or '-'", name)
	}
	if p.Bundle != nil {
		if err := s.checkNativeVersion(r.Context(), appID, name, *p.Bundle, force, p.MinNativeBuild); err != nil {
			return err
		}
	}
	ch, created, demoted, err := s.store.PutChannel(r.Context(), appID, name, p, create)
	switch {
	case errors.Is(err, store.ErrExists):
		return errf(http.StatusConflict, "channel_exists", "app %s already has channel %q; update it with PUT", appID, name)
	case err != nil:
		return storeErr(err, appID)
	}
	s.log.Info("origin: channel saved", "app", appID, "channel", name, "bundle", ch.Bundle, "created", created, "demoted", demoted)
	s.awaitPublished(r.Context())
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, struct {
		store.Channel
		Demoted []string `json:"demoted,omitempty"`
	}{ch, demoted})
	return nil
}

// getBlob serves a blob to an edge filling its cache.
func (s *Server) getBlob(w http.ResponseWriter, r *http.Request) error {
	sha := r.PathValue("sha")
	if !blob.ValidHash(sha) {
		return errf(http.StatusBadRequest, "invalid_blob_id", "blob id must be 64 lower-case hex characters")
	}
	f, _, err := s.blobs.Open(sha)
	if errors.Is(err, blob.ErrNotFound) {
		return errf(http.StatusNotFound, "blob_not_found", "no blob %s", sha)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+sha+`"`)
	http.ServeContent(w, r, "", time.Time{}, f)
	return nil
}
