package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// Capgo parity of the edge's device API. Sources are Cap-go/capgo at
// 4bc7d83f (handlers under supabase/functions/_backend/plugin_runtime/,
// tests under tests/) and Cap-go/capacitor-updater at e235d092.

// Capgo plugin_validation.ts:314-326 (updateRequestSchema) and
// plugin_schemas/update_request.is.ts do not validate custom_id: a device
// whose custom_id is longer than 36 characters still gets its update.
func TestUpdatesLongCustomID(t *testing.T) {
	e := newCoreEdge(t, testSnapshot(t, 1, fakeSHA("bundle")))
	for _, n := range []int{37, 64, 300} {
		out := routeReq(e, "POST", "/updates", body(t, map[string]any{"custom_id": strings.Repeat("x", n)}), nil)
		if out.status != 200 || !bytes.HasPrefix(out.body, []byte(`{"version":"1.1.0"`)) {
			t.Fatalf("custom_id of %d characters: HTTP %d %s", n, out.status, out.body)
		}
	}
}

// /stats keeps Capgo's cap: plugin_validation.ts:263-274
// (validateOptionalStringMaxLength(input, 'custom_id', 36)) and
// stats_request.is.ts; "String must contain at most 36 character(s)".
func TestStatsCustomIDCap(t *testing.T) {
	e := statsEdge(t, &memSink{}, nil)
	out := routeReq(e, "POST", "/stats", []byte(statsEv(t, map[string]any{"custom_id": strings.Repeat("x", 37)})), nil)
	if want := issueBody("custom_id", "String must contain at most 36 character(s)"); out.status != 400 || string(out.body) != want {
		t.Fatalf("HTTP %d %s, want 400 %s", out.status, out.body, want)
	}
	if out := routeReq(e, "POST", "/stats", []byte(statsEv(t, map[string]any{"custom_id": strings.Repeat("x", 36)})), nil); out.status != 200 {
		t.Fatalf("36 characters: HTTP %d %s", out.status, out.body)
	}
}

// builtinSnapshot is testSnapshot whose production channel targets the
// store build (Capgo: channels.version NULL).
func builtinSnapshot(t testing.TB, rev int64) *snapshot.Snapshot {
	t.Helper()
	s := testSnapshot(t, rev, fakeSHA("bundle"))
	s.Apps[0].Channels[0].Bundle = snapshot.BuiltinVersion
	if err := s.Index(nil); err != nil {
		t.Fatal(err)
	}
	return s
}

// A channel pointing at the store build. Capgo update.ts:639-651 and
// tests/updates.test.ts:434 ("keeps native channel targets addressable
// without app_versions placeholders": plugin 7.0.0, version_name 1.1.0 →
// 200, version "builtin"). Deliberately, a plugin ≥ 6.2.0 gets the bare
// {"version":"builtin"} (what capgo d65de2027 answered): the unmodified
// plugin resets to the store build only on that shape — Android
// CapacitorUpdaterPlugin.java backgroundDownload returns on any "error" or
// "kind" before its `"builtin".equals(latestVersionName)` branch, iOS
// CapacitorUpdaterPlugin.swift likewise. The other answers are Capgo's
// bytes (update.ts:639-651: the plugin version first, then
// already_on_builtin with "version":"builtin", the branch Capgo reaches).
// A device on the store build sends version_name "builtin", which Capgo
// replaces by its version_build before resolving (plugin_parser.ts:77-78):
// update.ts:471's "version_name === version.name" never matches the
// channel's 'builtin', and :640's body.version_name === 'builtin' is never
// true either.
func TestUpdatesBuiltinChannel(t *testing.T) {
	e := newCoreEdge(t, builtinSnapshot(t, 1))
	cases := []struct {
		name string
		set  map[string]any
		want string
	}{
		{"capgo updates.test.ts:434", map[string]any{"plugin_version": "7.0.0", "version_name": "1.1.0"}, `{"version":"builtin"}`},
		{"current plugin", nil, `{"version":"builtin"}`},
		{"plugin 6.2.0", map[string]any{"plugin_version": "6.2.0"}, `{"version":"builtin"}`},
		{"already on the store build", map[string]any{"version_name": "builtin"},
			`{"error":"already_on_builtin","message":"Already on builtin","version":"builtin","kind":"up_to_date"}`},
		{"old plugin already on the store build", map[string]any{"version_name": "builtin", "plugin_version": "6.1.0"},
			`{"error":"revert_to_builtin_plugin_version_too_old","message":"revert_to_builtin used, but plugin version is too old","kind":"failed"}`},
		{"plugin before 6.2.0", map[string]any{"plugin_version": "6.1.0"},
			`{"error":"revert_to_builtin_plugin_version_too_old","message":"revert_to_builtin used, but plugin version is too old","kind":"failed"}`},
		{"plugin 5.x", map[string]any{"plugin_version": "5.10.0"},
			`{"error":"revert_to_builtin_plugin_version_too_old","message":"revert_to_builtin used, but plugin version is too old","kind":"failed"}`},
	}
	for _, c := range cases {
		out := routeReq(e, "POST", "/updates", body(t, c.set), nil)
		if out.status != 200 || string(out.body) != c.want {
			t.Errorf("%s: HTTP %d %s, want %s", c.name, out.status, out.body, c.want)
		}
	}
}

// key_id_mismatch, Capgo update.ts:458-467 (research: no Capgo test covers
// the answer): {"error","message","deviceKeyId","bundleKeyId","kind":"blocked"}.
func TestUpdatesKeyIDMismatch(t *testing.T) {
	s := testSnapshot(t, 1, fakeSHA("bundle"))
	s.Apps[0].Bundles[1].KeyID = "MIIBCgKCAQEAbundleKy"
	if err := s.Index(nil); err != nil {
		t.Fatal(err)
	}
	e := newCoreEdge(t, s)
	want := `{"error":"key_id_mismatch","message":"Device encryption key does not match bundle encryption key. The device may have a different public key than the one used to encrypt this bundle.","deviceKeyId":"MIIBCgKCAQEAdeviceKy","bundleKeyId":"MIIBCgKCAQEAbundleKy","kind":"blocked"}`
	for _, name := range []string{"1.0.0", "1.1.0"} { // also when already on the bundle
		out := routeReq(e, "POST", "/updates", body(t, map[string]any{"key_id": "MIIBCgKCAQEAdeviceKy", "version_name": name}), nil)
		if out.status != 200 || string(out.body) != want {
			t.Fatalf("on %s: HTTP %d %s\nwant %s", name, out.status, out.body, want)
		}
	}
	out := routeReq(e, "POST", "/updates", body(t, map[string]any{"key_id": "MIIBCgKCAQEAdeviceKy", "plugin_version": "8.40.7"}), nil)
	if !bytes.HasPrefix(out.body, []byte(`{"version":"1.1.0"`)) {
		t.Fatalf("plugin 8.40.7 is exempt: %s", out.body)
	}
}

