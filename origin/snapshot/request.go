package snapshot

import (
	"strings"
	"time"
)

// Request is a device's update check, as sent by @capgo/capacitor-updater.
//
// The edge fills it with strings that may alias its request buffer, so
// Resolve and everything it calls must not retain them past the call.
type Request struct {
	AppID          string
	DeviceID       string
	VersionName    string // current bundle; "builtin" is rewritten to VersionBuild by Validate
	VersionBuild   string // native app version (semver, coerced by Validate)
	VersionCode    string
	VersionOS      string
	Platform       string
	PluginVersion  string
	CustomID       string
	DefaultChannel string
	// BuildChannel: DefaultChannel was set in the app's build (an Expo
	// client's expo-channel-name, as EAS channels are), not chosen by the
	// device at run time, so it is honoured whether or not the channel is
	// public or allows self-assignment.
	BuildChannel bool
	// PreviewGranted: DefaultChannel names a preview channel the device
	// proved it may join (the edge verified its preview token, preview.go).
	// A preview channel named without it is no choice.
	PreviewGranted bool
	KeyID          string
	InstallSource  string
	IsEmulator     bool
	IsProd         bool

	// Now is the instant of the check, against which the channel's
	// maintenance windows are evaluated (the edge's clock; windows.go).
	Now time.Time

	// OnBuiltin is set by Validate when the device reported "builtin".
	OnBuiltin bool

	build  Version
	plugin Version
	// dev is DeviceID parsed (devOf: the string it was parsed from), kept
	// by Validate so that resolution and the edge's check-in record do not
	// parse it again (Device).
	dev   [16]byte
	devOK bool
	devOf string
}

// hasUpper reports whether s holds an ASCII upper-case letter (a plain
// loop, on every check: strings.ContainsAny showed in the edge's profile).
// Only a UUID passes Validate, so lowering other letters changes nothing
// served.
func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i]-'A' < 26 {
			return true
		}
	}
	return false
}

// Device returns the device id's 16 bytes, and whether it is a UUID: as
// Validate parsed it, unless DeviceID changed since.
func (r *Request) Device() ([16]byte, bool) {
	if r.devOf != r.DeviceID || r.devOf == "" {
		r.dev, r.devOK = ParseDeviceID(r.DeviceID)
		r.devOf = r.DeviceID
	}
	return r.dev, r.devOK
}

// Issue is one reason a request is invalid: the field and a message.
type Issue struct {
	Path    string
	Message string
}

// RequestError is a request refused before resolution; the edge answers it
// with HTTP 400 and Code.
type RequestError struct {
	Code    string
	Message string
	Issues  []Issue // for Code "invalid_json_body"
	// VersionBuild is echoed for Code "semver_error".
	VersionBuild string
}

func (e *RequestError) Error() string { return e.Code + ": " + e.Message }

// Validation codes, as Capgo's backend sends them.
const (
	CodeMissingDeviceID = "missing_device_id"
	CodeMissingAppID    = "missing_app_id"
	CodeSemver          = "semver_error"
	CodeInvalidBody     = "invalid_json_body"
)

// SemverError is Capgo's refusal of a native version that is not semver
// (parsePluginBody, every plugin endpoint): HTTP 400 semver_error.
func SemverError(versionBuild string) *RequestError {
	return &RequestError{Code: CodeSemver, VersionBuild: versionBuild,
		Message: "Native version: " + versionBuild + " doesn't follow semver convention, please check https://capgo.app/semver_tester/ to learn more about semver usage in Capgo"}
}

// ValidAppID reports whether id is a reverse-domain app id (Capgo's
// /^[a-z0-9]+(\.[\w-]+)+$/i), at most 128 bytes.
func ValidAppID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	first := true
	seg := 0
	dots := 0
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		switch {
		case c == '.':
			if seg == 0 {
				return false
			}
			first = false
			dots++
			seg = 0
		case first && alnum, !first && (alnum || c == '_' || c == '-'):
			seg++
		default:
			return false
		}
	}
	return dots > 0 && seg > 0
}

// ValidDeviceID reports whether id is a UUID in its 36-character form.
func ValidDeviceID(id string) bool {
	_, ok := ParseDeviceID(id)
	return ok
}

// coerceBuild applies Capgo's fixSemver: "builtin" and "unknown" mean 0.0.0.
func coerceBuild(s string) string {
	if s == "builtin" || s == "unknown" {
		return "0.0.0"
	}
	return s
}

