package snapshot

import (
	"encoding/json"
	"fmt"
	"sort"
)

// Platforms a channel can serve.
const (
	PlatformIOS      = "ios"
	PlatformAndroid  = "android"
	PlatformElectron = "electron"
)

// DisableAutoUpdate values (Capgo's channel option): the largest kind of
// version jump a device on the channel may take on its own.
const (
	DisableNone     = "none"
	DisableMajor    = "major"
	DisableMinor    = "minor"
	DisablePatch    = "patch"
	DisableMetadata = "metadata"
)

// ValidDisableAutoUpdate reports whether v is one of the DisableAutoUpdate values.
func ValidDisableAutoUpdate(v string) bool {
	switch v {
	case DisableNone, DisableMajor, DisableMinor, DisablePatch, DisableMetadata:
		return true
	}
	return false
}

// Snapshot is everything an edge needs to answer devices, at one revision.
type Snapshot struct {
	Format int   `json:"format"` // encoding version of this document
	Rev    int64 `json:"rev"`    // strictly increasing at the origin
	// Issued is when the origin signed this snapshot (Unix ms; format 2,
	// also in the signed header). 0 in format 1 snapshots.
	Issued int64  `json:"issued,omitempty"`
	Apps   []*App `json:"apps"`

	apps      map[string]*App
	canonical map[string]*Bundle // canonical archive SHA-256 → bundle
	files     map[string]int64   // manifest file blob SHA-256 → size
	// deliverable lists every blob devices may download: bundle zips,
	// canonical archives, deltas, manifest files.
	deliverable map[string]struct{}
}

// Deliverable reports whether devices may download the blob sha: the edge
// fetches nothing else from upstream for them, so random names cannot make
// it hammer its upstream.
func (s *Snapshot) Deliverable(sha string) bool {
	_, ok := s.deliverable[sha]
	return ok
}

// ManifestFileSize returns the size of a manifest file blob, if the snapshot
// lists one with this SHA-256.
func (s *Snapshot) ManifestFileSize(blob string) (int64, bool) {
	n, ok := s.files[blob]
	return n, ok
}

// ByCanonical returns the bundle whose canonical archive has this SHA-256.
func (s *Snapshot) ByCanonical(sha string) *Bundle { return s.canonical[sha] }

// FormatVersion is the snapshot document version this code writes. It also
// reads format 1 (the same document, without the issued time).
const FormatVersion = 2

// App is one application and its delivery configuration.
type App struct {
	ID       string     `json:"id"`
	Bundles  []*Bundle  `json:"bundles"`
	Channels []*Channel `json:"channels"`
	Rules    []*Rule    `json:"rules,omitempty"`
	// ExposeMetadata sends bundles' link and comment to plugins that read
	// them (Capgo's expose_metadata; off by default).
	ExposeMetadata bool `json:"expose_metadata,omitempty"`
	// IgnoreCustomID drops the custom_id devices send (Capgo's
	// allow_device_custom_id = false): segment rules never see it.
	IgnoreCustomID bool `json:"ignore_custom_id,omitempty"`
	// OverrideShards lists the SHA-256 of the app's ShardCount override
	// shards ("" for an empty shard); empty when the app has no overrides.
	OverrideShards []string `json:"override_shards,omitempty"`
	// Cohorts names the app's cohorts and the bit each has in the shards'
	// entries (cohort membership travels in the override shards, keyed by
	// device id or CohortKeyOfCustomID).
	Cohorts []CohortRef `json:"cohorts,omitempty"`

	bundles  map[string]*Bundle
	channels map[string]*Channel
	// defaults holds the default channel per platform (index by platformIndex).
	defaults [3]*Channel
	// shards and shardChannels resolve overrides: shard by first byte of the
	// device id, then the shard's channel index to this snapshot's channel.
	shards        *[ShardCount]*OverrideShard
	shardChannels *[ShardCount][]*Channel
	overrideCount int
	cohortBits    map[string]uint64 // cohort name → its bit
}

// CohortRef is one cohort of an app in the snapshot.
type CohortRef struct {
	Name string `json:"name"`
	Bit  int    `json:"bit"`
}