// link and comment, Capgo update.ts:213-225 and :413;
// tests/expose-metadata.test.ts:180/200/220/240 (x.35.0 with
// expose_metadata: both), :260 (x.34.9: neither), :320/:340
// (expose_metadata off: neither), :360 (empty fields: keys absent), :428
// (link only), :472 (comment only); update-response-shaping.unit.test.ts:38-44
// (8.35.0-beta.1 gets none).
func TestUpdatesLinkComment(t *testing.T) {
	mk := func(expose bool, link, comment string) *Edge {
		s := testSnapshot(t, 1, fakeSHA("bundle"))
		s.Apps[0].ExposeMetadata = expose
		s.Apps[0].Bundles[1].Link, s.Apps[0].Bundles[1].Comment = link, comment
		if err := s.Index(nil); err != nil {
			t.Fatal(err)
		}
		return newCoreEdge(t, s)
	}
	const link, comment = "https://example.com/release-notes", "This is a test release with new features"
	both := `,"link":"` + link + `","comment":"` + comment + `"}`
	cases := []struct {
		name          string
		expose        bool
		link, comment string
		plugin        string
		tail          string // how the answer ends
	}{
		{"5.35.0", true, link, comment, "5.35.0", both},
		{"6.35.0", true, link, comment, "6.35.0", both},
		{"7.35.0", true, link, comment, "7.35.0", both},
		{"8.35.0", true, link, comment, "8.35.0", both},
		{"9.0.0", true, link, comment, "9.0.0", both},
		{"5.34.9", true, link, comment, "5.34.9", `"}`},
		{"6.34.9", true, link, comment, "6.34.9", `"}`},
		{"7.34.9", true, link, comment, "7.34.9", `"}`},
		{"8.34.9", true, link, comment, "8.34.9", `"}`},
		{"8.35.0-beta.1", true, link, comment, "8.35.0-beta.1", `"}`},
		{"expose_metadata off", false, link, comment, "8.51.14", `"}`},
		{"empty fields", true, "", "", "8.51.14", `"}`},
		{"link only", true, link, "", "8.51.14", `,"link":"` + link + `"}`},
		{"comment only", true, "", comment, "8.51.14", `,"comment":"` + comment + `"}`},
	}
	for _, c := range cases {
		e := mk(c.expose, c.link, c.comment)
		out := routeReq(e, "POST", "/updates", body(t, map[string]any{"plugin_version": c.plugin}), nil)
		if out.status != 200 || !bytes.HasPrefix(out.body, []byte(`{"version":"1.1.0"`)) || !bytes.HasSuffix(out.body, []byte(c.tail)) {
			t.Errorf("%s: %s, want it to end with %s", c.name, out.body, c.tail)
		}
		if c.tail == `"}` && (bytes.Contains(out.body, []byte(`"link"`)) || bytes.Contains(out.body, []byte(`"comment"`))) {
			t.Errorf("%s: %s has link or comment", c.name, out.body)
		}
	}
}

// /updates/manifest_size validates its body as an update check first:
// Capgo updates.ts:43-66 (parsePluginBody with updateRequestSchema), so
// missing_device_id, missing_app_id, semver_error and invalid_json_body are
// /updates' (plugin_parser.ts:56-85).
func TestManifestSizeValidation(t *testing.T) {
	e := newCoreEdge(t, testSnapshot(t, 1, fakeSHA("bundle")))
	manifest := map[string]any{"manifest": []map[string]string{{"file_name": "a", "file_hash": "h", "download_url": "http://x/f/y"}}}
	with := func(set map[string]any) []byte {
		m := map[string]any{}
		for k, v := range manifest {
			m[k] = v
		}
		for k, v := range set {
			m[k] = v
		}
		return body(t, m)
	}
	cases := []struct {
		name   string
		body   []byte
		status int
		want   string
	}{
		{"missing device_id", with(map[string]any{"device_id": nil}), 400, `{"error":"missing_device_id","message":"Cannot find device_id","moreInfo":{}}`},
		{"missing app_id", with(map[string]any{"app_id": nil}), 400, `{"error":"missing_app_id","message":"Cannot find app_id","moreInfo":{}}`},
		{"bad semver", with(map[string]any{"version_build": "1.0.0.0"}), 400, `{"error":"semver_error","message":"` + semverMsg + `","moreInfo":{"version_build":"1.0.0.0"}}`},
		{"bad platform", with(map[string]any{"platform": "windows"}), 400,
			`{"error":"invalid_json_body","message":"Cannot parse body","moreInfo":{"issues":[{"path":["platform"],"message":"Platform is not supported or invalid"}]}}`},
		{"empty object", []byte(`{}`), 400, `{"error":"invalid_json_body","message":"Cannot parse body","moreInfo":{"issues":[{"path":["app_id"],"message":"App ID is required"}]}}`},
		{"not JSON", []byte(`{`), 400, `{"error":"invalid_json_parse_body","message":"Invalid JSON body","moreInfo":{}}`},
		{"valid", with(nil), 200, `{"totalSize":0,"knownFiles":0,"unknownFiles":1,"files":[{"file_name":"a","file_hash":"h","download_url":"http://x/f/y","error":"size_unknown"}]}`},
	}
	for _, c := range cases {
		out := routeReq(e, "POST", "/updates/manifest_size", c.body, nil)
		if out.status != c.status || string(out.body) != c.want {
			t.Errorf("%s: HTTP %d %s\nwant %d %s", c.name, out.status, out.body, c.status, c.want)
		}
	}
}

