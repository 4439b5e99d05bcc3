package snapshot

// Kinds of a refused or empty update check (Capgo's `kind`): the plugin ends
// a "failed" check as a download failure; "up_to_date" and "blocked" are
// normal outcomes.
const (
	KindUpToDate = "up_to_date"
	KindBlocked  = "blocked"
	KindFailed   = "failed"
)

// Decision codes. They are Capgo's, so an unmodified plugin understands them.
const (
	CodeAppNotFound          = "app_not_found"
	CodeUnsupportedPlugin    = "unsupported_plugin_version"
	CodeNoChannel            = "no_channel"
	CodeNoBundle             = "no_bundle"
	CodeNoNewVersion         = "no_new_version_available"
	CodeDisabledIOS          = "disabled_platform_ios"
	CodeDisabledAndroid      = "disabled_platform_android"
	CodeDisabledElectron     = "disabled_platform_electron"
	CodeToMajor              = "disable_auto_update_to_major"
	CodePrivateChannel       = "cannot_update_via_private_channel"
	CodeToMinor              = "disable_auto_update_to_minor"
	CodeToPatch              = "disable_auto_update_to_patch"
	CodeMisconfiguredChannel = "misconfigured_channel"
	CodeToMetadata           = "disable_auto_update_to_metadata"
	CodeUnderNative          = "disable_auto_update_under_native"
	CodeProdBuild            = "disable_prod_build"
	CodeDevBuild             = "disable_dev_build"
	CodeDevice               = "disable_device"
	CodeEmulator             = "disable_emulator"
	CodeKeyIDMismatch        = "key_id_mismatch"
	CodeAlreadyOnBuiltin     = "already_on_builtin"
	CodeRevertTooOld         = "revert_to_builtin_plugin_version_too_old"
)

// Rules that pick a device's channel, reported in Decision.Rule.
const (
	RuleOverride     = "override"      // the operator pinned the device to a channel
	RuleSelfAssigned = "self_assigned" // the device's defaultChannel
	RuleSegment      = "segment"       // an attribute rule (Decision.Segment names it)
	RuleDefault      = "default"       // the platform's default (public) channel
)

// Variants: which of the channel's bundles a device gets.
const (
	VariantChannel     = ""             // the channel's bundle
	VariantRollout     = "rollout"      // bucket below the rollout's share
	VariantRolloutKept = "rollout_kept" // paused rollout; the device already runs its bundle
	VariantAB          = "ab"           // an A/B arm (Decision.Arm)
)

// Decision is the answer to an update check: a bundle to install, or an
// error code with its kind, plus why (the rule and channel that decided).
type Decision struct {
	Bundle  *Bundle  // set when the device should update
	Channel *Channel // channel the device resolved to, if any
	Rule    string   // which rule chose the channel
	Segment string   // the segment rule's name, for RuleSegment
	Variant string   // which of the channel's bundles was chosen
	Arm     string   // the A/B arm, for VariantAB
	Bucket  int      // the device's bucket in the rollout or split, -1 if none
	// NativeMin is the min native build the device is below, for
	// VariantBelowNative: why it did not get the newer bundle.
	NativeMin string

	Code    string // empty on success
	Message string
	Kind    string

	// Extra keys Capgo puts in some refusals, before "kind".
	Major   bool   // "major": true
	Version string // "version": target bundle
	Old     string // "old": what the device has (bundle or native version)
	// "deviceKeyId" and "bundleKeyId" of a key_id_mismatch.
	DeviceKeyID, BundleKeyID string

	// Held, with Code no_new_version_available: the device would have
	// got HeldBundle (an update or the store build) but the maintenance
	// windows of its channel or segment hold it (HeldOutsideWindow,
	// HeldBlackout).
	Held       string
	HeldBundle *Bundle

	// Metadata: the answer carries the bundle's link and comment (the app
	// exposes them and the plugin reads them).
	Metadata bool
}

// OK reports whether the device should download Bundle.
func (d *Decision) OK() bool { return d.Code == "" }

func refuse(code, kind, msg string) Decision {
	return Decision{Code: code, Kind: kind, Message: msg}
}

