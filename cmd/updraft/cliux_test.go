package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// runMain runs `updraft ARGS...` as a child process (this test binary, see
// TestMain) and returns its exit status, stdout and stderr.
func runMain(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	if len(args) == 0 {
		t.Fatal("runMain: no arguments would run the tests again in the child") // see TestMain
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), env...), "UPDRAFT_TEST_MAIN_ARGS="+strings.Join(args, "\x1f"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// TestExitCodes: 0 success, 1 an operation failed, 2 usage error; a
// mistyped flag or command gets one friendly line naming the closest valid
// one and the command's --help, not Go's flag dump.
func TestExitCodes(t *testing.T) {
	closed := freePort(t) // nothing listens there
	for _, c := range []struct {
		args     []string
		code     int
		want     []string // in stderr (stdout for code 0)
		dontWant []string
	}{
		{[]string{"--help"}, 0, []string{"Usage: updraft COMMAND", "Exit status"}, nil},
		{[]string{"help", "bundle", "upload"}, 0, []string{"updraft bundle upload PATH"}, nil},
		{[]string{"bundle", "--help"}, 0, []string{"updraft bundle upload", "updraft bundle rebuild"}, nil},
		{[]string{"bundle", "upload", "x.zip", "--app", "a", "--versoin", "1"}, 2,
			[]string{"updraft: bundle upload: unknown flag --versoin (did you mean --version?)", `Run "updraft bundle upload --help"`},
			[]string{"Usage of", "-api-key string", "flag provided but not defined"}},
		{[]string{"channel", "set", "production", "--app", "a", "-bundel", "1.0.0"}, 2,
			[]string{"unknown flag --bundel (did you mean --bundle?)", `"updraft channel set --help"`}, nil},
		{[]string{"serv"}, 2, []string{`unknown command "serv" (did you mean serve?)`, `Run "updraft --help"`}, nil},
		{[]string{"bundle"}, 2, []string{"bundle: want a subcommand: upload, list, delete, rebuild or compatibility"}, nil},
		{[]string{"chanel", "list"}, 2, []string{"did you mean channel?"}, nil},
		{[]string{"segment", "lst", "--app", "a"}, 2, []string{`unknown subcommand "lst" (did you mean list?)`}, nil},
		{[]string{"bundle", "upload", "x.zip", "--app", "a"}, 2, []string{"--version is required", "bundle upload --help"}, nil},
		{[]string{"bundle", "list"}, 2, []string{"bundle list: --app is required"}, nil},
		{[]string{"channel", "rollout", "production", "--app", "a", "--bps", "half"}, 2,
			[]string{`channel rollout: --bps "half": want a whole number`}, nil},
		{[]string{"stats", "--app", "a", "--since", "5"}, 2, []string{`--since "5": want a duration`}, nil},
		{[]string{"app", "list", "--json=maybe"}, 2, []string{`--json "maybe"`}, nil},
		{[]string{"app", "create"}, 2, []string{"app create: want one app id"}, nil},
		{[]string{"bench", "--scenario", "storm"}, 2, []string{"want release-storm, steady, stats"}, nil},
		{[]string{"serve", "--log-level", "loud"}, 2, []string{"--log-level"}, nil},
		{[]string{"migrate", "--batch", "0"}, 2, []string{"migrate: --batch and --parallel: want 1 or more", `"updraft migrate --help"`}, nil},
		// Operational failures: the origin does not answer.
		{[]string{"app", "list", "--origin", "http://" + closed, "--api-key", "k"}, 1, []string{"connection refused"}, []string{"--help"}},
	} {
		code, stdout, stderr := runMain(t, nil, c.args...)
		where := stderr
		if c.code == 0 {
			where = stdout
		}
		if code != c.code {
			t.Errorf("updraft %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(c.args, " "), code, c.code, stdout, stderr)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(where, w) {
				t.Errorf("updraft %s: output lacks %q:\n%s", strings.Join(c.args, " "), w, where)
			}
		}
		for _, w := range c.dontWant {
			if strings.Contains(stdout+stderr, w) {
				t.Errorf("updraft %s: output has %q:\n%s%s", strings.Join(c.args, " "), w, stdout, stderr)
			}
		}
	}
}

func TestExitNoCommand(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), nil, &out, &errb)
	if exitCode(err) != exitUsage || !strings.Contains(errb.String(), "Usage: updraft COMMAND") {
		t.Fatalf("no command: %v (exit %d)\n%s", err, exitCode(err), errb.String())
	}
}

