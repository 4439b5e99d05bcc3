package snapshot

import (
	"strings"
	"testing"
)

const dev = "00009a6b-eefe-490a-9c60-8e965132ae51"

func testSnapshot(t testing.TB, mod func(a *App)) *Snapshot {
	t.Helper()
	prod := &Channel{Name: "production", Bundle: "1.2.0", Public: true, IOS: true, Android: true, Electron: true,
		AllowEmulator: true, AllowDev: true, AllowProd: true, AllowDevice: true, DisableAutoUpdate: DisableNone}
	beta := &Channel{Name: "beta", Bundle: "1.3.0-beta.1", IOS: true, Android: true, AllowDeviceSelfSet: true,
		AllowEmulator: true, AllowDev: true, AllowProd: true, AllowDevice: true, DisableAutoUpdate: DisableNone}
	app := &App{ID: "com.example.app",
		Bundles: []*Bundle{
			{Version: "1.0.0", SHA256: strings.Repeat("a", 64), Size: 1},
			{Version: "1.2.0", SHA256: strings.Repeat("b", 64), Size: 2, MinUpdateVersion: "1.1.0"},
			{Version: "1.3.0-beta.1", SHA256: strings.Repeat("c", 64), Size: 3},
			{Version: "2.0.0", SHA256: strings.Repeat("d", 64), Size: 4},
		},
		Channels: []*Channel{prod, beta},
	}
	if mod != nil {
		mod(app)
	}
	s := &Snapshot{Format: FormatVersion, Rev: 1, Apps: []*App{app}}
	if err := s.Index(nil); err != nil {
		t.Fatal(err)
	}
	return s
}

func baseReq() Request {
	return Request{AppID: "com.example.app", DeviceID: dev, VersionName: "1.0.0", VersionBuild: "1.0.0",
		Platform: "ios", PluginVersion: "8.51.14", IsProd: true}
}

func TestResolve(t *testing.T) {
	prodCh := func(a *App) *Channel { return a.Channels[0] }
	cases := []struct {
		name    string
		mod     func(a *App)
		req     func(r *Request)
		code    string
		kind    string
		version string // bundle on success
		rule    string
	}{
		{name: "default channel", version: "1.2.0", rule: RuleDefault},
		{name: "builtin device updates", req: func(r *Request) { r.VersionName = "builtin" }, version: "1.2.0"},
		{name: "already current", req: func(r *Request) { r.VersionName = "1.2.0" }, code: CodeNoNewVersion, kind: KindUpToDate},
		{name: "unknown app", req: func(r *Request) { r.AppID = "com.other.app" }, code: CodeAppNotFound, kind: KindFailed},
		{name: "plugin v4", req: func(r *Request) { r.PluginVersion = "4.9.0" }, code: CodeUnsupportedPlugin, kind: KindFailed},
		{name: "no default for platform", mod: func(a *App) { prodCh(a).Electron = false }, req: func(r *Request) { r.Platform = "electron" }, code: CodeNoChannel, kind: KindFailed},
		{name: "channel without bundle", mod: func(a *App) { prodCh(a).Bundle = "" }, code: CodeNoBundle, kind: KindFailed},
		{name: "self-assigned beta", req: func(r *Request) { r.DefaultChannel = "beta" }, version: "1.3.0-beta.1", rule: RuleSelfAssigned},
		{name: "self-assigned not allowed falls through", mod: func(a *App) { a.Channels[1].AllowDeviceSelfSet = false }, req: func(r *Request) { r.DefaultChannel = "beta" }, version: "1.2.0", rule: RuleDefault},
		{name: "self-assigned wrong platform falls through", req: func(r *Request) { r.DefaultChannel = "beta"; r.Platform = "electron" }, version: "1.2.0", rule: RuleDefault},
		{name: "major blocked", mod: func(a *App) { prodCh(a).Bundle = "2.0.0"; prodCh(a).DisableAutoUpdate = DisableMajor }, code: CodeToMajor, kind: KindBlocked},
		{name: "major allowed when native is 2.x", mod: func(a *App) { prodCh(a).Bundle = "2.0.0"; prodCh(a).DisableAutoUpdate = DisableMajor }, req: func(r *Request) { r.VersionBuild = "2.0.0" }, version: "2.0.0"},
		{name: "minor blocked", mod: func(a *App) { prodCh(a).DisableAutoUpdate = DisableMinor }, code: CodeToMinor, kind: KindBlocked},
		{name: "minor same", mod: func(a *App) { prodCh(a).DisableAutoUpdate = DisableMinor }, req: func(r *Request) { r.VersionBuild = "1.2" }, version: "1.2.0"},
		{name: "patch blocked", mod: func(a *App) { prodCh(a).DisableAutoUpdate = DisablePatch }, req: func(r *Request) { r.VersionBuild = "1.2.1" }, code: CodeToPatch, kind: KindBlocked},
		{name: "metadata blocked", mod: func(a *App) { prodCh(a).DisableAutoUpdate = DisableMetadata }, code: CodeToMetadata, kind: KindBlocked},
		{name: "metadata allowed", mod: func(a *App) { prodCh(a).DisableAutoUpdate = DisableMetadata }, req: func(r *Request) { r.VersionBuild = "1.1.0" }, version: "1.2.0"},
		{name: "metadata misconfigured", mod: func(a *App) { prodCh(a).DisableAutoUpdate = DisableMetadata; a.Bundles[1].MinUpdateVersion = "" }, code: CodeMisconfiguredChannel, kind: KindFailed},
		{name: "under native", mod: func(a *App) { prodCh(a).DisableAutoUpdateUnderNative = true }, req: func(r *Request) { r.VersionBuild = "1.5.0" }, code: CodeUnderNative, kind: KindBlocked},
		{name: "ios disabled via self-assign", mod: func(a *App) { a.Channels[1].IOS = false; prodCh(a).IOS = false }, req: func(r *Request) { r.Platform = "android"; r.DefaultChannel = "beta" }, version: "1.3.0-beta.1"},
		{name: "prod disabled", mod: func(a *App) { prodCh(a).AllowProd = false }, code: CodeProdBuild, kind: KindBlocked},
		{name: "dev disabled", mod: func(a *App) { prodCh(a).AllowDev = false }, req: func(r *Request) { r.IsProd = false }, code: CodeDevBuild, kind: KindBlocked},
		{name: "device disabled", mod: func(a *App) { prodCh(a).AllowDevice = false }, code: CodeDevice, kind: KindBlocked},
		{name: "emulator disabled", mod: func(a *App) { prodCh(a).AllowEmulator = false }, req: func(r *Request) { r.IsEmulator = true }, code: CodeEmulator, kind: KindBlocked},
		{name: "guard order: major before prod", mod: func(a *App) {
			prodCh(a).Bundle = "2.0.0"
			prodCh(a).DisableAutoUpdate = DisableMajor
			prodCh(a).AllowProd = false
		}, code: CodeToMajor, kind: KindBlocked},
		{name: "already current wins over guards", mod: func(a *App) { prodCh(a).AllowProd = false }, req: func(r *Request) { r.VersionName = "1.2.0" }, code: CodeNoNewVersion, kind: KindUpToDate},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := testSnapshot(t, c.mod)
			r := baseReq()
			if c.req != nil {
				c.req(&r)
			}
			if err := r.Validate(); err != nil {
				t.Fatalf("validate: %v", err)
			}
			d := Resolve(s, &r)
			if d.Code != c.code || d.Kind != c.kind {
				t.Fatalf("code=%q kind=%q msg=%q; want %q %q", d.Code, d.Kind, d.Message, c.code, c.kind)
			}
			if c.version != "" && (d.Bundle == nil || d.Bundle.Version != c.version) {
				t.Fatalf("bundle = %+v, want %s", d.Bundle, c.version)
			}
			if c.code != "" && d.Bundle != nil {
				t.Fatalf("refusal carries a bundle")
			}
			if c.rule != "" && d.Rule != c.rule {
				t.Fatalf("rule = %q, want %q", d.Rule, c.rule)
			}
		})
	}
}