// allow_device_custom_id = false: Capgo stats.ts:97-104, 125-127 and
// tests/stats.test.ts:407 ("should ignore custom_id when app disables
// allow_device_custom_id"): 200 {"status":"ok"}, the device's custom_id is
// stored empty — never an error; segment rules do not see it either.
func TestStatsIgnoreCustomID(t *testing.T) {
	sink := &memSink{}
	e := statsEdge(t, sink, nil)
	s := statsSnapshot(t)
	s.Rev = 2
	s.Apps[0].IgnoreCustomID = true
	if err := s.Index(nil); err != nil {
		t.Fatal(err)
	}
	e.SetSnapshot(s)
	out := routeReq(e, "POST", "/stats", []byte(statsEv(t, map[string]any{"custom_id": "beta-42"})), nil)
	if out.status != 200 || string(out.body) != `{"status":"ok"}` {
		t.Fatalf("HTTP %d %s", out.status, out.body)
	}
	flushStats(t, e)
	got := sunkEvents(t, sink)
	if len(got) != 1 || got[0].CustomID != "" || got[0].Segment != "default" {
		t.Fatalf("events %+v: want one with an empty custom id, placed by the default rule (not segment beta)", got)
	}
}

// Legacy download_fail before the version lookup: Capgo stats.ts:68-82,
// 142-150 and tests/stats.test.ts:629 ("filters legacy download_fail before
// saved stats and logs"): every row answers 200 {"status":"ok"}; the row
// "7.16.9, bundle does not exist" is not recorded and not version_not_found;
// a plugin_version that does not parse (or none) is legacy too.
func TestStatsLegacyDownloadFailUnknownVersion(t *testing.T) {
	sink := &memSink{}
	e := statsEdge(t, sink, nil)
	cases := []struct {
		name string
		set  map[string]any
	}{
		{"7.16.9, bundle does not exist", map[string]any{"plugin_version": "7.16.9", "version_name": "9.9.9"}},
		{"not-a-version", map[string]any{"plugin_version": "not-a-version"}},
		{"no plugin_version", map[string]any{"plugin_version": nil}},
	}
	for _, c := range cases {
		c.set["action"] = "download_fail"
		out := routeReq(e, "POST", "/stats", []byte(statsEv(t, c.set)), nil)
		if out.status != 200 || string(out.body) != `{"status":"ok"}` {
			t.Errorf("%s: HTTP %d %s, want 200 {\"status\":\"ok\"}", c.name, out.status, out.body)
		}
	}
	// A recorded download_fail (7.17.0) of an unknown version is refused.
	out := routeReq(e, "POST", "/stats", []byte(statsEv(t, map[string]any{"plugin_version": "7.17.0", "version_name": "9.9.9", "action": "download_fail"})), nil)
	if !bytes.Contains(out.body, []byte(`"error":"version_not_found"`)) {
		t.Errorf("7.17.0 unknown version: %s", out.body)
	}
	flushStats(t, e)
	if got := sunkEvents(t, sink); len(got) != 0 {
		t.Fatalf("%d events recorded, want none: %+v", len(got), got)
	}
}

// --- /channel_self -------------------------------------------------------

// capgoSeed is the app of Capgo's supabase/seed.sql (reset_and_seed_app_data,
// :931-1093) as a snapshot: production (1.0.0, public, android+electron),
// beta (1.361.0, private, all platforms), development (1.359.0, public, iOS),
// no_access (1.361.0, private, no platform), electron_only (1.360.0,
// private); all allow self-assignment (the tests turn it off where they
// need to), with the device overrides given.
func capgoSeed(t testing.TB, rev int64, overrides map[string]string, mod func(a *snapshot.App)) *snapshot.Snapshot {
	t.Helper()
	ch := func(id int64, name, bundle string, public, ios, android, electron bool) *snapshot.Channel {
		return &snapshot.Channel{ID: id, Name: name, Bundle: bundle, Public: public, IOS: ios, Android: android, Electron: electron,
			AllowDeviceSelfSet: true, AllowEmulator: true, AllowDev: true, AllowProd: true, AllowDevice: true,
			DisableAutoUpdate: snapshot.DisableMajor, DisableAutoUpdateUnderNative: true}
	}
	a := &snapshot.App{ID: testAppID,
		Bundles: []*snapshot.Bundle{{Version: "1.0.0", SHA256: fakeSHA("1.0.0")}, {Version: "1.359.0", SHA256: fakeSHA("1.359.0")},
			{Version: "1.360.0", SHA256: fakeSHA("1.360.0")}, {Version: "1.361.0", SHA256: fakeSHA("1.361.0")}},
		Channels: []*snapshot.Channel{ch(1, "production", "1.0.0", true, false, true, true), ch(2, "beta", "1.361.0", false, true, true, true),
			ch(3, "development", "1.359.0", true, true, false, false), ch(4, "no_access", "1.361.0", false, false, false, false),
			ch(5, "electron_only", "1.360.0", false, false, false, true)},
	}
	if mod != nil {
		mod(a)
	}
	var src snapshot.ShardSource
	if len(overrides) > 0 {
		entries := map[[16]byte]string{}
		for d, c := range overrides {
			u, ok := snapshot.ParseDeviceID(d)
			if !ok {
				t.Fatalf("bad device %q", d)
			}
			entries[u] = c
		}
		var shards snapshot.MapShards
		a.OverrideShards, shards, _ = snapshot.ShardOverrides(entries)
		src = shards
	}
	s := &snapshot.Snapshot{Format: snapshot.FormatVersion, Rev: rev, Apps: []*snapshot.App{a}}
	if err := s.Index(src); err != nil {
		t.Fatal(err)
	}
	return s
}

// fakeOrigin is a DeviceChannels stub for the edge's unit tests: it accepts
// every change (refusals are injected through fail), records it, and
// publishes the next snapshot to the edge a little later (asynchronously,
// as a real origin would), so that answers must wait for it. The origin's
// own rules are tested on the real store (origin/store) and end to end
// through real edges and origin (cmd/updraft TestLegacySetChannelThroughEdges).
type fakeOrigin struct {
	t    testing.TB
	mu   sync.Mutex
	e    *Edge
	rev  int64
	mod  func(a *snapshot.App)
	pins map[string]string
	fail error
	// calls records each change as "device=channel".
	calls []string
}

func newFakeOrigin(t testing.TB, e *Edge, pins map[string]string, mod func(a *snapshot.App)) *fakeOrigin {
	if pins == nil {
		pins = map[string]string{}
	}
	f := &fakeOrigin{t: t, e: e, rev: 1, pins: pins, mod: mod}
	e.SetSnapshot(capgoSeed(t, 1, pins, mod))
	e.SetDeviceChannels(f)
	return f
}