// Bundle is an uploaded, immutable release of an app's web content.
type Bundle struct {
	Version string `json:"version"`
	SHA256  string `json:"sha256"` // of the zip served at /b/{sha256}
	Size    int64  `json:"size"`
	// MinUpdateVersion: devices on an older bundle may not auto-update to this
	// one on a channel with disable_auto_update=metadata.
	MinUpdateVersion string `json:"min_update_version,omitempty"`
	Comment          string `json:"comment,omitempty"`
	Link             string `json:"link,omitempty"`
	// Created is when the bundle was uploaded (Unix seconds, the origin's
	// clock; 0 in snapshots from before it was published).
	Created int64 `json:"created,omitempty"`
	// Canonical is the SHA-256 of the bundle's canonical archive (see
	// origin/delta), served at /b/{Canonical}; empty until it is built.
	Canonical     string  `json:"canonical,omitempty"`
	CanonicalSize int64   `json:"canonical_size,omitempty"`
	Deltas        []Delta `json:"deltas,omitempty"` // deltas that produce this bundle's canonical archive
	// Manifest lists the bundle's files for the plugin's per-file download.
	Manifest []ManifestEntry `json:"manifest,omitempty"`

	// End-to-end encryption (Capgo's encryption v2), set when the operator's
	// CLI encrypted the bundle: the zip at SHA256 and the manifest files are
	// AES-128-CBC ciphertext; SessionKey is base64(IV):base64(RSA-encrypted
	// AES key) and Checksum the hex RSA encryption of the plaintext zip's
	// SHA-256, both answered as they are; KeyID is the first 20 characters
	// of the public key the devices must hold. Nothing here decrypts.
	SessionKey string `json:"session_key,omitempty"`
	Checksum   string `json:"checksum,omitempty"`
	KeyID      string `json:"key_id,omitempty"`

	// Expo is set for a bundle uploaded from `npx expo export` (bundle
	// upload --expo): it is offered to Expo Updates clients only, never to
	// the Capacitor plugin, and only once its Manifest (the files, stored
	// one by one) is built.
	Expo *ExpoUpdate `json:"expo,omitempty"`

	version Version // parsed Version
	valid   bool    // Version parsed as semver
	builtin bool    // the store-build sentinel (BuiltinVersion)
}

// BuiltinVersion is the bundle name of a channel that sends its devices
// back to the store build (Capgo's channel with version NULL, named
// "builtin"). No uploaded bundle can have it: versions are semver.
const BuiltinVersion = "builtin"

// builtinBundle is the target of a builtin channel: no zip, no manifest;
// Resolve answers it with "revert to the store build", never a download.
var builtinBundle = &Bundle{Version: BuiltinVersion, builtin: true}

// Builtin reports whether b is the store build (a builtin channel's target).
func (b *Bundle) Builtin() bool { return b.builtin }

// ExpoUpdate is what an Expo Updates client needs of a bundle beyond its
// files: per platform, the runtime version it requires, its launch asset
// (the JavaScript bundle) and its other assets, each a path of the bundle
// whose bytes the bundle's Manifest holds (by file name, with or without
// the ".br" suffix of a brotli-stored file), as `npx expo export` listed
// them in metadata.json.
type ExpoUpdate struct {
	Platforms map[string]ExpoPlatform `json:"platforms"` // "ios", "android"
	// Extra is the manifest's "extra" object as uploaded (e.g.
	// {"expoClient": <the app config>}); empty: {}.
	Extra json.RawMessage `json:"extra,omitempty"`
}

// ExpoPlatform is one platform's part of an Expo update.
type ExpoPlatform struct {
	RuntimeVersion string      `json:"runtime_version"`
	Launch         string      `json:"launch"` // path of the launch asset in the bundle
	Assets         []ExpoAsset `json:"assets"`
}

// ExpoAsset is an asset of an Expo update: a path in the bundle and the
// file extension metadata.json gives it (without the dot).
type ExpoAsset struct {
	Path string `json:"path"`
	Ext  string `json:"ext"`
}

