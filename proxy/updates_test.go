package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/updraft-cdn/updraft/cache"
	"github.com/updraft-cdn/updraft/config"
	blobfs "github.com/updraft-cdn/updraft/origin/blob/fs"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

const (
	testAppID    = "com.example.app"
	testDeviceID = "00009a6b-eefe-490a-9c60-8e965132ae51"
	testZip      = "../testdata/swagger-ui-5.34.0.zip"
)

// pluginBody is an update check as @capgo/capacitor-updater 8.x sends it,
// for a device on bundle 1.0.0 that should get production's 1.1.0.
const pluginBody = `{"platform":"android","device_id":"00009a6b-eefe-490a-9c60-8e965132ae51",` +
	`"app_id":"com.example.app","custom_id":"user-42","version_build":"1.0.0","version_code":"1",` +
	`"version_os":"13","version_name":"1.0.0","plugin_version":"8.51.14","is_emulator":false,` +
	`"is_prod":true,"install_source":"google_play"}`

// fakeSHA names a bundle whose bytes the tests never download.
func fakeSHA(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// testSnapshot returns an indexed snapshot of one app whose production
// channel serves bundle 1.1.0 with hash prodSHA, and a few self-assignable
// channels that each trigger one refusal.
func testSnapshot(t testing.TB, rev int64, prodSHA string) *snapshot.Snapshot {
	t.Helper()
	open := func(name, bundle string) *snapshot.Channel {
		return &snapshot.Channel{Name: name, Bundle: bundle, IOS: true, Android: true, AllowDeviceSelfSet: true,
			AllowEmulator: true, AllowDev: true, AllowProd: true, AllowDevice: true, DisableAutoUpdate: snapshot.DisableNone}
	}
	prod := open("production", "1.1.0")
	prod.Public, prod.AllowDeviceSelfSet = true, false
	major := open("major-guard", "2.0.0")
	major.DisableAutoUpdate = snapshot.DisableMajor
	noEmu := open("no-emulators", "1.1.0")
	noEmu.AllowEmulator = false
	s := &snapshot.Snapshot{Format: snapshot.FormatVersion, Rev: rev, Apps: []*snapshot.App{{
		ID: testAppID,
		Bundles: []*snapshot.Bundle{
			{Version: "1.0.0", SHA256: fakeSHA("1.0.0"), Size: 1},
			{Version: "1.1.0", SHA256: prodSHA, Size: 2},
			{Version: "2.0.0", SHA256: fakeSHA("2.0.0"), Size: 3},
		},
		Channels: []*snapshot.Channel{prod, major, noEmu, open("empty", ""), open("native", "1.0.0")},
	}}}
	if err := s.Index(nil); err != nil {
		t.Fatal(err)
	}
	return s
}

// testEdge is an edge served over HTTP/1.1 on a loopback port, filling its
// cache from a blob store the test writes to.
type testEdge struct {
	edge   *Edge
	h1     *HTTP1
	base   string // http://127.0.0.1:PORT
	blobs  *blobfs.Store
	client *http.Client
}

var quiet = slog.New(slog.DiscardHandler)

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

func startEdge(t testing.TB, mod func(*config.Edge)) *testEdge {
	t.Helper()
	return startEdgeMemory(t, 0, mod)
}

// startEdgeMemory is startEdge with a memory tier of memory bytes (0: none,
// every blob served from disk).
func startEdgeMemory(t testing.TB, memory int64, mod func(*config.Edge)) *testEdge {
	t.Helper()
	fs, err := blobfs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.New(cache.Options{Dir: t.TempDir(), Upstream: LocalUpstream{Blobs: fs}, Log: quiet, MemoryBudget: memory})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.NewEdge(t.TempDir())
	if mod != nil {
		mod(&cfg)
	}
	e := New(cfg, c, nil)
	addr, h1 := serveH1(t, e, !cfg.DeviceFront)
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections) // before the server's Shutdown (cleanups run last first)
	te := &testEdge{edge: e, h1: h1, base: "http://" + addr, blobs: fs,
		client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	// A Shutdown that runs before Serve has registered the listener leaves
	// Serve accepting forever; one answered request proves it is serving.
	if a := te.do(t, http.MethodGet, "/healthz", nil); a.status != 200 {
		t.Fatalf("healthz: HTTP %d %s", a.status, a.body)
	}
	return te
}

// put stores data in the edge's upstream and returns its hash.
func (te *testEdge) put(t testing.TB, data []byte) string {
	t.Helper()
	info, err := te.blobs.Put(bytes.NewReader(data), 0)
	if err != nil {
		t.Fatal(err)
	}
	return info.SHA256
}

// answer is a response read in full.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (te *testEdge) do(t testing.TB, method, path string, body []byte, header ...string) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, te.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := te.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func readZip(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(testZip)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edgeWithZip starts an edge whose production bundle 1.1.0 is the swagger-ui
// zip, stored upstream, with the snapshot in place.
func edgeWithZip(t *testing.T) (te *testEdge, zipSHA string, zip []byte) {
	t.Helper()
	te = startEdge(t, nil)
	zip = readZip(t)
	zipSHA = te.put(t, zip)
	if !te.edge.SetSnapshot(testSnapshot(t, 1, zipSHA)) {
		t.Fatal("SetSnapshot refused the first snapshot")
	}
	return te, zipSHA, zip
}

// body returns pluginBody with keys set (nil value: deleted).
func body(t testing.TB, set map[string]any) []byte { return withKeys(t, pluginBody, set) }

// withKeys returns the JSON object doc with keys set (nil value: deleted).
func withKeys(t testing.TB, doc string, set map[string]any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkEnvelope checks what every /updates answer must satisfy: JSON, and
// on errors a stable code, with `kind` on 200 refusals and `moreInfo` (but
// no `kind`) on 4xx/5xx.
func checkEnvelope(t *testing.T, a answer, wantCode, wantKind string) map[string]json.RawMessage {
	t.Helper()
	if ct := a.header.Get("Content-Type"); ct != contentTypeJSON {
		t.Errorf("Content-Type = %q, want %q", ct, contentTypeJSON)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, a.body)
	}
	str := func(key string) string {
		var s string
		if raw, ok := m[key]; ok {
			if err := json.Unmarshal(raw, &s); err != nil {
				t.Errorf("%s = %s, want a string", key, raw)
			}
		}
		return s
	}
	if wantCode == "" {
		for _, k := range []string{"error", "kind", "moreInfo"} {
			if _, ok := m[k]; ok {
				t.Errorf("success answer has %q: %s", k, a.body)
			}
		}
		return m
	}
	if got := str("error"); got != wantCode {
		t.Errorf("error = %q, want %q (body %s)", got, wantCode, a.body)
	}
	if str("message") == "" {
		t.Errorf("no message: %s", a.body)
	}
	_, hasKind := m["kind"]
	more, hasMore := m["moreInfo"]
	if a.status == http.StatusOK {
		if got := str("kind"); !hasKind || got != wantKind {
			t.Errorf("kind = %q (present %v), want %q: %s", got, hasKind, wantKind, a.body)
		}
		if hasMore {
			t.Errorf("200 refusal has moreInfo: %s", a.body)
		}
	} else {
		if hasKind {
			t.Errorf("HTTP %d answer has kind: %s", a.status, a.body)
		}
		if !hasMore || len(more) == 0 || more[0] != '{' {
			t.Errorf("HTTP %d answer lacks a moreInfo object: %s", a.status, a.body)
		}
	}
	return m
}

func TestUpdates(t *testing.T) {
	te, zipSHA, _ := edgeWithZip(t)
	host := strings.TrimPrefix(te.base, "http://")
	success := `{"version":"1.1.0","url":"http://` + host + `/b/` + zipSHA + `","session_key":"","checksum":"` + zipSHA + `"}`
	issue := func(path, msg string) string {
		return `{"error":"invalid_json_body","message":"Cannot parse body","moreInfo":{"issues":[{"path":["` + path + `"],"message":"` + msg + `"}]}}`
	}

	tests := []struct {
		name   string
		body   []byte
		status int
		code   string // empty: a new version
		kind   string // of a 200 refusal
		want   string // exact body, when set
		check  func(t *testing.T, m map[string]json.RawMessage)
	}{
		{name: "success", body: []byte(pluginBody), status: 200, want: success},
		{name: "upper-case device_id", body: body(t, map[string]any{"device_id": strings.ToUpper(testDeviceID)}),
			status: 200, want: success},
		{name: "builtin on older native", body: body(t, map[string]any{"version_name": "builtin"}), status: 200, want: success},
		{name: "builtin on current native", body: body(t, map[string]any{"version_name": "builtin", "version_build": "1.1.0"}),
			status: 200, code: "no_new_version_available", kind: "up_to_date"},
		{name: "ios", body: body(t, map[string]any{"platform": "ios"}), status: 200, want: success},
		{name: "pre-5.0 plugin without is_emulator and is_prod", body: body(t, map[string]any{"is_emulator": nil, "is_prod": nil}),
			status: 200, want: success},
		{name: "unknown keys ignored", body: body(t, map[string]any{"channel": "x", "extra": []int{1}}), status: 200, want: success},

		{name: "not JSON", body: []byte(`{"app_id":`), status: 400, code: "invalid_json_parse_body",
			want: `{"error":"invalid_json_parse_body","message":"Invalid JSON body","moreInfo":{}}`},
		{name: "empty body", body: []byte{}, status: 400, code: "invalid_json_parse_body"},
		{name: "trailing garbage", body: []byte(pluginBody + `x`), status: 400, code: "invalid_json_parse_body"},
		{name: "array", body: []byte(`[1,2]`), status: 400, code: "invalid_json_body",
			want: `{"error":"invalid_json_body","message":"Cannot parse body","moreInfo":{}}`},
		{name: "string", body: []byte(`"hello"`), status: 400, code: "invalid_json_body"},
		{name: "null", body: []byte(`null`), status: 400, code: "invalid_json_body"},
		{name: "is_prod not a boolean", body: body(t, map[string]any{"is_prod": "yes"}), status: 400, code: "invalid_json_body",
			want: issue("is_prod", "is_prod must be a boolean")},
		{name: "is_emulator not a boolean", body: body(t, map[string]any{"is_emulator": 1}), status: 400, code: "invalid_json_body",
			want: issue("is_emulator", "is_emulator must be a boolean")},
		{name: "defaultChannel not a string", body: body(t, map[string]any{"defaultChannel": 7}), status: 400, code: "invalid_json_body",
			want: issue("defaultChannel", "defaultChannel must be a string")},
		{name: "bad platform", body: body(t, map[string]any{"platform": "windows"}), status: 400, code: "invalid_json_body",
			want: issue("platform", "Platform is not supported or invalid")},
		{name: "bad device_id", body: body(t, map[string]any{"device_id": "not-a-uuid"}), status: 400, code: "invalid_json_body",
			want: issue("device_id", "Device ID must be a valid UUID string")},
		{name: "device_id too long", body: body(t, map[string]any{"device_id": testDeviceID + "0"}), status: 400, code: "invalid_json_body",
			want: issue("device_id", "String must contain at most 36 character(s)")},
		{name: "bad app_id", body: body(t, map[string]any{"app_id": "no-dots"}), status: 400, code: "invalid_json_body",
			want: issue("app_id", "App ID must be a reverse domain string")},
		{name: "bad plugin_version", body: body(t, map[string]any{"plugin_version": "eight"}), status: 400, code: "invalid_json_body",
			want: issue("plugin_version", "Plugin version is invalid")},
		{name: "key_id too long", body: body(t, map[string]any{"key_id": strings.Repeat("k", 21)}), status: 400, code: "invalid_json_body",
			want: issue("key_id", "String must contain at most 20 character(s)")},
		{name: "missing version_name", body: body(t, map[string]any{"version_name": nil}), status: 400, code: "invalid_json_body",
			want: issue("version_name", "Version name is required")},
		{name: "missing device_id", body: body(t, map[string]any{"device_id": nil}), status: 400, code: "missing_device_id",
			want: `{"error":"missing_device_id","message":"Cannot find device_id","moreInfo":{}}`},
		{name: "empty device_id", body: body(t, map[string]any{"device_id": ""}), status: 400, code: "missing_device_id"},
		{name: "missing app_id", body: body(t, map[string]any{"app_id": nil}), status: 400, code: "missing_app_id",
			want: `{"error":"missing_app_id","message":"Cannot find app_id","moreInfo":{}}`},
		{name: "semver_error", body: body(t, map[string]any{"version_build": "1.0.0.0"}), status: 400, code: "semver_error",
			check: func(t *testing.T, m map[string]json.RawMessage) {
				if got := string(m["moreInfo"]); got != `{"version_build":"1.0.0.0"}` {
					t.Errorf("moreInfo = %s, want {\"version_build\":\"1.0.0.0\"}", got)
				}
			}},
		{name: "body of exactly 1 MiB", body: padded(t, 1<<20), status: 200, want: success},

		{name: "unknown app", body: body(t, map[string]any{"app_id": "com.example.other"}), status: 200, code: "app_not_found", kind: "failed",
			want: `{"error":"app_not_found","message":"App not found","kind":"failed"}`},
		{name: "no channel for the platform", body: body(t, map[string]any{"platform": "electron"}), status: 200,
			code: "no_channel", kind: "failed"},
		{name: "channel without bundle", body: body(t, map[string]any{"defaultChannel": "empty"}), status: 200,
			code: "no_bundle", kind: "failed"},
		{name: "up to date", body: body(t, map[string]any{"version_name": "1.1.0"}), status: 200,
			code: "no_new_version_available", kind: "up_to_date",
			want: `{"error":"no_new_version_available","message":"No new version available","kind":"up_to_date"}`},
		{name: "major guard", body: body(t, map[string]any{"defaultChannel": "major-guard"}), status: 200,
			code: "disable_auto_update_to_major", kind: "blocked",
			want: `{"error":"disable_auto_update_to_major","message":"Cannot upgrade major version","major":true,"version":"2.0.0","old":"1.0.0","kind":"blocked"}`},
		{name: "emulator guard", body: body(t, map[string]any{"defaultChannel": "no-emulators", "is_emulator": true}), status: 200,
			code: "disable_emulator", kind: "blocked",
			want: `{"error":"disable_emulator","message":"Cannot update, emulator is disabled","version":"1.1.0","old":"1.0.0","kind":"blocked"}`},
		{name: "v4 plugin", body: body(t, map[string]any{"plugin_version": "4.3.0"}), status: 200,
			code: "unsupported_plugin_version", kind: "failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := te.do(t, http.MethodPost, "/updates", tc.body)
			if a.status != tc.status {
				t.Fatalf("HTTP %d, want %d: %s", a.status, tc.status, a.body)
			}
			m := checkEnvelope(t, a, tc.code, tc.kind)
			if tc.want != "" && string(a.body) != tc.want {
				t.Errorf("body\n got %s\nwant %s", a.body, tc.want)
			}
			if tc.check != nil {
				tc.check(t, m)
			}
		})
	}
}

