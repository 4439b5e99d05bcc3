package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/store"
)

// DeleteBundle deletes a bundle that nothing points at (409 bundle_in_use
// names what does).
func (c *Client) DeleteBundle(ctx context.Context, app, version string) (store.DeletedBundle, error) {
	var out store.DeletedBundle
	err := c.DoJSON(ctx, http.MethodDelete, "/api/v1/apps/"+url.PathEscape(app)+"/bundles/"+url.PathEscape(version), nil, &out)
	return out, err
}

// SetAppOptions changes an app's options (nil fields keep their value).
func (c *Client) SetAppOptions(ctx context.Context, app string, opt api.AppOptions) (api.AppSettings, error) {
	var out api.AppSettings
	err := c.DoJSON(ctx, http.MethodPatch, "/api/v1/apps/"+url.PathEscape(app), opt, &out)
	return out, err
}

// GC runs a blob garbage collection now; grace nil uses the origin's.
func (c *Client) GC(ctx context.Context, grace *time.Duration) (api.GCResult, error) {
	var out api.GCResult
	path := "/api/v1/gc"
	if grace != nil {
		path += "?" + url.Values{"grace": {grace.String()}}.Encode()
	}
	err := c.DoJSON(ctx, http.MethodPost, path, nil, &out)
	return out, err
}

// DeleteApp deletes the app and everything it owns (DELETE
// /api/v1/apps/{app}?confirm={app}).
func (c *Client) DeleteApp(ctx context.Context, app string) (store.DeletedApp, error) {
	var out store.DeletedApp
	err := c.DoJSON(ctx, "DELETE", "/api/v1/apps/"+url.PathEscape(app)+"?confirm="+url.QueryEscape(app), nil, &out)
	return out, err
}

// RebuildBundle queues a bundle's build again (see api.RebuildRequest).
func (c *Client) RebuildBundle(ctx context.Context, app, version string, force bool) (api.BundleInfo, error) {
	var out api.BundleInfo
	err := c.DoJSON(ctx, http.MethodPost, "/api/v1/apps/"+url.PathEscape(app)+"/bundles/"+url.PathEscape(version)+"/rebuild",
		api.RebuildRequest{Force: force}, &out)
	return out, err
}
