package snapshot

import (
	"strings"
	"testing"
)

// Capgo parity of the resolver. Sources are Cap-go/capgo at 4bc7d83f
// (supabase/functions/_backend/plugin_runtime/...), its tests/ folder, and
// Cap-go/capacitor-updater at e235d092.

// Capgo plugin_validation.ts:314-326 (updateRequestSchema) and
// plugin_schemas/update_request.is.ts never look at custom_id: a longer one
// does not change the answer of POST /updates (only /stats caps it).
func TestValidateLongCustomID(t *testing.T) {
	r := baseReq()
	r.CustomID = strings.Repeat("c", 37)
	if err := r.Validate(); err != nil {
		t.Fatalf("custom_id of 37 characters: %v", err)
	}
	r = baseReq()
	r.CustomID = strings.Repeat("c", 500)
	if err := r.Validate(); err != nil {
		t.Fatalf("custom_id of 500 characters: %v", err)
	}
}

// builtinApp is testSnapshot with production targeting the store build.
func builtinApp(mod func(a *App)) func(a *App) {
	return func(a *App) {
		a.Channels[0].Bundle = BuiltinVersion
		if mod != nil {
			mod(a)
		}
	}
}

// A channel whose bundle is the store build. Capgo update.ts:639-651 (the
// answer), :452-456 and the !isInternalVersionName checks (no_bundle and the
// version guards are skipped, platform / private / prod-dev /
// device-emulator gates apply); tests/updates.test.ts:434 "keeps native
// channel targets addressable without app_versions placeholders" (plugin
// 7.0.0, version_name 1.1.0 → version "builtin").
func TestBuiltinChannel(t *testing.T) {
	prodCh := func(a *App) *Channel { return a.Channels[0] }
	cases := []struct {
		name    string
		mod     func(a *App)
		req     func(r *Request)
		code    string
		kind    string
		revert  bool   // the decision sends the device back to the store build
		version string // a real bundle (rollout)
	}{
		// tests/updates.test.ts:434: plugin 7.0.0, version_name 1.1.0.
		{name: "capgo updates.test.ts:434", req: func(r *Request) { r.PluginVersion = "7.0.0"; r.VersionName = "1.1.0"; r.Platform = "android" }, revert: true},
		{name: "plugin 6.2.0 reverts", req: func(r *Request) { r.PluginVersion = "6.2.0" }, revert: true},
		{name: "already on builtin", req: func(r *Request) { r.VersionName = "builtin" }, code: CodeAlreadyOnBuiltin, kind: KindUpToDate},
		{name: "plugin before 6.2.0", req: func(r *Request) { r.PluginVersion = "6.1.9" }, code: CodeRevertTooOld, kind: KindFailed},
		{name: "plugin 5.x", req: func(r *Request) { r.PluginVersion = "5.10.0" }, code: CodeRevertTooOld, kind: KindFailed},
		// Version guards are skipped for the store build.
		{name: "major guard skipped", mod: func(a *App) { prodCh(a).DisableAutoUpdate = DisableMajor }, revert: true},
		{name: "patch guard skipped", mod: func(a *App) { prodCh(a).DisableAutoUpdate = DisablePatch }, req: func(r *Request) { r.VersionBuild = "3.1.4" }, revert: true},
		{name: "metadata guard skipped", mod: func(a *App) { prodCh(a).DisableAutoUpdate = DisableMetadata }, revert: true},
		{name: "under-native guard skipped", mod: func(a *App) { prodCh(a).DisableAutoUpdateUnderNative = true }, req: func(r *Request) { r.VersionBuild = "9.0.0" }, revert: true},
		// The other gates apply, before the builtin answer.
		{name: "platform gate", mod: func(a *App) {
			prodCh(a).IOS = false
			a.Rules = []*Rule{{Name: "everyone", Channel: "production"}}
		}, code: CodeDisabledIOS, kind: KindBlocked},
		{name: "emulator gate", mod: func(a *App) { prodCh(a).AllowEmulator = false }, req: func(r *Request) { r.IsEmulator = true }, code: CodeEmulator, kind: KindBlocked},
		{name: "prod gate", mod: func(a *App) { prodCh(a).AllowProd = false }, code: CodeProdBuild, kind: KindBlocked},
		// A builtin channel may roll out a real bundle.
		{name: "rollout of a real bundle on a builtin channel", mod: func(a *App) {
			prodCh(a).Rollout = &Rollout{ID: "r1", Bundle: "1.2.0", BPS: BucketCount}
		}, version: "1.2.0"},
		{name: "outside the rollout: store build", mod: func(a *App) {
			prodCh(a).Rollout = &Rollout{ID: "r1", Bundle: "1.2.0", BPS: 0}
		}, revert: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := testSnapshot(t, builtinApp(c.mod))
			r := baseReq()
			if c.req != nil {
				c.req(&r)
			}
			if err := r.Validate(); err != nil {
				t.Fatal(err)
			}
			d := Resolve(s, &r)
			if d.Code != c.code || d.Kind != c.kind {
				t.Fatalf("code=%q kind=%q msg=%q; want %q %q", d.Code, d.Kind, d.Message, c.code, c.kind)
			}
			switch {
			case c.revert && (d.Bundle == nil || !d.Bundle.Builtin() || d.Bundle.Version != "builtin"):
				t.Fatalf("bundle %+v, want the store build", d.Bundle)
			case c.version != "" && (d.Bundle == nil || d.Bundle.Version != c.version || d.Bundle.Builtin()):
				t.Fatalf("bundle %+v, want %s", d.Bundle, c.version)
			case c.code != "" && d.Bundle != nil:
				t.Fatalf("refusal carries a bundle")
			}
		})
	}
	// The private-channel gate applies too (only reachable by guard itself:
	// pickChannel never picks a private channel the device chose).
	s0 := testSnapshot(t, builtinApp(nil))
	ch := s0.App("com.example.app").Channel("production")
	ch.Public = false
	r0 := baseReq()
	r0.Validate()
	if d := guard(ch, builtinBundle, &r0, false); d.Code != CodePrivateChannel {
		t.Fatalf("private builtin channel: %+v", d)
	}
	// Messages are Capgo's (update.ts:641-650).
	s := testSnapshot(t, builtinApp(nil))
	for _, c := range []struct{ version, plugin, msg string }{
		{"builtin", "8.51.14", "Already on builtin"},
		{"1.0.0", "5.10.0", "revert_to_builtin used, but plugin version is too old"},
	} {
		r := baseReq()
		r.VersionName, r.PluginVersion = c.version, c.plugin
		r.Validate()
		if d := Resolve(s, &r); d.Message != c.msg || d.Version != "" {
			t.Errorf("%s/%s: %+v, want message %q and no version", c.version, c.plugin, d, c.msg)
		}
	}
}