// padded returns pluginBody padded with JSON whitespace to n bytes.
func padded(t testing.TB, n int) []byte {
	t.Helper()
	b := append([]byte(pluginBody), bytes.Repeat([]byte(" "), n-len(pluginBody))...)
	if len(b) != n {
		t.Fatalf("padded body is %d bytes, want %d", len(b), n)
	}
	return b
}

// TestUpdatesBodyTooLarge sends a body one byte over what the transport
// reads (1 MiB for devices plus 64 KiB of room for child edges' event
// segments). It writes the request by hand, headers first: the edge refuses
// on Content-Length and closes, and a client still pushing the body would
// see a connection reset instead of the answer. (A body between the two
// limits is read and refused by the router: TestUpdatesBodyOverDeviceLimit.)
func TestUpdatesBodyTooLarge(t *testing.T) {
	te, _, _ := edgeWithZip(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(te.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	const n = 1<<20 + 64<<10 + 1
	head := "POST /updates HTTP/1.1\r\nHost: edge.test\r\nContent-Type: application/json\r\n" +
		"Content-Length: " + strconv.Itoa(n) + "\r\n\r\n"
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{resp.StatusCode, resp.Header, b}
	if a.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("HTTP %d %s, want 413", a.status, a.body)
	}
	checkEnvelope(t, a, "body_too_large", "")
	if !resp.Close {
		t.Error("413 answer keeps the connection open with an unread body behind it")
	}
}

// TestUpdatesURLServesChecksum follows an update answer: the url serves
// bytes whose SHA-256 is the checksum.
func TestUpdatesURLServesChecksum(t *testing.T) {
	te, zipSHA, zip := edgeWithZip(t)
	a := te.do(t, http.MethodPost, "/updates", []byte(pluginBody))
	var got struct{ Version, URL, Checksum string }
	if err := json.Unmarshal(a.body, &got); err != nil || a.status != 200 {
		t.Fatalf("HTTP %d %s: %v", a.status, a.body, err)
	}
	if got.Checksum != zipSHA || got.URL != te.base+"/b/"+zipSHA {
		t.Fatalf("answer %s: want checksum %s at %s/b/", a.body, zipSHA, te.base)
	}
	resp, err := te.client.Get(got.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(zip)) || hex.EncodeToString(h.Sum(nil)) != got.Checksum {
		t.Fatalf("GET url: %d bytes hashing to %x, want %d bytes hashing to %s", n, h.Sum(nil), len(zip), got.Checksum)
	}
}

func TestUpdatesPublicURL(t *testing.T) {
	te := startEdge(t, func(c *config.Edge) { c.PublicURL = "https://cdn.example.com/" })
	sha := fakeSHA("bundle")
	te.edge.SetSnapshot(testSnapshot(t, 1, sha))
	a := te.do(t, http.MethodPost, "/updates", []byte(pluginBody))
	want := `{"version":"1.1.0","url":"https://cdn.example.com/b/` + sha + `","session_key":"","checksum":"` + sha + `"}`
	if a.status != 200 || string(a.body) != want {
		t.Fatalf("HTTP %d %s, want %s", a.status, a.body, want)
	}
}

func TestUpdatesInvalidHost(t *testing.T) {
	te := startEdge(t, nil)
	te.edge.SetSnapshot(testSnapshot(t, 1, fakeSHA("bundle")))
	req, err := http.NewRequest(http.MethodPost, te.base+"/updates", strings.NewReader(pluginBody))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "bad!host" // sent by net/http, but has no place in a URL
	resp, err := te.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !bytes.Contains(b, []byte(`"error":"invalid_host"`)) {
		t.Fatalf("HTTP %d %s, want 400 invalid_host", resp.StatusCode, b)
	}
}

// TestUpdatesCapgoParity holds cases where Capgo's backend (the protocol the
// edge must match exactly, docs/protocol.md) answers differently from the edge.
// Capgo's parsePluginBody (plugin_runtime/utils/plugin_parser.ts) rejects an
// empty object as invalid_json_body before looking for device_id, only
// reports missing_app_id when app_id is falsy (a number is a type error in
// the schema), and formats a coerced version_build ("1.0" → "1.0.0") before
// substituting it for a "builtin" version_name.
func TestUpdatesCapgoParity(t *testing.T) {
	te, _, _ := edgeWithZip(t)
	tests := []struct {
		name   string
		body   []byte
		status int
		code   string
		kind   string
	}{
		{"empty object", []byte(`{}`), 400, "invalid_json_body", ""},
		{"app_id not a string", body(t, map[string]any{"app_id": 123}), 400, "invalid_json_body", ""},
		{"builtin with two-part native version", body(t, map[string]any{
			"version_name": "builtin", "version_build": "1.0", "defaultChannel": "native"}),
			200, "no_new_version_available", "up_to_date"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := te.do(t, http.MethodPost, "/updates", tc.body)
			var got struct{ Error string }
			json.Unmarshal(a.body, &got)
			if a.status != tc.status || got.Error != tc.code {
				t.Fatalf("HTTP %d %s, want %d %s", a.status, a.body, tc.status, tc.code)
			}
			checkEnvelope(t, a, tc.code, tc.kind)
		})
	}
}

