package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/client"
)

// `bundle upload --wait` returns only once the origin's build is ready: the
// bundle list read right after it shows the build done with its delta (no
// polling in the test: that is the flag's promise). `bundle rebuild --force
// --wait --json` prints the rebuilt bundle with its ready status.
func TestBundleUploadWait(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	cli(t, r, data, "app", "create", "com.example.app")
	shared := make([]byte, 64<<10)
	rand.Read(shared)
	for i, v := range []string{"1.0.0", "1.0.1"} {
		zipPath := data + "/b" + v + ".zip"
		os.WriteFile(zipPath, releaseBundle(t, shared, v), 0o644)
		out := cli(t, r, data, "bundle", "upload", zipPath, "--app", "com.example.app", "--version", v, "--wait")
		want := "bundle " + v + " built: manifest of 2 files, " + []string{"0 deltas", "2 deltas"}[i] // dcz and dcb from 1.0.0
		if !strings.Contains(out, want) {
			t.Fatalf("upload %s --wait printed %q, want %q", v, out, want)
		}
	}
	c := client.New("http://"+r.OriginAddr, readKey(t, data))
	bs, err := c.ListBundles(context.Background(), "com.example.app")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if b.DeltaStatus == nil || b.DeltaStatus.State != "ready" || b.Canonical == "" {
			t.Fatalf("after upload --wait, %s: %+v %+v", b.Version, b.Bundle, b.DeltaStatus)
		}
		if b.Version == "1.0.1" && len(b.Deltas) != 2 {
			t.Fatalf("1.0.1 after --wait has %d deltas, want 2", len(b.Deltas))
		}
	}

	var out, errb bytes.Buffer
	args := []string{"bundle", "rebuild", "1.0.1", "--app", "com.example.app", "--force", "--wait", "--json", "--origin", "http://" + r.OriginAddr, "--data", data}
	if err := run(context.Background(), args, &out, &errb); err != nil {
		t.Fatalf("rebuild --wait --json: %v\n%s", err, errb.String())
	}
	var bi api.BundleInfo
	if err := json.Unmarshal(out.Bytes(), &bi); err != nil {
		t.Fatalf("rebuild --wait --json printed %q: %v", out.String(), err)
	}
	if bi.Version != "1.0.1" || bi.DeltaStatus == nil || bi.DeltaStatus.State != "ready" || len(bi.Deltas) != 2 || bi.ManifestFiles != 2 {
		t.Fatalf("rebuild --wait --json: %+v %+v", bi.Bundle, bi.DeltaStatus)
	}
	if errb.Len() != 0 { // not a terminal: no progress line
		t.Fatalf("stderr not empty: %q", errb.String())
	}
}