// Resolve decides what the device of request r gets under snapshot s. r must
// have passed Validate. Resolve is pure and allocation-free on the paths that
// do not build a message. The decision may reference r's strings (Old), so it
// is valid only as long as r is.
func Resolve(s *Snapshot, r *Request) Decision {
	app := s.App(r.AppID)
	if app == nil {
		return refuse(CodeAppNotFound, KindFailed, "App not found")
	}
	if r.plugin.Major == 4 {
		return refuse(CodeUnsupportedPlugin, KindFailed,
			"Plugin version "+r.PluginVersion+" (v4) is no longer supported. Please upgrade to v5.10.0 or later.")
	}
	dev, devOK := r.Device()
	ch, rule, seg, segWindows := pickChannel(app, r, dev, devOK)
	if ch == nil {
		return refuse(CodeNoChannel, KindFailed, "no default channel or override")
	}
	b, variant, arm, bkt, native := pickBundle(ch, r)
	if b == nil {
		d := refuse(CodeNoBundle, KindFailed, "Cannot get bundle")
		if variant == VariantBelowNative {
			// Under the channel's min native build, with no earlier bundle
			// that suits the device: it keeps what it runs.
			d = refuse(CodeNoNewVersion, KindUpToDate, "No new version available")
			d.Variant, d.NativeMin = variant, native
		}
		d.Channel, d.Rule, d.Segment, d.Bucket = ch, rule, seg, bkt
		return d
	}
	var d Decision
	// Capgo update.ts:458-467: a device holding another encryption key than
	// the bundle's cannot install it; enforced for plugins after 8.40.7 (the
	// key id grew from 4 to 20 characters then), before "no new version".
	if r.KeyID != "" && b.KeyID != "" && r.KeyID != b.KeyID && r.plugin.Compare(*v8_40_7) > 0 {
		d = refuse(CodeKeyIDMismatch, KindBlocked, "Device encryption key does not match bundle encryption key. The device may have a different public key than the one used to encrypt this bundle.")
		d.DeviceKeyID, d.BundleKeyID = r.KeyID, b.KeyID
	} else {
		// A private channel serves devices the operator routed to it,
		// builds configured for it (Expo's channel name), and devices
		// holding a preview token for it.
		d = guard(ch, b, r, rule == RuleOverride || rule == RuleSegment || rule == RuleSelfAssigned && (r.BuildChannel || r.PreviewGranted))
		if d.Code == "" && b.builtin {
			d = revertToBuiltin(r)
		}
	}
	d.Channel, d.Rule, d.Segment, d.Variant, d.Arm, d.Bucket, d.NativeMin = ch, rule, seg, variant, arm, bkt, native
	if d.Code == "" && (ch.Windows != nil || segWindows != nil) {
		// Last: only an answer that changes what the device runs waits for
		// the channel's maintenance windows (and those of the segment that
		// routed the device); it is Capgo's "nothing to do".
		held := ch.Windows.Held(r.Now)
		if held == "" {
			held = segWindows.Held(r.Now)
		}
		if held != "" {
			d.Code, d.Kind, d.Message = CodeNoNewVersion, KindUpToDate, "No new version available"
			d.Held, d.HeldBundle = held, b
			return d
		}
	}
	if d.Code == "" {
		d.Bundle = b
		d.Metadata = app.ExposeMetadata && r.SupportsMetadata()
	}
	return d
}

// revertToBuiltin decides for a device whose channel targets the store
// build, once the channel's gates passed (Capgo update.ts:639-651). A
// device already on it is up to date; a plugin from 6.2.0 on (capgo
// d65de2027, capacitor-updater 40aa24e1 "reset from server") gets the bare
// {"version":"builtin"} it resets on — a Decision without Code whose Bundle
// is Builtin(); an older plugin cannot revert.
//
// Capgo checks the plugin version first, so an old plugin already on the
// store build also gets revert_to_builtin_plugin_version_too_old; and its
// already_on_builtin carries "version":"builtin" (update.ts:644-645, the
// branch Capgo reaches: plugin_parser.ts:77-78 replaces a version_name of
// "builtin" by the version_build before update.ts sees it, so Capgo cannot
// tell a device on builtin from one on a bundle named like its native
// version).
func revertToBuiltin(r *Request) Decision {
	switch {
	case r.plugin.Compare(*v6_2_0) < 0:
		return refuse(CodeRevertTooOld, KindFailed, "revert_to_builtin used, but plugin version is too old")
	case r.OnBuiltin:
		return refuse(CodeAlreadyOnBuiltin, KindUpToDate, "Already on builtin")
	}
	return Decision{}
}