// A builtin channel survives an encode/decode round trip and its snapshot
// still lists no bundle called builtin.
func TestBuiltinChannelIndex(t *testing.T) {
	s := testSnapshot(t, builtinApp(nil))
	a := s.App("com.example.app")
	if a.Bundle(BuiltinVersion) != nil {
		t.Fatal("the store build became a bundle of the app")
	}
	if s.Deliverable("") {
		t.Fatal("the store build made an empty blob deliverable")
	}
	// A rollout or A/B arm of the store build is refused by Index.
	bad := &Snapshot{Format: FormatVersion, Rev: 2, Apps: []*App{{ID: "com.example.app", Bundles: []*Bundle{{Version: "1.0.0", SHA256: "a"}},
		Channels: []*Channel{{Name: "p", Bundle: "1.0.0", Rollout: &Rollout{ID: "x", Bundle: BuiltinVersion, BPS: 10}}}}}}
	if err := bad.Index(nil); err == nil {
		t.Fatal("Index accepted a rollout of builtin")
	}
}

// key_id_mismatch, Capgo update.ts:458-467 (no Capgo test covers the
// answer; research §8): only for plugins after 8.40.7, when both key ids
// are set and differ; before no_new_version_available.
func TestKeyIDMismatch(t *testing.T) {
	keyed := func(a *App) { a.Bundles[1].KeyID = "MIIBCgKCAQEAuX1bundle"[:20] }
	const deviceKey = "MIIBCgKCAQEAzzzDEVICE"
	cases := []struct {
		name   string
		mod    func(a *App)
		req    func(r *Request)
		code   string
		update bool
	}{
		{name: "mismatch", mod: keyed, req: func(r *Request) { r.KeyID = deviceKey[:20] }, code: CodeKeyIDMismatch},
		{name: "mismatch wins over no new version", mod: keyed, req: func(r *Request) { r.KeyID = deviceKey[:20]; r.VersionName = "1.2.0" }, code: CodeKeyIDMismatch},
		{name: "mismatch wins over the guards", mod: func(a *App) { keyed(a); a.Channels[0].AllowProd = false }, req: func(r *Request) { r.KeyID = deviceKey[:20] }, code: CodeKeyIDMismatch},
		{name: "8.40.8 prerelease counts", mod: keyed, req: func(r *Request) { r.KeyID = deviceKey[:20]; r.PluginVersion = "8.40.8-beta.1" }, code: CodeKeyIDMismatch},
		{name: "plugin 8.40.7 exempt", mod: keyed, req: func(r *Request) { r.KeyID = deviceKey[:20]; r.PluginVersion = "8.40.7" }, update: true},
		{name: "plugin 7.x exempt", mod: keyed, req: func(r *Request) { r.KeyID = deviceKey[:20]; r.PluginVersion = "7.40.0" }, update: true},
		{name: "same key", mod: keyed, req: func(r *Request) { r.KeyID = "MIIBCgKCAQEAuX1bundle"[:20] }, update: true},
		{name: "device sends no key", mod: keyed, update: true},
		{name: "bundle not encrypted", req: func(r *Request) { r.KeyID = deviceKey[:20] }, update: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := testSnapshot(t, c.mod)
			r := baseReq()
			if c.req != nil {
				c.req(&r)
			}
			if err := r.Validate(); err != nil {
				t.Fatal(err)
			}
			d := Resolve(s, &r)
			if d.Code != c.code || d.OK() != c.update {
				t.Fatalf("%+v; want code %q, update %v", d, c.code, c.update)
			}
			if c.code == CodeKeyIDMismatch && (d.Kind != KindBlocked || d.DeviceKeyID != r.KeyID || d.BundleKeyID != "MIIBCgKCAQEAuX1bundle"[:20] ||
				d.Message != "Device encryption key does not match bundle encryption key. The device may have a different public key than the one used to encrypt this bundle.") {
				t.Fatalf("%+v", d)
			}
		})
	}
}

