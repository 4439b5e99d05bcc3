package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
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

// HTTPEventSink delivers spool segments to an origin over HTTP:
// POST {BaseURL}/v1/events with the edge key, the edge id and the segment's
// sequence number (the origin ingests each (edge, seq) once).
type HTTPEventSink struct {
	BaseURL string
	Key     string
	Client  *http.Client
}

// NewHTTPEventSink returns a sink for the origin at baseURL.
func NewHTTPEventSink(baseURL, key string) *HTTPEventSink {
	return &HTTPEventSink{BaseURL: config.TrimURL(baseURL), Key: key, Client: &http.Client{Timeout: 60 * time.Second}}
}

// DeliverEvents posts one segment; nil once the origin acknowledged it.
func (s *HTTPEventSink) DeliverEvents(ctx context.Context, edgeID string, seq uint64, segment []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.BaseURL+"/v1/events", bytes.NewReader(segment))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.Key)
	req.Header.Set("Content-Type", "application/vnd.updraft.events")
	req.Header.Set("X-Updraft-Edge-Id", edgeID)
	req.Header.Set("X-Updraft-Segment", strconv.FormatUint(seq, 10))
	resp, err := s.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && bytes.Contains(msg, []byte(`"corrupt_segment"`)):
		return &PermanentError{fmt.Errorf("origin %s refused segment %d: %s", s.BaseURL, seq, bytes.TrimSpace(msg))}
	default:
		return fmt.Errorf("origin %s: events: HTTP %d: %s", s.BaseURL, resp.StatusCode, bytes.TrimSpace(msg))
	}
}

// HTTPDeviceChannels stores legacy plugins' channel choices at an origin (or
// through a parent edge): POST {BaseURL}/v1/device-channel with the edge key.
type HTTPDeviceChannels struct {
	BaseURL string
	Key     string
	Client  *http.Client
}

// NewHTTPDeviceChannels returns a DeviceChannels for the origin at baseURL.
func NewHTTPDeviceChannels(baseURL, key string) *HTTPDeviceChannels {
	return &HTTPDeviceChannels{BaseURL: config.TrimURL(baseURL), Key: key, Client: &http.Client{Timeout: 15 * time.Second}}
}

// SetDeviceChannel stores the change and returns the snapshot revision that
// holds it; a *DeviceChannelRefusal when the origin refuses it.
func (d *HTTPDeviceChannels) SetDeviceChannel(ctx context.Context, appID, deviceID, channel string) (int64, error) {
	in, err := json.Marshal(map[string]string{"app_id": appID, "device_id": deviceID, "channel": channel})
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.BaseURL+"/v1/device-channel", bytes.NewReader(in))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+d.Key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var out struct {
		Rev     int64  `json:"rev"`
		Code    string `json:"error"`
		Message string `json:"message"`
	}
	jsonErr := json.Unmarshal(msg, &out)
	switch {
	case resp.StatusCode == http.StatusOK && jsonErr == nil:
		return out.Rev, nil
	case (resp.StatusCode == http.StatusConflict || resp.StatusCode == http.StatusNotFound) && jsonErr == nil && deviceChannelRefusals[out.Code] != "":
		return 0, &DeviceChannelRefusal{Code: out.Code, Message: out.Message}
	case resp.StatusCode == http.StatusTooManyRequests:
		return 0, ErrDeviceChannelsBusy
	}
	return 0, fmt.Errorf("upstream %s: device channel: HTTP %d: %s", d.BaseURL, resp.StatusCode, bytes.TrimSpace(msg))
}