// pickChannel applies the channel rules in order; first match wins: device
// override, self-assigned channel, attribute segments, platform default. A
// self-assigned channel must serve the platform and be public or allow
// self-assignment; unlike Capgo, a device whose defaultChannel does not
// qualify falls through to the next rule instead of getting no_channel.
func pickChannel(app *App, r *Request, dev [16]byte, devOK bool) (*Channel, string, string, *Windows) {
	if devOK {
		if c := app.override(dev); c != nil {
			return c, RuleOverride, "", nil
		}
	}
	// A defaultChannel naming the platform's default channel is no choice:
	// current plugins keep whatever getChannel reported as their own
	// defaultChannel, so a device that merely asked would otherwise be
	// pinned to the default and skip the segment rules for good. It falls
	// through to them (and ends on that same default if none matches).
	if r.DefaultChannel != "" {
		if c := app.Channel(r.DefaultChannel); c != nil && c.Platform(r.Platform) && c != app.DefaultChannel(r.Platform) {
			if c.Preview() {
				if r.PreviewGranted {
					return c, RuleSelfAssigned, "", nil
				}
			} else if c.Public || c.AllowDeviceSelfSet || r.BuildChannel {
				return c, RuleSelfAssigned, "", nil
			}
		}
	}
	// An app that does not allow device custom ids (Capgo's
	// allow_device_custom_id = false) drops the one the device sent.
	customID := r.CustomID
	if app.IgnoreCustomID {
		customID = ""
	}
	var cs cohortSet
	for _, rule := range app.Rules {
		if rule.matches(app, &cs, r, customID, dev, devOK) {
			return rule.channel, RuleSegment, rule.Name, rule.Windows
		}
	}
	if c := app.DefaultChannel(r.Platform); c != nil {
		return c, RuleDefault, "", nil
	}
	return nil, "", "", nil
}

// pickBundle chooses between the channel's bundle and its rollout or A/B
// arms by the device's bucket, then applies the native-build gates: a
// device below a rollout's or arm's min native build gets the channel's
// bundle, and one below the channel's gate an earlier bundle (nil: none
// suits it). native names the min native build that turned the device away.
func pickBundle(ch *Channel, r *Request) (b *Bundle, variant, arm string, bkt int, native string) {
	switch {
	case ch.Rollout != nil:
		ro := ch.Rollout
		bkt = bucket(ro.seed, r.DeviceID)
		if ro.Paused {
			if r.VersionName == ro.Bundle {
				return ro.bundle, VariantRolloutKept, "", bkt, ""
			}
		} else if bkt < ro.BPS {
			if !ro.gated || r.build.Compare(ro.minNative) >= 0 {
				return ro.bundle, VariantRollout, "", bkt, ""
			}
			variant, native = VariantBelowNative, ro.MinNativeBuild
		}
	case ch.AB != nil:
		bkt = bucket(ch.AB.seed, r.DeviceID)
		lo := 0
		for i := range ch.AB.Arms {
			a := &ch.AB.Arms[i]
			if bkt < lo+a.BPS {
				if !a.gated || r.build.Compare(a.minNative) >= 0 {
					return a.bundle, VariantAB, a.Name, bkt, ""
				}
				variant, native = VariantBelowNative, a.MinNativeBuild
				break
			}
			lo += a.BPS
		}
	default:
		bkt = -1
	}
	if g := ch.NativeGate; g != nil && r.build.Compare(g.min) < 0 {
		return g.below(r.build), VariantBelowNative, "", bkt, g.MinBuild
	}
	return ch.bundle, variant, "", bkt, native
}

