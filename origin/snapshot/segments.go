package snapshot

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/zeebo/xxh3"
)

// BucketCount is the number of rollout buckets: percentages are expressed in
// basis points (1/100 of a percent), 0..10000.
const BucketCount = 10000

// Rule is an attribute segment: when every predicate it sets holds, the
// device goes to Channel. Rules are evaluated in order; first match wins.
type Rule struct {
	Name           string   `json:"name"`
	Channel        string   `json:"channel"`
	Platforms      []string `json:"platforms,omitempty"`
	VersionBuild   string   `json:"version_build,omitempty"`  // semver range on the native version
	PluginVersion  string   `json:"plugin_version,omitempty"` // semver range on the plugin version
	CustomIDs      []string `json:"custom_ids,omitempty"`
	CustomIDPrefix string   `json:"custom_id_prefix,omitempty"`
	IsEmulator     *bool    `json:"is_emulator,omitempty"`
	IsProd         *bool    `json:"is_prod,omitempty"`
	DeviceIDs      []string `json:"device_ids,omitempty"`
	// Cohort, when set, restricts the rule to the members of the app's
	// cohort of that name (by device id or custom id; see App.Cohorts).
	Cohort string `json:"cohort,omitempty"`
	// Windows, when set, holds the updates of the devices this rule routes
	// outside its maintenance windows and on its blackout dates, on top
	// of the channel's own (windows.go). It is not a predicate: a device
	// matches the rule at any time.
	Windows *Windows `json:"windows,omitempty"`

	channel      *Channel
	platforms    uint8 // bit per platformIndex; 0: any
	versionBuild *Constraint
	plugin       *Constraint
	customIDs    map[string]struct{}
	devices      map[[16]byte]struct{}
	cohort       uint64 // the cohort's bit, set by Index
}

// Rollout serves Bundle instead of the channel's bundle to the devices whose
// bucket is below BPS. Paused: no device is added; devices already running
// Bundle keep it.
type Rollout struct {
	ID     string `json:"id"` // new for every rollout, so buckets of two rollouts are independent
	Bundle string `json:"bundle"`
	BPS    int    `json:"bps"`
	Paused bool   `json:"paused,omitempty"`
	// StartedAt is when this rollout (this ID) began, Unix ms (0 for
	// rollouts made before it was recorded): the rollout guard counts only
	// outcomes since then.
	StartedAt int64 `json:"started_at,omitempty"`
	// MinNativeBuild restricts the rollout to devices whose native build
	// is at least this (native.go); the others get the channel's bundle.
	MinNativeBuild string `json:"min_native_build,omitempty"`

	seed      uint64
	bundle    *Bundle
	minNative Version
	gated     bool
}

// ABSplit divides a channel's devices into named arms by bucket; devices past
// the last arm's share get the channel's bundle.
type ABSplit struct {
	ID   string `json:"id"`
	Arms []Arm  `json:"arms"`

	seed uint64
}

// Arm is one side of an A/B split.
type Arm struct {
	Name   string `json:"name"`
	Bundle string `json:"bundle"`
	BPS    int    `json:"bps"`
	// MinNativeBuild restricts the arm to devices whose native build is at
	// least this (native.go); the others get the channel's bundle.
	MinNativeBuild string `json:"min_native_build,omitempty"`

	bundle    *Bundle
	minNative Version
	gated     bool
}

// Bucket places a device in 0..BucketCount-1 for a rollout or split id.
// It depends on nothing but its inputs, so every edge computes the same
// bucket, and a device's bucket never changes during a rollout.
func Bucket(id, deviceID string) int {
	return bucket(seedOf(id), deviceID)
}

func seedOf(id string) uint64 { return xxh3.HashString(id) }

func bucket(seed uint64, deviceID string) int {
	return int(xxh3.HashStringSeed(deviceID, seed) % BucketCount)
}

// ParseDeviceID reads a UUID device id (either case) into 16 bytes, in one
// pass (validation included: ValidDeviceID is the same test).
func ParseDeviceID(s string) ([16]byte, bool) {
	var u [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	var bad byte
	for j, i := range uuidHexAt {
		hi, lo := hexValue[s[i]], hexValue[s[i+1]]
		bad |= hi | lo
		u[j] = hi<<4 | lo
	}
	return u, bad < 16
}

// uuidHexAt: where each byte's two hex digits start in a UUID's text.
var uuidHexAt = [16]int{0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34}

// hexValue is a hex digit's value (either case), 0xff for any other byte.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c-'a') + 10
		t[c-'a'+'A'] = byte(c-'a') + 10
	}
	return t
}()

