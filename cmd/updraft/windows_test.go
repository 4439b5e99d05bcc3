package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// window is a maintenance window in UTC from now+from to now+to, written as
// `channel set --window` reads it (a window that crosses midnight belongs
// to the day it starts).
func window(now time.Time, from, to time.Duration) string {
	s, e := now.Add(from).UTC(), now.Add(to).UTC()
	return s.Weekday().String()[:3] + " " + s.Format("15:04") + "-" + e.Format("15:04") + " UTC"
}

// TestMaintenanceWindowsEndToEnd: through a real origin and edge, a device
// on a channel whose window excludes now gets Capgo's
// no_new_version_available, and resolve says why and when the window
// opens; with a window that includes now it gets the update; a blackout
// date holds it again; --no-windows lifts it all. The API refuses a
// malformed window with 400 invalid_window, and the audit shows the windows.
func TestMaintenanceWindowsEndToEnd(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	const app = "com.example.app"
	dev := "00000000-0000-4000-8000-000000000001"
	cli(t, r, data, "app", "create", app)
	cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, "1.0.1")), "--app", app, "--version", "1.0.1")

	now := time.Now()
	later := window(now, 2*time.Hour, 3*time.Hour)
	out := cli(t, r, data, "channel", "set", "production", "--app", app, "--bundle", "1.0.1", "--default", "--window", later)
	if !strings.Contains(out, "updates only in maintenance windows: "+later) {
		t.Fatalf("channel set output:\n%s", out)
	}
	if a := answer(t, r, device(dev, "1.0.0", "")); a.Error != "no_new_version_available" || a.Kind != "up_to_date" || a.Version != "" {
		t.Fatalf("outside the window: %+v, want no_new_version_available", a)
	}
	res := cli(t, r, data, "resolve", "--app", app, "--device", dev, "--platform", "android", "--version-build", "1.0.0", "--version-name", "1.0.0", "--json")
	var rs struct {
		Held, HeldVersion string
		NextWindow        *time.Time `json:"next_window"`
	}
	if err := json.Unmarshal([]byte(res), &struct {
		Held        *string     `json:"held"`
		HeldVersion *string     `json:"held_version"`
		NextWindow  **time.Time `json:"next_window"`
	}{&rs.Held, &rs.HeldVersion, &rs.NextWindow}); err != nil {
		t.Fatal(err)
	}
	wantNext := now.Add(2 * time.Hour).UTC().Truncate(time.Minute)
	if rs.Held != "outside_maintenance_window" || rs.HeldVersion != "1.0.1" || rs.NextWindow == nil || !rs.NextWindow.Equal(wantNext) {
		t.Fatalf("resolve: %s, want held outside_maintenance_window until %s", res, wantNext)
	}
	// resolve --at inside the window: the update.
	at := now.Add(150 * time.Minute).UTC().Format(time.RFC3339)
	if res := cli(t, r, data, "resolve", "--app", app, "--device", dev, "--platform", "android", "--version-build", "1.0.0", "--version-name", "1.0.0", "--at", at); !strings.Contains(res, "update to 1.0.1") {
		t.Fatalf("resolve --at %s:\n%s", at, res)
	}

	// A window that includes now, and another: the device updates.
	cli(t, r, data, "channel", "set", "production", "--app", app, "--window", later, "--window", window(now, -time.Hour, time.Hour))
	if a := answer(t, r, device(dev, "1.0.0", "")); a.Version != "1.0.1" {
		t.Fatalf("inside the window: %+v, want 1.0.1", a)
	}
	// Today (UTC) as a blackout date: held again, whatever the window.
	today := now.UTC().Format(time.DateOnly)
	cli(t, r, data, "channel", "set", "production", "--app", app, "--window", window(now, -time.Hour, time.Hour), "--blackout", today)
	if a := answer(t, r, device(dev, "1.0.0", "")); a.Error != "no_new_version_available" {
		t.Fatalf("blackout: %+v", a)
	}
	if out := cli(t, r, data, "channel", "list", "--app", app); !strings.Contains(out, window(now, -time.Hour, time.Hour)+"; never on "+today+" UTC") {
		t.Fatalf("channel list does not show the windows:\n%s", out)
	}
	if res := cli(t, r, data, "resolve", "--app", app, "--device", dev, "--platform", "android", "--version-build", "1.0.0", "--version-name", "1.0.0"); !strings.Contains(res, "maintenance_blackout") {
		t.Fatalf("resolve on a blackout date:\n%s", res)
	}
	out = cli(t, r, data, "channel", "set", "production", "--app", app, "--no-windows")
	if !strings.Contains(out, "no maintenance windows") {
		t.Fatalf("--no-windows output:\n%s", out)
	}
	if a := answer(t, r, device(dev, "1.0.0", "")); a.Version != "1.0.1" {
		t.Fatalf("windows removed: %+v", a)
	}

	// A segment's windows hold the devices it routes, not the channel's others.
	cli(t, r, data, "segment", "add", "enterprise", "--app", app, "--channel", "production", "--custom-id-prefix", "corp-", "--window", later)
	if a := answer(t, r, device(dev, "1.0.0", `,"custom_id":"corp-1"`)); a.Error != "no_new_version_available" {
		t.Fatalf("segment device outside its window: %+v", a)
	}
	if a := answer(t, r, device(dev, "1.0.0", `,"custom_id":"home-1"`)); a.Version != "1.0.1" {
		t.Fatalf("other device of the channel: %+v", a)
	}
	if out := cli(t, r, data, "segment", "list", "--app", app); !strings.Contains(out, "updates only in: "+later) {
		t.Fatalf("segment list:\n%s", out)
	}
	if res := cli(t, r, data, "resolve", "--app", app, "--device", dev, "--platform", "android", "--version-build", "1.0.0", "--version-name", "1.0.0", "--custom-id", "corp-1"); !strings.Contains(res, "outside_maintenance_window") || !strings.Contains(res, "next window: "+wantNext.Format(time.RFC3339)) {
		t.Fatalf("resolve of a segment device:\n%s", res)
	}
	cli(t, r, data, "segment", "remove", "enterprise", "--app", app)

	// The CLI checks the syntax; the API refuses what gets past it.
	if msg := cliErr(t, r, data, "channel", "set", "production", "--app", app, "--window", "Sat 01:00-05:00 Europe/Atlantis"); !strings.Contains(msg, `unknown time zone "Europe/Atlantis"`) {
		t.Errorf("unknown zone: %s", msg)
	}
	key, err := os.ReadFile(filepath.Join(data, "api-key"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, "http://"+r.OriginAddr+"/api/v1/apps/"+app+"/channels/production",
		strings.NewReader(`{"windows":{"weekly":[{"day":"sat","start":"01:00","end":"01:00","tz":"Europe/Rome"}]}}`))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(key)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), `"invalid_window"`) || !strings.Contains(string(b), "end equals start") {
		t.Errorf("empty window: HTTP %d %s, want 400 invalid_window", resp.StatusCode, b)
	}

	// The audit trail shows the windows of each change.
	audit := cli(t, r, data, "audit", "--app", app, "--json")
	if !strings.Contains(audit, later) || !strings.Contains(audit, today+" UTC") {
		t.Errorf("audit lacks the windows:\n%s", audit)
	}
}