func TestPrivateChannel(t *testing.T) {
	// A private channel reached as a default (public flag later cleared in a
	// hand-built snapshot) is refused with Capgo's private-channel code.
	s := testSnapshot(t, nil)
	ch := s.App("com.example.app").Channel("production")
	ch.Public = false
	r := baseReq()
	r.Validate()
	d := guard(ch, s.App("com.example.app").Bundle("1.2.0"), &r, false)
	if d.Code != CodePrivateChannel || !strings.Contains(d.Message, `"production"`) {
		t.Fatalf("%+v", d)
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(r *Request)
		code string
		path string
	}{
		{"ok", func(r *Request) {}, "", ""},
		{"no device", func(r *Request) { r.DeviceID = "" }, CodeMissingDeviceID, ""},
		{"no app", func(r *Request) { r.AppID = "" }, CodeMissingAppID, ""},
		{"bad semver", func(r *Request) { r.VersionBuild = "one.two" }, CodeSemver, ""},
		{"builtin build ok", func(r *Request) { r.VersionBuild = "builtin" }, "", ""},
		{"bad app id", func(r *Request) { r.AppID = "noreverse" }, CodeInvalidBody, "app_id"},
		{"bad device", func(r *Request) { r.DeviceID = "not-a-uuid" }, CodeInvalidBody, "device_id"},
		{"long device", func(r *Request) { r.DeviceID = strings.Repeat("a", 37) }, CodeInvalidBody, "device_id"},
		{"bad platform", func(r *Request) { r.Platform = "windows" }, CodeInvalidBody, "platform"},
		{"no platform", func(r *Request) { r.Platform = "" }, CodeInvalidBody, "platform"},
		{"no version name", func(r *Request) { r.VersionName = "" }, CodeInvalidBody, "version_name"},
		{"bad plugin", func(r *Request) { r.PluginVersion = "x" }, CodeInvalidBody, "plugin_version"},
		{"long key id", func(r *Request) { r.KeyID = strings.Repeat("k", 21) }, CodeInvalidBody, "key_id"},
	}
	for _, c := range cases {
		r := baseReq()
		c.mod(&r)
		err := r.Validate()
		got, path := "", ""
		if err != nil {
			got = err.Code
			if len(err.Issues) > 0 {
				path = err.Issues[0].Path
			}
		}
		if got != c.code || path != c.path {
			t.Errorf("%s: got %q %q, want %q %q (%v)", c.name, got, path, c.code, c.path, err)
		}
	}
}

func TestValidAppID(t *testing.T) {
	for id, want := range map[string]bool{
		"com.example.app": true, "ee.forgr.capacitor_go": true, "a.b": true, "1.x-y": true,
		"": false, "com": false, "com.": false, ".com": false, "com..app": false, "_a.b": false, "com.ex ample": false,
	} {
		if ValidAppID(id) != want {
			t.Errorf("ValidAppID(%q) != %v", id, want)
		}
	}
}

func BenchmarkResolve(b *testing.B) {
	s := testSnapshot(b, nil)
	r := baseReq()
	r.Validate()
	b.ReportAllocs()
	for b.Loop() {
		rr := r
		if d := Resolve(s, &rr); !d.OK() {
			b.Fatal(d.Code)
		}
	}
}
