package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/updraft-cdn/updraft/cache"
	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/blob"
)

// LocalUpstream fills the cache from a blob store in the same process (the
// origin's, under `updraft serve`).
type LocalUpstream struct{ Blobs *blob.FS }

// Fetch opens the blob.
func (u LocalUpstream) Fetch(ctx context.Context, sha string) (io.ReadCloser, error) {
	f, _, err := u.Blobs.Open(sha)
	if err == blob.ErrNotFound {
		return nil, cache.ErrNotFound
	}
	return f, err
}

// HTTPUpstream fills the cache from an origin (or parent edge) over HTTP:
// GET {BaseURL}/v1/blobs/{sha256} with the edge key.
type HTTPUpstream struct {
	BaseURL string
	Key     string
	Client  *http.Client
}

// NewHTTPUpstream returns an upstream for the origin at baseURL.
func NewHTTPUpstream(baseURL, key string) *HTTPUpstream {
	return &HTTPUpstream{BaseURL: config.TrimURL(baseURL), Key: key, Client: &http.Client{
		Timeout:   10 * time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second, ResponseHeaderTimeout: 30 * time.Second},
	}}
}

// Fetch streams the blob; the caller verifies it.
func (u *HTTPUpstream) Fetch(ctx context.Context, sha string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.BaseURL+"/v1/blobs/"+sha, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+u.Key)
	resp, err := u.Client.Do(req)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return resp.Body, nil
	case http.StatusNotFound:
		resp.Body.Close()
		return nil, cache.ErrNotFound
	default:
		resp.Body.Close()
		return nil, fmt.Errorf("upstream %s: blob %s: HTTP %d", u.BaseURL, sha, resp.StatusCode)
	}
}
