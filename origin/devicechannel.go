package origin

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// DeviceChannelRequest is the body of POST /v1/device-channel: an edge
// forwarding the setChannel (or unsetChannel, Channel "") of a plugin that
// keeps its channel on the server (before 5.34.0 / 6.34.0 / 7.34.0).
type DeviceChannelRequest struct {
	AppID    string `json:"app_id"`
	DeviceID string `json:"device_id"`
	Channel  string `json:"channel"` // "" removes the device's override
}

// DeviceChannelResult answers it: the snapshot revision that holds the
// change (edges wait for it before answering the device).
type DeviceChannelResult struct {
	Rev int64 `json:"rev"`
}

// postDeviceChannel serves POST /v1/device-channel (edge key). Refusals
// (the edge's snapshot was behind) are 404 channel_not_found / app_not_found
// or 409 cannot_override / channel_self_set_not_allowed.
func (s *Server) postDeviceChannel(w http.ResponseWriter, r *http.Request) error {
	var in DeviceChannelRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	rev, err := s.SetDeviceChannel(r.Context(), in.AppID, in.DeviceID, in.Channel)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, DeviceChannelResult{Rev: rev})
	return nil
}

// SetDeviceChannel stores a device's own channel choice as an override with
// source "device" ("" removes its override) under Capgo's rules (see
// store.SetDeviceChannel) and returns, once it is published, the snapshot
// revision that holds it. Errors are API errors (*apiError) with stable
// codes. The in-process edge of `updraft serve` calls it directly.
func (s *Server) SetDeviceChannel(ctx context.Context, appID, deviceID, channel string) (int64, error) {
	if !snapshot.ValidAppID(appID) {
		return 0, errf(http.StatusBadRequest, "invalid_app_id", "app id %q: want a reverse-domain id like com.example.app", appID)
	}
	dev, ok := snapshot.ParseDeviceID(deviceID)
	if !ok {
		return 0, errf(http.StatusBadRequest, "invalid_device_id", "device id %q: want a UUID", deviceID)
	}
	if channel != "" && !snapshot.ValidChannelName(channel) {
		return 0, errf(http.StatusBadRequest, "invalid_channel_name", "channel %q: want 1-64 letters, digits, '.', '_' or '-'", channel)
	}
	if !s.devicePub.lim.Allow() {
		return 0, errf(http.StatusTooManyRequests, "too_many_requests", "too many device channel changes; retry in a second")
	}
	var changed bool
	err := s.shards.write(appID, [][16]byte{dev}, func() error {
		var err error
		changed, err = s.store.SetDeviceChannel(ctx, appID, snapshot.FormatDeviceID(dev), channel)
		return err
	})
	if err != nil {
		return 0, storeErr(err, appID)
	}
	rev, err := s.store.Rev(ctx)
	if err != nil {
		return 0, err
	}
	if changed {
		s.log.Debug("origin: device channel", "app", appID, "device", snapshot.FormatDeviceID(dev), "channel", channel, "rev", rev)
		s.devicePub.kick()
	}
	s.awaitRev(ctx, rev)
	return rev, nil
}

// Devices' own channel changes are unauthenticated (anyone can claim an old
// plugin and invent device ids), and each one is a store write and, once
// published, a new snapshot every edge downloads. So, origin-wide, they
// are rate limited (devicePubRate, 429 beyond) and their publication is
// coalesced: at most one publish per devicePubEvery for device changes,
// whatever their number; operator changes still publish at once.
const (
	devicePubRate  = 10 // writes per second, origin-wide
	devicePubBurst = 20
	devicePubEvery = time.Second
)

type devicePublisher struct {
	lim      *rate.Limiter
	kickc    chan struct{}
	startOne sync.Once
	s        *Server
}

func newDevicePublisher(s *Server) *devicePublisher {
	return &devicePublisher{lim: rate.NewLimiter(devicePubRate, devicePubBurst), kickc: make(chan struct{}, 1), s: s}
}

// kick asks for a publish of pending device changes, coalesced.
func (p *devicePublisher) kick() {
	p.startOne.Do(func() {
		go func() {
			for {
				select {
				case <-p.s.done:
					return
				case <-p.kickc:
				}
				p.s.changedStore()
				select {
				case <-p.s.done:
					return
				case <-time.After(devicePubEvery):
				}
			}
		}()
	})
	select {
	case p.kickc <- struct{}{}:
	default:
	}
}

// awaitRev waits (at most 5 s) until the published snapshot includes rev,
// without asking for a publish, and reports whether it does.
func (s *Server) awaitRev(ctx context.Context, rev int64) bool {
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for {
		cur, changed := s.currentAndChanged()
		if cur.Snap.Rev >= rev {
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		case <-timeout.C:
			return false
		}
	}
}

// APIErrorCode returns the stable code and message of an error returned by
// the origin's exported methods ("" when it is not an API error).
func APIErrorCode(err error) (code, message string) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Code, ae.Message
	}
	return "", ""
}
