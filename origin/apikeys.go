package origin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// Named keys with scopes (issue 20): POST /api/v1/keys creates one (its
// secret is in the answer, once; only its SHA-256 is stored), GET lists
// them (never a secret nor a hash), DELETE /api/v1/keys/{name} revokes one
// at once on every origin (the store announces the change on
// store.ChangesChannel; every origin reloads its keys). All three need an
// admin key for every app. The keys in DATA/api-key ("admin") and
// DATA/edge-key ("edge") are replaced by a rotation (keys.go), never
// created nor revoked by name.

// maxKeyLifetime bounds expires_in_seconds.
const maxKeyLifetime = 10 * 366 * 24 * time.Hour

var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// keyAudit is a key as audit records show it: never its secret nor its
// hash.
type keyAudit struct {
	Name    string     `json:"name"`
	Scope   string     `json:"scope"`
	App     string     `json:"app"`     // "": every app
	Expires *time.Time `json:"expires"` // null: never
	// OldKeysExpire (key.rotated): when the keys the rotation replaced stop.
	OldKeysExpire *time.Time `json:"old_keys_expire,omitempty"`
}

func unixTime(sec int64) *time.Time {
	if sec == 0 {
		return nil
	}
	t := time.Unix(sec, 0).UTC()
	return &t
}

func keyAuditJSON(k store.APIKey, oldExpire int64) json.RawMessage {
	b, _ := json.Marshal(keyAudit{Name: k.Label, Scope: k.Scope, App: k.App, Expires: unixTime(k.ExpiresAt), OldKeysExpire: unixTime(oldExpire)})
	return b
}

// keyRecord is the audit record of a change to key k by the request's actor.
func keyRecord(r *http.Request, action string, k store.APIKey, oldExpire int64) store.AuditRecord {
	a := ActorFrom(r.Context())
	return store.AuditRecord{App: k.App, Actor: a.Key, Addr: a.Addr, Action: action, Target: k.Label, After: keyAuditJSON(k, oldExpire)}
}

func keyInfo(k store.APIKey, now int64) KeyInfo {
	info := KeyInfo{Name: k.Label, Scope: k.Scope, App: k.App, CreatedAt: time.Unix(k.CreatedAt, 0).UTC(),
		ExpiresAt: unixTime(k.ExpiresAt), RevokedAt: unixTime(k.RevokedAt), State: "live"}
	if info.Scope == store.ScopeOperator {
		info.Scope = store.ScopeAdmin
	}
	switch {
	case k.RevokedAt != 0:
		info.State = "revoked"
	case !k.Live(now):
		info.State = "expired"
	}
	return info
}

func fileKeyName(name string) bool { return name == store.FileAdminKey || name == store.FileEdgeKey }

