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
	// Devices: what the channel's devices run, from the device inventory.
	Devices *DeviceBuilds `json:"devices,omitempty"`
}

// DeviceBuilds are the native builds (version_build) the devices served on
// a channel reported at their last check-in within SinceDays, and how many
// of them a bundle gated at MinNativeBuild would reach.
type DeviceBuilds struct {
	SinceDays int   `json:"since_days"`
	Total     int64 `json:"total"`
	// MinNativeBuild: the gate Reached applies (the one asked about with
	// min_native_build, else the channel's; "": none, every device).
	MinNativeBuild string `json:"min_native_build,omitempty"`
	Reached        int64  `json:"reached"`
	// Builds: the most common builds first, at most 20.
	Builds []BuildShare `json:"builds"`
}

// BuildShare is one native build of a channel's devices.
type BuildShare struct {
	Build   string `json:"build"`
	Devices int64  `json:"devices"`
	Reached bool   `json:"reached"`
}
