package client

import (
	"context"
	"net/http"

	"github.com/updraft-cdn/updraft/origin/api"
)

// RotateKey rotates the operator API key, the edge key or the snapshot
// signing key (POST /api/v1/keys/rotate; see origin/keys.go).
func (c *Client) RotateKey(ctx context.Context, req api.RotateKeyRequest) (api.RotateKeyResult, error) {
	var out api.RotateKeyResult
	err := c.DoJSON(ctx, http.MethodPost, "/api/v1/keys/rotate", req, &out)
	return out, err
}