// ManifestEntry is one file of a bundle's manifest.
type ManifestEntry struct {
	Name string `json:"file_name"` // ".br" suffix: stored brotli-compressed
	Hash string `json:"file_hash"` // SHA-256 of the uncompressed content
	Blob string `json:"blob"`      // SHA-256 of the stored bytes, served at /f/{Blob}
	Size int64  `json:"size"`      // bytes of the stored blob
}

// Delta is a verified binary delta from an older bundle's canonical archive
// to this bundle's, stored as a blob (RFC 9842 framed).
type Delta struct {
	From     string `json:"from"`     // base bundle version
	Base     string `json:"base"`     // SHA-256 of the base's canonical archive (the dictionary)
	Encoding string `json:"encoding"` // dcz or dcb
	SHA256   string `json:"sha256"`   // of the delta blob
	Size     int64  `json:"size"`
	// DecodeNs is the CPU time, in nanoseconds, the origin's builder took
	// to decode the delta against its base (and hash the result) when it
	// verified it; 0: not measured (built before it was). Edges that do
	// not know the field ignore it.
	DecodeNs int64 `json:"decode_ns,omitempty"`
}

// DeltaCost is the device profile deltas are chosen for: a device that
// downloads at LinkBitsPerSecond and decodes DecodeFactor times slower
// than the origin's builder did (DecodeNs). With either at 0, or a
// candidate whose decode cost was not measured, the smallest delta wins.
type DeltaCost struct {
	LinkBitsPerSecond float64
	DecodeFactor      float64
}

// DeviceNs estimates, in nanoseconds, what d costs a device under c:
// its transfer at the link's rate plus its decode. It is meaningful only
// when c.ByTime() and d.DecodeNs > 0.
func (c DeltaCost) DeviceNs(d *Delta) float64 {
	return float64(d.Size)*8e9/c.LinkBitsPerSecond + float64(d.DecodeNs)*c.DecodeFactor
}

// ByTime reports whether c weighs decode cost against transfer at all.
func (c DeltaCost) ByTime() bool { return c.LinkBitsPerSecond > 0 && c.DecodeFactor > 0 }

// Encrypted reports whether the bundle was encrypted end to end by the
// operator: the origin and edges hold only ciphertext, so no canonical
// archive, delta or dictionary is built from it.
func (b *Bundle) Encrypted() bool { return b.SessionKey != "" }

// AnswerChecksum is the checksum devices get: the encrypted checksum of an
// encrypted bundle, else the SHA-256 of the zip.
func (b *Bundle) AnswerChecksum() string {
	if b.Checksum != "" {
		return b.Checksum
	}
	return b.SHA256
}

// DeltaFrom returns the delta to b from the canonical archive base, among
// the accepted encodings, that costs a device under cost the least time
// (transfer plus decode, DeltaCost.DeviceNs), or nil when there is none.
// When cost does not weigh decode time, or a candidate's decode cost was
// not measured (DecodeNs 0), it returns the smallest candidate. Ties go to
// the smaller, then to the first listed. It does not allocate.
func (b *Bundle) DeltaFrom(base string, dcz, dcb bool, cost DeltaCost) *Delta {
	var smallest, fastest *Delta
	var fastestNs float64
	byTime := cost.ByTime()
	for i := range b.Deltas {
		d := &b.Deltas[i]
		if d.Base != base || !(d.Encoding == "dcz" && dcz || d.Encoding == "dcb" && dcb) {
			continue
		}
		if smallest == nil || d.Size < smallest.Size {
			smallest = d
		}
		if !byTime {
			continue
		}
		if d.DecodeNs <= 0 {
			byTime = false // an old row: sizes are all that compare
			continue
		}
		if ns := cost.DeviceNs(d); fastest == nil || ns < fastestNs || ns == fastestNs && d.Size < fastest.Size {
			fastest, fastestNs = d, ns
		}
	}
	if byTime && fastest != nil {
		return fastest
	}
	return smallest
}