// Validate checks the request in Capgo's order and normalises it: the device
// id is lower-cased by the caller (the plugin already sends it so), the native
// version is parsed, and a "builtin" current bundle becomes the native
// version. It returns nil or a *RequestError.
func (r *Request) Validate() *RequestError {
	if r.DeviceID == "" {
		return &RequestError{Code: CodeMissingDeviceID, Message: "Cannot find device_id"}
	}
	if r.AppID == "" {
		return &RequestError{Code: CodeMissingAppID, Message: "Cannot find app_id"}
	}
	if hasUpper(r.DeviceID) {
		r.DeviceID = strings.ToLower(r.DeviceID) // rollout buckets hash the canonical form
	}
	if r.VersionBuild != "" {
		v, ok := ParseVersion(coerceBuild(r.VersionBuild))
		if !ok {
			return SemverError(r.VersionBuild)
		}
		r.build = v
		// Like Capgo, continue with the formatted version ("1.0" → "1.0.0");
		// this allocates only for builds not already written canonically.
		if strings.Count(r.VersionBuild, ".") < 2 || r.VersionBuild[0] < '0' || r.VersionBuild[0] > '9' {
			r.VersionBuild = v.String()
		}
	}
	if r.VersionName == "builtin" {
		r.OnBuiltin = true
		r.VersionName = r.VersionBuild
	}
	var issues []Issue
	add := func(path, msg string) { issues = append(issues, Issue{path, msg}) }
	if !ValidAppID(r.AppID) {
		add("app_id", "App ID must be a reverse domain string")
	}
	if len(r.DeviceID) > 36 {
		add("device_id", "String must contain at most 36 character(s)")
	} else if _, ok := r.Device(); !ok {
		add("device_id", "Device ID must be a valid UUID string")
	}
	if r.VersionName == "" {
		add("version_name", "Version name is required")
	}
	if r.VersionBuild == "" {
		add("version_build", "Version build is required")
	}
	if r.Platform == "" {
		add("platform", "Platform is required")
	} else if platformIndex(r.Platform) < 0 {
		add("platform", "Platform is not supported or invalid")
	}
	if r.PluginVersion == "" {
		add("plugin_version", "plugin_version is required")
	} else if v, ok := ParseVersion(r.PluginVersion); !ok {
		add("plugin_version", "Plugin version is invalid")
	} else {
		r.plugin = v
	}
	if len(r.InstallSource) > 64 {
		add("install_source", "String must contain at most 64 character(s)")
	}
	if len(r.KeyID) > 20 {
		add("key_id", "String must contain at most 20 character(s)")
	}
	// custom_id is not validated on /updates (Capgo's updateRequestSchema
	// ignores it; only /stats caps it at 36 characters).
	if len(r.DefaultChannel) > 128 {
		add("defaultChannel", "String must contain at most 128 character(s)")
	}
	if issues != nil {
		return &RequestError{Code: CodeInvalidBody, Message: "Cannot parse body", Issues: issues}
	}
	return nil
}

// ValidChannelName reports whether name is usable as a channel name: 1–64
// bytes of letters, digits, '.', '_' and '-'.
func ValidChannelName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	return strings.IndexFunc(name, func(c rune) bool {
		return !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '_' || c == '-')
	}) < 0
}

// deprecatedPlugin is Capgo's isDeprecatedPluginVersion
// (plugin_runtime/utils/utils.ts): a 5.x, 6.x, 7.x or 8.x plugin older than
// the minimum given for its major; every other major is current.
func deprecatedPlugin(p Version, min5, min6, min7, min8 *Version) bool {
	var min *Version
	switch p.Major {
	case 5:
		min = min5
	case 6:
		min = min6
	case 7:
		min = min7
	case 8:
		min = min8
	}
	return min != nil && p.Compare(*min) < 0
}

func mustVersion(s string) *Version {
	v, ok := ParseVersion(s)
	if !ok {
		panic("snapshot: bad version constant " + s)
	}
	return &v
}

var (
	v5_35_0, v6_35_0, v7_35_0, v8_35_0 = mustVersion("5.35.0"), mustVersion("6.35.0"), mustVersion("7.35.0"), mustVersion("8.35.0")
	v5_34_0, v6_34_0, v7_34_0, v8_0_0  = mustVersion("5.34.0"), mustVersion("6.34.0"), mustVersion("7.34.0"), mustVersion("8.0.0")
	v6_2_0, v8_40_7                    = mustVersion("6.2.0"), mustVersion("8.40.7")
)

// SupportsMetadata reports whether the plugin reads link and comment from
// an update answer (Capgo update.ts:413: not deprecated against 5.35.0,
// 6.35.0, 7.35.0, 8.35.0; a prerelease of x.35.0 is older). Valid after
// Validate.
func (r *Request) SupportsMetadata() bool {
	return !deprecatedPlugin(r.plugin, v5_35_0, v6_35_0, v7_35_0, v8_35_0)
}

// LegacyChannelSelf reports whether a plugin keeps its self-assigned
// channel on the server (Capgo channel_self.ts:26-30, 169-180): 5.x before
// 5.34.0, 6.x before 6.34.0, 7.x before 7.34.0, or a plugin_version that
// does not parse. Current plugins (and a missing plugin_version) store it
// on the device and send it as defaultChannel.
func LegacyChannelSelf(pluginVersion string) bool {
	if pluginVersion == "" {
		return false
	}
	v, ok := ParseVersion(pluginVersion)
	if !ok {
		return true
	}
	return deprecatedPlugin(v, v5_34_0, v6_34_0, v7_34_0, v8_0_0)
}

// SupportsManifest reports whether the plugin version downloads per-file
// manifests (Capgo: ≥ 5.10.0, ≥ 6.25.0, ≥ 7.0.35, every 8.x and later).
// Valid after Validate.
func (r *Request) SupportsManifest() bool {
	p := r.plugin
	switch p.Major {
	case 5:
		return p.Minor >= 10
	case 6:
		return p.Minor >= 25
	case 7:
		return p.Minor > 0 || p.Patch >= 35
	}
	return p.Major >= 8
}