func (f *fakeOrigin) SetDeviceChannel(ctx context.Context, appID, deviceID, channel string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return 0, f.fail
	}
	f.calls = append(f.calls, deviceID+"="+channel)
	if channel == "" {
		delete(f.pins, deviceID)
	} else {
		f.pins[deviceID] = channel
	}
	f.rev++
	s := capgoSeed(f.t, f.rev, f.pins, f.mod)
	go func() { time.Sleep(30 * time.Millisecond); f.e.SetSnapshot(s) }()
	return f.rev, nil
}

func (f *fakeOrigin) pinned(dev string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.pins[dev]
	return c, ok
}

// baseData is Capgo's getBaseData (tests/test-utils.ts:537-555): a legacy
// 7.0.0 plugin on android asking with channel "production".
const baseData = `{"channel":"production","platform":"android","device_id":"00009a6b-eefe-490a-9c60-8e965132ae51",` +
	`"app_id":"com.example.app","custom_id":"","version_build":"1.0.0","version_code":"1","version_os":"13",` +
	`"version_name":"1.0.0","plugin_version":"7.0.0","is_emulator":false,"is_prod":true}`

func base(t testing.TB, set map[string]any) []byte { return withKeys(t, baseData, set) }

// baseQuery is baseData as the query string Capgo's DELETE tests send
// (channel_self.test.ts:27-41 fetchEndpoint appends every field).
func baseQuery(set map[string]string) url.Values {
	q := url.Values{"channel": {"production"}, "platform": {"android"}, "device_id": {testDeviceID}, "app_id": {testAppID},
		"custom_id": {""}, "version_build": {"1.0.0"}, "version_code": {"1"}, "version_os": {"13"}, "version_name": {"1.0.0"},
		"plugin_version": {"7.0.0"}, "is_emulator": {"false"}, "is_prod": {"true"}}
	for k, v := range set {
		if v == "-" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
	}
	return q
}

// routeQuery calls the router with a query string and no body.
func routeQuery(e *Edge, method string, q url.Values) *reply {
	out := &reply{}
	r := request{ctx: context.Background(), method: method, path: "/channel_self", host: "edge.test", proto: "h1",
		header: httpHeaders{http.Header{}}, query: urlQuery{q}}
	e.route(&r, out)
	return out
}

type exchange struct {
	name   string
	method string
	body   []byte     // POST, PUT
	query  url.Values // DELETE, GET
	status int
	want   string
}

func (x exchange) run(t *testing.T, e *Edge) {
	t.Helper()
	var out *reply
	if x.query != nil || x.method == "DELETE" || x.method == "GET" {
		out = routeQuery(e, x.method, x.query)
	} else {
		out = routeReq(e, x.method, "/channel_self", x.body, nil)
	}
	if out.status != x.status || string(out.body) != x.want {
		t.Errorf("%s: HTTP %d %s\nwant HTTP %d %s", x.name, out.status, out.body, x.status, x.want)
	}
}

const (
	semverChannelSelf = `{"error":"semver_error","message":"Native version: invalid semver doesn't follow semver convention, please check https://capgo.app/semver_tester/ to learn more about semver usage in Capgo","moreInfo":{"version_build":"invalid semver"}}`
	missingDevice     = `{"error":"missing_device_id","message":"Cannot find device_id","moreInfo":{}}`
	missingApp        = `{"error":"missing_app_id","message":"Cannot find app_id","moreInfo":{}}`
	cannotOverride    = `{"error":"cannot_override","message":"Cannot change device override current channel don't allow it"}`
	ok                = `{"status":"ok"}`
)

// Validation, channel_self.test.ts "invalids /channel_self tests" (:76-251)
// and "[GET] /channel_self tests" (:253-294): Capgo's parsePluginBody order
// (plugin_parser.ts:56-85) for bodies and, for DELETE and GET, for the
// query string (convertQueryToBody, plugin_parser.ts:87-113).
func TestChannelSelfValidation(t *testing.T) {
	e := newCoreEdge(t, nil)
	newFakeOrigin(t, e, nil, nil)
	bad := map[string]any{"version_build": "invalid semver"}
	for _, x := range []exchange{
		{name: ":77 [POST] invalid json", method: "POST", body: []byte(`invalid json ;-)`), status: 400, want: `{"error":"invalid_json_parse_body","message":"Invalid JSON body","moreInfo":{}}`},
		{name: ":90 [POST] empty json", method: "POST", body: []byte(`{}`), status: 400, want: `{"error":"invalid_json_body","message":"Cannot parse body","moreInfo":{}}`},
		{name: ":98 [POST] invalid semver", method: "POST", body: base(t, bad), status: 400, want: semverChannelSelf},
		{name: ":108 [POST] without device_id", method: "POST", body: base(t, map[string]any{"device_id": nil}), status: 400, want: missingDevice},
		{name: ":119 [POST] without app_id", method: "POST", body: base(t, map[string]any{"app_id": nil}), status: 400, want: missingApp},
		{name: ":175 [PUT] invalid semver", method: "PUT", body: base(t, bad), status: 400, want: semverChannelSelf},
		{name: ":185 [PUT] without device_id", method: "PUT", body: base(t, map[string]any{"device_id": nil}), status: 400, want: missingDevice},
		{name: ":196 [PUT] without app_id", method: "PUT", body: base(t, map[string]any{"app_id": nil}), status: 400, want: missingApp},
		{name: ":220 [DELETE] invalid semver", method: "DELETE", query: baseQuery(map[string]string{"version_build": "invalid semver"}), status: 400, want: semverChannelSelf},
		{name: ":230 [DELETE] without device_id", method: "DELETE", query: baseQuery(map[string]string{"device_id": "-"}), status: 400, want: missingDevice},
		{name: ":241 [DELETE] without app_id", method: "DELETE", query: baseQuery(map[string]string{"app_id": "-"}), status: 400, want: missingApp},
		{name: "[DELETE] no query", method: "DELETE", query: url.Values{}, status: 400, want: `{"error":"invalid_query_parameters","message":"Cannot parse body","moreInfo":{}}`},
		{name: "[DELETE] bad platform", method: "DELETE", query: baseQuery(map[string]string{"platform": "windows"}), status: 400,
			want: `{"error":"invalid_query_parameters","message":"Cannot parse body","moreInfo":{"issues":[{"path":["platform"],"message":"Platform is not supported or invalid"}]}}`},
		{name: ":254 [GET] without query params", method: "GET", query: url.Values{}, status: 400, want: `{"error":"invalid_query_parameters","message":"Cannot parse body","moreInfo":{}}`},
		{name: ":264 [GET] invalid app_id format", method: "GET", query: url.Values{"app_id": {"invalid-app-id"}, "platform": {"ios"}, "is_emulator": {"false"}, "is_prod": {"true"}}, status: 400,
			want: `{"error":"invalid_query_parameters","message":"Cannot parse body","moreInfo":{"issues":[{"path":["app_id"],"message":"App ID must be a reverse domain string"}]}}`},
		{name: ":274 [GET] missing app_id", method: "GET", query: url.Values{"platform": {"ios"}, "is_emulator": {"false"}, "is_prod": {"true"}}, status: 400, want: missingApp},
		{name: ":284 [GET] invalid platform", method: "GET", query: url.Values{"app_id": {testAppID}, "platform": {"windows"}, "is_emulator": {"false"}, "is_prod": {"true"}}, status: 400,
			want: `{"error":"invalid_query_parameters","message":"Cannot parse body","moreInfo":{"issues":[{"path":["platform"],"message":"Platform is not supported or invalid"}]}}`},
		{name: ":327 [GET] android", method: "GET", query: url.Values{"app_id": {testAppID}, "platform": {"android"}, "is_emulator": {"false"}, "is_prod": {"true"}}, status: 200,
			want: `[{"id":1,"name":"production","public":true,"allow_self_set":true},{"id":2,"name":"beta","public":false,"allow_self_set":true}]`},
	} {
		x.run(t, e)
	}
}