func TestRoutes(t *testing.T) {
	te, _, _ := edgeWithZip(t)
	tests := []struct {
		method, path string
		status       int
		want         string // exact body, when set
		code         string // error code otherwise
	}{
		{"GET", "/updates", 200, `{"status":"ok"}`, ""},
		{"HEAD", "/updates", 200, "", ""}, // issue 16: was 405
		{"GET", "/stats", 200, `{"status":"ok"}`, ""},
		{"GET", "/healthz", 200, `{"status":"ok"}`, ""},
		{"GET", "/readyz", 200, `{"status":"ok","rev":1}`, ""},
		{"PUT", "/updates", 405, "", "method_not_allowed"},
		{"DELETE", "/updates", 405, "", "method_not_allowed"},
		{"GET", "/nope", 404, `{"error":"not_found","message":"Not found","moreInfo":{}}`, "not_found"},
		{"GET", "/updates/", 404, "", "not_found"},
		{"GET", "/b/", 404, "", "not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			a := te.do(t, tc.method, tc.path, nil)
			if a.status != tc.status {
				t.Fatalf("HTTP %d %s, want %d", a.status, a.body, tc.status)
			}
			if tc.want != "" && string(a.body) != tc.want {
				t.Errorf("body %s, want %s", a.body, tc.want)
			}
			if tc.code != "" {
				checkEnvelope(t, a, tc.code, "")
			}
		})
	}
	a := te.do(t, "GET", "/metrics", nil)
	if a.status != 200 || !bytes.Contains(a.body, []byte("updraft_edge_snapshot_rev 1")) {
		t.Errorf("GET /metrics: HTTP %d, want 200 with updraft_edge_snapshot_rev 1", a.status)
	}
}

