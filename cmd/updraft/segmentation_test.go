package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/updraft-cdn/updraft/origin"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// device builds a Capgo update-check body.
func device(id, current, extra string) string {
	return fmt.Sprintf(`{"app_id":"com.example.app","device_id":%q,"version_name":%q,"version_build":"1.0.0",
		"platform":"android","plugin_version":"7.1.0","is_emulator":false,"is_prod":true%s}`, id, current, extra)
}

func post(t *testing.T, url, method, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func answer(t *testing.T, r *running, body string) updateAnswer {
	t.Helper()
	_, b := post(t, "http://"+r.EdgeAddr+"/updates", "POST", body)
	var a updateAnswer
	if err := json.Unmarshal([]byte(b), &a); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return a
}

// cliErr runs a command that must fail and returns its error text.
func cliErr(t *testing.T, r *running, data string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	args = append(args, "--origin", "http://"+r.OriginAddr, "--data", data)
	err := run(context.Background(), args, &out, &errb)
	if err == nil {
		t.Fatalf("updraft %s: succeeded, want an error\n%s", strings.Join(args, " "), out.String())
	}
	return err.Error()
}

// devicesByBucket returns one device id inside and one outside a share of
// bps of the rollout.
func devicesByBucket(id string, bps int) (in, out string) {
	for i := 0; (in == "" || out == "") && i < 1000000; i++ {
		d := fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		if snapshot.Bucket(id, d) < bps {
			if in == "" {
				in = d
			}
		} else if out == "" {
			out = d
		}
	}
	return in, out
}

func TestSegmentationEndToEnd(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	cli(t, r, data, "app", "create", "com.example.app")
	for _, v := range []string{"1.0.1", "1.0.2", "1.0.3"} {
		cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, v)), "--app", "com.example.app", "--version", v)
	}
	cli(t, r, data, "channel", "set", "production", "--app", "com.example.app", "--bundle", "1.0.1", "--default")
	cli(t, r, data, "channel", "set", "beta", "--app", "com.example.app", "--bundle", "1.0.2", "--allow-device-self-set")
	cli(t, r, data, "channel", "set", "enterprise", "--app", "com.example.app", "--bundle", "1.0.3")

	// Rollout of 1.0.2 to 10% of production.
	var ch struct {
		Rollout snapshot.Rollout `json:"rollout"`
	}
	out := cli(t, r, data, "channel", "rollout", "production", "--app", "com.example.app", "--bundle", "1.0.2", "--percent", "10", "--json")
	if err := json.Unmarshal([]byte(out), &ch); err != nil || ch.Rollout.BPS != 1000 {
		t.Fatalf("rollout: %s %v", out, err)
	}
	in, outside := devicesByBucket(ch.Rollout.ID, 1000)
	if a := answer(t, r, device(in, "1.0.1", "")); a.Version != "1.0.2" {
		t.Fatalf("device in the rollout: %+v", a)
	}
	if a := answer(t, r, device(outside, "1.0.0", "")); a.Version != "1.0.1" {
		t.Fatalf("device outside the rollout: %+v", a)
	}
	res := cli(t, r, data, "resolve", "--app", "com.example.app", "--device", in, "--platform", "android", "--version-build", "1.0.0", "--version-name", "1.0.1")
	if !strings.Contains(res, "update to 1.0.2") || !strings.Contains(res, "in the rollout (bucket") || !strings.Contains(res, "channel production by rule default") {
		t.Fatalf("resolve output:\n%s", res)
	}

	// Pause: the device already on 1.0.2 keeps it; the one in the bucket but
	// not yet updated is not added.
	cli(t, r, data, "channel", "rollout", "production", "--app", "com.example.app", "--pause")
	if a := answer(t, r, device(in, "1.0.2", "")); a.Error != "no_new_version_available" {
		t.Fatalf("paused, already on rollout bundle: %+v", a)
	}
	if a := answer(t, r, device(in, "1.0.1", "")); a.Version != "" || a.Error != "no_new_version_available" {
		t.Fatalf("paused, in bucket, on the channel bundle: want nothing new, got %+v", a)
	}
	cli(t, r, data, "channel", "rollout", "production", "--app", "com.example.app", "--resume")
	if a := answer(t, r, device(in, "1.0.1", "")); a.Version != "1.0.2" {
		t.Fatalf("resumed: %+v", a)
	}
	// The README's "Then --percent 50": resizing keeps the rollout's bundle
	// (issue 16: it used to require --bundle again).
	out = cli(t, r, data, "channel", "rollout", "production", "--app", "com.example.app", "--percent", "50", "--json")
	var resized struct {
		Rollout snapshot.Rollout `json:"rollout"`
	}
	if err := json.Unmarshal([]byte(out), &resized); err != nil || resized.Rollout.BPS != 5000 || resized.Rollout.Bundle != "1.0.2" {
		t.Fatalf("resize with --percent alone: %s %v", out, err)
	}
	if msg := cliErr(t, r, data, "channel", "rollout", "beta", "--app", "com.example.app", "--percent", "50"); !strings.Contains(msg, "no rollout to resize") {
		t.Fatalf("resize without a rollout: %s", msg)
	}
	// channel list shows the running rollout (issue 16).
	if out := cli(t, r, data, "channel", "list", "--app", "com.example.app"); !strings.Contains(out, "rollout 1.0.2 50.00%") {
		t.Fatalf("channel list does not show the rollout:\n%s", out)
	}

	// All-or-nothing refusals: nothing changes.
	for _, c := range []struct {
		args []string
		code string
	}{
		{[]string{"channel", "rollout", "production", "--app", "com.example.app", "--bundle", "1.0.2", "--bps", "10001"}, "invalid_bps"},
		{[]string{"channel", "rollout", "production", "--app", "com.example.app", "--bundle", "9.9.9", "--percent", "50"}, "unknown_bundle"},
		{[]string{"channel", "rollout", "nope", "--app", "com.example.app", "--bundle", "1.0.2", "--percent", "50"}, "channel_not_found"},
		{[]string{"channel", "ab", "production", "--app", "com.example.app", "--arm", "a=1.0.3:50"}, "rollout_active"},
		{[]string{"segment", "add", "bad", "--app", "com.example.app", "--channel", "beta", "--version-build", ">=banana"}, "invalid_segment"},
		{[]string{"segment", "add", "bad", "--app", "com.example.app", "--channel", "nope"}, "channel_not_found"},
		{[]string{"device", "override", "not-a-uuid", "--app", "com.example.app", "--channel", "beta"}, "invalid_device_id"},
	} {
		if msg := cliErr(t, r, data, c.args...); !strings.Contains(msg, c.code) {
			t.Errorf("%v: error %q, want code %s", c.args, msg, c.code)
		}
	}
	if a := answer(t, r, device(in, "1.0.1", "")); a.Version != "1.0.2" {
		t.Fatalf("a refused change altered the rollout: %+v", a)
	}

	// Promote: everyone gets 1.0.2 from the channel itself.
	cli(t, r, data, "channel", "rollout", "production", "--app", "com.example.app", "--promote")
	if a := answer(t, r, device(outside, "1.0.1", "")); a.Version != "1.0.2" {
		t.Fatalf("promoted: %+v", a)
	}
	// A new rollout, then rollback: devices on it go back to the channel bundle.
	cli(t, r, data, "channel", "rollout", "production", "--app", "com.example.app", "--bundle", "1.0.3", "--percent", "100")
	if a := answer(t, r, device(outside, "1.0.2", "")); a.Version != "1.0.3" {
		t.Fatalf("100%% rollout: %+v", a)
	}
	cli(t, r, data, "channel", "rollout", "production", "--app", "com.example.app", "--rollback")
	if a := answer(t, r, device(outside, "1.0.3", "")); a.Version != "1.0.2" {
		t.Fatalf("rolled back: %+v", a)
	}

	// Segment: enterprise custom ids go to the private enterprise channel.
	cli(t, r, data, "segment", "add", "acme", "--app", "com.example.app", "--channel", "enterprise", "--custom-id-prefix", "acme-")
	if a := answer(t, r, device(outside, "1.0.2", `,"custom_id":"acme-7"`)); a.Version != "1.0.3" {
		t.Fatalf("segment: %+v", a)
	}
	if out := cli(t, r, data, "segment", "list", "--app", "com.example.app"); !strings.Contains(out, "custom_id prefix acme-") {
		t.Fatalf("segment list:\n%s", out)
	}
	// Device override beats the segment.
	cli(t, r, data, "device", "override", outside, "--app", "com.example.app", "--channel", "beta")
	if a := answer(t, r, device(outside, "1.0.0", `,"custom_id":"acme-7"`)); a.Version != "1.0.2" {
		t.Fatalf("override: %+v", a)
	}
	res = cli(t, r, data, "resolve", "--app", "com.example.app", "--device", outside, "--platform", "android", "--version-build", "1.0.0", "--custom-id", "acme-7")
	if !strings.Contains(res, "channel beta by rule override") {
		t.Fatalf("resolve with override:\n%s", res)
	}
	cli(t, r, data, "device", "override", outside, "--app", "com.example.app", "--clear")
	cli(t, r, data, "segment", "remove", "acme", "--app", "com.example.app")
	if a := answer(t, r, device(outside, "1.0.0", `,"custom_id":"acme-7"`)); a.Version != "1.0.2" {
		t.Fatalf("after clearing override and segment: %+v", a)
	}

	// Self-assignment through /channel_self takes effect on the next check.
	// A current plugin (8.x) keeps its channel on the device and sends it as
	// defaultChannel (Capgo channel_self.ts:285-491).
	edge := "http://" + r.EdgeAddr + "/channel_self"
	current := func(id, v, extra string) string {
		return strings.Replace(device(id, v, extra), `"7.1.0"`, `"8.51.14"`, 1)
	}
	if code, b := post(t, edge, "POST", current(outside, "1.0.2", `,"channel":"beta"`)); code != 200 || b != `{"status":"ok","allowSet":true}` {
		t.Fatalf("setChannel beta: %d %s", code, b)
	}
	if _, b := post(t, edge, "POST", current(outside, "1.0.2", `,"channel":"enterprise"`)); !strings.Contains(b, `"error":"channel_self_set_not_allowed"`) {
		t.Fatalf("setChannel enterprise: %s", b)
	}
	if _, b := post(t, edge, "POST", current(outside, "1.0.2", `,"channel":"production"`)); !strings.Contains(b, `"error":"public_channel_self_set_not_allowed"`) {
		t.Fatalf("setChannel production: %s", b)
	}
	if a := answer(t, r, current(outside, "1.0.0", `,"defaultChannel":"beta"`)); a.Version != "1.0.2" {
		t.Fatalf("self-assigned beta: %+v", a)
	}
	// getChannel echoes the defaultChannel as "default" (channel_self.test.ts:1316).
	if _, b := post(t, edge, "PUT", current(outside, "1.0.0", `,"defaultChannel":"beta"`)); b != `{"channel":"beta","status":"default"}` {
		t.Fatalf("getChannel: %s", b)
	}
	if _, b := post(t, edge, "PUT", current(outside, "1.0.0", "")); b != `{"channel":"production","status":"default"}` {
		t.Fatalf("getChannel default: %s", b)
	}
	if _, b := post(t, edge+"?app_id=com.example.app&platform=android&is_emulator=false&is_prod=true", "GET", ""); !strings.Contains(b, `"name":"beta","public":false,"allow_self_set":true`) ||
		!strings.Contains(b, `"name":"production","public":true`) || strings.Contains(b, "enterprise") {
		t.Fatalf("listChannels: %s", b)
	}
	if code, b := post(t, edge+"?app_id=com.example.app&device_id="+outside+"&platform=android&plugin_version=8.51.14&version_name=1.0.0&version_build=1.0.0", "DELETE", ""); code != 200 || b != `{"status":"ok"}` {
		t.Fatalf("unsetChannel: %d %s", code, b)
	}
	if code, b := post(t, edge, "DELETE", ""); code != 400 || !strings.Contains(b, `"invalid_query_parameters"`) {
		t.Fatalf("unsetChannel without a query: %d %s", code, b)
	}

	// A legacy plugin (7.1.0 < 7.34.0) expects the server to remember its
	// choice: stored at the origin as a device override (source device),
	// seen by its next check without defaultChannel, removed by unsetChannel
	// (channel_self.test.ts:648, :843, :954).
	if code, b := post(t, edge, "POST", device(outside, "1.0.0", `,"channel":"beta"`)); code != 200 || b != `{"status":"ok"}` {
		t.Fatalf("legacy setChannel beta: %d %s", code, b)
	}
	if a := answer(t, r, device(outside, "1.0.0", "")); a.Version != "1.0.2" {
		t.Fatalf("legacy device after setChannel beta: %+v", a)
	}
	if out := cli(t, r, data, "device", "overrides", "--app", "com.example.app"); !strings.Contains(out, outside) || !strings.Contains(out, "beta") || !strings.Contains(out, "device") {
		t.Fatalf("device overrides after a legacy setChannel:\n%s", out)
	}
	if _, b := post(t, edge, "PUT", device(outside, "1.0.0", "")); b != `{"channel":"beta","status":"override","allowSet":true}` {
		t.Fatalf("legacy getChannel: %s", b)
	}
	if code, b := post(t, edge+"?app_id=com.example.app&device_id="+outside+"&platform=android&plugin_version=7.1.0&version_name=1.0.0&version_build=1.0.0", "DELETE", ""); code != 200 || b != `{"status":"ok"}` {
		t.Fatalf("legacy unsetChannel: %d %s", code, b)
	}
	if a := answer(t, r, device(outside, "1.0.0", "")); a.Version != "1.0.2" || !strings.Contains(cli(t, r, data, "resolve", "--app", "com.example.app", "--device", outside, "--platform", "android", "--version-build", "1.0.0"), "by rule default") {
		t.Fatalf("legacy device after unsetChannel: %+v", a)
	}
	if code, b := post(t, edge+"?app_id=com.example.app&device_id="+outside+"&platform=android&plugin_version=7.1.0&version_name=1.0.0&version_build=1.0.0", "DELETE", ""); code != 200 || b != `{"error":"cannot_override","message":"Cannot change device override current channel don't allow it"}` {
		t.Fatalf("legacy unsetChannel, nothing stored: %d %s", code, b)
	}

	// A/B split on beta.
	cli(t, r, data, "channel", "ab", "beta", "--app", "com.example.app", "--arm", "a=1.0.1:50", "--arm", "b=1.0.3:50")
	c := client.New("http://"+r.OriginAddr, readKey(t, data))
	seen := map[string]bool{}
	for i := 0; i < 64; i++ {
		d := fmt.Sprintf("%08x-1111-4000-8000-%012x", i, i)
		res, err := c.Resolve(context.Background(), "com.example.app", origin.DeviceRequest{DeviceID: d, VersionName: "1.0.0", VersionBuild: "1.0.0",
			Platform: "android", PluginVersion: "7.1.0", DefaultChannel: "beta", IsProd: true})
		if err != nil {
			t.Fatal(err)
		}
		seen[res.Arm+"="+res.Version] = true
	}
	if !seen["a=1.0.1"] || !seen["b=1.0.3"] || len(seen) != 2 {
		t.Fatalf("A/B arms seen: %v", seen)
	}
	var apiErr *client.APIError
	if _, err := c.Rollout(context.Background(), "com.example.app", "beta", origin.RolloutRequest{Action: "pause"}); !errors.As(err, &apiErr) || apiErr.Code != "no_rollout" {
		t.Fatalf("pause without rollout: %v", err)
	}
}

func writeZip(t *testing.T, b []byte) string {
	t.Helper()
	p := t.TempDir() + "/bundle.zip"
	if err := writeFile(p, b); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBundleWithoutSubcommand: `updraft bundle` alone lists its subcommands
// instead of asking for --app (issue 16).
func TestBundleWithoutSubcommand(t *testing.T) {
	for _, args := range [][]string{{"bundle"}, {"bundle", "uplod", "--app", "x"}} {
		err := run(t.Context(), args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "upload, list, delete, rebuild or compatibility") || strings.Contains(err.Error(), "--app") {
			t.Fatalf("%v: %v", args, err)
		}
	}
}