// POST /channel_self (setChannel), Capgo channel_self.ts:285-415.
// Case names ":NNN" are lines of Cap-go/capgo tests/channel_self.test.ts at
// 4bc7d83f (e.g. :648 "[POST] /channel_self creates new channel_device
// with owner_org", :1163 "should validate and return success without
// storing in channel_devices for new plugin versions").
func TestChannelSelfSet(t *testing.T) {
	const other = "11111111-2222-4333-8444-555555555555"
	t.Run("new plugins are validated only", func(t *testing.T) {
		e := newCoreEdge(t, nil)
		f := newFakeOrigin(t, e, nil, func(a *snapshot.App) { a.Channels[0].AllowDeviceSelfSet = false })
		for _, x := range []exchange{
			// channel_self.test.ts:1163: 7.34.0 → {status ok, allowSet true}, nothing stored.
			{name: ":1163 new plugin", method: "POST", body: base(t, map[string]any{"plugin_version": "7.34.0", "channel": "beta"}), status: 200, want: `{"status":"ok","allowSet":true}`},
			{name: "8.x", method: "POST", body: base(t, map[string]any{"plugin_version": "8.0.0", "channel": "beta"}), status: 200, want: `{"status":"ok","allowSet":true}`},
			{name: "no plugin_version", method: "POST", body: base(t, map[string]any{"plugin_version": nil, "channel": "beta"}), status: 200, want: `{"status":"ok","allowSet":true}`},
			// :1189: production with self-set off.
			{name: ":1189 public channel without self-set", method: "POST", body: base(t, map[string]any{"plugin_version": "7.34.0"}), status: 200,
				want: `{"error":"public_channel_self_set_not_allowed","message":"This channel is public and does not allow device self-assignment. Unset the channel and the device will automatically use the public channel.","channel":"production","app_id":"com.example.app"}`},
			// :130 and :141.
			{name: ":130 without channel", method: "POST", body: base(t, map[string]any{"channel": nil}), status: 200, want: `{"error":"missing_channel","message":"Cannot find channel in body"}`},
			{name: ":141 unknown channel", method: "POST", body: base(t, map[string]any{"channel": "unexisting_channel"}), status: 200,
				want: `{"error":"channel_not_found","message":"Cannot find channel","channel":"unexisting_channel","app_id":"com.example.app"}`},
		} {
			x.run(t, e)
		}
		if len(f.calls) != 0 {
			t.Fatalf("stored %v for new plugins", f.calls)
		}
	})
	t.Run("legacy plugins store an override", func(t *testing.T) {
		e := newCoreEdge(t, nil)
		f := newFakeOrigin(t, e, map[string]string{other: "no_access"}, nil)
		// :637 "[POST] with a version that does not exist": legacy 7.0.0,
		// channel production (the main channel), nothing pinned → ok, nothing written.
		exchange{name: ":637", method: "POST", body: base(t, map[string]any{"version_name": "1.0.350"}), status: 200, want: ok}.run(t, e)
		if len(f.calls) != 0 {
			t.Fatalf(":637 wrote %v", f.calls)
		}
		// :648 "creates new channel_device": legacy, beta → {"status":"ok"}, stored.
		exchange{name: ":648", method: "POST", body: base(t, map[string]any{"channel": "beta"}), status: 200, want: ok}.run(t, e)
		if c, _ := f.pinned(testDeviceID); c != "beta" {
			t.Fatalf(":648: pinned to %q, want beta", c)
		}
		// The answer came once this edge serves the change: its next
		// /updates (here the resolver) sees the override.
		if ch := e.Snapshot().App(testAppID).Override(testDeviceID); ch == nil || ch.Name != "beta" {
			t.Fatalf("the edge answered before its snapshot held the override (%v)", ch)
		}
		// Already pinned there: ok, nothing written (channel_self.ts:382-387).
		exchange{name: "already set", method: "POST", body: base(t, map[string]any{"channel": "beta"}), status: 200, want: ok}.run(t, e)
		if len(f.calls) != 1 {
			t.Fatalf("calls %v", f.calls)
		}
		// :717 "with default channel": an override to no_access, then
		// production (the main channel) → ok and the override is removed.
		exchange{name: ":717", method: "POST", body: base(t, map[string]any{"device_id": other}), status: 200, want: ok}.run(t, e)
		if _, pinned := f.pinned(other); pinned || e.Snapshot().App(testAppID).Override(other) != nil {
			t.Fatalf(":717: override still there")
		}
		// :1218 old then new: a new plugin's POST leaves the stored row alone.
		exchange{name: ":1218", method: "POST", body: base(t, map[string]any{"plugin_version": "7.34.0", "channel": "development"}), status: 200, want: `{"status":"ok","allowSet":true}`}.run(t, e)
		if c, _ := f.pinned(testDeviceID); c != "beta" {
			t.Fatalf(":1218: pinned to %q, want beta untouched", c)
		}
		// An unparsable plugin_version is legacy (channel_self.ts:171-179).
		exchange{name: "abc", method: "POST", body: base(t, map[string]any{"plugin_version": "abc", "channel": "electron_only"}), status: 200, want: ok}.run(t, e)
		if c, _ := f.pinned(testDeviceID); c != "electron_only" {
			t.Fatalf("plugin abc: pinned to %q", c)
		}
	})
	t.Run("legacy: override on a locked channel", func(t *testing.T) {
		// channel_self.ts:304-306: the current override's channel does not
		// allow self-assignment → cannot_override, before the channel lookup.
		e := newCoreEdge(t, nil)
		f := newFakeOrigin(t, e, map[string]string{testDeviceID: "no_access"}, func(a *snapshot.App) { a.Channels[3].AllowDeviceSelfSet = false })
		exchange{name: "locked", method: "POST", body: base(t, map[string]any{"channel": "beta"}), status: 200, want: cannotOverride}.run(t, e)
		exchange{name: "locked, unknown channel", method: "POST", body: base(t, map[string]any{"channel": "nope"}), status: 200, want: cannotOverride}.run(t, e)
		if len(f.calls) != 0 {
			t.Fatalf("calls %v", f.calls)
		}
	})
	t.Run("legacy: origin unreachable", func(t *testing.T) {
		e := newCoreEdge(t, nil)
		f := newFakeOrigin(t, e, nil, nil)
		f.fail = errors.New("connection refused")
		exchange{name: "503", method: "POST", body: base(t, map[string]any{"channel": "beta"}), status: 503,
			want: `{"error":"upstream_unavailable","message":"The channel could not be stored; retry later","moreInfo":{}}`}.run(t, e)
		f.fail = &DeviceChannelRefusal{Code: "channel_self_set_not_allowed", Message: "app x: no"}
		exchange{name: "origin refuses", method: "POST", body: base(t, map[string]any{"channel": "beta"}), status: 200,
			want: `{"error":"channel_self_set_not_allowed","message":"This channel does not allow devices to self associate"}`}.run(t, e)
		e2 := newCoreEdge(t, capgoSeed(t, 1, nil, nil)) // no DeviceChannels at all
		exchange{name: "no upstream", method: "POST", body: base(t, map[string]any{"channel": "beta"}), status: 503,
			want: `{"error":"upstream_unavailable","message":"This edge cannot store the channel of plugins before 7.34.0 (no upstream)","moreInfo":{}}`}.run(t, e2)
	})
}

