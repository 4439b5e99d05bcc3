package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin"
	"github.com/updraft-cdn/updraft/origin/store"
)

// lockedBuffer is a bytes.Buffer safe for a command writing while the test
// reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// edgeIDOf reads the in-process edge's id from its stats spool.
func edgeIDOf(t *testing.T, data string) string {
	t.Helper()
	var id string
	filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "edge-id" {
			b, _ := os.ReadFile(p)
			id = strings.TrimSpace(string(b))
		}
		return nil
	})
	if len(id) != 32 {
		t.Fatalf("edge id %q", id)
	}
	return id
}

func showDevice(t *testing.T, r *running, data, app, dev string) (origin.DeviceDetail, bool) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"device", "show", dev, "--app", app, "--json", "--origin", "http://" + r.OriginAddr, "--data", data}, &out, &errb)
	if err != nil {
		if strings.Contains(err.Error(), "device_not_found") {
			return origin.DeviceDetail{}, false
		}
		t.Fatal(err)
	}
	var d origin.DeviceDetail
	if err := json.Unmarshal(out.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	return d, true
}

// The device inventory end to end: devices check in at a real edge and
// send events; the edge forwards them to the origin; `device show`, `device
// list` and `device tail` report them exactly.
func TestDeviceInventoryEndToEnd(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	const app = "com.example.app"
	cli(t, r, data, "app", "create", app)
	for _, v := range []string{"1.0.1", "1.0.2"} {
		cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, v)), "--app", app, "--version", v)
	}
	cli(t, r, data, "channel", "set", "production", "--app", app, "--bundle", "1.0.1", "--default")
	cli(t, r, data, "channel", "set", "beta", "--app", app, "--bundle", "1.0.2")
	cli(t, r, data, "segment", "add", "testers", "--app", app, "--channel", "beta", "--custom-id-prefix", "qa-")

	const tester, other = "0000aaaa-eefe-490a-9c60-8e965132ae51", "0000bbbb-eefe-490a-9c60-8e965132ae51"
	testerBody := `{"app_id":"com.example.app","device_id":"0000AAAA-EEFE-490A-9C60-8E965132AE51","version_name":"1.0.1",
		"version_build":"1.0.0","version_code":"23","version_os":"17.2","platform":"ios","plugin_version":"8.51.14",
		"is_emulator":false,"is_prod":true,"custom_id":"qa-7"}`
	if a := answer(t, r, testerBody); a.Version != "1.0.2" {
		t.Fatalf("tester: %+v", a)
	}
	if a := answer(t, r, device(other, "1.0.1", "")); a.Error != "no_new_version_available" {
		t.Fatalf("other device: %+v", a)
	}
	if code, b := post(t, "http://"+r.EdgeAddr+"/stats", "POST", `{"app_id":"com.example.app","device_id":"`+tester+`","action":"set",
		"version_name":"1.0.2","old_version_name":"1.0.1","version_build":"1.0.0","version_code":"23","version_os":"17.2","platform":"ios","plugin_version":"8.51.14",
		"is_emulator":false,"is_prod":true}`); code != 200 {
		t.Fatalf("/stats: HTTP %d %s", code, b)
	}
	var d origin.DeviceDetail
	eventually(t, 30*time.Second, "the tester's check-in and event at the origin", func() bool {
		var ok bool
		d, ok = showDevice(t, r, data, app, tester)
		return ok && d.Device.CheckedIn > 0 && len(d.Events) == 2
	})
	edge := edgeIDOf(t, data)
	got := d.Device
	if got.CheckedIn == 0 || got.LastSeen < got.CheckedIn {
		t.Fatalf("times: %+v", got)
	}
	got.CheckedIn, got.LastSeen = 0, 0
	want := store.Device{AppID: app, DeviceID: tester, EdgeID: edge, Platform: "ios", VersionBuild: "1.0.0", VersionName: "1.0.1",
		PluginVersion: "8.51.14", CustomID: "qa-7", Channel: "beta", Reason: "segment:testers", Outcome: "update", Bundle: "1.0.2"}
	if got != want {
		t.Fatalf("device show:\n got %+v\nwant %+v", got, want)
	}
	ci, ev := d.Events[0], d.Events[1] // by edge time (the same millisecond: by seq)
	if ci.At > ev.At || ci.At == ev.At && ci.Seq > ev.Seq {
		t.Fatalf("events not in time order: %+v", d.Events)
	}
	if ci.Kind == store.LogEvent {
		ci, ev = ev, ci
	}
	if ci.Kind != store.LogCheckIn || ci.Action != "update" || ci.Target != "1.0.2" || ci.Channel != "beta" || ci.Reason != "segment:testers" || ci.EdgeID != edge {
		t.Fatalf("check-in entry %+v\n%+v", ci, d.Events)
	}
	if ev.Kind != store.LogEvent || ev.Action != "set" || ev.VersionName != "1.0.2" || ev.Target != "1.0.1" || ev.EdgeID != edge {
		t.Fatalf("event entry %+v", ev)
	}
	table := cli(t, r, data, "device", "show", strings.ToUpper(tester), "--app", app)
	for _, s := range []string{"segment:testers", "qa-7", "1.0.0", "8.51.14", "beta", edge, "set"} {
		if !strings.Contains(table, s) {
			t.Fatalf("device show lacks %q:\n%s", s, table)
		}
	}
	eventually(t, 30*time.Second, "the other device's check-in", func() bool {
		d, ok := showDevice(t, r, data, app, other)
		return ok && d.Device.Reason == "default" && d.Device.Outcome == "no_new_version_available" && d.Device.Channel == "production"
	})

	// Filters.
	// list runs device list --json: the devices (a JSON array), and the
	// next page's cursor (on stderr).
	list := func(args ...string) origin.DeviceList {
		t.Helper()
		var out, errb bytes.Buffer
		args = append([]string{"device", "list", "--app", app, "--json", "--origin", "http://" + r.OriginAddr, "--data", data}, args...)
		if err := run(context.Background(), args, &out, &errb); err != nil {
			t.Fatalf("updraft %v: %v", args, err)
		}
		var l origin.DeviceList
		if err := json.Unmarshal(out.Bytes(), &l.Devices); err != nil {
			t.Fatalf("%s: %v", out.String(), err)
		}
		if c, ok := strings.CutPrefix(strings.TrimSpace(errb.String()), "more: add --cursor "); ok {
			l.NextCursor = c
		}
		return l
	}
	ids := func(l origin.DeviceList) []string {
		var out []string
		for _, d := range l.Devices {
			out = append(out, d.DeviceID)
		}
		return out
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{nil, []string{tester, other}},
		{[]string{"--channel", "beta"}, []string{tester}},
		{[]string{"--platform", "android"}, []string{other}},
		{[]string{"--version", "1.0.1", "--channel", "production"}, []string{other}},
		{[]string{"--channel", "nope"}, nil},
	} {
		if got := ids(list(c.args...)); !slices.Equal(got, c.want) {
			t.Fatalf("device list %v: %v, want %v", c.args, got, c.want)
		}
	}

	// Paging: 23 more devices, pages of 4: each device exactly once, in
	// device id order.
	for i := range 23 {
		answer(t, r, device(fmt.Sprintf("%08x-0000-4000-8000-%012x", i+1, i), "1.0.1", ""))
	}
	eventually(t, 30*time.Second, "25 devices in the inventory", func() bool { return len(list("--limit", "1000").Devices) == 25 })
	var all []string
	cursor := ""
	pages := 0
	for {
		args := []string{"--limit", "4"}
		if cursor != "" {
			args = append(args, "--cursor", cursor)
		}
		p := list(args...)
		pages++
		all = append(all, ids(p)...)
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	if len(all) != 25 || pages != 7 || !slices.IsSorted(all) || len(slices.Compact(slices.Clone(all))) != 25 {
		t.Fatalf("%d pages: %v", pages, all)
	}
	// The table prints where the next page starts.
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"device", "list", "--app", app, "--limit", "2", "--origin", "http://" + r.OriginAddr, "--data", data}, &out, &errb); err != nil ||
		!strings.Contains(errb.String(), "--cursor ") || !strings.Contains(out.String(), "LAST_CHECK_IN") {
		t.Fatalf("device list table: %v\n%s\n%s", err, out.String(), errb.String())
	}
	first := list("--limit", "4")
	tampered := []byte(first.NextCursor)
	tampered[2] ^= 1
	if msg := cliErr(t, r, data, "device", "list", "--app", app, "--limit", "4", "--cursor", string(tampered)); !strings.Contains(msg, "invalid_cursor") {
		t.Fatalf("tampered cursor: %s", msg)
	}
	if msg := cliErr(t, r, data, "device", "list", "--app", app, "--limit", "4", "--channel", "beta", "--cursor", first.NextCursor); !strings.Contains(msg, "invalid_cursor") {
		t.Fatalf("cursor with other filters: %s", msg)
	}

	// The pinned-device listing keeps its meaning under its new name, and
	// as device list --overrides or --after.
	cli(t, r, data, "device", "override", other, "--app", app, "--channel", "beta")
	for _, args := range [][]string{{"device", "overrides"}, {"device", "list", "--overrides"}, {"device", "list", "--after", "00000000-0000-4000-8000-000000000000"}} {
		if out := cli(t, r, data, append(args, "--app", app)...); !strings.Contains(out, other) || !strings.Contains(out, "SOURCE") {
			t.Fatalf("%v: %s", args, out)
		}
	}

	// Tail: a check-in made after the tail started is streamed.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var tailOut lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"device", "tail", tester, "--app", app, "--json", "--seconds", "60", "--origin", "http://" + r.OriginAddr, "--data", data}, &tailOut, io.Discard)
	}()
	deadline := time.Now().Add(testenv.Patience(30 * time.Second))
	for !strings.Contains(tailOut.String(), `"kind":"checkin"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the tail saw no check-in: %q", tailOut.String())
		}
		answer(t, r, testerBody)
		time.Sleep(300 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("device tail: %v", err)
	}
	var e store.DeviceLogEntry
	line, _, _ := strings.Cut(tailOut.String(), "\n")
	if err := json.Unmarshal([]byte(line), &e); err != nil || e.Kind != store.LogCheckIn || e.Seq <= 2 || e.Reason != "segment:testers" || e.EdgeID != edge {
		t.Fatalf("tail line %q: %+v %v", line, e, err)
	}
}

// --device-retention takes days or a duration; --device-log=false turns
// the log off; both from the command line or a config file; a retention
// under an hour is refused.
func TestDeviceFlags(t *testing.T) {
	t.Setenv("UPDRAFT_DATA", "")
	r, s := newOriginFlags()
	if err := r.load(nil); err != nil {
		t.Fatal(err)
	}
	if s.oc.DeviceRetention != 90*24*time.Hour || s.oc.NoDeviceLog {
		t.Fatalf("defaults: %v, no log %v", s.oc.DeviceRetention, s.oc.NoDeviceLog)
	}
	r, s = newOriginFlags()
	if err := r.load([]string{"--device-retention", "30d", "--device-log=false"}); err != nil {
		t.Fatal(err)
	}
	if s.oc.DeviceRetention != 30*24*time.Hour || !s.oc.NoDeviceLog {
		t.Fatalf("flags: %v, no log %v", s.oc.DeviceRetention, s.oc.NoDeviceLog)
	}
	path := writeConfig(t, "device-retention = \"720h\"\ndevice-log = false\n")
	rs, ss := newServeFlags()
	if err := rs.load([]string{"--config", path}); err != nil {
		t.Fatal(err)
	}
	if ss.oc.DeviceRetention != 30*24*time.Hour || !ss.oc.NoDeviceLog {
		t.Fatalf("config file: %v, no log %v", ss.oc.DeviceRetention, ss.oc.NoDeviceLog)
	}
	for _, bad := range []string{"30m", "x", "-1d"} {
		r, _ := newOriginFlags()
		if err := r.load([]string{"--device-retention", bad}); err == nil {
			t.Errorf("--device-retention %s accepted", bad)
		}
	}
}