// Channel routes devices to a bundle, with Capgo's options.
type Channel struct {
	ID     int64  `json:"id"` // stable numeric id (Capgo's channel list shows it)
	Name   string `json:"name"`
	Bundle string `json:"bundle,omitempty"` // version; empty: no bundle yet; BuiltinVersion: the store build
	// Public makes the channel the default for the platforms it enables.
	Public             bool   `json:"public"`
	IOS                bool   `json:"ios"`
	Android            bool   `json:"android"`
	Electron           bool   `json:"electron"`
	AllowDeviceSelfSet bool   `json:"allow_device_self_set"`
	AllowEmulator      bool   `json:"allow_emulator"`
	AllowDev           bool   `json:"allow_dev"`
	AllowProd          bool   `json:"allow_prod"`
	AllowDevice        bool   `json:"allow_device"`
	DisableAutoUpdate  string `json:"disable_auto_update"`
	// DisableAutoUpdateUnderNative refuses bundles older than the native build.
	DisableAutoUpdateUnderNative bool `json:"disable_auto_update_under_native"`

	Rollout *Rollout `json:"rollout,omitempty"`
	AB      *ABSplit `json:"ab,omitempty"`
	// NativeGate restricts Bundle to devices whose native build is at
	// least its MinBuild (native.go); nil: every device.
	NativeGate *NativeGate `json:"native_gate,omitempty"`

	// PreviewExpires (Unix seconds) makes the channel a preview channel
	// (`updraft channel preview`): unlisted, never a default, joined only
	// with a signed preview token (preview.go) until then. 0: a normal
	// channel. Edges that predate the field see a private channel that
	// does not allow self-assignment, which nobody can join either.
	PreviewExpires int64 `json:"preview_expires,omitempty"`

	// Windows, when set, holds the channel's updates outside its weekly
	// maintenance windows and on its blackout dates (windows.go). Edges
	// that predate the field ignore it and serve updates at any time.
	Windows *Windows `json:"windows,omitempty"`

	bundle *Bundle
}

// Preview reports whether c is a preview channel.
func (c *Channel) Preview() bool { return c.PreviewExpires != 0 }

// Platform reports whether the channel serves platform p.
func (c *Channel) Platform(p string) bool {
	switch p {
	case PlatformIOS:
		return c.IOS
	case PlatformAndroid:
		return c.Android
	case PlatformElectron:
		return c.Electron
	}
	return false
}

func platformIndex(p string) int {
	switch p {
	case PlatformIOS:
		return 0
	case PlatformAndroid:
		return 1
	case PlatformElectron:
		return 2
	}
	return -1
}

// Index builds the lookup tables and checks the snapshot's consistency,
// taking the override shards it lists from src (nil when no app has
// overrides). It must be called once, before the snapshot is shared; after
// it the value is read-only and safe for concurrent use.
func (s *Snapshot) Index(src ShardSource) error {
	s.apps = make(map[string]*App, len(s.Apps))
	s.canonical = map[string]*Bundle{}
	s.files = map[string]int64{}
	s.deliverable = map[string]struct{}{}
	for _, a := range s.Apps {
		for _, b := range a.Bundles {
			s.deliverable[b.SHA256] = struct{}{}
			if b.Canonical != "" {
				s.deliverable[b.Canonical] = struct{}{}
			}
			for _, d := range b.Deltas {
				s.deliverable[d.SHA256] = struct{}{}
			}
			for _, f := range b.Manifest {
				s.files[f.Blob] = f.Size
				s.deliverable[f.Blob] = struct{}{}
			}
		}
		for _, b := range a.Bundles {
			if b.Canonical != "" {
				s.canonical[b.Canonical] = b
			}
		}
		if _, dup := s.apps[a.ID]; dup {
			return fmt.Errorf("snapshot rev %d: app %q twice", s.Rev, a.ID)
		}
		if err := a.index(src); err != nil {
			return fmt.Errorf("snapshot rev %d: %w", s.Rev, err)
		}
		s.apps[a.ID] = a
	}
	return nil
}

