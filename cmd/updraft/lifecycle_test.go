package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin"
	"github.com/updraft-cdn/updraft/origin/client"
)

// TestBundleLifecycleCLI drives bundle delete, app set --keep and gc through
// the CLI against a real serve, and checks what devices get at the edge.
func TestBundleLifecycleCLI(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	const app = "com.example.app"
	c := client.New("http://"+r.OriginAddr, readKey(t, data))
	// waitBuilt waits until a bundle's background build is done, so that a
	// collection with grace 0 races no build.
	waitBuilt := func(v string) {
		t.Helper()
		deadline := time.Now().Add(testenv.Patience(3 * time.Minute))
		for {
			bs, err := c.ListBundles(context.Background(), app)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range bs {
				if b.Version == v && b.Canonical != "" && (b.DeltaStatus == nil || b.DeltaStatus.State == "ready") {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("build of %s not done in 3m", v)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	cli(t, r, data, "app", "create", app)
	for _, v := range []string{"1.0.0", "1.0.1", "1.0.2"} {
		cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, v)), "--app", app, "--version", v)
	}
	cli(t, r, data, "channel", "set", "production", "--app", app, "--bundle", "1.0.0", "--default")

	if msg := cliErr(t, r, data, "bundle", "delete", "1.0.0", "--app", app); !strings.Contains(msg, "bundle_in_use") || !strings.Contains(msg, `channel "production"`) {
		t.Fatalf("delete of the production bundle: %s", msg)
	}
	if out := cli(t, r, data, "bundle", "delete", "1.0.1", "--app", app); !strings.Contains(out, "deleted bundle 1.0.1 of "+app) {
		t.Fatalf("delete output: %s", out)
	}
	if msg := cliErr(t, r, data, "bundle", "delete", "1.0.1", "--app", app); !strings.Contains(msg, "bundle_not_found") {
		t.Fatalf("second delete: %s", msg)
	}
	if out := cli(t, r, data, "bundle", "list", "--app", app); strings.Contains(out, "1.0.1") || !strings.Contains(out, "1.0.2") {
		t.Fatalf("bundle list after delete:\n%s", out)
	}

	// Keep 1: 1.0.2 is the newest, 1.0.0 is in use; nothing goes yet.
	if out := cli(t, r, data, "app", "set", app, "--keep", "1"); !strings.Contains(out, "keeps its 1 newest bundles") || strings.Contains(out, "deleted") {
		t.Fatalf("app set: %s", out)
	}
	// The upload moves production to 1.0.3; 1.0.0 and 1.0.2 go.
	cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, "1.0.3")), "--app", app, "--version", "1.0.3", "--channel", "production")
	var list []origin.BundleInfo
	if err := json.Unmarshal([]byte(cli(t, r, data, "bundle", "list", "--app", app, "--json")), &list); err != nil || len(list) != 1 || list[0].Version != "1.0.3" {
		t.Fatalf("bundles after retention: %+v %v", list, err)
	}
	if a := checkUpdate(t, r.EdgeAddr, deviceBody); a.Version != "1.0.3" {
		t.Fatalf("device answer after retention: %+v", a)
	}
	if msg := cliErr(t, r, data, "app", "set", app); !strings.Contains(msg, "--keep") {
		t.Fatalf("app set without a setting: %s", msg)
	}
	if out := cli(t, r, data, "app", "set", app, "--keep", "0"); !strings.Contains(out, "keeps all its bundles") {
		t.Fatalf("app set --keep 0: %s", out)
	}

	// The deleted bundles' blobs stay for the grace period (1h), then go.
	waitBuilt("1.0.3")
	var res origin.GCResult
	if err := json.Unmarshal([]byte(cli(t, r, data, "gc", "--json")), &res); err != nil || res.Deleted != 0 || res.Kept == 0 {
		t.Fatalf("gc within the grace period: %+v %v", res, err)
	}
	// (On S3, modification times have one-second resolution: a blob
	// touched by the deletion is young until its second has passed.)
	out := cli(t, r, data, "gc", "--grace", "0s")
	for deadline := time.Now().Add(30 * time.Second); strings.HasPrefix(out, "blob gc: deleted 0 ") && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		out = cli(t, r, data, "gc", "--grace", "0s")
	}
	if !strings.HasPrefix(out, "blob gc: deleted ") || strings.HasPrefix(out, "blob gc: deleted 0 ") {
		t.Fatalf("gc --grace 0s: %s", out)
	}
	if err := json.Unmarshal([]byte(cli(t, r, data, "gc", "--grace", "0s", "--json")), &res); err != nil || res.Deleted != 0 {
		t.Fatalf("second gc: %+v %v", res, err)
	}
	// What devices get is still whole.
	a := checkUpdate(t, r.EdgeAddr, deviceBody)
	if a.Version != "1.0.3" {
		t.Fatalf("device answer after gc: %+v", a)
	}
	resp, err := http.Get(a.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil || resp.StatusCode != 200 || hex.EncodeToString(h.Sum(nil)) != a.Checksum {
		t.Fatalf("download after gc: HTTP %d, %v, sha256 %x, want %s", resp.StatusCode, err, h.Sum(nil), a.Checksum)
	}
}
