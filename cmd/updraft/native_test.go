package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/internal/nativetest"
	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/native"
	"github.com/updraft-cdn/updraft/origin/store"
)

// nativeApp lays out a real Capacitor app (its package.json and a
// node_modules stub) with a built web folder, dist/, and returns dist.
func nativeApp(t *testing.T, app, marker string, installed map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	nativetest.Install(t, dir, app, installed)
	dist := filepath.Join(dir, "dist")
	if err := os.MkdirAll(dist, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dist, "index.html"), []byte("<html>"+marker+"</html>"), 0o644)
	os.WriteFile(filepath.Join(dist, "app.js"), []byte("console.log('"+marker+"');\n"), 0o644)
	return dist
}

// nativeDevice is an update check from a device whose installed binary is
// native build `build`, running bundle `current`.
func nativeDevice(id, current, build string) string {
	return fmt.Sprintf(`{"app_id":"com.example.app","device_id":%q,"version_name":%q,"version_build":%q,
		"platform":"android","plugin_version":"7.1.0","is_emulator":false,"is_prod":true}`, id, current, build)
}

// runErr runs a command that must fail; it returns stdout and the error.
func runErr(t *testing.T, r *running, data string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	args = append(args, "--origin", "http://"+r.OriginAddr, "--data", data)
	err := run(context.Background(), args, &out, &errb)
	if err == nil {
		t.Fatalf("updraft %s: succeeded, want an error\n%s", strings.Join(args, " "), out.String())
	}
	return out.String(), err
}

func apiErr(t *testing.T, err error) *client.APIError {
	t.Helper()
	var ae *client.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("not an API error: %v", err)
	}
	return ae
}