// PUT /channel_self (getChannel), Capgo channel_self.ts:417-491 (put() at
// :420; the new-plugin branch :433-456). Case names ":NNN" are lines of
// Cap-go/capgo tests/channel_self.test.ts at 4bc7d83f (e.g. :843 "[PUT]
// /channel_self (with overwrite)", :1316 "should return defaultChannel when
// no channel override is set"). Deliberate difference (docs/design-notes.md):
// with no defaultChannel Capgo answers the literal "production" (:448).
func TestChannelSelfGet(t *testing.T) {
	e := newCoreEdge(t, nil)
	newFakeOrigin(t, e, map[string]string{"11111111-2222-4333-8444-555555555555": "no_access"}, nil)
	for _, x := range []exchange{
		// Current plugins.
		{name: ":1302 new, channel sent", method: "PUT", body: base(t, map[string]any{"plugin_version": "7.34.0", "defaultChannel": "production"}), status: 200,
			want: `{"channel":"production","status":"override","allowSet":true}`},
		{name: ":1316 new, defaultChannel", method: "PUT", body: base(t, map[string]any{"plugin_version": "7.34.0", "channel": nil, "defaultChannel": "beta"}), status: 200,
			want: `{"channel":"beta","status":"default"}`},
		{name: ":791 minimum fields (no plugin_version: new)", method: "PUT", body: []byte(`{"app_id":"com.example.app","device_id":"` + testDeviceID + `","version_name":"1.0.0","version_build":"1.0.0","is_emulator":false,"is_prod":true,"platform":"android"}`), status: 200,
			want: `{"channel":"production","status":"default"}`},
		{name: "new, nothing sent: the platform's default channel", method: "PUT", body: base(t, map[string]any{"plugin_version": "8.51.14", "channel": nil, "platform": "ios"}), status: 200,
			want: `{"channel":"development","status":"default"}`},
		{name: "new, no default channel for the platform: production", method: "PUT", body: base(t, map[string]any{"plugin_version": "8.51.14", "channel": nil, "platform": "electron", "app_id": testAppID}), status: 200,
			want: `{"channel":"production","status":"default"}`},
		// Legacy plugins.
		{name: ":770 (no overwrite)", method: "PUT", body: base(t, nil), status: 200, want: `{"channel":"production","status":"default"}`},
		{name: ":813 all optional fields (6.0.0, ios)", method: "PUT", body: base(t, map[string]any{"plugin_version": "6.0.0", "platform": "ios", "defaultChannel": "production", "custom_id": "test-custom-id"}), status: 200,
			want: `{"channel":"production","status":"default"}`},
		{name: ":843 (with overwrite)", method: "PUT", body: base(t, map[string]any{"device_id": "11111111-2222-4333-8444-555555555555"}), status: 200,
			want: `{"channel":"no_access","status":"override","allowSet":true}`},
		{name: ":912 defaultChannel no_access", method: "PUT", body: base(t, map[string]any{"defaultChannel": "no_access"}), status: 200, want: `{"channel":"no_access","status":"default"}`},
		{name: ":927 non-existent defaultChannel", method: "PUT", body: base(t, map[string]any{"defaultChannel": "non_existent_channel"}), status: 200,
			want: `{"error":"channel_not_found","message":"Cannot find channel"}`},
		{name: "legacy ios: first public iOS channel", method: "PUT", body: base(t, map[string]any{"platform": "ios"}), status: 200, want: `{"channel":"development","status":"default"}`},
	} {
		x.run(t, e)
	}
	// The "new, no default for electron" case above: production serves electron in the seed;
	// without any public channel for the platform the literal "production" is answered.
	e2 := newCoreEdge(t, nil)
	newFakeOrigin(t, e2, nil, func(a *snapshot.App) { a.Channels[0].Public = false })
	exchange{name: "no public channel", method: "PUT", body: base(t, map[string]any{"plugin_version": "8.51.14", "channel": nil, "platform": "android"}), status: 200,
		want: `{"channel":"production","status":"default"}`}.run(t, e2)
	exchange{name: "legacy, no public channel", method: "PUT", body: base(t, map[string]any{"platform": "android"}), status: 200,
		want: `{"error":"channel_not_found","message":"Cannot find channel"}`}.run(t, e2)
}