// link/comment gate, Capgo update.ts:213-225 and :413 (expose_metadata AND
// not deprecated against 5.35.0 / 6.35.0 / 7.35.0 / 8.35.0);
// tests/expose-metadata.test.ts:180-260 (x.35.0 yes, x.34.9 no), :320
// (expose_metadata off), update-response-shaping.unit.test.ts:38-44
// (8.35.0-beta.1 is older than 8.35.0).
func TestMetadataGate(t *testing.T) {
	for plugin, want := range map[string]bool{
		"5.35.0": true, "6.35.0": true, "7.35.0": true, "8.35.0": true, "8.51.14": true, "9.0.0": true, "10.1.0": true,
		"5.34.9": false, "6.34.9": false, "7.34.9": false, "8.34.9": false, "8.35.0-beta.1": false, "7.35.0-rc.1": false,
	} {
		for _, expose := range []bool{true, false} {
			s := testSnapshot(t, func(a *App) { a.ExposeMetadata = expose })
			r := baseReq()
			r.PluginVersion = plugin
			if err := r.Validate(); err != nil {
				t.Fatal(err)
			}
			if d := Resolve(s, &r); !d.OK() || d.Metadata != (want && expose) {
				t.Errorf("plugin %s, expose_metadata %v: Metadata %v, want %v (%+v)", plugin, expose, d.Metadata, want && expose, d)
			}
		}
	}
}

// allow_device_custom_id = false: Capgo plugin_parser.ts:34-36 (makeDevice
// drops the custom_id; never an error): segment rules do not see it.
func TestIgnoreCustomID(t *testing.T) {
	rule := func(a *App) {
		a.Rules = []*Rule{{Name: "acme", Channel: "enterprise", CustomIDPrefix: "acme-"}, {Name: "exact", Channel: "beta", CustomIDs: []string{"vip"}}}
	}
	s := segmented(t, rule)
	if d := resolve(t, s, nil); d.Rule != RuleSegment || d.Segment != "acme" {
		t.Fatalf("custom ids allowed: %+v", d)
	}
	s = segmented(t, func(a *App) { rule(a); a.IgnoreCustomID = true })
	for _, id := range []string{"acme-42", "vip"} {
		d := resolve(t, s, func(r *Request) { r.CustomID = id })
		if d.Rule != RuleDefault || d.Channel.Name != "production" || !d.OK() {
			t.Fatalf("custom id %s ignored: %+v", id, d)
		}
	}
	r := Request{AppID: "com.example.app", DeviceID: dev, VersionName: "1.0.0", VersionBuild: "1.0.0", Platform: "android", PluginVersion: "7.1.0", CustomID: "acme-1"}
	if p := Place(s, &r); p.Segment != RuleDefault {
		t.Fatalf("Place with custom ids ignored: %+v", p)
	}
}

// Capgo channel_self.ts:26-30, 169-180 (isChannelSelfLocalChannelStorageVersion
// with isDeprecatedPluginVersion, utils.ts:103-118): old plugins keep their
// channel on the server.
func TestLegacyChannelSelf(t *testing.T) {
	for v, legacy := range map[string]bool{
		"5.33.9": true, "5.34.0": false, "6.33.0": true, "6.34.0": false, "7.0.0": true, "7.33.0": true, "7.34.0": false,
		"8.0.0": false, "8.51.14": false, "9.0.0": false, "4.0.0": false, "": false, "abc": true, "7.34.0-beta.1": true,
	} {
		if got := LegacyChannelSelf(v); got != legacy {
			t.Errorf("LegacyChannelSelf(%q) = %v, want %v", v, got, legacy)
		}
	}
}
