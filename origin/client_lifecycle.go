package origin

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/updraft-cdn/updraft/origin/store"
)

// DeleteBundle deletes a bundle that nothing points at (409 bundle_in_use
// names what does).
func (c *Client) DeleteBundle(ctx context.Context, app, version string) (store.DeletedBundle, error) {
	var out store.DeletedBundle
	err := c.doJSON(ctx, http.MethodDelete, "/api/v1/apps/"+url.PathEscape(app)+"/bundles/"+url.PathEscape(version), nil, &out)
	return out, err
}

// SetAppOptions changes an app's options (nil fields keep their value).
func (c *Client) SetAppOptions(ctx context.Context, app string, opt AppOptions) (AppSettings, error) {
	var out AppSettings
	err := c.doJSON(ctx, http.MethodPatch, "/api/v1/apps/"+url.PathEscape(app), opt, &out)
	return out, err
}

// GC runs a blob garbage collection now; grace nil uses the origin's.
func (c *Client) GC(ctx context.Context, grace *time.Duration) (GCResult, error) {
	var out GCResult
	path := "/api/v1/gc"
	if grace != nil {
		path += "?" + url.Values{"grace": {grace.String()}}.Encode()
	}
	err := c.doJSON(ctx, http.MethodPost, path, nil, &out)
	return out, err
}
