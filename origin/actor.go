package origin

import (
	"context"
	"net"
	"net/http"
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

func withActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
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
