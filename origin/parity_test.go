package origin

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/store"
)

// parityOrigin is an origin with com.example.app: bundle 1.0.0 on the
// default production channel, beta (self-assignable) and locked (not).
func parityOrigin(t *testing.T) *testOrigin {
	t.Helper()
	o := startOrigin(t)
	ctx := context.Background()
	c := o.client
	if _, err := c.CreateApp(ctx, "com.example.app", ""); err != nil {
		t.Fatal(err)
	}
	zip := makeZip(t, map[string]string{"index.html": "<html>1</html>"})
	if _, err := c.UploadBundle(ctx, "com.example.app", "1.0.0", bytes.NewReader(zip), client.UploadOptions{Channel: "production"}); err != nil {
		t.Fatal(err)
	}
	tr := true
	if _, err := c.SetChannel(ctx, "com.example.app", "production", store.ChannelPatch{Public: &tr}); err != nil {
		t.Fatal(err)
	}
	v := "1.0.0"
	if _, err := c.SetChannel(ctx, "com.example.app", "beta", store.ChannelPatch{Bundle: &v, AllowDeviceSelfSet: &tr}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetChannel(ctx, "com.example.app", "locked", store.ChannelPatch{Bundle: &v}); err != nil {
		t.Fatal(err)
	}
	return o
}

// POST /v1/device-channel stores an old plugin's setChannel (Capgo
// channel_self.ts:285-415 keeps it in channel_devices) as an override with
// source "device", with the edge key, and answers the revision of a
// published snapshot that holds it; Capgo's refusals are 404/409 codes.
func TestDeviceChannelEndpoint(t *testing.T) {
	o := parityOrigin(t)
	ctx := context.Background()
	edge := client.New(o.http.URL, readKeyFile(t, o.dir, "edge-key"))
	const dev = "00009a6b-eefe-490a-9c60-8e965132ae51"
	post := func(c *client.Client, channel string) (DeviceChannelResult, error) {
		var out DeviceChannelResult
		err := c.DoJSON(ctx, http.MethodPost, "/v1/device-channel", DeviceChannelRequest{AppID: "com.example.app", DeviceID: dev, Channel: channel}, &out)
		return out, err
	}
	res, err := post(edge, "beta")
	if err != nil {
		t.Fatal(err)
	}
	cur := o.srv.Current().Snap
	if cur.Rev < res.Rev {
		t.Fatalf("answered rev %d before publishing it (published %d)", res.Rev, cur.Rev)
	}
	if ch := cur.App("com.example.app").Override(dev); ch == nil || ch.Name != "beta" {
		t.Fatalf("published override %v, want beta", ch)
	}
	list, err := o.client.ListOverrides(ctx, "com.example.app", "", 10)
	if err != nil || len(list) != 1 || list[0].Source != store.SourceDevice || list[0].Channel != "beta" {
		t.Fatalf("overrides %+v %v, want beta from the device", list, err)
	}
	for _, c := range []struct {
		channel, want string
	}{
		{"nope", "404 channel_not_found"},
		{"locked", "409 channel_self_set_not_allowed"},
		{"production", "409 channel_self_set_not_allowed"},
		{"bad name!", "400 invalid_channel_name"},
	} {
		if _, err := post(edge, c.channel); apiCode(err) != c.want {
			t.Errorf("channel %q: %v, want %s", c.channel, err, c.want)
		}
	}
	if err := o.client.SetOverrides(ctx, "com.example.app", "locked", []string{dev}); err != nil {
		t.Fatal(err)
	}
	if _, err := post(edge, ""); apiCode(err) != "409 cannot_override" {
		t.Fatalf("remove a locked operator pin: %v", err)
	}
	if err := o.client.SetOverrides(ctx, "com.example.app", "", []string{dev}); err != nil {
		t.Fatal(err)
	}
	if res, err := post(edge, ""); err != nil || o.srv.Current().Snap.Rev < res.Rev {
		t.Fatalf("remove nothing: %+v %v", res, err)
	}
	if _, err := post(client.New(o.http.URL, "upd_wrong"), "beta"); apiCode(err) != "401 unauthorized" {
		t.Fatalf("wrong key: %v", err)
	}
}

// resolve says "revert to builtin" for a device whose channel targets the
// store build (Capgo update.ts:639-651).
func TestResolveBuiltin(t *testing.T) {
	o := parityOrigin(t)
	ctx := context.Background()
	b := "builtin"
	if ch, err := o.client.SetChannel(ctx, "com.example.app", "production", store.ChannelPatch{Bundle: &b}); err != nil || ch.Bundle != "builtin" {
		t.Fatalf("set builtin: %+v %v", ch, err)
	}
	dev := DeviceRequest{DeviceID: "00009a6b-eefe-490a-9c60-8e965132ae51", VersionName: "1.0.0", VersionBuild: "1.0.0", Platform: "android", PluginVersion: "8.51.14", IsProd: true}
	res, err := o.client.Resolve(ctx, "com.example.app", dev)
	if err != nil || !res.Update || !res.RevertToBuiltin || res.Version != "builtin" || res.Channel != "production" {
		t.Fatalf("resolve: %+v %v", res, err)
	}
	dev.VersionName = "builtin"
	if res, err := o.client.Resolve(ctx, "com.example.app", dev); err != nil || res.Update || res.Code != "already_on_builtin" {
		t.Fatalf("resolve on builtin: %+v %v", res, err)
	}
	// A rollout cannot target builtin; a builtin channel may roll out a bundle.
	bps := 100
	if _, err := o.client.Rollout(ctx, "com.example.app", "beta", RolloutRequest{Bundle: "builtin", BPS: &bps}); apiCode(err) != "400 builtin_not_allowed" {
		t.Fatalf("rollout of builtin: %v", err)
	}
	if ch, err := o.client.Rollout(ctx, "com.example.app", "production", RolloutRequest{Bundle: "1.0.0", BPS: &bps}); err != nil || ch.Bundle != "builtin" || ch.Rollout == nil {
		t.Fatalf("rollout on builtin: %+v %v", ch, err)
	}
}

// applyProtocolOptions reaches the published snapshot (Capgo's
// apps.expose_metadata and apps.allow_device_custom_id).
func TestApplyProtocolOptions(t *testing.T) {
	o := parityOrigin(t)
	ctx := context.Background()
	tr, fa := true, false
	if err := o.srv.applyProtocolOptions(ctx, "com.example.app", &tr, &fa); err != nil {
		t.Fatal(err)
	}
	a := o.srv.Current().Snap.App("com.example.app")
	if !a.ExposeMetadata || !a.IgnoreCustomID {
		t.Fatalf("published app %+v", a)
	}
	if err := o.srv.applyProtocolOptions(ctx, "com.missing.app", &tr, nil); func() string { c, _ := APIErrorCode(err); return c }() != "app_not_found" {
		t.Fatalf("unknown app: %v", err)
	}
	if err := o.srv.applyProtocolOptions(ctx, "com.missing.app", nil, nil); err != nil {
		t.Fatalf("nothing to set: %v", err)
	}
}

// TestRolloutLogReadable: the rollout log line carries fields, not a Go
// struct dump ("rollout=&{ID:… seed:0 bundle:<nil>}", issue 16).
func TestRolloutLogReadable(t *testing.T) {
	o, logs := startOriginCfg(t, nil)
	c := o.client
	ctx := context.Background()
	if _, err := c.CreateApp(ctx, "com.example.app", ""); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.0.0", "1.0.1"} {
		if _, err := c.UploadBundle(ctx, "com.example.app", v, bytes.NewReader(makeZip(t, map[string]string{"index.html": v})), client.UploadOptions{Channel: "production"}); err != nil {
			t.Fatal(err)
		}
	}
	bps := 1000
	if _, err := c.Rollout(ctx, "com.example.app", "production", RolloutRequest{Bundle: "1.0.0", BPS: &bps}); err != nil {
		t.Fatal(err)
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	var line string
	for _, r := range logs.recs {
		if r.Message == "origin: rollout" {
			line = logs.text(r)
		}
	}
	if line == "" || strings.Contains(line, "&{") || !strings.Contains(line, "rollout_bps=1000") {
		t.Fatalf("rollout log line: %q", line)
	}
}