// DELETE /channel_self (unsetChannel), Capgo channel_self.ts:493-549.
// Case names ":NNN" are lines of Cap-go/capgo tests/channel_self.test.ts at
// 4bc7d83f (:941 "[DELETE] /channel_self (no overwrite)", :954 "(with
// overwrite)"); "channel_self_delete.test.ts:17" is
// tests/channel_devices/channel_self_delete.test.ts.
func TestChannelSelfUnset(t *testing.T) {
	const pinned, locked = "11111111-2222-4333-8444-555555555555", "22222222-2222-4333-8444-555555555555"
	e := newCoreEdge(t, nil)
	f := newFakeOrigin(t, e, map[string]string{pinned: "production", locked: "no_access"}, func(a *snapshot.App) { a.Channels[3].AllowDeviceSelfSet = false })
	for _, x := range []exchange{
		{name: ":941 (no overwrite)", method: "DELETE", query: baseQuery(nil), status: 200, want: cannotOverride},
		{name: "override on a locked channel", method: "DELETE", query: baseQuery(map[string]string{"device_id": locked}), status: 200, want: cannotOverride},
		{name: ":1333 new plugin leaves the row", method: "DELETE", query: baseQuery(map[string]string{"device_id": pinned, "plugin_version": "7.34.0"}), status: 200, want: ok},
		{name: ":1396 new plugin, no row", method: "DELETE", query: baseQuery(map[string]string{"plugin_version": "7.34.0"}), status: 200, want: ok},
		{name: "channel_self_delete.test.ts:17 no plugin_version", method: "DELETE", query: baseQuery(map[string]string{"plugin_version": "-"}), status: 200, want: ok},
	} {
		x.run(t, e)
	}
	if len(f.calls) != 0 {
		t.Fatalf("calls %v", f.calls)
	}
	// :954 (with overwrite): override to production (self-set) → ok, removed;
	// the device id is lower-cased (convertQueryToBody).
	exchange{name: ":954 (with overwrite)", method: "DELETE", query: baseQuery(map[string]string{"device_id": strings.ToUpper(pinned)}), status: 200, want: ok}.run(t, e)
	if _, still := f.pinned(pinned); still || e.Snapshot().App(testAppID).Override(pinned) != nil {
		t.Fatal(":954: override not removed (or the answer came before the edge served it)")
	}
	if _, still := f.pinned(locked); !still {
		t.Fatal("locked override removed")
	}
}

// Capgo reads /channel_self bodies as JSON whatever the Content-Type (0.1 of
// the research: tests/channel_self.test.ts:27-41 fetchEndpoint sends no
// Content-Type header, so fetch labels the body text/plain).
func TestChannelSelfAnyContentType(t *testing.T) {
	e := newCoreEdge(t, nil)
	newFakeOrigin(t, e, nil, nil)
	te := serveEdge(t, e)
	for _, ct := range []string{"", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded"} {
		for _, m := range []struct{ method, want string }{
			{"PUT", `{"channel":"production","status":"default"}`},
			{"POST", `{"status":"ok","allowSet":true}`},
		} {
			req, _ := http.NewRequest(m.method, te.base+"/channel_self", bytes.NewReader(base(t, map[string]any{"plugin_version": "8.51.14", "channel": map[bool]any{true: "beta", false: nil}[m.method == "POST"]})))
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			resp, err := te.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || b.String() != m.want {
				t.Errorf("%s with Content-Type %q: HTTP %d %s, want %s", m.method, ct, resp.StatusCode, b.String(), m.want)
			}
		}
	}
}

// A child edge's parent relays POST /v1/device-channel to its own upstream
// (like /v1/events), and HTTPDeviceChannels maps the origin's answers:
// {"rev"}, refusals (404/409 with a code), anything else an error.
func TestDeviceChannelRelay(t *testing.T) {
	var got []string
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer edge-key-0123456789" || r.URL.Path != "/v1/device-channel" {
			w.WriteHeader(401)
			return
		}
		var b bytes.Buffer
		b.ReadFrom(r.Body)
		got = append(got, b.String())
		switch {
		case strings.Contains(b.String(), `"channel":"locked"`):
			w.WriteHeader(409)
			w.Write([]byte(`{"error":"cannot_override","message":"Cannot change device override current channel don't allow it"}`))
		case strings.Contains(b.String(), `"channel":"gone"`):
			w.WriteHeader(404)
			w.Write([]byte(`{"error":"channel_not_found","message":"app com.example.app has no channel \"gone\""}`))
		case strings.Contains(b.String(), `"channel":"boom"`):
			w.WriteHeader(500)
			w.Write([]byte(`{"error":"internal_error","message":"x"}`))
		default:
			w.Write([]byte(`{"rev":42}`))
		}
	}))
	defer origin.Close()
	parent := New(config.Edge{EdgeKey: "edge-key-0123456789", MaxUpdatesBody: config.MiB}, nil, quiet)
	parent.SetDeviceChannels(NewHTTPDeviceChannels(origin.URL, "edge-key-0123456789"))
	te := serveEdge(t, parent)
	child := NewHTTPDeviceChannels(te.base, "edge-key-0123456789")
	ctx := context.Background()
	if rev, err := child.SetDeviceChannel(ctx, testAppID, testDeviceID, "beta"); err != nil || rev != 42 {
		t.Fatalf("relayed set: rev %d, %v", rev, err)
	}
	var ref *DeviceChannelRefusal
	if _, err := child.SetDeviceChannel(ctx, testAppID, testDeviceID, "locked"); !errors.As(err, &ref) || ref.Code != "cannot_override" {
		t.Fatalf("relayed refusal: %v", err)
	}
	if _, err := child.SetDeviceChannel(ctx, testAppID, testDeviceID, "gone"); !errors.As(err, &ref) || ref.Code != "channel_not_found" {
		t.Fatalf("relayed 404 refusal: %v", err)
	}
	if _, err := child.SetDeviceChannel(ctx, testAppID, testDeviceID, "boom"); err == nil || errors.As(err, &ref) {
		t.Fatalf("origin failure: %v, want a plain error", err)
	}
	if len(got) != 4 || got[0] != `{"app_id":"com.example.app","channel":"beta","device_id":"`+testDeviceID+`"}` {
		t.Fatalf("origin got %q", got)
	}
	// Without the edge key a child is refused.
	if _, err := NewHTTPDeviceChannels(te.base, "wrong").SetDeviceChannel(ctx, testAppID, testDeviceID, "beta"); err == nil {
		t.Fatal("wrong key accepted")
	}
}

