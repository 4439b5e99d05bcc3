package origin

import (
	"context"
	"net/http"
)

// RotateKey rotates the operator API key, the edge key or the snapshot
// signing key (POST /api/v1/keys/rotate; see keys.go).
func (c *Client) RotateKey(ctx context.Context, req RotateKeyRequest) (RotateKeyResult, error) {
	var out RotateKeyResult
	err := c.doJSON(ctx, http.MethodPost, "/api/v1/keys/rotate", req, &out)
	return out, err
}