// FormatDeviceID is the canonical lower-case text form of a binary device id.
func FormatDeviceID(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Validate compiles the rule's predicates; the origin calls it before storing
// a rule so that a bad one is refused, and Index calls it again.
func (r *Rule) Validate() error {
	if r.Name == "" || len(r.Name) > 64 || !ValidChannelName(r.Name) {
		return fmt.Errorf("segment name %q: want 1-64 letters, digits, '.', '_' or '-'", r.Name)
	}
	if !ValidChannelName(r.Channel) {
		return fmt.Errorf("segment %s: channel %q: want a channel name", r.Name, r.Channel)
	}
	r.platforms = 0
	for _, p := range r.Platforms {
		i := platformIndex(p)
		if i < 0 {
			return fmt.Errorf("segment %s: platform %q: want ios, android or electron", r.Name, p)
		}
		r.platforms |= 1 << i
	}
	var err error
	r.versionBuild, r.plugin = nil, nil
	if r.VersionBuild != "" {
		if r.versionBuild, err = ParseConstraint(r.VersionBuild); err != nil {
			return fmt.Errorf("segment %s: version_build: %w", r.Name, err)
		}
	}
	if r.PluginVersion != "" {
		if r.plugin, err = ParseConstraint(r.PluginVersion); err != nil {
			return fmt.Errorf("segment %s: plugin_version: %w", r.Name, err)
		}
	}
	if len(r.CustomIDs) > 100000 || len(r.DeviceIDs) > 100000 {
		return fmt.Errorf("segment %s: at most 100000 custom ids and device ids; use device overrides for more", r.Name)
	}
	r.customIDs = nil
	if len(r.CustomIDs) > 0 {
		r.customIDs = make(map[string]struct{}, len(r.CustomIDs))
		for _, id := range r.CustomIDs {
			r.customIDs[id] = struct{}{}
		}
	}
	r.devices = nil
	if len(r.DeviceIDs) > 0 {
		r.devices = make(map[[16]byte]struct{}, len(r.DeviceIDs))
		for _, id := range r.DeviceIDs {
			u, ok := ParseDeviceID(id)
			if !ok {
				return fmt.Errorf("segment %s: device id %q is not a UUID", r.Name, id)
			}
			r.devices[u] = struct{}{}
		}
	}
	if r.Cohort != "" && (len(r.Cohort) > 64 || !ValidChannelName(r.Cohort)) {
		return fmt.Errorf("segment %s: cohort %q: want a cohort name", r.Name, r.Cohort)
	}
	if r.Windows != nil {
		if err := r.Windows.Normalize(); err != nil {
			return fmt.Errorf("segment %s: %w", r.Name, err)
		}
		if r.Windows.Empty() {
			r.Windows = nil
		}
	}
	return nil
}

// cohortSet is a request's cohort bits, looked up once, when the first rule
// naming a cohort is evaluated.
type cohortSet struct {
	bits   uint64
	looked bool
}

func (c *cohortSet) get(app *App, customID string, dev [16]byte, devOK bool) uint64 {
	if !c.looked {
		c.looked = true
		if devOK {
			c.bits = app.cohortsOf(dev)
		}
		if customID != "" {
			c.bits |= app.cohortsOf(CohortKeyOfCustomID(customID))
		}
	}
	return c.bits
}

// matches reports whether every predicate of the rule holds for r, whose
// custom id counts as customID.
func (rule *Rule) matches(app *App, cs *cohortSet, r *Request, customID string, dev [16]byte, devOK bool) bool {
	if rule.platforms != 0 && rule.platforms&(1<<platformIndex(r.Platform)) == 0 {
		return false
	}
	if rule.IsEmulator != nil && *rule.IsEmulator != r.IsEmulator {
		return false
	}
	if rule.IsProd != nil && *rule.IsProd != r.IsProd {
		return false
	}
	if rule.versionBuild != nil && !rule.versionBuild.Check(r.build) {
		return false
	}
	if rule.plugin != nil && !rule.plugin.Check(r.plugin) {
		return false
	}
	if rule.customIDs != nil {
		if _, ok := rule.customIDs[customID]; !ok {
			return false
		}
	}
	if rule.CustomIDPrefix != "" && !strings.HasPrefix(customID, rule.CustomIDPrefix) {
		return false
	}
	if rule.devices != nil {
		if !devOK {
			return false
		}
		if _, ok := rule.devices[dev]; !ok {
			return false
		}
	}
	if rule.cohort != 0 && cs.get(app, customID, dev, devOK)&rule.cohort == 0 {
		return false
	}
	return true
}

// ValidateRollout checks a rollout against its app.
func validateBPS(bps int) error {
	if bps < 0 || bps > BucketCount {
		return fmt.Errorf("bps %d: want 0..%d (0%%..100%%)", bps, BucketCount)
	}
	return nil
}

var errSplitTotal = errors.New("A/B arms: bps add up to more than 10000 (100%)")

// Validate checks an A/B split's shape (arm bundles are checked by Index).
func (s *ABSplit) Validate() error {
	if len(s.Arms) == 0 || len(s.Arms) > 16 {
		return fmt.Errorf("A/B split: want 1 to 16 arms, got %d", len(s.Arms))
	}
	total := 0
	seen := map[string]bool{}
	for _, a := range s.Arms {
		if !ValidChannelName(a.Name) || seen[a.Name] {
			return fmt.Errorf("A/B arm %q: want a unique name of letters, digits, '.', '_' or '-'", a.Name)
		}
		seen[a.Name] = true
		if err := validateBPS(a.BPS); err != nil {
			return fmt.Errorf("A/B arm %s: %w", a.Name, err)
		}
		total += a.BPS
	}
	if total > BucketCount {
		return errSplitTotal
	}
	return nil
}
