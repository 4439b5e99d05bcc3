package api

import "github.com/updraft-cdn/updraft/origin/native"

// Compatibility is GET /api/v1/apps/{app}/bundles/{version}/compatibility
// and the details of a 409 incompatible_native: the native packages of
// Bundle compared with those of ChannelBundle, the bundle Channel serves.
type Compatibility struct {
	App           string `json:"app"`
	Bundle        string `json:"bundle"`
	Channel       string `json:"channel"`
	ChannelBundle string `json:"channel_bundle,omitempty"`
	native.Report
	// MinNativeBuild is the channel's native-build gate, if any: devices
	// below it do not get ChannelBundle.
	MinNativeBuild string `json:"channel_min_native_build,omitempty"`
}