func TestReadiness(t *testing.T) {
	te := startEdge(t, nil)
	a := te.do(t, "GET", "/readyz", nil)
	if a.status != 503 {
		t.Fatalf("readyz before a snapshot: HTTP %d %s, want 503", a.status, a.body)
	}
	checkEnvelope(t, a, "not_ready", "")
	a = te.do(t, "POST", "/updates", []byte(pluginBody))
	if a.status != 503 {
		t.Fatalf("/updates before a snapshot: HTTP %d %s, want 503", a.status, a.body)
	}
	checkEnvelope(t, a, "not_ready", "")
	if te.edge.Snapshot() != nil {
		t.Fatal("Snapshot() is not nil before SetSnapshot")
	}

	sha := fakeSHA("bundle")
	if !te.edge.SetSnapshot(testSnapshot(t, 5, sha)) {
		t.Fatal("SetSnapshot(rev 5) on an empty edge = false")
	}
	if a = te.do(t, "GET", "/readyz", nil); a.status != 200 || string(a.body) != `{"status":"ok","rev":5}` {
		t.Fatalf("readyz: HTTP %d %s, want 200 rev 5", a.status, a.body)
	}
	if te.edge.SetSnapshot(testSnapshot(t, 4, sha)) {
		t.Error("SetSnapshot(older rev 4) = true")
	}
	if te.edge.SetSnapshot(testSnapshot(t, 5, sha)) {
		t.Error("SetSnapshot(same rev 5) = true")
	}
	if rev := te.edge.Snapshot().Rev; rev != 5 {
		t.Errorf("Snapshot().Rev = %d after refused swaps, want 5", rev)
	}
	if !te.edge.SetSnapshot(testSnapshot(t, 6, sha)) {
		t.Error("SetSnapshot(newer rev 6) = false")
	}
	if a = te.do(t, "GET", "/readyz", nil); string(a.body) != `{"status":"ok","rev":6}` {
		t.Errorf("readyz after rev 6: %s", a.body)
	}
}

