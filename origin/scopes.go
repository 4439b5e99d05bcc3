package origin

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/origin/store"
)

// Keys with scopes (issue 20). Every route declares, in the route table of
// Handler (api.go), the access it needs; a request's key is checked against
// it before the handler runs:
//
//   - no key, an unknown key, a revoked or an expired one: 401 unauthorized
//     (an edge key on an operator route too, as before scopes);
//   - a key whose scope the route does not accept: 403 forbidden_scope,
//     naming the scopes that would do;
//   - a key limited to one app on a route of another app
//     (/api/v1/apps/{app}/…), or on a route without {app} that is not
//     marked forAppKeys (creating apps, gc, keys, the edge routes): 403
//     forbidden_app.
//
// The scopes a route can declare, and the key scopes each accepts:
var (
	// scopeRead: statistics, lists, resolve, guard status, audit and history.
	scopeRead = access{name: "read", keys: []string{store.ScopeAdmin, store.ScopeDeploy, store.ScopeRead}}
	// scopeBundleStatus: an app's bundle list with its build status, which
	// `bundle upload --wait` follows with an upload key.
	scopeBundleStatus = access{name: "read|upload", keys: []string{store.ScopeAdmin, store.ScopeDeploy, store.ScopeRead, store.ScopeUpload}}
	// scopeUpload: uploading a bundle (setting a channel with it needs
	// deploy: uploadBundle checks that).
	scopeUpload = access{name: "upload", keys: []string{store.ScopeAdmin, store.ScopeDeploy, store.ScopeUpload}}
	// scopeDeploy: bundle deletion and rebuilds, channels, rollouts, A/B
	// splits, segments, overrides, guards.
	scopeDeploy = access{name: "deploy", keys: []string{store.ScopeAdmin, store.ScopeDeploy}}
	// scopeAdmin: apps' settings and deletion; with a key for all apps,
	// creating apps, gc and keys.
	scopeAdmin = access{name: "admin", keys: []string{store.ScopeAdmin}}
	// scopeEdge: replication and what edges forward (/v1); an admin key
	// for all apps is accepted too.
	scopeEdge = access{name: "edge", keys: []string{store.ScopeEdge, store.ScopeAdmin}}
	// scopePublic: no key (the OpenAPI document).
	scopePublic = access{name: "public"}
)

// access is what a route asks of the key presented.
type access struct {
	name string   // as the route table and TestScopes show it
	keys []string // key scopes accepted
	// appKeys: a route without {app} that keys limited to one app may call
	// too; its handler shows them only their app (ActorFrom(ctx).App).
	appKeys bool
}

// forAppKeys marks a route without {app} (a listing across apps) that keys
// limited to one app may call; its handler must limit what it shows to
// ActorFrom(ctx).App.
func (a access) forAppKeys() access { a.appKeys = true; return a }

func (a access) accepts(scope string) bool { return slices.Contains(a.keys, scope) }

// needs is the refusal's wording of the scopes that would do.
func (a access) needs() string {
	switch len(a.keys) {
	case 0:
		return "no key"
	case 1:
		return a.keys[0]
	}
	return strings.Join(a.keys[:len(a.keys)-1], ", ") + " or " + a.keys[len(a.keys)-1]
}

// uiAccess is who may open /ui (read only): admin, deploy and read keys,
// those limited to one app seeing only it.
var uiAccess = scopeRead.forAppKeys()

// keyHash is a stored key as the origin holds it in memory.
type keyHash struct {
	sum     []byte
	name    string // api_keys.label
	scope   string
	app     string // "": every app
	expires int64  // Unix seconds; 0: never
	revoked bool
}

func (k keyHash) valid(now int64) bool { return !k.revoked && (k.expires == 0 || now < k.expires) }

// requestKey is the key a request presents (Authorization: Bearer KEY or
// X-API-Key: KEY).
func requestKey(r *http.Request) string {
	key := r.Header.Get("X-API-Key")
	if key == "" {
		if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
			key = a[7:]
		}
	}
	return key
}

// lookupKey finds the stored key whose hash is sum, comparing in constant
// time with every key (revoked and expired ones included: the caller
// says why they are refused).
func (s *Server) lookupKey(sum []byte) (keyHash, bool) {
	found := -1
	keys := s.apiKeys()
	for i, k := range keys {
		if subtle.ConstantTimeCompare(sum, k.sum) == 1 {
			found = i
		}
	}
	if found < 0 {
		return keyHash{}, false
	}
	return keys[found], true
}

// authorize checks the request's key against the access its route needs
// and returns the actor, or the refusal.
func (s *Server) authorize(r *http.Request, need access) (Actor, *apiError) {
	key := requestKey(r)
	if key == "" {
		return Actor{}, errf(http.StatusUnauthorized, "unauthorized", "missing API key: send Authorization: Bearer KEY (the admin key is in DATA/api-key)")
	}
	sum := sha256.Sum256([]byte(key))
	k, ok := s.lookupKey(sum[:])
	now := time.Now().Unix()
	switch {
	case !ok || k.scope == store.ScopeEdge && !need.accepts(store.ScopeEdge):
		// An edge key is no operator key: refused as before scopes.
		return Actor{}, errf(http.StatusUnauthorized, "unauthorized", "wrong API key: send Authorization: Bearer KEY (the admin key is in DATA/api-key)")
	case k.revoked:
		return Actor{}, errf(http.StatusUnauthorized, "unauthorized", "key %q was revoked", k.name)
	case !k.valid(now):
		return Actor{}, errf(http.StatusUnauthorized, "unauthorized", "key %q expired at %s", k.name, time.Unix(k.expires, 0).UTC().Format(time.RFC3339))
	}
	if err := need.check(r, k); err != nil {
		return Actor{}, err
	}
	return Actor{Key: k.name, Scope: k.scope, App: k.app, Addr: clientAddr(r)}, nil
}

// check refuses a valid key the route does not take: its scope, or its app.
func (need access) check(r *http.Request, k keyHash) *apiError {
	what := r.Method + " " + r.URL.Path
	if !need.accepts(k.scope) {
		return errf(http.StatusForbidden, "forbidden_scope", "%s needs a key of scope %s; key %q has scope %s", what, need.needs(), k.name, k.scope)
	}
	if k.app == "" {
		return nil
	}
	if app := r.PathValue("app"); app != "" {
		if app != k.app {
			return errf(http.StatusForbidden, "forbidden_app", "key %q is limited to app %s; %s needs a key of scope %s for app %s or for every app", k.name, k.app, what, need.needs(), app)
		}
		return nil
	}
	if !need.appKeys {
		return errf(http.StatusForbidden, "forbidden_app", "key %q is limited to app %s; %s needs a key of scope %s for every app", k.name, k.app, what, need.needs())
	}
	return nil
}

// requireScope refuses, inside a handler, a request whose key lacks a
// scope that part of the request needs (setting a channel at upload).
func requireScope(r *http.Request, need access, what string) error {
	a := ActorFrom(r.Context())
	if !need.accepts(a.Scope) {
		return errf(http.StatusForbidden, "forbidden_scope", "%s needs a key of scope %s; key %q has scope %s", what, need.needs(), a.Key, a.Scope)
	}
	return nil
}