// TestNativeCompatibilityEndToEnd is issue 20's done-when on a real origin
// and edge, with bundles uploaded from real Capacitor apps' package.json:
// the native build 1.0.0 in the field is app_android_camera's; Kapture's
// bundle adds three native plugins (which native build 1.5.0 carries). It
// is refused for the channel, accepted with --min-native-build 1.5.0, and
// then a device on build 1.0.0 keeps the channel's previous bundle while
// one on 1.5.0 gets it. A compatible upgrade needs no flag; --force
// overrides; a bundle without native packages is "unknown" and allowed.
func TestNativeCompatibilityEndToEnd(t *testing.T) {
	const app = "com.example.app"
	data := t.TempDir()
	r := startTestServe(t, data)
	cli(t, r, data, "app", "create", app)

	// The binary in the field, native build 1.0.0, has app_android_camera's
	// native packages; so has bundle 1.0.1.
	if out := cli(t, r, data, "bundle", "upload", nativeApp(t, nativetest.AndroidCamera, "v1", nil), "--app", app, "--version", "1.0.1"); !strings.Contains(out, "native packages: 7 recorded from ") {
		t.Fatalf("upload output:\n%s", out)
	}
	cli(t, r, data, "channel", "set", "production", "--app", app, "--bundle", "1.0.1", "--default")
	var bundles []api.BundleInfo
	if err := json.Unmarshal([]byte(cli(t, r, data, "bundle", "list", "--app", app, "--json")), &bundles); err != nil {
		t.Fatal(err)
	}
	if len(bundles) != 1 || len(bundles[0].NativePackages) != 7 || bundles[0].NativePackages[1] != (native.Package{Name: "@capacitor/app", Version: "7.0.1"}) {
		t.Fatalf("bundle list: native packages %+v", bundles)
	}

	// Kapture's bundle adds filesystem, geolocation and preferences.
	cli(t, r, data, "bundle", "upload", nativeApp(t, nativetest.Kapture, "v2", nil), "--app", app, "--version", "1.6.0")
	out, err := runErr(t, r, data, "bundle", "compatibility", "1.6.0", "--app", app, "--channel", "production")
	if !errors.Is(err, errIncompatible) || !strings.Contains(out, "incompatible") {
		t.Fatalf("compatibility: %v\n%s", err, out)
	}
	for _, p := range []string{"@capacitor/filesystem", "@capacitor/geolocation", "@capacitor/preferences"} {
		if !strings.Contains(out, p) || !strings.Contains(out, "added") {
			t.Fatalf("compatibility does not name %s as added:\n%s", p, out)
		}
	}
	var rep api.Compatibility
	out, _ = runErr(t, r, data, "bundle", "compatibility", "1.6.0", "--app", app, "--channel", "production", "--json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Verdict != native.Incompatible || len(rep.Blocking()) != 3 || rep.ChannelBundle != "1.0.1" {
		t.Fatalf("compatibility --json: %v %+v", err, rep)
	}

	// Refused wherever it would reach devices: channel set, rollout, A/B arm.
	for _, args := range [][]string{
		{"channel", "set", "production", "--app", app, "--bundle", "1.6.0"},
		{"channel", "rollout", "production", "--app", app, "--bundle", "1.6.0", "--percent", "50"},
		{"channel", "ab", "production", "--app", app, "--arm", "new=1.6.0:50"},
	} {
		_, err := runErr(t, r, data, args...)
		ae := apiErr(t, err)
		if ae.Status != 409 || ae.Code != "incompatible_native" || !strings.Contains(ae.Message, "@capacitor/geolocation 7.1.1 added") {
			t.Fatalf("%s: %v", strings.Join(args, " "), err)
		}
		var details native.Report
		if json.Unmarshal(ae.Details, &details) != nil || len(details.Blocking()) != 3 {
			t.Fatalf("%s: details %s", strings.Join(args, " "), ae.Details)
		}
	}
	old, fresh := "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
	if a := answer(t, r, nativeDevice(fresh, "1.0.1", "1.5.0")); a.Error != "no_new_version_available" {
		t.Fatalf("refused assignment reached a device: %+v", a)
	}

	// Accepted with --min-native-build: the native build 1.5.0 carries the plugins.
	out = cli(t, r, data, "channel", "set", "production", "--app", app, "--bundle", "1.6.0", "--min-native-build", "1.5.0")
	if !strings.Contains(out, "1.6.0 goes to devices with native build 1.5.0 or later; below: 1.0.1") {
		t.Fatalf("channel set output:\n%s", out)
	}
	if out := cli(t, r, data, "channel", "list", "--app", app); !strings.Contains(out, "native 1.5.0+ (below: 1.0.1)") {
		t.Fatalf("channel list:\n%s", out)
	}
	// The audit trail shows the restriction with the bundle it came with.
	var recs []store.AuditRecord
	if err := json.Unmarshal([]byte(cli(t, r, data, "audit", "--app", app, "--action", "channel.changed", "--json")), &recs); err != nil {
		t.Fatal(err)
	}
	var after bytes.Buffer
	if n := len(recs); n == 0 || json.Compact(&after, recs[n-1].After) != nil || after.String() != `{"bundle":"1.6.0","min_native_build":"1.5.0"}` {
		t.Fatalf("audit of the restricted channel set: %+v", recs)
	}
	if a := answer(t, r, nativeDevice(fresh, "1.0.1", "1.5.0")); a.Version != "1.6.0" {
		t.Fatalf("device on native build 1.5.0: %+v", a)
	}
	if a := answer(t, r, nativeDevice(old, "1.0.1", "1.0.0")); a.Version != "" || a.Error != "no_new_version_available" {
		t.Fatalf("device on native build 1.0.0 running 1.0.1: %+v", a)
	}
	if a := answer(t, r, nativeDevice(old, "builtin", "1.0.0")); a.Version != "1.0.1" {
		t.Fatalf("device on native build 1.0.0, store bundle: want the previous bundle 1.0.1, got %+v", a)
	}
	res := cli(t, r, data, "resolve", "--app", app, "--device", old, "--platform", "android", "--version-build", "1.0.0", "--version-name", "builtin")
	if !strings.Contains(res, "update to 1.0.1") || !strings.Contains(res, "native build 1.0.0 is below the min native build 1.5.0") {
		t.Fatalf("resolve:\n%s", res)
	}

	// A compatible upgrade (same native packages) needs no flag and keeps
	// the channel's native gate.
	cli(t, r, data, "bundle", "upload", nativeApp(t, nativetest.Kapture, "v3", nil), "--app", app, "--version", "1.6.1")
	cli(t, r, data, "bundle", "compatibility", "1.6.1", "--app", app, "--channel", "production")
	cli(t, r, data, "channel", "set", "production", "--app", app, "--bundle", "1.6.1")
	if a := answer(t, r, nativeDevice(fresh, "1.6.0", "1.5.0")); a.Version != "1.6.1" {
		t.Fatalf("compatible upgrade, native build 1.5.0: %+v", a)
	}
	if a := answer(t, r, nativeDevice(old, "builtin", "1.0.0")); a.Version != "1.0.1" {
		t.Fatalf("compatible upgrade, native build 1.0.0: %+v", a)
	}

	// A native plugin upgrade (camera 7.0.1 → 7.0.2) is refused, and
	// --force puts it through.
	cli(t, r, data, "bundle", "upload", nativeApp(t, nativetest.Kapture, "v4", map[string]string{"@capacitor/camera": "7.0.2"}), "--app", app, "--version", "1.7.0")
	_, err = runErr(t, r, data, "channel", "set", "production", "--app", app, "--bundle", "1.7.0")
	if ae := apiErr(t, err); ae.Code != "incompatible_native" || !strings.Contains(ae.Message, "@capacitor/camera 7.0.1 → 7.0.2 (patch)") {
		t.Fatalf("camera upgrade: %v", err)
	}
	cli(t, r, data, "channel", "set", "production", "--app", app, "--bundle", "1.7.0", "--force")
	if a := answer(t, r, nativeDevice(fresh, "1.6.1", "1.5.0")); a.Version != "1.7.0" {
		t.Fatalf("forced: %+v", a)
	}

	// Without native packages: unknown, allowed.
	cli(t, r, data, "bundle", "upload", nativeApp(t, nativetest.CapgoDemo, "v5", nil), "--app", app, "--version", "1.8.0", "--no-native-check")
	out = cli(t, r, data, "bundle", "compatibility", "1.8.0", "--app", app, "--channel", "production")
	if !strings.Contains(out, ": unknown") {
		t.Fatalf("no native packages: %s", out)
	}

	// upload --channel checks before storing: Capgo's demo app (Capacitor
	// 5, the updater plugin) is refused and leaves no bundle behind.
	_, err = runErr(t, r, data, "bundle", "upload", nativeApp(t, nativetest.CapgoDemo, "v6", nil), "--app", app, "--version", "1.9.0", "--channel", "production")
	if ae := apiErr(t, err); ae.Code != "incompatible_native" || !strings.Contains(ae.Message, "@capgo/capacitor-updater") {
		t.Fatalf("upload --channel: %v", err)
	}
	if strings.Contains(cli(t, r, data, "bundle", "list", "--app", app), "1.9.0") {
		t.Fatal("a refused upload stored its bundle")
	}
	cli(t, r, data, "channel", "set", "production", "--app", app, "--bundle", "1.8.0")
}

