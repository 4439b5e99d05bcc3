package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, doc string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "updraft.toml")
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigPrecedence: a flag on the command line wins over its
// environment variable, which wins over the file, which wins over the
// default; the role's table wins over the top level.
func TestConfigPrecedence(t *testing.T) {
	path := writeConfig(t, `
listen = "127.0.0.1:7001"                 # env wins
max-bundle-size = "100MiB"                 # the flag wins
store = "postgres://u:p@db:5432/updraft"  # the file sets it
gc-grace = "2h"                            # the [origin] table wins
max-bundle-entries = 7

[origin]
gc-grace = "3h"
`)
	t.Setenv("UPDRAFT_ORIGIN_LISTEN", "127.0.0.1:7002")
	t.Setenv("UPDRAFT_STORE", "")
	t.Setenv("UPDRAFT_DATA", "")
	r, s := newOriginFlags()
	if err := r.load([]string{"--config", path, "--max-bundle-size", "64MiB"}); err != nil {
		t.Fatal(err)
	}
	oc := s.oc
	if oc.Listen != "127.0.0.1:7002" || oc.MaxBundleSize.String() != "64MiB" || oc.Store != "postgres://u:p@db:5432/updraft" ||
		oc.GCGrace != 3*time.Hour || oc.MaxZipEntries != 7 || oc.GCInterval != time.Hour || oc.DataDir != "updraft-data" {
		t.Fatalf("origin config: %+v", oc)
	}
	for k, v := range map[string]string{"listen": "env UPDRAFT_ORIGIN_LISTEN", "max-bundle-size": "flag", "store": path + ":4",
		"gc-grace": path + ":9", "gc-interval": ""} {
		if r.source[k] != v {
			t.Errorf("source of %s: %q, want %q", k, r.source[k], v)
		}
	}

	// UPDRAFT_CONFIG names the file when --config does not; UPDRAFT_DATA
	// is the edge's DATA/edge.
	t.Setenv("UPDRAFT_CONFIG", writeConfig(t, "[edge]\nlisten = \"127.0.0.1:7003\"\nupstream = [\"http://a:8090\", \"http://b:8090\"]\n"+
		"edge-key = \"k\"\norigin-pubkey = \"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"\n"))
	t.Setenv("UPDRAFT_DATA", "/srv/updraft")
	re, se := newEdgeFlags()
	if err := re.load(nil); err != nil {
		t.Fatal(err)
	}
	if se.ec.Listen != "127.0.0.1:7003" || strings.Join(se.upstreams, " ") != "http://a:8090 http://b:8090" ||
		se.ec.DataDir != filepath.Join("/srv/updraft", "edge") || len(se.pubs) != 1 {
		t.Fatalf("edge config: %+v %v", se.ec, se.upstreams)
	}
}

// TestConfigErrors: an unknown key or a value the flag refuses is a usage
// error (exit 2) naming the file, line and key.
func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		role, doc string
		want      []string
	}{
		{"serve", "data = \"d\"\n\nstor = \"postgres://x\"\n", []string{"updraft.toml:3:", `unknown key "stor"`, `did you mean "store"?`}},
		{"origin", "[origin]\nupstream = \"http://x\"\n", []string{"updraft.toml:2:", `unknown key "upstream"`, "updraft origin"}},
		{"origin", "listen = \"127.0.0.1:1\"\nmax-bundle-size = \"lots\"\n", []string{"updraft.toml:2:", `max-bundle-size = "lots": want a size`}},
		{"serve", "gc-grace = 600\n", []string{"updraft.toml:1:", `gc-grace = "600": want a duration`}},
		{"serve", "proxy-protocol = \"yes\"\n", []string{"updraft.toml:1:", "want true or false"}},
		{"serve", "[edge]\nmax-snapshot-age = \"soon\"\n", []string{"updraft.toml:2:", "[edge] max-snapshot-age"}}, // checked for its role too
		{"serve", "max-bundle-size = \"1B\"\n", []string{"max_bundle_size 1B: want at least 1KiB"}},                // the role's validation
		{"serve", "listen = \n", []string{"updraft.toml:1: not valid TOML"}},
		{"serve", "config = \"other.toml\"\n", []string{"updraft.toml:1:", "cannot name another file"}},
	} {
		path := writeConfig(t, c.doc)
		r := newRole(c.role)
		err := r.load([]string{"--config", path})
		if exitCode(err) != exitUsage {
			t.Errorf("%s %q: %v (exit %d), want a usage error", c.role, c.doc, err, exitCode(err))
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s %q: %v, want %q", c.role, c.doc, err, w)
			}
		}
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"serve", "--config", filepath.Join(t.TempDir(), "missing.toml")}, &out, &errb); exitCode(err) != exitUsage {
		t.Errorf("missing config file: %v", err)
	}
}

