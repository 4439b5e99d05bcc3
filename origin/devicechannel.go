package origin

import (
	"context"
	"errors"
	"net/http"

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
	}
	s.awaitPublished(ctx)
	return rev, nil
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