// The compatibility report says what the channel's devices run: the
// native builds they reported at their last check-in (the device
// inventory, fed by the edge), and how many a bundle restricted to a
// native build would reach, as the edge compares builds.
func TestCompatibilityCountsDeviceBuilds(t *testing.T) {
	const app = "com.example.app"
	data := t.TempDir()
	r := startTestServe(t, data)
	cli(t, r, data, "app", "create", app)
	cli(t, r, data, "bundle", "upload", nativeApp(t, nativetest.AndroidCamera, "v1", nil), "--app", app, "--version", "1.0.1")
	cli(t, r, data, "channel", "set", "production", "--app", app, "--bundle", "1.0.1", "--default")
	cli(t, r, data, "bundle", "upload", nativeApp(t, nativetest.Kapture, "v2", nil), "--app", app, "--version", "1.6.0")
	builds := []string{"1.0.0", "1.0.0", "1.0.0", "1.5.0", "1.5.0", "2.0"}
	for i, b := range builds {
		if a := answer(t, r, nativeDevice(fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1), "1.0.1", b)); a.Error != "no_new_version_available" {
			t.Fatalf("device on %s: %+v", b, a)
		}
	}
	c := client.New("http://"+r.OriginAddr, readKey(t, data))
	deadline := time.Now().Add(testenv.Patience(30 * time.Second))
	for {
		page, err := c.ListDevices(context.Background(), app, client.DeviceQuery{Channel: "production"})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Devices) == len(builds) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("inventory after 30s: %d devices, want %d", len(page.Devices), len(builds))
		}
		time.Sleep(50 * time.Millisecond)
	}
	var rep api.Compatibility
	out, _ := runErr(t, r, data, "bundle", "compatibility", "1.6.0", "--app", app, "--channel", "production", "--min-native-build", "1.5.0", "--json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Devices == nil {
		t.Fatalf("compatibility --json: %v\n%s", err, out)
	}
	want := api.DeviceBuilds{SinceDays: 30, Total: 6, MinNativeBuild: "1.5.0", Reached: 3, Builds: []api.BuildShare{
		{Build: "1.0.0", Devices: 3}, {Build: "1.5.0", Devices: 2, Reached: true}, {Build: "2.0.0", Devices: 1, Reached: true}}}
	if got := *rep.Devices; got.Total != want.Total || got.Reached != want.Reached || got.MinNativeBuild != want.MinNativeBuild ||
		!slices.Equal(got.Builds, want.Builds) {
		t.Fatalf("devices %+v\nwant    %+v", got, want)
	}
	out, _ = runErr(t, r, data, "bundle", "compatibility", "1.6.0", "--app", app, "--channel", "production")
	if !strings.Contains(out, "devices of the channel (checked in within 30 days): 6; with no native-build restriction: 6 (100.0%)") {
		t.Fatalf("compatibility without a restriction:\n%s", out)
	}
	_, err := runErr(t, r, data, "bundle", "compatibility", "1.6.0", "--app", app, "--channel", "production", "--min-native-build", "one")
	if ae := apiErr(t, err); ae.Code != "invalid_min_native_build" {
		t.Fatalf("bad --min-native-build: %v", err)
	}
}
