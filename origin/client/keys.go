package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/updraft-cdn/updraft/origin/api"
)

// RotateKey rotates the admin key of DATA/api-key, the edge key or the snapshot
// signing key (POST /api/v1/keys/rotate; see origin/keys.go).
func (c *Client) RotateKey(ctx context.Context, req api.RotateKeyRequest) (api.RotateKeyResult, error) {
	var out api.RotateKeyResult
	err := c.DoJSON(ctx, http.MethodPost, "/api/v1/keys/rotate", req, &out)
	return out, err
}

// CreateKey creates a named key with a scope, for one app or all (POST
// /api/v1/keys); the result holds its secret, shown this once.
func (c *Client) CreateKey(ctx context.Context, req api.CreateKeyRequest) (api.CreateKeyResult, error) {
	var out api.CreateKeyResult
	err := c.DoJSON(ctx, http.MethodPost, "/api/v1/keys", req, &out)
	return out, err
}

// ListKeys lists the keys (GET /api/v1/keys), revoked and expired ones too.
func (c *Client) ListKeys(ctx context.Context) ([]api.KeyInfo, error) {
	var out []api.KeyInfo
	err := c.DoJSON(ctx, http.MethodGet, "/api/v1/keys", nil, &out)
	return out, err
}

// RevokeKey revokes the live key named name (DELETE /api/v1/keys/{name}).
func (c *Client) RevokeKey(ctx context.Context, name string) (api.KeyInfo, error) {
	var out api.KeyInfo
	err := c.DoJSON(ctx, http.MethodDelete, "/api/v1/keys/"+url.PathEscape(name), nil, &out)
	return out, err
}