// TestConfigCheck: `updraft config check` prints the effective
// configuration with each value's source, secrets redacted, and exits 0;
// a bad file exits 2.
func TestConfigCheck(t *testing.T) {
	t.Setenv("UPDRAFT_STORE", "")
	path := writeConfig(t, `store = "postgres://updraft:hunter2@db:5432/updraft?sslmode=disable&password=hunter3"
upstream = "http://origin:8090"
edge-key = "topsecret"
origin-pubkey = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="

[origin]
listen = "0.0.0.0:8090"
`)
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"config", "check", "--config", path}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, w := range []string{"valid for updraft origin", // the file's only table
		`store = "postgres://updraft:xxxxx@db:5432/updraft?password=xxxxx&sslmode=disable"`, path + ":1",
		`listen = "0.0.0.0:8090"`, path + ":7", `max-bundle-size = "512MiB"`, "# default", "max-bundle-entries = 20000",
		path + ":2: upstream is not used by origin"} {
		if !strings.Contains(text, w) {
			t.Errorf("config check lacks %q:\n%s", w, text)
		}
	}
	out.Reset()
	if err := run(context.Background(), []string{"config", "check", path, "edge"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if text := out.String(); strings.Contains(text, "topsecret") || strings.Contains(text, "hunter") ||
		!strings.Contains(text, `edge-key = "(redacted)"`) || !strings.Contains(text, `upstream = "http://origin:8090"`) {
		t.Errorf("config check edge:\n%s", text)
	}
	// Every flag of the role is printed, so the output documents the keys.
	r, _ := newEdgeFlags()
	r.fs.VisitAll(func(f *flag.Flag) {
		if f.Name != "config" && !strings.Contains(out.String(), "\n"+f.Name+" = ") {
			t.Errorf("config check edge lacks %s", f.Name)
		}
	})

	if code, _, stderr := runMain(t, nil, "config", "check", "--config", path); code != 0 {
		t.Errorf("config check of a good file: exit %d\n%s", code, stderr)
	}
	bad := writeConfig(t, "listen = \"x\"\nstroe = \"postgres://x\"\n")
	if code, _, stderr := runMain(t, nil, "config", "check", "--config", bad, "origin"); code != 2 ||
		!strings.Contains(stderr, bad+":2: unknown key \"stroe\" (did you mean \"store\"?)") {
		t.Errorf("config check of a bad file: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := runMain(t, nil, "config", "check", "--config", writeConfig(t, "max-bundle-size = \"1B\"\n"), "origin"); code != 2 ||
		!strings.Contains(stderr, "max_bundle_size") {
		t.Errorf("config check of an invalid configuration: exit %d\n%s", code, stderr)
	}
}

// TestConfigFileServe: `updraft serve --config FILE` listens where the
// file says and keeps its data where the file says.
func TestConfigFileServe(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	origin, edge := freePort(t), freePort(t)
	path := writeConfig(t, "data = \""+data+"\"\nlog-level = \"warn\"\n\n[serve]\norigin-listen = \""+origin+"\"\nedge-listen = \""+edge+
		"\"\ntls = \"off\"\n")
	startChild(t, "serve", "--config", path)
	waitHTTP(t, "http://"+origin+"/healthz")
	waitHTTP(t, "http://"+edge+"/healthz")
	if _, err := os.Stat(filepath.Join(data, "api-key")); err != nil {
		t.Fatalf("data folder from the file: %v", err)
	}
}

// TestConfigEnvDocumented: every environment variable a role reads is
// named in its flag's help.
func TestConfigEnvDocumented(t *testing.T) {
	for _, role := range []string{"serve", "origin", "edge"} {
		r := newRole(role)
		for name, ev := range r.env {
			if f := r.fs.Lookup(name); f == nil || !strings.Contains(f.Usage, ev.name) {
				t.Errorf("%s --%s: help does not name %s", role, name, ev.name)
			}
		}
	}
}