// guard applies Capgo's checks, in Capgo's order, to target bundle b on
// channel ch. Version comparisons are against the native version_build.
func guard(ch *Channel, b *Bundle, r *Request, operatorRouted bool) Decision {
	if r.VersionName == b.Version {
		return refuse(CodeNoNewVersion, KindUpToDate, "No new version available")
	}
	blocked := func(code, msg string, major bool, old string) Decision {
		return Decision{Code: code, Kind: KindBlocked, Message: msg, Major: major, Version: b.Version, Old: old}
	}
	switch {
	case r.Platform == PlatformIOS && !ch.IOS:
		return blocked(CodeDisabledIOS, "Cannot update, ios it's disabled", false, r.VersionName)
	case r.Platform == PlatformAndroid && !ch.Android:
		return blocked(CodeDisabledAndroid, "Cannot update, android is disabled", false, r.VersionName)
	case r.Platform == PlatformElectron && !ch.Electron:
		return blocked(CodeDisabledElectron, "Cannot update, electron is disabled", false, r.VersionName)
	}
	// Bundle versions are validated as semver at upload; an invalid one can
	// only come from an older store and skips the version guards, like the
	// store build of a builtin channel (Capgo: !isInternalVersionName).
	v, build := b.version, r.build
	semverOK := b.valid
	if semverOK && ch.DisableAutoUpdate == DisableMajor && v.Major > build.Major {
		return blocked(CodeToMajor, "Cannot upgrade major version", true, r.VersionBuild)
	}
	if !ch.AllowDeviceSelfSet && !ch.Public && !operatorRouted {
		d := refuse(CodePrivateChannel, KindBlocked, privateChannelMessage(ch.Name, r.DefaultChannel))
		return d
	}
	if semverOK {
		switch ch.DisableAutoUpdate {
		case DisableMinor:
			if v.Major != build.Major || v.Minor != build.Minor {
				return blocked(CodeToMinor, "Cannot upgrade minor version", true, r.VersionBuild)
			}
		case DisablePatch:
			if v.Major != build.Major || v.Minor != build.Minor || v.Patch != build.Patch {
				return blocked(CodeToPatch, "Cannot upgrade patch version", true, r.VersionBuild)
			}
		case DisableMetadata:
			min, ok := ParseVersion(b.MinUpdateVersion)
			if !ok {
				d := refuse(CodeMisconfiguredChannel, KindFailed, "Channel "+ch.Name+" is misconfigured")
				d.Version, d.Old = b.Version, r.VersionBuild
				return d
			}
			if min.Compare(build) > 0 {
				return blocked(CodeToMetadata, "Cannot upgrade version, min update version > current version", true, r.VersionBuild)
			}
		}
		if ch.DisableAutoUpdateUnderNative && v.Compare(build) < 0 {
			return blocked(CodeUnderNative, "Cannot revert under native version", false, r.VersionName)
		}
	}
	switch {
	case !ch.AllowProd && r.IsProd:
		return blocked(CodeProdBuild, "Cannot update, prod build is disabled", false, r.VersionName)
	case !ch.AllowDev && !r.IsProd:
		return blocked(CodeDevBuild, "Cannot update, dev build is disabled", false, r.VersionName)
	case !ch.AllowDevice && !r.IsEmulator:
		return blocked(CodeDevice, "Cannot update, device is disabled", false, r.VersionName)
	case !ch.AllowEmulator && r.IsEmulator:
		return blocked(CodeEmulator, "Cannot update, emulator is disabled", false, r.VersionName)
	}
	return Decision{}
}

func privateChannelMessage(name, defaultChannel string) string {
	if defaultChannel != "" {
		return `Cannot update via a private channel. The channel "` + name + `" does not allow device self-assignment. Please ensure your defaultChannel "` + defaultChannel + `" has "Allow devices to self dissociate/associate" set to true.`
	}
	return `Cannot update via a private channel. The channel "` + name + `" does not allow device self-assignment. Please set a defaultChannel with "Allow devices to self dissociate/associate" enabled.`
}
