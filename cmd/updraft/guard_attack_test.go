package main

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// guardView is what `channel guard --json` shows of a guard (the fields
// the attack tests read).
type guardView struct {
	Status *struct {
		EvaluatedAt time.Time `json:"evaluated_at"`
		State       string    `json:"state"`
		Attempts    int64     `json:"attempts"`
		Failures    int64     `json:"failures"`
		NewDevices  int64     `json:"new_devices"`
	} `json:"status"`
	Actions []struct {
		Action string `json:"action"`
	} `json:"actions"`
}

func randomUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// TestGuardAttackFromOneClient is finding 1 of issue 15 as a test: with a
// 5% rollout guarded by rollback (threshold 10%, 50 attempts, 5
// failures), one client asks /updates with random device ids until it has
// found 60 in the rollout's arm, then posts update_fail for them in one
// /stats batch. The guard sees the reports and does nothing: the devices
// were made up after the rollout began, from one client network.
func TestGuardAttackFromOneClient(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	const app = "com.example.app"
	cli(t, r, data, "app", "create", app)
	cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, "one")), "--app", app, "--version", "1.0.0", "--channel", "production")
	cli(t, r, data, "channel", "set", "production", "--app", app, "--default")
	cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, "two")), "--app", app, "--version", "1.0.1")
	cli(t, r, data, "channel", "rollout", "production", "--app", app, "--bundle", "1.0.1", "--percent", "5")
	cli(t, r, data, "channel", "guard", "production", "--app", app, "--threshold", "10", "--min-attempts", "50",
		"--min-failures", "5", "--action", "rollback")
	guard := func() guardView {
		var g guardView
		if err := json.Unmarshal([]byte(cli(t, r, data, "channel", "guard", "production", "--app", app, "--json")), &g); err != nil {
			t.Fatal(err)
		}
		return g
	}
	// Wait until the edge serves the rollout.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if a := answer(t, r, device(randomUUID(), "1.0.0", "")); a.Error == "no_new_version_available" || a.Version != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("edge not serving the app")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The enumeration: random ids until 60 are offered the rollout bundle.
	var arm []string
	calls := 0
	for len(arm) < 60 {
		if calls++; calls > 6000 {
			t.Fatalf("only %d devices of the arm in %d calls", len(arm), calls)
		}
		id := randomUUID()
		if a := answer(t, r, device(id, "builtin", "")); a.Version == "1.0.1" {
			arm = append(arm, id)
		}
	}
	t.Logf("found %d devices in the 5%% arm with %d /updates calls", len(arm), calls)
	// One /stats POST of 60 update_fail events.
	var evs []string
	for _, id := range arm {
		evs = append(evs, fmt.Sprintf(`{"app_id":%q,"device_id":%q,"platform":"android","version_name":"1.0.1","old_version_name":"builtin",`+
			`"version_build":"1.0.0","version_os":"14","plugin_version":"8.51.14","is_emulator":false,"is_prod":true,"action":"update_fail"}`, app, id))
	}
	posted := time.Now()
	if code, body := post(t, "http://"+r.EdgeAddr+"/stats", "POST", "["+strings.Join(evs, ",")+"]"); code != http.StatusOK || strings.Count(body, `"status":"ok"`) != 61 {
		t.Fatalf("POST /stats: HTTP %d %s", code, body)
	}
	// Wait until the guard has evaluated the 60 reports (counted or seen
	// as new devices), or acted.
	var g guardView
	deadline = time.Now().Add(30 * time.Second)
	for {
		g = guard()
		if len(g.Actions) > 0 {
			break
		}
		if st := g.Status; st != nil && st.EvaluatedAt.After(posted) && st.Attempts+st.NewDevices >= 60 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guard never evaluated the 60 reports: %+v", g.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// One more evaluation after that one, then the verdict.
	seen := g.Status
	for deadline = time.Now().Add(10 * time.Second); len(g.Actions) == 0 && seen != nil; {
		if g = guard(); g.Status != nil && g.Status.EvaluatedAt.After(seen.EvaluatedAt) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no second evaluation")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(g.Actions) > 0 {
		t.Fatalf("the guard acted on 60 failures posted by one client for devices it made up: %+v (status %+v)", g.Actions, g.Status)
	}
	if st := g.Status; st.State != "watching" || st.Attempts != 0 || st.NewDevices != 60 {
		t.Fatalf("status %+v, want watching with the 60 devices seen as new and none counted", st)
	}
	if ro := r.Origin.Current().Snap.App(app).Channel("production").Rollout; ro == nil || ro.Paused || ro.Bundle != "1.0.1" {
		t.Fatalf("rollout after the attack: %+v, want 1.0.1 running", ro)
	}
	// The edge still offers the rollout to its arm.
	if a := answer(t, r, device(arm[0], "builtin", "")); a.Version != "1.0.1" {
		t.Fatalf("arm device offered %+v, want 1.0.1", a)
	}
}
