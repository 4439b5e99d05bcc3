package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin"
	"github.com/updraft-cdn/updraft/origin/client"
)

// TestBenchLeavesRealAppAlone: `bench --scenario stats` used to post its
// fake events into com.example.app for good (issue 16). It now loads a
// throwaway bench.* app, created and deleted through the operator API; the
// real app's bundles, channels and statistics stay as they were. --app
// alone is refused; with --i-know-this-is-production it loads that app.
func TestBenchLeavesRealAppAlone(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	ctx := context.Background()
	cli(t, r, data, "app", "create", "com.example.app")
	cli(t, r, data, "bundle", "upload", fixture(t, "swagger-ui-5.34.0.zip"), "--app", "com.example.app", "--version", "1.0.1", "--channel", "production")
	cli(t, r, data, "channel", "set", "production", "--app", "com.example.app", "--default")
	c := client.New("http://"+r.OriginAddr, readKey(t, data))
	from := url.Values{"from": {strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)}}
	events := func() int64 {
		rep, err := c.Stats(ctx, "com.example.app", from)
		if err != nil {
			t.Fatal(err)
		}
		return rep.Events
	}
	// post sends n events of com.example.app to the edge and waits until the
	// origin counts them: everything the edge accepted before is ingested.
	post := func(n int, action string) {
		t.Helper()
		before := events()
		var batch []string
		for i := range n {
			batch = append(batch, `{"app_id":"com.example.app","device_id":"00000000-0000-4000-8000-00000000000`+strconv.Itoa(i)+
				`","platform":"android","version_name":"1.0.1","old_version_name":"","version_build":"1.0.0","version_code":"1","version_os":"14",`+
				`"plugin_version":"8.51.14","is_emulator":false,"is_prod":true,"action":"`+action+`","timestamp":`+strconv.FormatInt(time.Now().UnixMilli(), 10)+`}`)
		}
		resp, err := http.Post("http://"+r.EdgeAddr+"/stats", "application/json", strings.NewReader("["+strings.Join(batch, ",")+"]"))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("post events: %v %v", err, resp)
		}
		resp.Body.Close()
		eventually(t, 60*time.Second, "the origin to count the posted events", func() bool { return events() >= before+int64(n) })
	}
	waitBuild(t, c, "com.example.app", "1.0.1", "ready") // its build state is part of what is compared
	post(3, "set")
	type state struct {
		Bundles, Channels, Stats any
		Events                   int64
	}
	snapshot := func() state {
		var s state
		b, _ := c.ListBundles(ctx, "com.example.app")
		ch, _ := c.ListChannels(ctx, "com.example.app")
		rep, err := c.Stats(ctx, "com.example.app", from)
		if err != nil {
			t.Fatal(err)
		}
		s.Bundles, s.Channels, s.Stats, s.Events = b, ch, rep.Bundles, rep.Events
		j, _ := json.Marshal(s) // compare as JSON: same shape either side
		var out state
		json.Unmarshal(j, &out)
		return out
	}
	before := snapshot()

	bench := func(extra ...string) error {
		args := append([]string{"bench", "--target", "http://" + r.EdgeAddr, "--scenario", "stats", "--devices", "20", "--duration", "500ms",
			"--connections", "2", "--origin", "http://" + r.OriginAddr, "--data", data, "--json"}, extra...)
		var out, errb bytes.Buffer
		err := run(ctx, args, &out, &errb)
		if err == nil && !strings.Contains(out.String(), `"events_accepted"`) {
			t.Fatalf("bench %v accepted no events:\n%s\n%s", extra, out.String(), errb.String())
		}
		return err
	}
	if err := bench(); err != nil {
		t.Fatal(err)
	}
	// A single event of the real app, after the bench's: once the origin
	// counts it, it has ingested what the edge accepted before it.
	post(1, "app_moved_to_foreground")
	after := snapshot()
	if after.Events != before.Events+1 {
		t.Fatalf("com.example.app counts %d events after the bench (%d before, +1 marker): the bench's events landed in it", after.Events, before.Events)
	}
	after.Events = before.Events
	for _, b := range after.Stats.([]any) { // the marker's own count
		if b := b.(map[string]any); b["version_name"] == "1.0.1" {
			b["events"] = b["events"].(float64) - 1
		}
	}
	if !reflect.DeepEqual(before, after) {
		bj, _ := json.Marshal(before)
		aj, _ := json.Marshal(after)
		t.Fatalf("com.example.app changed under the bench:\nbefore %s\nafter  %s", bj, aj)
	}
	apps, err := c.ListApps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 1 || apps[0].ID != "com.example.app" {
		t.Fatalf("apps after the bench: %+v (the bench app must be deleted)", apps)
	}

	// --app alone is refused, naming the flag; nothing is sent.
	err = bench("--app", "com.example.app")
	if err == nil || !strings.Contains(err.Error(), "--i-know-this-is-production") {
		t.Fatalf("bench --app without --i-know-this-is-production: %v", err)
	}
	// With it, the named app is loaded.
	if err := bench("--app", "com.example.app", "--i-know-this-is-production"); err != nil {
		t.Fatal(err)
	}
	post(1, "app_moved_to_foreground")
	if n := events(); n <= after.Events+1 {
		t.Fatalf("bench --app com.example.app --i-know-this-is-production: the app counts %d events, want the bench's too", n)
	}
}

// TestAppDelete: DELETE /api/v1/apps/{app} needs ?confirm=APPID (the CLI,
// --yes) and removes the app with its bundles and channels.
func TestAppDelete(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	cli(t, r, data, "app", "create", "com.example.gone")
	cli(t, r, data, "bundle", "upload", fixture(t, "swagger-ui-5.34.0.zip"), "--app", "com.example.gone", "--version", "1.0.1", "--channel", "production")
	cli(t, r, data, "channel", "set", "beta", "--app", "com.example.gone", "--bundle", "1.0.1", "--allow-device-self-set")
	c := client.New("http://"+r.OriginAddr, readKey(t, data))
	req, _ := http.NewRequest("DELETE", "http://"+r.OriginAddr+"/api/v1/apps/com.example.gone", nil)
	req.Header.Set("Authorization", "Bearer "+readKey(t, data))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e struct{ Error string }
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 400 || e.Error != origin.CodeConfirmRequired {
		t.Fatalf("DELETE without confirm: HTTP %d %q", resp.StatusCode, e.Error)
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"app", "delete", "com.example.gone", "--origin", "http://" + r.OriginAddr, "--data", data}, &out, &errb); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("app delete without --yes: %v", err)
	}
	if got := cli(t, r, data, "app", "delete", "com.example.gone", "--yes"); !strings.Contains(got, "deleted app com.example.gone (1 bundles)") {
		t.Fatalf("app delete: %s", got)
	}
	if apps, _ := c.ListApps(context.Background()); len(apps) != 0 {
		t.Fatalf("apps after delete: %+v", apps)
	}
	if _, err := c.ListBundles(context.Background(), "com.example.gone"); err == nil {
		t.Fatal("bundles of a deleted app still listed")
	}
	// The id is free again.
	cli(t, r, data, "app", "create", "com.example.gone")
}
