package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/updraft-cdn/updraft/bench"
)

// TestBenchReleaseStorm runs the load tester's release storm against a real
// serve on 127.0.0.1, directly and through an emulated 20 ms link: every
// device must get the update and verify the bundle's SHA-256.
func TestBenchReleaseStorm(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	cli(t, r, data, "app", "create", "com.example.app")
	cli(t, r, data, "bundle", "upload", fixture(t, "swagger-ui-5.34.0.zip"), "--app", "com.example.app", "--version", "1.0.1", "--channel", "production")
	cli(t, r, data, "channel", "set", "production", "--app", "com.example.app", "--default")
	for _, link := range []string{"", "20ms/200mbit"} {
		args := []string{"bench", "--target", "http://" + r.EdgeAddr, "--devices", "200", "--duration", "2s", "--connections", "16", "--json",
			"--bundle", fixture(t, "swagger-ui-5.34.0.zip"), "--origin", "http://" + r.OriginAddr, "--data", data}
		if link != "" {
			args = append(args, "--link", link)
		}
		var out, errb bytes.Buffer
		if err := run(context.Background(), args, &out, &errb); err != nil {
			t.Fatalf("bench %s: %v\n%s", link, err, errb.String())
		}
		var rep bench.Report
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		p := rep.Phases[0]
		if p.Checks.Count != 200 || p.Downloads.Count != 200 || p.TimeToUpdate.Count != 200 || p.Failures != 0 {
			t.Fatalf("link %q: %+v", link, p)
		}
		if len(p.Outcomes) != 1 || p.Outcomes[0].Outcome != "update" {
			t.Fatalf("outcomes %+v", p.Outcomes)
		}
		if p.BytesDown != 200*1243136 {
			t.Fatalf("bytes %d", p.BytesDown)
		}
		t.Logf("link %q: check p50 %.2f ms, time to update p50 %.2f ms p99 %.2f ms", link, p.Checks.P50, p.TimeToUpdate.P50, p.TimeToUpdate.P99)
	}
	// The HTML report: charts drawn, nothing fetched from elsewhere.
	html := filepath.Join(t.TempDir(), "report.html")
	if err := run(context.Background(), []string{"bench", "--target", "http://" + r.EdgeAddr, "--devices", "60", "--duration", "2s", "--html", html, "--origin", "http://" + r.OriginAddr, "--data", data}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	page, _ := os.ReadFile(html)
	if !bytes.Contains(page, []byte(`<polyline class="series"`)) || bytes.Count(page, []byte(`<rect class="bar"`)) == 0 ||
		bytes.Contains(page, []byte(`src="http`)) || bytes.Contains(page, []byte(`href="http`)) {
		t.Fatalf("HTML report:\n%s", page)
	}
	// A scenario file: devices move to beta (self-assignable), then try
	// production (public, not self-assignable); two native versions.
	cli(t, r, data, "channel", "set", "beta", "--app", "com.example.app", "--bundle", "1.0.1", "--allow-device-self-set")
	sc := filepath.Join(t.TempDir(), "switch.json")
	os.WriteFile(sc, []byte(`{"name":"switch","phases":[{"name":"to-beta","kind":"switch","duration":"1s","channel":"beta"},
		{"name":"to-production","kind":"switch","duration":"1s","channel":"production"}]}`), 0o644)
	var sw bytes.Buffer
	if err := run(context.Background(), []string{"bench", "--target", "http://" + r.EdgeAddr, "--scenario", sc, "--devices", "50",
		"--version-build", "1.0.0,1.0.0,0.9.0", "--json", "--app", "com.example.app", "--i-know-this-is-production"}, &sw, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var swRep bench.Report
	json.Unmarshal(sw.Bytes(), &swRep)
	// A third of the fleet runs native 0.9.0: beta (disable_auto_update major by
	// default) refuses them 1.0.1.
	if len(swRep.Phases) != 2 || len(swRep.Phases[0].Outcomes) != 2 ||
		swRep.Phases[0].Outcomes[0] != (bench.Outcome{Outcome: "update", Count: 34}) ||
		swRep.Phases[0].Outcomes[1] != (bench.Outcome{Outcome: "disable_auto_update_to_major", Count: 16}) ||
		swRep.Phases[1].Outcomes[0] != (bench.Outcome{Outcome: "set_channel_public_channel_self_set_not_allowed", Count: 50}) {
		t.Fatalf("switch phases: %+v", swRep.Phases)
	}
	// A text report too.
	var out bytes.Buffer
	if err := run(context.Background(), []string{"bench", "--target", "http://" + r.EdgeAddr, "--scenario", "steady", "--devices", "50", "--duration", "1s", "--connections", "4", "--origin", "http://" + r.OriginAddr, "--data", data}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "update check") || !strings.Contains(out.String(), "outcomes: update") {
		t.Fatalf("text report:\n%s", out.String())
	}
}

// TestBenchCompare runs one scenario against Updraft, nginx and Caddy
// (Debian packages; CI installs them) serving the same bundle and answer.
func TestBenchCompare(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nginx and caddy")
	}
	for _, tool := range []string{"nginx", "caddy"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("UPDRAFT_REQUIRE_PEERS") != "" {
				t.Fatalf("%s not installed and UPDRAFT_REQUIRE_PEERS is set", tool)
			}
			t.Skipf("%s not installed (Debian: apt-get install nginx-light caddy)", tool)
		}
	}
	data := t.TempDir()
	r := startTestServe(t, data)
	cli(t, r, data, "app", "create", "com.example.app")
	cli(t, r, data, "bundle", "upload", fixture(t, "swagger-ui-5.34.0.zip"), "--app", "com.example.app", "--version", "1.0.1", "--channel", "production")
	cli(t, r, data, "channel", "set", "production", "--app", "com.example.app", "--default")
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"bench", "compare", "--target", "http://" + r.EdgeAddr, "--devices", "100", "--duration", "1s", "--origin", "http://" + r.OriginAddr, "--data", data}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	t.Logf("\n%s", out.String())
	for _, name := range []string{"updraft", "nginx", "caddy"} {
		if !strings.Contains(out.String(), name) {
			t.Fatalf("%s missing from the comparison:\n%s", name, out.String())
		}
	}
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(line)
		if len(f) > 8 && (f[0] == "updraft" || f[0] == "nginx" || f[0] == "caddy") && f[7] != "0" {
			t.Fatalf("%s had failures: %s", f[0], line)
		}
	}
}
