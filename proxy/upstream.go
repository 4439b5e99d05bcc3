package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
// origin's, under `updraft serve`: files or a bucket).
type LocalUpstream struct{ Blobs blob.Store }

// Fetch opens the blob.
func (u LocalUpstream) Fetch(ctx context.Context, sha string) (io.ReadCloser, error) {
	f, _, err := u.Blobs.Open(sha)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, cache.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return f, nil
}

// HTTPUpstream fills the cache from an origin (or parent edge) over HTTP:
// GET {BaseURL}/v1/blobs/{sha256} with the edge key.
type HTTPUpstream struct {
	BaseURL string
	Key     string
	Client  *http.Client
	// Upstreams, when set, replaces BaseURL: the fetch goes to the current
	// upstream and fails over to the others (Upstreams.Blobs). A 404 is
	// final: origins share one bucket, and a parent edge answers 404 only
	// when its own upstream did.
	Upstreams *Upstreams
}

// NewHTTPUpstream returns an upstream for the origin at baseURL.
func NewHTTPUpstream(baseURL, key string) *HTTPUpstream {
	return &HTTPUpstream{BaseURL: config.TrimURL(baseURL), Key: key, Client: &http.Client{
		Timeout: 10 * time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second, ResponseHeaderTimeout: 30 * time.Second,
			DialContext: upstreamDialer.DialContext},
	}}
}

// Fetch streams the blob; the caller verifies it.
func (u *HTTPUpstream) Fetch(ctx context.Context, sha string) (io.ReadCloser, error) {
	var body io.ReadCloser
	err := u.Upstreams.do(ctx, u.BaseURL, func(ctx context.Context, base string) error {
		var err error
		body, err = u.fetch(ctx, base, sha)
		return err
	})
	return body, err
}

func (u *HTTPUpstream) fetch(ctx context.Context, base, sha string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/blobs/"+sha, nil)
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
		return nil, fmt.Errorf("upstream %s: blob %s: HTTP %d", base, sha, resp.StatusCode)
	}
}

// HTTPEventSink delivers spool segments to an origin over HTTP:
// POST {BaseURL}/v1/events with the edge key, the edge id and the segment's
// sequence number (the origin ingests each (edge, seq) once).
type HTTPEventSink struct {
	BaseURL string
	Key     string
	Client  *http.Client
	// Upstreams, when set, replaces BaseURL: a segment goes to the current
	// upstream and fails over to the others with the same edge id and
	// sequence number, so the origin still ingests it once
	// (Upstreams.EventSink).
	Upstreams *Upstreams
}

// NewHTTPEventSink returns a sink for the origin at baseURL.
func NewHTTPEventSink(baseURL, key string) *HTTPEventSink {
	return &HTTPEventSink{BaseURL: config.TrimURL(baseURL), Key: key, Client: &http.Client{Timeout: 60 * time.Second, Transport: upstreamTransport()}}
}

// DeliverEvents posts one segment; nil once the origin acknowledged it.
func (s *HTTPEventSink) DeliverEvents(ctx context.Context, edgeID string, seq uint64, segment []byte) error {
	return s.Upstreams.do(ctx, s.BaseURL, func(ctx context.Context, base string) error {
		return s.deliver(ctx, base, edgeID, seq, segment)
	})
}

func (s *HTTPEventSink) deliver(ctx context.Context, base, edgeID string, seq uint64, segment []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/events", bytes.NewReader(segment))
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
		return &PermanentError{fmt.Errorf("origin %s refused segment %d: %s", base, seq, bytes.TrimSpace(msg))}
	default:
		return fmt.Errorf("origin %s: events: HTTP %d: %s", base, resp.StatusCode, bytes.TrimSpace(msg))
	}
}

// HTTPDeviceChannels stores legacy plugins' channel choices at an origin (or
// through a parent edge): POST {BaseURL}/v1/device-channel with the edge key.
type HTTPDeviceChannels struct {
	BaseURL string
	Key     string
	Client  *http.Client
	// Upstreams, when set, replaces BaseURL: the change goes to the current
	// upstream and fails over to the others (it is idempotent: it pins the
	// device to a channel) (Upstreams.DeviceChannels).
	Upstreams *Upstreams
}

// NewHTTPDeviceChannels returns a DeviceChannels for the origin at baseURL.
func NewHTTPDeviceChannels(baseURL, key string) *HTTPDeviceChannels {
	return &HTTPDeviceChannels{BaseURL: config.TrimURL(baseURL), Key: key, Client: &http.Client{Timeout: 15 * time.Second, Transport: upstreamTransport()}}
}

// SetDeviceChannel stores the change and returns the snapshot revision that
// holds it; a *DeviceChannelRefusal when the origin refuses it.
func (d *HTTPDeviceChannels) SetDeviceChannel(ctx context.Context, appID, deviceID, channel string) (int64, error) {
	in, err := json.Marshal(map[string]string{"app_id": appID, "device_id": deviceID, "channel": channel})
	if err != nil {
		return 0, err
	}
	var rev int64
	err = d.Upstreams.do(ctx, d.BaseURL, func(ctx context.Context, base string) error {
		var err error
		rev, err = d.set(ctx, base, in)
		return err
	})
	return rev, err
}

func (d *HTTPDeviceChannels) set(ctx context.Context, base string, in []byte) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/device-channel", bytes.NewReader(in))
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
	return 0, fmt.Errorf("upstream %s: device channel: HTTP %d: %s", base, resp.StatusCode, bytes.TrimSpace(msg))
}
