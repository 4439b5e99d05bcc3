package client

import (
	"context"
	"net/http"
	"strconv"

	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/store"
)

// AddWebhook subscribes a URL to audit actions (POST /api/v1/webhooks);
// the answer carries the signing secret, shown this once.
func (c *Client) AddWebhook(ctx context.Context, req api.WebhookRequest) (api.WebhookCreated, error) {
	var out api.WebhookCreated
	err := c.DoJSON(ctx, http.MethodPost, "/api/v1/webhooks", req, &out)
	return out, err
}

// ListWebhooks lists the webhooks (secrets left out).
func (c *Client) ListWebhooks(ctx context.Context) ([]store.Webhook, error) {
	var out []store.Webhook
	err := c.DoJSON(ctx, http.MethodGet, "/api/v1/webhooks", nil, &out)
	return out, err
}

// RemoveWebhook deletes a webhook and its delivery log.
func (c *Client) RemoveWebhook(ctx context.Context, id int64) (store.Webhook, error) {
	var out store.Webhook
	err := c.DoJSON(ctx, http.MethodDelete, "/api/v1/webhooks/"+strconv.FormatInt(id, 10), nil, &out)
	return out, err
}

// WebhookDeliveries lists a webhook's latest deliveries, newest first
// (limit 0: the origin's default, 100).
func (c *Client) WebhookDeliveries(ctx context.Context, id int64, limit int) ([]store.WebhookDelivery, error) {
	var out []store.WebhookDelivery
	path := "/api/v1/webhooks/" + strconv.FormatInt(id, 10) + "/deliveries"
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	err := c.DoJSON(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// TestWebhook sends a webhook.test ping to a webhook now and says how it went.
func (c *Client) TestWebhook(ctx context.Context, id int64) (api.WebhookTestResult, error) {
	var out api.WebhookTestResult
	err := c.DoJSON(ctx, http.MethodPost, "/api/v1/webhooks/"+strconv.FormatInt(id, 10)+"/test", nil, &out)
	return out, err
}