func TestLowerDeviceID(t *testing.T) {
	st := new(updateState)
	for in, want := range map[string]string{
		testDeviceID:                       testDeviceID,
		strings.ToUpper(testDeviceID):      testDeviceID,
		"00009A6B-eefe-490a-9C60-8e965132": "00009a6b-eefe-490a-9c60-8e965132",
		strings.Repeat("A", 37):            strings.Repeat("A", 37), // too long: left for Validate
		"":                                 "",
	} {
		if got := lowerDeviceID(st, in); got != want {
			t.Errorf("lowerDeviceID(%q) = %q, want %q", in, got, want)
		}
	}
}

// answerBody is the body of a reply: the answer cache's shared bytes, or
// the reply's own.
func answerBody(out *reply) []byte {
	if out.data != nil {
		return out.data
	}
	return out.body
}

// newCoreEdge returns an edge without a cache or listener, for calling
// updates directly.
func newCoreEdge(tb testing.TB, snap *snapshot.Snapshot) *Edge {
	tb.Helper()
	e := New(config.NewEdge(tb.TempDir()), nil, quiet)
	if snap != nil {
		e.SetSnapshot(snap)
	}
	return e
}

func BenchmarkUpdatesCore(b *testing.B) {
	e := newCoreEdge(b, testSnapshot(b, 1, fakeSHA("bundle")))
	body, base := []byte(pluginBody), []byte("https://edge.example.com")
	out := &reply{body: make([]byte, 0, 512)}
	e.updates(body, base, "", out)
	if out.status != 200 || !bytes.HasPrefix(answerBody(out), []byte(`{"version":"1.1.0"`)) {
		b.Fatalf("HTTP %d %s, want an update", out.status, answerBody(out))
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		out.reset()
		e.updates(body, base, "", out)
	}
}

