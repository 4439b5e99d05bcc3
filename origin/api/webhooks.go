package api

import "github.com/updraft-cdn/updraft/origin/store"

// WebhookRequest is the body of POST /api/v1/webhooks.
type WebhookRequest struct {
	URL    string   `json:"url"`              // http:// or https://
	Events []string `json:"events"`           // audit actions; "rollout.*" takes every rollout action, "*" every action
	App    string   `json:"app_id,omitempty"` // only this app's records ("": every app and the installation's own)
	Format string   `json:"format,omitempty"` // json (default) or slack
	Secret string   `json:"secret,omitempty"` // HMAC key; "": 32 random bytes, hex
}

// WebhookCreated is a new webhook with its secret, shown this once.
type WebhookCreated struct {
	store.Webhook
	Secret string `json:"secret"`
}

// WebhookTestResult is how the test ping (POST /api/v1/webhooks/{id}/test)
// went: delivered when the receiver answered 2xx.
type WebhookTestResult struct {
	ID         string `json:"id"` // the ping's Updraft-Delivery
	OK         bool   `json:"ok"`
	Status     int    `json:"status,omitempty"` // HTTP status (0: no answer)
	Error      string `json:"error,omitempty"`
	DurationMs int64  `json:"duration_ms"`
}