// postKey serves POST /api/v1/keys.
func (s *Server) postKey(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var in CreateKeyRequest
	if err := decodeJSONLimit(r, &in, 4096); err != nil {
		return err
	}
	switch {
	case fileKeyName(in.Name):
		return errf(http.StatusBadRequest, "invalid_key_name", "%q names the key in DATA/%s-key; replace that one with: updraft keys rotate --api (or --edge)",
			in.Name, map[string]string{store.FileAdminKey: "api", store.FileEdgeKey: "edge"}[in.Name])
	case !keyNameRE.MatchString(in.Name):
		return errf(http.StatusBadRequest, "invalid_key_name", "key name %q: want 1-64 letters, digits, '.', '_' or '-'", in.Name)
	case !slices.Contains(store.Scopes, in.Scope):
		return errf(http.StatusBadRequest, "invalid_scope", "scope %q: want admin, deploy, upload or read", in.Scope)
	}
	k := store.APIKey{Label: in.Name, Scope: in.Scope, App: in.App}
	if in.App != "" {
		if !snapshot.ValidAppID(in.App) {
			return errf(http.StatusBadRequest, "invalid_app_id", "app id %q: want a reverse-domain id like com.example.app", in.App)
		}
		if _, err := s.store.GetApp(ctx, in.App); errors.Is(err, store.ErrNotFound) {
			return notFoundApp(in.App)
		} else if err != nil {
			return err
		}
	}
	if in.ExpiresInSeconds != nil {
		d := time.Duration(*in.ExpiresInSeconds) * time.Second
		if *in.ExpiresInSeconds <= 0 || d > maxKeyLifetime {
			return errf(http.StatusBadRequest, "invalid_expiry", "expires_in_seconds %d: want 1 second to 10 years", *in.ExpiresInSeconds)
		}
		k.ExpiresAt = time.Now().Add(d).Unix()
	}
	secret := newKey()
	k.Hash = HashKey(secret)
	k, err := s.store.CreateAPIKey(ctx, k, keyRecord(r, "key.created", k, 0))
	if errors.Is(err, store.ErrExists) {
		return errf(http.StatusConflict, "key_exists", "a live key is named %q already; revoke it first or choose another name", in.Name)
	}
	if err != nil {
		return err
	}
	if err := s.loadKeys(ctx); err != nil {
		return err
	}
	s.log.Info("origin: key created", "name", k.Label, "scope", k.Scope, "app", k.App, "expires", k.ExpiresAt, "by", ActorFrom(ctx).Key)
	writeJSON(w, http.StatusCreated, CreateKeyResult{KeyInfo: keyInfo(k, time.Now().Unix()), Secret: secret})
	return nil
}

// listKeys serves GET /api/v1/keys: every key, revoked and expired ones
// included, oldest first.
func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := s.store.APIKeys(r.Context())
	if err != nil {
		return err
	}
	now := time.Now().Unix()
	out := make([]KeyInfo, 0, len(keys))
	for _, k := range keys {
		out = append(out, keyInfo(k, now))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// revokeKey serves DELETE /api/v1/keys/{name}.
func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name := r.PathValue("name")
	if fileKeyName(name) {
		flag := map[string]string{store.FileAdminKey: "--api", store.FileEdgeKey: "--edge"}[name]
		return errf(http.StatusConflict, "key_in_file", "key %q is the one in the data folder: replace it with updraft keys rotate %s --overlap 0", name, flag)
	}
	k, err := s.store.RevokeAPIKey(ctx, name, func(k store.APIKey) []store.AuditRecord {
		return []store.AuditRecord{keyRecord(r, "key.revoked", k, 0)}
	})
	if errors.Is(err, store.ErrNotFound) {
		return errf(http.StatusNotFound, "key_not_found", "no live key named %q (updraft keys list shows them)", name)
	}
	if err != nil {
		return err
	}
	if err := s.loadKeys(ctx); err != nil {
		return err
	}
	s.log.Info("origin: key revoked", "name", name, "by", ActorFrom(ctx).Key)
	k.RevokedAt = time.Now().Unix()
	writeJSON(w, http.StatusOK, keyInfo(k, k.RevokedAt))
	return nil
}

// revokeAppKeys revokes the keys limited to a deleted app (key.revoked
// records by the request's actor): an app created later with the same id
// does not inherit them. A failure is logged; the app is gone anyway.
func (s *Server) revokeAppKeys(r *http.Request, app string) {
	ctx := context.WithoutCancel(r.Context())
	keys, err := s.store.RevokeAppKeys(ctx, app, func(k store.APIKey) []store.AuditRecord {
		return []store.AuditRecord{keyRecord(r, "key.revoked", k, 0)}
	})
	if err == nil && len(keys) > 0 {
		err = s.loadKeys(ctx)
	}
	if err != nil {
		s.log.Error("origin: revoke the deleted app's keys", "app", app, "err", err)
		return
	}
	for _, k := range keys {
		s.log.Info("origin: key revoked with its app", "name", k.Label, "app", app)
	}
}
