package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin/client"
)

func TestProgressFormat(t *testing.T) {
	for _, c := range []struct {
		sent, total int64
		elapsed     time.Duration
		want        string
	}{
		{5 << 20, 20 << 20, 2 * time.Second, "uploading 5.0 MiB of 20.0 MiB (25%), 2.5 MiB/s"},
		{20 << 20, 20 << 20, 4 * time.Second, "uploading 20.0 MiB of 20.0 MiB (100%), 5.0 MiB/s"},
		{1536, 0, time.Second, "uploading 1.5 KiB, 1.5 KiB/s"},
		{3 << 30, 0, 0, "uploading 3.00 GiB"},
		{100, 1000, time.Millisecond, "uploading 100 B of 1000 B (10%)"},
	} {
		if got := formatProgress(c.sent, c.total, c.elapsed); got != c.want {
			t.Errorf("formatProgress(%d, %d, %s) = %q, want %q", c.sent, c.total, c.elapsed, got, c.want)
		}
	}
}

// TestProgressOnlyOnTerminal: an upload prints no progress when stderr is
// not a terminal (a pipe, a file, a buffer) or with --json; with a
// terminal the line counts up to 100% and is cleared at the end.
func TestProgressOnlyOnTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, w := range []io.Writer{&bytes.Buffer{}, f} {
		if progressTo(w, false) != nil {
			t.Errorf("progress on %T, not a terminal", w)
		}
	}
	if progressTo(os.Stderr, true) != nil {
		t.Error("progress with --json")
	}

	data := t.TempDir()
	r := startTestServe(t, data)
	cli(t, r, data, "app", "create", "com.example.app")
	zipPath := writeZip(t, benchBundle()) // over progressMin
	var out, errb bytes.Buffer
	args := []string{"bundle", "upload", zipPath, "--app", "com.example.app", "--version", "1.0.1", "--origin", "http://" + r.OriginAddr, "--data", data}
	if err := run(context.Background(), args, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if errb.Len() != 0 || !strings.HasPrefix(out.String(), "uploaded com.example.app 1.0.1") {
		t.Fatalf("upload, stderr not a terminal: stdout %q, stderr %q", out.String(), errb.String())
	}

	// The terminal path, with the terminal stood in for by a buffer.
	key, _ := os.ReadFile(filepath.Join(data, "api-key"))
	c := client.New("http://"+r.OriginAddr, strings.TrimSpace(string(key)))
	var term bytes.Buffer
	b, err := uploadPath(context.Background(), c, "com.example.app", "1.0.2", zipPath, client.UploadOptions{}, &term)
	if err != nil || b.Version != "1.0.2" {
		t.Fatalf("upload with progress: %+v, %v", b, err)
	}
	size := byteSize(int64(len(benchBundle())))
	if s := term.String(); !strings.Contains(s, "\r\x1b[Kuploading "+size+" of "+size+" (100%)") || !strings.HasSuffix(s, "\r\x1b[K") {
		t.Fatalf("progress: %q", s)
	}
}