// TestLegacyChannelWritesBounded: a legacy setChannel is an origin write and
// a new snapshot, and device ids cost nothing to invent, so the edge bounds
// them edge-wide; beyond the bound the device gets 429 with Retry-After
// (which the plugin honours) and nothing reaches the origin.
func TestLegacyChannelWritesBounded(t *testing.T) {
	cfg := config.NewEdge(t.TempDir())
	cfg.LegacyChannelWrites = 1 // burst 2
	e := New(cfg, nil, quiet)
	f := newFakeOrigin(t, e, nil, nil)
	devices := []string{"11111111-2222-4333-8444-000000000001", "11111111-2222-4333-8444-000000000002", "11111111-2222-4333-8444-000000000003"}
	var statuses []int
	for _, d := range devices {
		out := routeReq(e, "POST", "/channel_self", base(t, map[string]any{"device_id": d, "channel": "beta"}), nil)
		statuses = append(statuses, out.status)
		if out.status == 429 && (out.retryAfter != 1 || !strings.Contains(string(out.body), `"too_many_requests"`)) {
			t.Fatalf("429 without Retry-After: %d %s", out.retryAfter, out.body)
		}
	}
	if statuses[0] != 200 || statuses[1] != 200 || statuses[2] != 429 {
		t.Fatalf("statuses %v, want 200 200 429", statuses)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) != 2 {
		t.Fatalf("origin got %d writes, want 2", len(f.calls))
	}
}

// TestChannelSelfSchema: the rest of Capgo's channelSelfRequestSchema
// (plugin_validation.ts:314-367): key_id at most 20 characters
// (tests/key_id_e2e.test.ts:255 expects 400 on /channel_self too),
// install_source at most 64, fields of the wrong type; and an unknown app
// answers without "kind" (update.ts:119-157 puts kind on /updates only).
func TestChannelSelfSchema(t *testing.T) {
	e := newCoreEdge(t, nil)
	newFakeOrigin(t, e, nil, nil)
	issue := func(path, msg string) string {
		return `{"error":"invalid_json_body","message":"Cannot parse body","moreInfo":{"issues":[{"path":["` + path + `"],"message":"` + msg + `"}]}}`
	}
	for _, x := range []exchange{
		{name: "key_id 21 characters", method: "PUT", body: base(t, map[string]any{"key_id": "MIIBCgKCAQEAqJikYizo1"}), status: 400, want: issue("key_id", "String must contain at most 20 character(s)")},
		{name: "install_source 65", method: "POST", body: base(t, map[string]any{"install_source": strings.Repeat("x", 65)}), status: 400, want: issue("install_source", "String must contain at most 64 character(s)")},
		{name: "channel not a string", method: "POST", body: base(t, map[string]any{"channel": 5}), status: 400, want: issue("channel", "channel must be a string")},
		{name: "defaultChannel not a string", method: "PUT", body: base(t, map[string]any{"defaultChannel": true}), status: 400, want: issue("defaultChannel", "defaultChannel must be a string")},
		{name: "key_id 20 characters is fine", method: "PUT", body: base(t, map[string]any{"key_id": "MIIBCgKCAQEAqJikYizo", "plugin_version": "8.0.0", "defaultChannel": "beta", "channel": nil}), status: 200, want: `{"channel":"beta","status":"default"}`},
		{name: "unknown app", method: "PUT", body: base(t, map[string]any{"app_id": "com.unknown.app"}), status: 200, want: `{"error":"app_not_found","message":"App not found"}`},
	} {
		x.run(t, e)
	}
}

// BenchmarkUpdatesParityAnswers: the answers issue 14 added stay
// allocation-free — an encrypted bundle with a 50-file manifest and
// link/comment exposed, key_id_mismatch, and the store-build revert.
func BenchmarkUpdatesParityAnswers(b *testing.B) {
	hex512 := strings.Repeat("ab", 256)
	mk := func(mod func(a *snapshot.App)) *Edge {
		s := testSnapshot(b, 1, fakeSHA("bundle"))
		a := s.Apps[0]
		mod(a)
		s2 := &snapshot.Snapshot{Format: s.Format, Rev: 2, Apps: s.Apps}
		if err := s2.Index(nil); err != nil {
			b.Fatal(err)
		}
		return newCoreEdge(b, s2)
	}
	encrypted := func(a *snapshot.App) {
		bd := a.Bundles[1]
		bd.SessionKey = strings.Repeat("A", 22) + "==:" + strings.Repeat("B", 342) + "=="
		bd.Checksum, bd.KeyID, bd.Link, bd.Comment = hex512, "MIIBCgKCAQEAqJikYizo", "https://example.com/notes", "release notes"
		a.ExposeMetadata = true
		for i := range 50 {
			bd.Manifest = append(bd.Manifest, snapshot.ManifestEntry{Name: fmt.Sprintf("assets/chunk-%d.js.br", i), Hash: hex512, Blob: fakeSHA(fmt.Sprint(i)), Size: 1024})
		}
	}
	cases := []struct {
		name string
		mod  func(a *snapshot.App)
		body string
		want string
	}{
		{"encrypted", encrypted, strings.Replace(pluginBody, `"plugin_version"`, `"key_id":"MIIBCgKCAQEAqJikYizo","plugin_version"`, 1), `{"version":"1.1.0"`},
		{"key_id_mismatch", encrypted, strings.Replace(pluginBody, `"plugin_version"`, `"key_id":"MIIBCgKCAQEAotherkey","plugin_version"`, 1), `{"error":"key_id_mismatch"`},
		{"builtin", func(a *snapshot.App) { a.Channels[0].Bundle = "builtin" }, pluginBody, `{"version":"builtin"}`},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			e := mk(c.mod)
			body, base := []byte(c.body), []byte("https://edge.example.com")
			out := &reply{body: make([]byte, 0, 64<<10)}
			for range 3 { // encoded, then compressed: the cached state
				settle(e)
				out.reset()
				e.updates(body, base, "", out)
			}
			if out.status != 200 || !bytes.HasPrefix(answerBody(out), []byte(c.want)) {
				b.Fatalf("HTTP %d %s, want %s…", out.status, answerBody(out), c.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				out.reset()
				e.updates(body, base, "", out)
			}
		})
	}
}
