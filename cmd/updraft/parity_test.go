package main

import (
	"context"
	"crypto/ed25519"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin"
)

// Capgo parity end to end, through the CLI and the device API. Sources are
// Cap-go/capgo at 4bc7d83f and Cap-go/capacitor-updater at e235d092.

// `channel set NAME --bundle builtin` sends devices back to the store build
// (Capgo: channels.version NULL; update.ts:639-651;
// tests/updates.test.ts:434). The answer is the bare {"version":"builtin"}
// the unmodified plugin resets on (CapacitorUpdaterPlugin.java
// backgroundDownload); a rollout of a real bundle on it works and
// promoting it makes the channel a bundle channel again.
func TestBuiltinChannelEndToEnd(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	cli(t, r, data, "app", "create", "com.example.app")
	for _, v := range []string{"1.0.1", "1.0.2"} {
		cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, v)), "--app", "com.example.app", "--version", v)
	}
	cli(t, r, data, "channel", "set", "production", "--app", "com.example.app", "--bundle", "1.0.1", "--default")
	if out := cli(t, r, data, "channel", "set", "production", "--app", "com.example.app", "--bundle", "builtin"); !strings.Contains(out, "bundle=builtin") {
		t.Fatalf("channel set: %s", out)
	}
	if out := cli(t, r, data, "channel", "list", "--app", "com.example.app"); !strings.Contains(out, "production  builtin") {
		t.Fatalf("channel list:\n%s", out)
	}
	onBundle := device("00009a6b-eefe-490a-9c60-8e965132ae51", "1.0.1", "")
	if code, b := post(t, "http://"+r.EdgeAddr+"/updates", "POST", onBundle); code != 200 || b != `{"version":"builtin"}` {
		t.Fatalf("/updates on a builtin channel: %d %s", code, b)
	}
	res := cli(t, r, data, "resolve", "--app", "com.example.app", "--device", "00009a6b-eefe-490a-9c60-8e965132ae51", "--platform", "android",
		"--version-build", "1.0.0", "--version-name", "1.0.1")
	if !strings.HasPrefix(res, "revert to builtin") || !strings.Contains(res, "channel production by rule default") {
		t.Fatalf("resolve:\n%s", res)
	}
	if a := answer(t, r, device("00009a6b-eefe-490a-9c60-8e965132ae51", "builtin", "")); a.Error != "already_on_builtin" || a.Kind != "up_to_date" {
		t.Fatalf("device on the store build: %+v", a)
	}
	if msg := cliErr(t, r, data, "channel", "rollout", "production", "--app", "com.example.app", "--bundle", "builtin", "--percent", "10"); !strings.Contains(msg, "builtin_not_allowed") {
		t.Fatalf("rollout of builtin: %s", msg)
	}
	cli(t, r, data, "channel", "rollout", "production", "--app", "com.example.app", "--bundle", "1.0.2", "--percent", "100")
	if a := answer(t, r, onBundle); a.Version != "1.0.2" {
		t.Fatalf("rollout of 1.0.2 on the builtin channel: %+v", a)
	}
	cli(t, r, data, "channel", "rollout", "production", "--app", "com.example.app", "--promote")
	if out := cli(t, r, data, "channel", "list", "--app", "com.example.app"); !strings.Contains(out, "production  1.0.2") {
		t.Fatalf("after promote:\n%s", out)
	}
}

// `app set ID --expose-metadata --allow-device-custom-id=false` (PATCH
// /api/v1/apps/{app}): link and comment only when the app exposes them and
// the plugin reads them (Capgo update.ts:213-225, :413;
// tests/expose-metadata.test.ts:240 and :320), custom ids ignored by segment
// rules (plugin_parser.ts:34-36); `app list` shows both.
func TestAppProtocolOptionsEndToEnd(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	cli(t, r, data, "app", "create", "com.example.app")
	cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, "1.0.1")), "--app", "com.example.app", "--version", "1.0.1",
		"--link", "https://example.com/release-notes", "--comment", "new features")
	cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, "1.0.2")), "--app", "com.example.app", "--version", "1.0.2")
	cli(t, r, data, "channel", "set", "production", "--app", "com.example.app", "--bundle", "1.0.1", "--default")
	cli(t, r, data, "channel", "set", "vip", "--app", "com.example.app", "--bundle", "1.0.2")
	cli(t, r, data, "segment", "add", "vips", "--app", "com.example.app", "--channel", "vip", "--custom-id-prefix", "vip-")
	dev := "00009a6b-eefe-490a-9c60-8e965132ae51"
	check := func(plugin string) string {
		_, b := post(t, "http://"+r.EdgeAddr+"/updates", "POST", strings.Replace(device(dev, "1.0.0", ""), `"7.1.0"`, `"`+plugin+`"`, 1))
		return b
	}
	if b := check("8.35.0"); strings.Contains(b, "link") || strings.Contains(b, "comment") {
		t.Fatalf("expose_metadata off: %s", b)
	}
	if out := cli(t, r, data, "app", "set", "com.example.app", "--expose-metadata"); !strings.Contains(out, "expose_metadata=true allow_device_custom_id=true") {
		t.Fatalf("app set: %s", out)
	}
	if b := check("8.35.0"); !strings.HasSuffix(b, `,"link":"https://example.com/release-notes","comment":"new features"}`) {
		t.Fatalf("expose_metadata on, 8.35.0: %s", b)
	}
	if b := check("8.34.9"); strings.Contains(b, "link") {
		t.Fatalf("expose_metadata on, 8.34.9: %s", b)
	}
	vip := device(dev, "1.0.0", `,"custom_id":"vip-1"`)
	if a := answer(t, r, vip); a.Version != "1.0.2" {
		t.Fatalf("segment on custom id: %+v", a)
	}
	cli(t, r, data, "app", "set", "com.example.app", "--allow-device-custom-id=false")
	if a := answer(t, r, vip); a.Version != "1.0.1" {
		t.Fatalf("custom ids ignored: %+v", a)
	}
	out := cli(t, r, data, "app", "list")
	if !strings.Contains(out, "EXPOSE_METADATA") || !strings.Contains(out, "true             false") {
		t.Fatalf("app list:\n%s", out)
	}
	if msg := cliErr(t, r, data, "app", "set", "com.example.app"); !strings.Contains(msg, "nothing to set") {
		t.Fatalf("app set without flags: %s", msg)
	}
}

