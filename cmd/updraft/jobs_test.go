package main

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin"
	"github.com/updraft-cdn/updraft/origin/client"
)

// In a child process (startChild) started with UPDRAFT_TEST_HOLD_BUILD=V,
// the build of bundle V never ends: the test kills the process mid-build.
func init() {
	if v := os.Getenv("UPDRAFT_TEST_HOLD_BUILD"); v != "" && os.Getenv("UPDRAFT_TEST_MAIN_ARGS") != "" {
		origin.BuildHook = func(ctx context.Context, app, version string) error {
			if version == v {
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		}
	}
}

// releaseBundle is a small bundle whose releases share a file of random
// bytes (deltas between them are kept) and differ in index.html.
func releaseBundle(t *testing.T, shared []byte, marker string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range map[string][]byte{"index.html": []byte("<html>" + marker + "</html>"), "vendor.bin": shared} {
		w, _ := zw.Create(name)
		w.Write(body)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// waitBuild waits until the bundle's build is in state and returns it.
func waitBuild(t *testing.T, c *client.Client, app, version, state string) origin.BundleInfo {
	t.Helper()
	deadline := time.Now().Add(testenv.Patience(2 * time.Minute))
	for {
		bs, err := c.ListBundles(context.Background(), app)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			if b.Version == version && b.DeltaStatus != nil && b.DeltaStatus.State == state {
				return b
			}
			if b.Version == version && b.DeltaStatus != nil && b.DeltaStatus.State == "failed" {
				t.Fatalf("build of %s failed: %s", version, b.DeltaStatus.Error)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("build of %s not %s within %s: %+v", version, state, testenv.Patience(2*time.Minute), bs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Finding 5: the origin is killed (SIGKILL) in the middle of a bundle's
// build; after a restart on the same data the durable job runs again and
// completes (its second attempt).
func TestBuildResumesAfterKill(t *testing.T) {
	data := t.TempDir()
	addr := freePort(t)
	t.Setenv("UPDRAFT_TEST_HOLD_BUILD", "1.0.1")
	child := startChild(t, "origin", "--data", data, "--listen", addr)
	waitHTTP(t, "http://"+addr+"/healthz")
	ctx := context.Background()
	c := client.New("http://"+addr, readKey(t, data))
	if _, err := c.CreateApp(ctx, "com.example.app", ""); err != nil {
		t.Fatal(err)
	}
	shared := make([]byte, 64<<10)
	rand.Read(shared)
	if _, err := c.UploadBundle(ctx, "com.example.app", "1.0.0", bytes.NewReader(releaseBundle(t, shared, "1.0.0")), client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	waitBuild(t, c, "com.example.app", "1.0.0", "ready")
	if _, err := c.UploadBundle(ctx, "com.example.app", "1.0.1", bytes.NewReader(releaseBundle(t, shared, "1.0.1")), client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	if b := waitBuild(t, c, "com.example.app", "1.0.1", "building"); b.Canonical != "" || b.DeltaStatus.Attempts != 1 {
		t.Fatalf("mid-build: %+v %+v", b.Bundle, b.DeltaStatus)
	}
	child.Process.Kill()
	child.Wait()

	os.Setenv("UPDRAFT_TEST_HOLD_BUILD", "")
	addr2 := freePort(t)
	startChild(t, "origin", "--data", data, "--listen", addr2)
	waitHTTP(t, "http://"+addr2+"/healthz")
	c2 := client.New("http://"+addr2, readKey(t, data))
	b := waitBuild(t, c2, "com.example.app", "1.0.1", "ready")
	if b.Canonical == "" || b.ManifestFiles != 2 || len(b.Deltas) != 2 || b.DeltaStatus.Attempts != 2 {
		t.Fatalf("after the restart: %+v %+v", b.Bundle, b.DeltaStatus)
	}
}

// `updraft bundle rebuild` queues a build again; --force clears it first;
// an unknown version is refused.
func TestBundleRebuildCommand(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	cli(t, r, data, "app", "create", "com.example.app")
	zipPath := data + "/b.zip"
	shared := make([]byte, 32<<10)
	rand.Read(shared)
	os.WriteFile(zipPath, releaseBundle(t, shared, "1"), 0o644)
	cli(t, r, data, "bundle", "upload", zipPath, "--app", "com.example.app", "--version", "1.0.0")
	c := client.New("http://"+r.OriginAddr, readKey(t, data))
	before := waitBuild(t, c, "com.example.app", "1.0.0", "ready")
	out := cli(t, r, data, "bundle", "rebuild", "1.0.0", "--app", "com.example.app", "--force")
	if !strings.Contains(out, "cleared its manifest, canonical archive and deltas") {
		t.Fatalf("rebuild --force: %s", out)
	}
	after := waitBuild(t, c, "com.example.app", "1.0.0", "ready")
	if after.Canonical != before.Canonical || after.ManifestFiles != before.ManifestFiles {
		t.Fatalf("rebuilt %+v, was %+v", after.Bundle, before.Bundle)
	}
	var errb bytes.Buffer
	err := run(context.Background(), []string{"bundle", "rebuild", "9.9.9", "--app", "com.example.app", "--origin", "http://" + r.OriginAddr, "--data", data}, &bytes.Buffer{}, &errb)
	if err == nil || !strings.Contains(err.Error(), "bundle_not_found") {
		t.Fatalf("rebuild of an unknown version: %v", err)
	}
}
