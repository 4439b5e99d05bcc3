package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/updraft-cdn/updraft/origin/api"
)

// Audit reads the audit trail (GET /api/v1/audit, or one app's with app
// set): query may carry since, after, action, target and limit.
func (c *Client) Audit(ctx context.Context, app string, query url.Values) (api.AuditPage, error) {
	path := "/api/v1/audit"
	if app != "" {
		path = "/api/v1/apps/" + url.PathEscape(app) + "/audit"
	}
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	var out api.AuditPage
	err := c.DoJSON(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// ChannelHistory reads a channel's deployment history, newest first
// (query: before, limit, since).
func (c *Client) ChannelHistory(ctx context.Context, app, channel string, query url.Values) (api.HistoryPage, error) {
	path := "/api/v1/apps/" + url.PathEscape(app) + "/channels/" + url.PathEscape(channel) + "/history"
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	var out api.HistoryPage
	err := c.DoJSON(ctx, http.MethodGet, path, nil, &out)
	return out, err
}