func (a *App) index(src ShardSource) error {
	a.bundles = make(map[string]*Bundle, len(a.Bundles))
	for _, b := range a.Bundles {
		if _, dup := a.bundles[b.Version]; dup {
			return fmt.Errorf("app %q: bundle %q twice", a.ID, b.Version)
		}
		b.version, b.valid = ParseVersion(b.Version)
		a.bundles[b.Version] = b
	}
	a.channels = make(map[string]*Channel, len(a.Channels))
	// Default channel per platform: the first public channel, by name, that
	// enables the platform. The origin keeps at most one per platform; sorting
	// makes the choice deterministic if an older store holds several.
	sorted := append([]*Channel(nil), a.Channels...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, c := range sorted {
		if _, dup := a.channels[c.Name]; dup {
			return fmt.Errorf("app %q: channel %q twice", a.ID, c.Name)
		}
		if err := c.index(a); err != nil {
			return fmt.Errorf("app %q: channel %q: %w", a.ID, c.Name, err)
		}
		a.channels[c.Name] = c
		if !c.Public || c.Preview() {
			continue
		}
		for _, p := range []string{PlatformIOS, PlatformAndroid, PlatformElectron} {
			if i := platformIndex(p); c.Platform(p) && a.defaults[i] == nil {
				a.defaults[i] = c
			}
		}
	}
	if err := a.indexOverrides(src); err != nil {
		return err
	}
	a.cohortBits = nil
	if len(a.Cohorts) > 0 {
		a.cohortBits = make(map[string]uint64, len(a.Cohorts))
		var used uint64
		for _, c := range a.Cohorts {
			if c.Bit < 0 || c.Bit >= MaxCohorts || used&(1<<c.Bit) != 0 || !ValidChannelName(c.Name) || a.cohortBits[c.Name] != 0 {
				return fmt.Errorf("app %q: cohort %q: bad name or bit %d", a.ID, c.Name, c.Bit)
			}
			used |= 1 << c.Bit
			a.cohortBits[c.Name] = 1 << c.Bit
		}
	}
	for _, r := range a.Rules {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("app %q: %w", a.ID, err)
		}
		if r.channel = a.channels[r.Channel]; r.channel == nil {
			return fmt.Errorf("app %q: segment %s: unknown channel %q", a.ID, r.Name, r.Channel)
		}
		r.cohort = 0
		if r.Cohort != "" {
			if r.cohort = a.cohortBits[r.Cohort]; r.cohort == 0 {
				return fmt.Errorf("app %q: segment %s: unknown cohort %q", a.ID, r.Name, r.Cohort)
			}
		}
	}
	return nil
}

// index links the channel to its bundles and checks rollout and split.
func (c *Channel) index(a *App) error {
	if c.Bundle == BuiltinVersion {
		c.bundle = builtinBundle
	} else if c.Bundle != "" {
		if c.bundle = a.bundles[c.Bundle]; c.bundle == nil {
			return fmt.Errorf("unknown bundle %q", c.Bundle)
		}
	}
	if c.Rollout != nil && c.AB != nil {
		return fmt.Errorf("has both a rollout and an A/B split")
	}
	if c.NativeGate != nil {
		if err := c.NativeGate.index(a); err != nil {
			return err
		}
	}
	if c.Windows != nil {
		// Zones are loaded here, once per snapshot: Held does not allocate.
		if err := c.Windows.Normalize(); err != nil {
			return err
		}
		if c.Windows.Empty() {
			c.Windows = nil
		}
	}
	if ro := c.Rollout; ro != nil {
		if err := validateBPS(ro.BPS); err != nil {
			return fmt.Errorf("rollout: %w", err)
		}
		if ro.ID == "" {
			return fmt.Errorf("rollout without id")
		}
		if ro.bundle = a.bundles[ro.Bundle]; ro.bundle == nil {
			return fmt.Errorf("rollout: unknown bundle %q", ro.Bundle)
		}
		ro.seed = seedOf(ro.ID)
		var err error
		if ro.minNative, ro.gated, err = parseMinNative("rollout", ro.MinNativeBuild); err != nil {
			return err
		}
	}
	if ab := c.AB; ab != nil {
		if err := ab.Validate(); err != nil {
			return err
		}
		if ab.ID == "" {
			return fmt.Errorf("A/B split without id")
		}
		ab.seed = seedOf(ab.ID)
		for i := range ab.Arms {
			arm := &ab.Arms[i]
			if arm.bundle = a.bundles[arm.Bundle]; arm.bundle == nil {
				return fmt.Errorf("A/B arm %s: unknown bundle %q", arm.Name, arm.Bundle)
			}
			var err error
			if arm.minNative, arm.gated, err = parseMinNative("A/B arm "+arm.Name, arm.MinNativeBuild); err != nil {
				return err
			}
		}
	}
	return nil
}

