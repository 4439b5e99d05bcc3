package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/updraft-cdn/updraft/origin"
)

// Scoped keys from the CLI, against a real serve: keys create prints the
// secret once (alone on stdout), keys list shows the key but never the
// secret, the key uploads and follows the build (bundle upload --wait) but
// may not move a channel, and once revoked it is refused at once.
func TestKeysCreateListRevoke(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	const app = "com.example.app"
	cli(t, r, data, "app", "create", app)
	runCLI := func(args ...string) (string, string, error) {
		var out, errb bytes.Buffer
		args = append(args, "--origin", "http://"+r.OriginAddr, "--data", data)
		err := run(context.Background(), args, &out, &errb)
		return out.String(), errb.String(), err
	}
	out, notes, err := runCLI("keys", "create", "--name", "ci", "--scope", "upload", "--app", app, "--expires", "90d")
	if err != nil {
		t.Fatalf("keys create: %v\n%s", err, notes)
	}
	secret := strings.TrimSpace(out)
	if !strings.HasPrefix(secret, "upd_") || strings.Contains(secret, "\n") || !strings.Contains(notes, "shown this once") ||
		!strings.Contains(notes, "scope upload, app "+app+", expires ") {
		t.Fatalf("keys create printed %q, notes %q", out, notes)
	}
	if _, _, err := runCLI("keys", "create", "--name", "ci", "--scope", "read"); err == nil || !strings.Contains(err.Error(), "key_exists") {
		t.Fatalf("second key named ci: %v, want key_exists", err)
	}
	for _, bad := range [][]string{{"--name", "x", "--scope", "read", "--expires", "soon"}, {"--name", "x"}} {
		if _, _, err := runCLI(append([]string{"keys", "create"}, bad...)...); err == nil {
			t.Fatalf("keys create %v accepted", bad)
		}
	}
	list := cli(t, r, data, "keys", "list")
	if strings.Contains(list, secret) || !strings.Contains(list, "ci") || !strings.Contains(list, app) || !strings.Contains(list, "upload") ||
		!strings.Contains(list, "admin") {
		t.Fatalf("keys list:\n%s", list)
	}
	var keys []origin.KeyInfo
	raw := cli(t, r, data, "keys", "list", "--json")
	if err := json.Unmarshal([]byte(raw), &keys); err != nil || strings.Contains(raw, secret) || len(keys) != 3 || keys[2].Name != "ci" ||
		keys[2].App != app || keys[2].ExpiresAt == nil || keys[2].State != "live" {
		t.Fatalf("keys list --json: %v\n%s", err, raw)
	}

	// The key at work: an upload followed to its build, then a channel
	// change it may not make.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("<p>hello</p>"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, notes, err := runCLI("bundle", "upload", dir, "--app", app, "--version", "1.0.0", "--wait", "--api-key", secret); err != nil {
		t.Fatalf("bundle upload --wait with the upload key: %v\n%s%s", err, out, notes)
	}
	if _, _, err := runCLI("channel", "set", "production", "--app", app, "--bundle", "1.0.0", "--api-key", secret); err == nil ||
		!strings.Contains(err.Error(), "forbidden_scope") || !strings.Contains(err.Error(), "deploy") {
		t.Fatalf("channel set with the upload key: %v, want forbidden_scope naming deploy", err)
	}
	if _, _, err := runCLI("keys", "list", "--api-key", secret); err == nil || !strings.Contains(err.Error(), "forbidden_scope") {
		t.Fatalf("keys list with the upload key: %v", err)
	}

	if out := cli(t, r, data, "keys", "revoke", "ci"); !strings.Contains(out, "key ci revoked") {
		t.Fatalf("keys revoke: %s", out)
	}
	if _, _, err := runCLI("bundle", "list", "--app", app, "--api-key", secret); err == nil || !strings.Contains(err.Error(), "unauthorized") ||
		!strings.Contains(err.Error(), "revoked") {
		t.Fatalf("the revoked key right after keys revoke: %v, want unauthorized (revoked)", err)
	}
	if _, _, err := runCLI("keys", "revoke", "ci"); err == nil || !strings.Contains(err.Error(), "key_not_found") {
		t.Fatalf("revoking twice: %v, want key_not_found", err)
	}
	if _, _, err := runCLI("keys", "revoke", "admin"); err == nil || !strings.Contains(err.Error(), "keys rotate --api") {
		t.Fatalf("revoking the admin key of the data folder: %v, want a pointer to keys rotate", err)
	}
	if list := cli(t, r, data, "keys", "list"); !strings.Contains(list, "revoked") || strings.Contains(list, secret) {
		t.Fatalf("keys list after the revocation:\n%s", list)
	}
}
