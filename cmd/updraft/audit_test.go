package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/updraft-cdn/updraft/origin/store"
)

// cliStderr runs the CLI and returns its stdout and stderr.
func cliStderr(t *testing.T, r *running, data string, args ...string) (string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	args = append(args, "--origin", "http://"+r.OriginAddr, "--data", data)
	if err := run(context.Background(), args, &out, &errb); err != nil {
		t.Fatalf("updraft %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), errb.String()
}

// TestAuditCLI: changes made with the CLI show in `updraft audit` (table
// and --json, filtered) and in `updraft channel history` (newest first,
// paged), with the key's name.
func TestAuditCLI(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	const app = "com.example.app"
	cli(t, r, data, "app", "create", app)
	for _, v := range []string{"1.0.0", "1.0.1"} {
		cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, v)), "--app", app, "--version", v)
	}
	cli(t, r, data, "channel", "set", "production", "--app", app, "--bundle", "1.0.0")
	cli(t, r, data, "channel", "rollout", "production", "--app", app, "--bundle", "1.0.1", "--percent", "10")
	cli(t, r, data, "channel", "rollout", "production", "--app", app, "--pause")

	var recs []store.AuditRecord
	if err := json.Unmarshal([]byte(cli(t, r, data, "audit", "--app", app, "--json")), &recs); err != nil {
		t.Fatal(err)
	}
	var acts []string
	for _, rec := range recs {
		acts = append(acts, rec.Action+" "+rec.Target)
		if rec.Actor == "" || rec.Addr != "127.0.0.1" || rec.App != app {
			t.Fatalf("record %+v: want the key's name, 127.0.0.1 and the app", rec)
		}
	}
	if got := strings.Join(acts, ", "); got != "app.created "+app+", bundle.uploaded 1.0.0, bundle.uploaded 1.0.1, channel.created production, rollout.set production, rollout.paused production" {
		t.Fatalf("audit --json: %s", got)
	}
	key := recs[0].Actor

	out := cli(t, r, data, "audit", "--app", app, "--since", "1h", "--action", "rollout.paused,rollout.set")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "BEFORE → AFTER") ||
		!strings.Contains(lines[1], "rollout.set") || !strings.Contains(lines[1], key) || !strings.Contains(lines[1], "127.0.0.1") ||
		!strings.Contains(lines[1], `{"rollout":null} → {"rollout":{"bundle":"1.0.1","bps":1000,"paused":false}}`) ||
		!strings.Contains(lines[2], `→ {"rollout":{"bundle":"1.0.1","bps":1000,"paused":true}}`) {
		t.Fatalf("audit table:\n%s", out)
	}
	// --limit: the oldest N, and how to go on.
	out, errOut := cliStderr(t, r, data, "audit", "--limit", "2")
	if n := strings.Count(strings.TrimSpace(out), "\n"); n != 2 || !strings.Contains(errOut, "more records: add --after ") {
		t.Fatalf("audit --limit 2: %d rows\n%s\nstderr: %s", n, out, errOut)
	}
	if out := cli(t, r, data, "audit", "--since", "2099-01-01T00:00:00Z"); !strings.Contains(out, "no audit records") {
		t.Fatalf("audit --since in the future: %s", out)
	}
	if msg := cliErr(t, r, data, "audit", "--since", "someday"); !strings.Contains(msg, "invalid_since") {
		t.Fatalf("audit --since someday: %s", msg)
	}

	out, errOut = cliStderr(t, r, data, "channel", "history", "production", "--app", app, "--limit", "2")
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "rollout.paused") || !strings.Contains(lines[2], "rollout.set") ||
		!strings.Contains(lines[1], key) || !strings.Contains(errOut, "older entries: add --before ") {
		t.Fatalf("channel history --limit 2:\n%s\nstderr: %s", out, errOut)
	}
	var hist []store.AuditRecord
	if err := json.Unmarshal([]byte(cli(t, r, data, "channel", "history", "production", "--app", app, "--json")), &hist); err != nil {
		t.Fatal(err)
	}
	if len(hist) != 3 || hist[0].Action != "rollout.paused" || hist[2].Action != "channel.created" {
		t.Fatalf("channel history --json: %+v", hist)
	}
	if out := cli(t, r, data, "channel", "history", "beta", "--app", app); !strings.Contains(out, "no history") {
		t.Fatalf("history of a channel never made: %s", out)
	}
}
