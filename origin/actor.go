package origin

import (
	"context"
	"net"
	"net/http"

	"github.com/updraft-cdn/updraft/origin/store"
)

// Actor is who made an operator or edge API request: the name of the key
// it presented, that key's scope, the app the key is limited to ("" for all
// apps), and the client's address. The API handler puts it in the request's
// context once the key is accepted; audit records and webhooks name it.
type Actor struct {
	Key   string // the key's name (api_keys.label)
	Scope string
	App   string // "" : every app
	Addr  string // the client's IP address
}

type actorKey struct{}

// withActor puts a in ctx, and with it the store's Who (the key's name and
// the address): the store's write methods append each change's audit record
// in the change's transaction (origin/store/audit.go).
func withActor(ctx context.Context, a Actor) context.Context {
	ctx = store.WithWho(ctx, store.Who{Actor: a.Key, Addr: a.Addr})
	return context.WithValue(ctx, actorKey{}, a)
}

// Actors of the origin's own changes in the audit trail.
const (
	ActorGuard     = "guard"     // the rollout guard pausing or rolling back a rollout
	ActorRetention = "retention" // bundles deleted by an app's --keep
)

// asOrigin returns ctx with the origin itself (actor: ActorGuard…) as who
// makes the store's changes.
func asOrigin(ctx context.Context, actor string) context.Context {
	return store.WithWho(ctx, store.Who{Actor: actor})
}

// ActorFrom returns the actor of an API request's context (zero when the
// request was not authorized through the API handler, e.g. a background
// job: Key is then "").
func ActorFrom(ctx context.Context) Actor {
	a, _ := ctx.Value(actorKey{}).(Actor)
	return a
}

// clientAddr is the request's peer address without its port.
func clientAddr(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}