// A legacy plugin's setChannel at a child edge (edge → parent edge →
// origin) is stored at the origin (Capgo keeps it in channel_devices,
// channel_self.ts:389-414) and the child answers once it serves it: the
// device's very next check at the child sees the override.
func TestLegacySetChannelThroughEdges(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	cli(t, r, data, "app", "create", "com.example.app")
	for _, v := range []string{"1.0.1", "1.0.2"} {
		cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, v)), "--app", "com.example.app", "--version", v)
	}
	cli(t, r, data, "channel", "set", "production", "--app", "com.example.app", "--bundle", "1.0.1", "--default")
	cli(t, r, data, "channel", "set", "beta", "--app", "com.example.app", "--bundle", "1.0.2", "--allow-device-self-set")

	priv, err := origin.LoadOrCreateSigningKey(data)
	if err != nil {
		t.Fatal(err)
	}
	pub := origin.EncodePublicKey(priv.Public().(ed25519.PublicKey))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	t.Cleanup(func() {
		cancel()
		for range 2 {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("edge did not stop")
			}
		}
	})
	startEdge := func(name, upstream string) string {
		addr := freePort(t)
		args := []string{"edge", "--upstream", "http://" + upstream, "--origin-pubkey", pub, "--edge-key-file", config.EdgeKeyFile(data),
			"--data", filepath.Join(data, name), "--listen", addr, "--log-level", "error"}
		go func() { done <- run(ctx, args, io.Discard, io.Discard) }()
		waitHTTP(t, "http://"+addr+"/healthz")
		deadline := time.Now().Add(10 * time.Second)
		for {
			if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return addr
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("edge %s not ready", name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	parent := startEdge("parent", r.OriginAddr)
	child := startEdge("child", parent)

	const dev = "00009a6b-eefe-490a-9c60-8e965132ae51"
	if code, b := post(t, "http://"+child+"/channel_self", "POST", device(dev, "1.0.0", `,"channel":"beta"`)); code != 200 || b != `{"status":"ok"}` {
		t.Fatalf("legacy setChannel at the child: %d %s", code, b)
	}
	if a := answer(t, &running{EdgeAddr: child}, device(dev, "1.0.0", "")); a.Version != "1.0.2" {
		t.Fatalf("next check at the child: %+v, want beta's 1.0.2", a)
	}
	if out := cli(t, r, data, "device", "overrides", "--app", "com.example.app"); !strings.Contains(out, dev+"  beta     device") {
		t.Fatalf("device overrides:\n%s", out)
	}
	if code, b := post(t, "http://"+child+"/channel_self?app_id=com.example.app&device_id="+dev+"&platform=android&plugin_version=7.1.0&version_name=1.0.2&version_build=1.0.0", "DELETE", ""); code != 200 || b != `{"status":"ok"}` {
		t.Fatalf("legacy unsetChannel at the child: %d %s", code, b)
	}
	if a := answer(t, &running{EdgeAddr: child}, device(dev, "1.0.0", "")); a.Version != "1.0.1" {
		t.Fatalf("after unsetChannel: %+v, want production's 1.0.1", a)
	}

	// The origin's refusal travels back through both edges: an operator's
	// pin (here on a self-assignable channel, so the edges' own checks let
	// the request through) is not the device's to move or remove.
	cli(t, r, data, "channel", "set", "gamma", "--app", "com.example.app", "--bundle", "1.0.2", "--allow-device-self-set")
	const pinned = "11111111-2222-4333-8444-555555555555"
	cli(t, r, data, "device", "override", pinned, "--app", "com.example.app", "--channel", "beta")
	// Wait until the child edge follows both changes.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, list := get(t, "http://"+child+"/channel_self?app_id=com.example.app&platform=android&is_emulator=false&is_prod=true")
		if a := answer(t, &running{EdgeAddr: child}, device(pinned, "1.0.0", "")); a.Version == "1.0.2" && strings.Contains(string(list), `"gamma"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child edge did not get the new channel and pin")
		}
	}
	const cannot = `{"error":"cannot_override","message":"Cannot change device override current channel don't allow it"}`
	if code, b := post(t, "http://"+child+"/channel_self", "POST", device(pinned, "1.0.0", `,"channel":"gamma"`)); code != 200 || b != cannot {
		t.Fatalf("legacy setChannel off an operator pin: %d %s", code, b)
	}
	if code, b := post(t, "http://"+child+"/channel_self?app_id=com.example.app&device_id="+pinned+"&platform=android&plugin_version=7.1.0&version_name=1.0.2&version_build=1.0.0", "DELETE", ""); code != 200 || b != cannot {
		t.Fatalf("legacy unsetChannel of an operator pin: %d %s", code, b)
	}
	if out := cli(t, r, data, "device", "overrides", "--app", "com.example.app"); !strings.Contains(out, pinned+"  beta     operator") {
		t.Fatalf("operator pin changed:\n%s", out)
	}
}