// indexOverrides links the app's override shards and maps each shard's
// channel names to this snapshot's channels.
func (a *App) indexOverrides(src ShardSource) error {
	a.shards, a.shardChannels, a.overrideCount = nil, nil, 0
	if len(a.OverrideShards) == 0 {
		return nil
	}
	if len(a.OverrideShards) != ShardCount {
		return fmt.Errorf("app %q: %d override shards, want %d", a.ID, len(a.OverrideShards), ShardCount)
	}
	if src == nil {
		return fmt.Errorf("app %q: override shards listed but no shard source", a.ID)
	}
	a.shards = new([ShardCount]*OverrideShard)
	a.shardChannels = new([ShardCount][]*Channel)
	for i, h := range a.OverrideShards {
		if h == "" {
			continue
		}
		sh, err := src.OverrideShard(h)
		if err != nil {
			return fmt.Errorf("app %q: override shard %d: %w", a.ID, i, err)
		}
		if sh.Len() == 0 {
			a.shards[i] = sh // cohort membership only
			continue
		}
		chans := make([]*Channel, len(sh.channels))
		for j, name := range sh.channels {
			if chans[j] = a.channels[name]; chans[j] == nil {
				return fmt.Errorf("app %q: overrides for unknown channel %q", a.ID, name)
			}
		}
		a.shards[i], a.shardChannels[i] = sh, chans
		a.overrideCount += sh.Len()
	}
	return nil
}

// override returns the channel a binary device id is pinned to, or nil.
func (a *App) override(dev [16]byte) *Channel {
	if a.shards == nil {
		return nil
	}
	i := ShardOf(dev)
	sh := a.shards[i]
	if sh == nil {
		return nil
	}
	if j, ok := sh.m[dev]; ok {
		return a.shardChannels[i][j]
	}
	return nil
}

// cohortsOf returns the cohort bits of a shard key (a device id or
// CohortKeyOfCustomID of a custom id).
func (a *App) cohortsOf(key [16]byte) uint64 {
	if a.shards == nil {
		return 0
	}
	if sh := a.shards[ShardOf(key)]; sh != nil {
		return sh.cohorts[key]
	}
	return 0
}

// InCohort reports whether a device (by id, or by custom id) is a member of
// the app's cohort name.
func (a *App) InCohort(name, deviceID, customID string) bool {
	bit := a.cohortBits[name]
	if bit == 0 {
		return false
	}
	if u, ok := ParseDeviceID(deviceID); ok && a.cohortsOf(u)&bit != 0 {
		return true
	}
	return customID != "" && a.cohortsOf(CohortKeyOfCustomID(customID))&bit != 0
}

// Override returns the channel a device is pinned to, or nil.
func (a *App) Override(deviceID string) *Channel {
	u, ok := ParseDeviceID(deviceID)
	if !ok {
		return nil
	}
	return a.override(u)
}

// OverrideCount is the number of devices pinned to a channel.
func (a *App) OverrideCount() int { return a.overrideCount }

// App returns the app with this id, or nil.
func (s *Snapshot) App(id string) *App { return s.apps[id] }

// Bundle returns the app's bundle with this version, or nil.
func (a *App) Bundle(version string) *Bundle { return a.bundles[version] }

// Channel returns the app's channel with this name, or nil.
func (a *App) Channel(name string) *Channel { return a.channels[name] }

// DefaultChannel returns the default channel for platform, or nil.
func (a *App) DefaultChannel(platform string) *Channel {
	if i := platformIndex(platform); i >= 0 {
		return a.defaults[i]
	}
	return nil
}