func TestExitClosestSuggestion(t *testing.T) {
	flags := []string{"app", "version", "channel", "min-update-version", "encrypt-key", "json", "origin", "api-key", "data"}
	for in, want := range map[string]string{
		"versoin": "version", "verison": "version", "vesion": "version", "ver": "version",
		"chanel": "channel", "jsno": "json", "apikey": "api-key", "encrypt": "encrypt-key",
		"zzz": "", "platform": "", "x": "",
	} {
		if got := closest(in, flags); got != want {
			t.Errorf("closest(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHelpEveryCommand walks every command and subcommand with --help: exit
// 0 (no error), a usage line, a description, every flag the command parses
// and an example; `updraft --help` lists every command on one line.
func TestHelpEveryCommand(t *testing.T) {
	var seen *flag.FlagSet
	helpShown = func(fs *flag.FlagSet) { seen = fs }
	defer func() { helpShown = nil }()
	for _, d := range docs {
		seen = nil
		var out, errb bytes.Buffer
		args := append(strings.Fields(d.name), "--help")
		if err := run(context.Background(), args, &out, &errb); err != nil {
			t.Errorf("updraft %s --help: %v", d.name, err)
			continue
		}
		if seen == nil || seen.Name() != d.name {
			t.Errorf("updraft %s --help: printed the help of flag set %v", d.name, seen)
			continue
		}
		text := out.String()
		for _, w := range []string{"Usage:\n  updraft " + d.name, d.summary, "Flags:", "Example:\n  updraft " + d.name} {
			if d.summary == "" || !strings.Contains(text, w) {
				t.Errorf("updraft %s --help lacks %q:\n%s", d.name, w, text)
			}
		}
		seen.VisitAll(func(f *flag.Flag) {
			dash := "--"
			if len(f.Name) == 1 {
				dash = "-"
			}
			if !strings.Contains(text, "\n  "+dash+f.Name+" ") && !strings.Contains(text, "\n  "+dash+f.Name+"\n") {
				t.Errorf("updraft %s --help lacks flag %s%s", d.name, dash, f.Name)
			}
		})
		for _, e := range d.examples {
			// Every flag an example uses is one the command takes.
			for _, w := range strings.Fields(regexp.MustCompile(`\$\([^)]*\)`).ReplaceAllString(e, "")) {
				if strings.HasPrefix(w, "-") {
					name, _, _ := strings.Cut(strings.TrimLeft(w, "-"), "=")
					if seen.Lookup(name) == nil {
						t.Errorf("updraft %s: example %q uses unknown flag %s", d.name, e, w)
					}
				}
			}
		}
	}
	for g := range groups {
		var out bytes.Buffer
		if err := run(context.Background(), []string{g, "--help"}, &out, &out); err != nil {
			t.Errorf("updraft %s --help: %v", g, err)
		}
		for _, s := range subcommands(g) {
			if !strings.Contains(out.String(), "updraft "+g+" "+s) {
				t.Errorf("updraft %s --help lacks %s", g, s)
			}
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	for _, d := range docs {
		n := 0
		for _, l := range lines {
			if strings.HasPrefix(l, "  updraft "+d.name+" ") && strings.Contains(l, d.summary) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("updraft --help: %d lines for %s", n, d.name)
		}
	}
	for _, w := range []string{"--scenario release-storm|steady|stats|cohort-fleet|FILE.json", "--html FILE", "--proto h1|h3", "Exit status"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("updraft --help lacks %q", w)
		}
	}
}

// TestListJSON: every list command's --json prints an array ([] when
// empty) of objects with the operator API's field names.
func TestListJSON(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	list := func(args ...string) []map[string]any {
		t.Helper()
		out := cli(t, r, data, append(args, "--json")...)
		var v []map[string]any
		if err := json.Unmarshal([]byte(out), &v); err != nil || v == nil {
			t.Fatalf("updraft %s --json: not a JSON array (%v):\n%s", strings.Join(args, " "), err, out)
		}
		return v
	}
	fields := func(what string, obj map[string]any, names ...string) {
		t.Helper()
		for _, n := range names {
			if _, ok := obj[n]; !ok {
				t.Errorf("%s --json: no field %q in %v", what, n, obj)
			}
		}
	}
	if apps := list("app", "list"); len(apps) != 0 {
		t.Fatalf("app list of a new origin: %v", apps)
	}
	cli(t, r, data, "app", "create", "com.example.app", "--name", "Example")
	for _, args := range [][]string{{"bundle", "list"}, {"channel", "list"}, {"segment", "list"}, {"device", "overrides"}, {"device", "list"}} {
		if v := list(append(args, "--app", "com.example.app")...); len(v) != 0 {
			t.Errorf("%v of a new app: %v", args, v)
		}
	}
	cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, "one")), "--app", "com.example.app", "--version", "1.0.1", "--channel", "production")
	cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, "two")), "--app", "com.example.app", "--version", "1.0.2")
	cli(t, r, data, "channel", "rollout", "production", "--app", "com.example.app", "--bundle", "1.0.2", "--percent", "10")
	cli(t, r, data, "segment", "add", "testers", "--app", "com.example.app", "--channel", "production", "--custom-id-prefix", "qa-")
	cli(t, r, data, "device", "override", "00009a6b-eefe-490a-9c60-8e965132ae51", "--app", "com.example.app", "--channel", "production")

	apps := list("app", "list")
	if len(apps) != 1 || apps[0]["id"] != "com.example.app" || apps[0]["name"] != "Example" {
		t.Fatalf("app list: %v", apps)
	}
	fields("app list", apps[0], "id", "name", "created_at", "expose_metadata", "allow_device_custom_id")

	bs := list("bundle", "list", "--app", "com.example.app")
	if len(bs) != 2 {
		t.Fatalf("bundle list: %v", bs)
	}
	for _, b := range bs {
		fields("bundle list", b, "app_id", "version", "sha256", "size", "created_at", "manifest_files")
	}

	chs := list("channel", "list", "--app", "com.example.app")
	if len(chs) != 1 || chs[0]["name"] != "production" || chs[0]["bundle"] != "1.0.1" {
		t.Fatalf("channel list: %v", chs)
	}
	fields("channel list", chs[0], "id", "name", "bundle", "public", "ios", "android", "electron", "allow_device_self_set",
		"disable_auto_update", "app_id", "created_at", "updated_at", "rollout")
	if ro, _ := chs[0]["rollout"].(map[string]any); ro["bundle"] != "1.0.2" || ro["bps"] != float64(1000) {
		t.Errorf("channel list: rollout %v", chs[0]["rollout"])
	}

	segs := list("segment", "list", "--app", "com.example.app")
	if len(segs) != 1 || segs[0]["name"] != "testers" || segs[0]["custom_id_prefix"] != "qa-" {
		t.Fatalf("segment list: %v", segs)
	}
	fields("segment list", segs[0], "name", "channel", "app_id", "position")

	devs := list("device", "overrides", "--app", "com.example.app")
	if len(devs) != 1 || devs[0]["device_id"] != "00009a6b-eefe-490a-9c60-8e965132ae51" || devs[0]["source"] != "operator" {
		t.Fatalf("device overrides: %v", devs)
	}
	fields("device overrides", devs[0], "device_id", "channel", "source")
}
