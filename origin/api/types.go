// Package api holds the operator API's wire types: the request and answer
// bodies the origin (package origin) serves and its client (package
// origin/client) sends and decodes. It imports no server code, so the
// client does not import the server.
package api

import (
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// BundleInfo is a bundle as the API lists it, with the status of its build
// job (nil for encrypted bundles, which get no build).
type BundleInfo struct {
	store.Bundle
	DeltaStatus *DeltaStatus `json:"delta_status,omitempty"`
}

// DeltaStatus is the progress of a bundle's build.
type DeltaStatus struct {
	State    string `json:"state"` // queued, building, ready, failed
	Done     int    `json:"done"`  // deltas built or dropped so far
	Total    int    `json:"total"` // deltas to try
	Error    string `json:"error,omitempty"`
	Attempts int    `json:"attempts,omitempty"` // builds tried so far
}

// ChannelResult is a saved channel and the channels it took the default role from.
type ChannelResult struct {
	store.Channel
	Demoted []string `json:"demoted"`
}

// RolloutRequest is the body of POST .../channels/{name}/rollout.
type RolloutRequest struct {
	Action store.RolloutAction `json:"action"`           // set (default), pause, resume, promote, rollback
	Bundle string              `json:"bundle,omitempty"` // for set
	BPS    *int                `json:"bps,omitempty"`    // for set: 0..10000
	// For set: restrict the rollout to devices whose native build is at
	// least this ("" clears); Force skips the native compatibility check.
	MinNativeBuild *string `json:"min_native_build,omitempty"`
	Force          bool    `json:"force,omitempty"`
}

// Resolution is what POST .../resolve answers: the decision an edge would
// make for that device on the current snapshot, and why.
type Resolution struct {
	Rev     int64  `json:"rev"`
	Update  bool   `json:"update"`
	Version string `json:"version,omitempty"`
	Code    string `json:"error,omitempty"`
	Message string `json:"message,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Channel string `json:"channel,omitempty"`
	Rule    string `json:"rule,omitempty"`
	Segment string `json:"segment,omitempty"`
	// Cohort is the cohort the matching segment routes (when it names one).
	Cohort string `json:"cohort,omitempty"`
	// Cohorts lists the app's cohorts the device belongs to (by device id
	// or custom id).
	Cohorts []string `json:"cohorts,omitempty"`
	Variant string   `json:"variant,omitempty"`
	Arm     string   `json:"arm,omitempty"`
	Bucket  int      `json:"bucket"`
	// RevertToBuiltin: the device is sent back to the store build (its
	// channel targets builtin); Version is "builtin".
	RevertToBuiltin bool `json:"revert_to_builtin,omitempty"`
	// MinNativeBuild, for variant below_native_build: the min native build
	// the device's version_build is under, so it did not get the newer
	// bundle (it got the channel's earlier one, or none).
	MinNativeBuild string `json:"min_native_build,omitempty"`
	// Held: the device would get HeldVersion but its channel's maintenance
	// windows hold it (outside_maintenance_window, maintenance_blackout);
	// it is answered no_new_version_available until NextWindow (absent:
	// no opening within a year).
	Held        string     `json:"held,omitempty"`
	HeldVersion string     `json:"held_version,omitempty"`
	NextWindow  *time.Time `json:"next_window,omitempty"`
	// At is the instant the windows were evaluated at.
	At time.Time `json:"at"`
}

// DeviceRequest is the device fields of an update check, as JSON.
type DeviceRequest struct {
	AppID          string `json:"app_id"`
	DeviceID       string `json:"device_id"`
	VersionName    string `json:"version_name"`
	VersionBuild   string `json:"version_build"`
	Platform       string `json:"platform"`
	PluginVersion  string `json:"plugin_version"`
	CustomID       string `json:"custom_id,omitempty"`
	DefaultChannel string `json:"defaultChannel,omitempty"`
	KeyID          string `json:"key_id,omitempty"`
	IsEmulator     bool   `json:"is_emulator"`
	IsProd         bool   `json:"is_prod"`
	// At evaluates maintenance windows at this instant instead of now
	// (resolve only; an edge always uses its clock).
	At *time.Time `json:"at,omitempty"`
}

// StatsReport is an app's update analytics over a time range: totals per
// bundle and per segment, and time series of adoption (devices whose last
// install was the bundle) and failure rate per bundle.
type StatsReport struct {
	AppID       string         `json:"app_id"`
	Channel     string         `json:"channel,omitempty"`
	Segment     string         `json:"segment,omitempty"`
	Platform    string         `json:"platform,omitempty"`
	From        time.Time      `json:"from"`
	To          time.Time      `json:"to"`
	StepSeconds int64          `json:"step_seconds"`
	Events      int64          `json:"events"`
	Bundles     []VersionStats `json:"bundles"`
	Segments    []VersionStats `json:"segments"`
	Adoption    []Series       `json:"adoption"`
	FailureRate []Series       `json:"failure_rate"`
	// Cohorts are the app's cohorts (whatever the channel, segment and
	// platform filters): members now and churn, by name.
	Cohorts []CohortStats `json:"cohorts"`
}

// CohortStats is a cohort's membership and churn in a stats report. The
// churn sums the cohort's imports and recomputations (their audit records,
// each holding the members it added and removed): Churn over the report's
// range (after From, up to To), Churn7d over the 7 days up to To.
type CohortStats struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // imported or computed
	// Rule is the behaviour rule of a computed cohort.
	Rule    string            `json:"rule,omitempty"`
	Members int64             `json:"members"` // now
	Churn   store.CohortChurn `json:"churn"`
	Churn7d store.CohortChurn `json:"churn_7d"`
	// ChangedAt is when an import or recomputation last changed the
	// members; UpdatedAt when one last ran (changing them or not).
	ChangedAt *time.Time `json:"changed_at,omitempty"`
	UpdatedAt time.Time  `json:"updated_at"`
	// Segments are the segments that route the cohort.
	Segments []string `json:"segments,omitempty"`
}

// VersionStats are one bundle's figures (in one segment, for
// StatsReport.Segments). Rates are failures / (installs + failures); the
// lower bound is Wilson's at 95%.
type VersionStats struct {
	Version          string           `json:"version_name"`
	Segment          string           `json:"segment,omitempty"`
	Devices          int64            `json:"devices"` // adoption at To
	Downloads        int64            `json:"downloads"`
	Installs         int64            `json:"installs"`
	Failures         int64            `json:"failures"`
	FailureRate      float64          `json:"failure_rate"`
	FailureRateLower float64          `json:"failure_rate_lower"`
	FailuresByAction map[string]int64 `json:"failures_by_action,omitempty"`
	Events           int64            `json:"events"`
}

// Series is one bundle's values over time: Points[i] is the value at the
// end of bucket i, From + (i+1)·step (-1 in a failure-rate series: no
// installs or failures in that bucket).
type Series struct {
	Version string    `json:"version_name"`
	Points  []float64 `json:"points"`
}

// GuardInfo is a channel's guard as the API shows it: configuration,
// latest evaluation and recent actions.
type GuardInfo struct {
	store.GuardedChannel
	Status  *GuardStatus        `json:"status,omitempty"`
	Actions []store.GuardAction `json:"actions"`
}

// GuardStatus is a guard's latest evaluation.
type GuardStatus struct {
	EvaluatedAt time.Time `json:"evaluated_at"`
	State       string    `json:"state"` // watching, too_few_prefixes, triggered, cooldown, no_rollout, paused
	Bundle      string    `json:"bundle,omitempty"`
	Since       time.Time `json:"since,omitzero"`
	Attempts    int64     `json:"attempts"`
	Failures    int64     `json:"failures"`
	FailureRate float64   `json:"failure_rate"`
	LowerBound  float64   `json:"failure_rate_lower"`
	// FailurePrefixes is the number of client networks among the counted
	// failures (State too_few_prefixes: under the guard's min_prefixes).
	FailurePrefixes int `json:"failure_prefixes"`
	// NewDevices (NewFailures of them failed) reported on the rollout but
	// were first seen after it began: not counted unless count_new_devices.
	NewDevices  int64 `json:"new_devices"`
	NewFailures int64 `json:"new_failures"`
	// CappedDevices are over max_devices_per_prefix in their network.
	CappedDevices int64 `json:"capped_devices"`

	// RolloutStart is the start of the rollout judged (Unix ms): the
	// origin's own, not sent.
	RolloutStart int64 `json:"-"`
}

// AppOptions is the body of PATCH /api/v1/apps/{app}: the fields to change.
type AppOptions struct {
	// KeepBundles keeps the app's N newest bundles (0: all); older ones
	// not in use are deleted now and after every upload.
	KeepBundles *int `json:"keep_bundles,omitempty"`
	// Device-protocol options (appoptions.go): Capgo's expose_metadata
	// (link and comment in update answers) and allow_device_custom_id.
	ExposeMetadata      *bool `json:"expose_metadata,omitempty"`
	AllowDeviceCustomID *bool `json:"allow_device_custom_id,omitempty"`
}

// AppSettings is what PATCH /api/v1/apps/{app} answers.
type AppSettings struct {
	ID          string   `json:"id"`
	KeepBundles int      `json:"keep_bundles"`
	Deleted     []string `json:"deleted"` // bundles the new retention deleted, oldest first
	// Device-protocol options, as they now are.
	ExposeMetadata      bool `json:"expose_metadata"`
	AllowDeviceCustomID bool `json:"allow_device_custom_id"`
}

// GCResult is what one blob garbage collection did.
type GCResult struct {
	Deleted int   `json:"deleted"` // blobs deleted
	Bytes   int64 `json:"bytes"`   // bytes freed
	Kept    int   `json:"kept"`    // blobs kept: referenced, or within the grace period
}

// RotateKeyRequest is the body of POST /api/v1/keys/rotate.
type RotateKeyRequest struct {
	Key string `json:"key"` // api, edge or signing
	// OverlapSeconds: how long the replaced api or edge keys stay valid
	// (nil: DefaultKeyOverlap; 0: they stop at once).
	OverlapSeconds *int64 `json:"overlap_seconds,omitempty"`
	// Prepare (signing): only create the next key and return its public key.
	Prepare bool `json:"prepare,omitempty"`
}

// RotateKeyResult answers a rotation.
type RotateKeyResult struct {
	Key string `json:"key"`
	// Secret is the new api or edge key (also written to File).
	Secret       string     `json:"secret,omitempty"`
	File         string     `json:"file,omitempty"`
	OldExpiresAt *time.Time `json:"old_expires_at,omitempty"`
	// PublicKey is the signing key now in use (or prepared, with
	// Prepared); PreviousPublicKey the one it replaces.
	PublicKey         string `json:"public_key,omitempty"`
	PreviousPublicKey string `json:"previous_public_key,omitempty"`
	Prepared          bool   `json:"prepared,omitempty"`
}

// CreateKeyRequest is the body of POST /api/v1/keys.
type CreateKeyRequest struct {
	// Name: 1-64 letters, digits, '.', '_' or '-', unique among live keys
	// (admin and edge name the keys in DATA/api-key and DATA/edge-key).
	Name string `json:"name"`
	// Scope: admin, deploy, upload or read.
	Scope string `json:"scope"`
	// App limits the key to one app's routes ("": every app).
	App string `json:"app_id,omitempty"`
	// ExpiresInSeconds: the key stops being accepted this long after its
	// creation (nil: never).
	ExpiresInSeconds *int64 `json:"expires_in_seconds,omitempty"`
}

// KeyInfo is a stored API key as GET /api/v1/keys lists it: never its
// secret nor its hash.
type KeyInfo struct {
	Name      string     `json:"name"`
	Scope     string     `json:"scope"`
	App       string     `json:"app_id,omitempty"` // "": every app
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// State: live, expired or revoked.
	State string `json:"state"`
}

// CreateKeyResult answers POST /api/v1/keys: the key and its secret, which
// is shown this once (only its SHA-256 is stored).
type CreateKeyResult struct {
	KeyInfo
	Secret string `json:"secret"`
}

// EncryptedMeta is the "meta" part of an encrypted upload.
type EncryptedMeta struct {
	SessionKey string                   `json:"session_key"`
	Checksum   string                   `json:"checksum"`
	KeyID      string                   `json:"key_id"`
	Manifest   []snapshot.ManifestEntry `json:"manifest"`
}

// RebuildRequest is the body of POST /api/v1/apps/{app}/bundles/{version}/rebuild.
type RebuildRequest struct {
	// Force removes the bundle's manifest, canonical archive and the deltas
	// to it before the build runs again (for bundles built by an older or
	// broken builder); without it, the build only adds what is missing.
	Force bool `json:"force,omitempty"`
}

// AuditPage is what GET /api/v1/audit and /api/v1/apps/{app}/audit answer:
// records oldest first, and the id to pass as after= for the next page (the
// last record's, or the after= given when there is none: polling with it
// returns only new records).
type AuditPage struct {
	Records   []store.AuditRecord `json:"records"`
	NextAfter int64               `json:"next_after"`
}

// HistoryPage is what GET /api/v1/apps/{app}/channels/{name}/history
// answers: the channel's audit records newest first, and the id to pass as
// before= for the next (older) page, 0 when this page is the last.
type HistoryPage struct {
	Records    []store.AuditRecord `json:"records"`
	NextBefore int64               `json:"next_before"`
}

// PreviewRequest is the body of POST /api/v1/apps/{app}/previews.
type PreviewRequest struct {
	Bundle string `json:"bundle"`
	// TTLSeconds: how long the preview lives (0: 24 h; at most 30 days).
	TTLSeconds int64 `json:"ttl_seconds,omitempty"`
	// Name of the preview channel ("": pv- and 8 random characters); at
	// most 24 characters.
	Name string `json:"name,omitempty"`
}

// Preview is a preview channel and its token.
type Preview struct {
	AppID     string    `json:"app_id"`
	Channel   string    `json:"channel"`
	Bundle    string    `json:"bundle"`
	ExpiresAt time.Time `json:"expires_at"`
	Expired   bool      `json:"expired,omitempty"`
	// Token is what a device sends as the channel of setChannel; the edge
	// page EDGE/preview/{token} shows it with a deep link.
	Token string `json:"token"`
}

// DeviceList is a page of GET /api/v1/apps/{app}/devices.
type DeviceList struct {
	Devices []store.Device `json:"devices"`
	// NextCursor fetches the next page (same filters); "" on the last.
	NextCursor string `json:"next_cursor"`
}

// DeviceCount is GET /api/v1/apps/{app}/devices/count.
type DeviceCount struct {
	AppID   string `json:"app_id"`
	Devices int64  `json:"devices"`
}

// CohortMemberList is GET /api/v1/apps/{app}/cohorts/{name}/members: the
// cohort and its member keys, sorted. A device id member's key is its
// device id; a custom id member's is the 128-bit hash of the custom id the
// edges match (snapshot.CohortKeyOfCustomID), written the same way: the
// origin keeps no custom ids in cohorts.
type CohortMemberList struct {
	store.Cohort
	Keys []string `json:"member_keys"`
}

// DeviceDetail is GET /api/v1/apps/{app}/devices/{id}: the device's last
// check-in and its recent check-ins and events, oldest first.
type DeviceDetail struct {
	Device store.Device           `json:"device"`
	Events []store.DeviceLogEntry `json:"events"`
}