func BenchmarkUpdatesHTTP1(b *testing.B) {
	e := newCoreEdge(b, testSnapshot(b, 1, fakeSHA("bundle")))
	client := inMemoryHTTP1(b, e)
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://edge.example.com/updates")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.SetBodyString(pluginBody)
	if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 || !bytes.HasPrefix(resp.Body(), []byte(`{"version"`)) {
		b.Fatalf("POST /updates: %v: HTTP %d %s", err, resp.StatusCode(), resp.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := client.Do(req, resp); err != nil {
			b.Fatal(err)
		}
	}
}

// A device body over MaxUpdatesBody but within what the transport reads is
// refused by the router with the same 413.
func TestUpdatesBodyOverDeviceLimit(t *testing.T) {
	te, _, _ := edgeWithZip(t)
	body := bytes.Repeat([]byte(" "), 1<<20+1)
	resp, err := http.Post(te.base+"/updates", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{resp.StatusCode, resp.Header, b}
	if a.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("HTTP %d %s, want 413", a.status, a.body)
	}
	checkEnvelope(t, a, "body_too_large", "")
}

// inMemoryHTTP1 serves e over fasthttp on an in-memory listener until the
// benchmark ends and returns a client dialling it: the whole HTTP/1.1 path
// without the kernel's sockets.
func inMemoryHTTP1(b *testing.B, e *Edge) *fasthttp.Client {
	ln := fasthttputil.NewInmemoryListener()
	h := NewHTTP1(e)
	h.noFront = true // fasthttp's adapter (the front has BenchmarkDeviceFrontUpdates, on TCP)
	served := make(chan error, 1)
	go func() { served <- h.Serve(ln) }()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.Shutdown(ctx)
		<-served
	})
	return &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }}
}
