package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/config"
)

// Finding 8 of issue 15, deterministically: a child edge's snapshot
// long-poll is known to be held by serve's origin before serve is stopped
// (TestServeStopsWithChildEdge stops as soon as the child follows, when its
// next long-poll may not have reached the origin yet, and then passes
// without the fix). serve stops in under 2 s (the bound) without
// an error, and the long-poll is answered.
func TestServeStopsWithHeldLongPoll(t *testing.T) {
	data := t.TempDir()
	oc := testOriginConfig(t, data)
	oc.Listen = "127.0.0.1:0"
	ec := config.NewEdge(filepath.Join(data, "edge-cache"))
	ec.Listen = "127.0.0.1:0"
	r, err := startServe(context.Background(), serveOptions{origin: oc, edge: ec, log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(config.EdgeKeyFile(data))
	if err != nil {
		t.Fatal(err)
	}
	rev := r.Origin.Current().Snap.Rev
	req, _ := http.NewRequest("GET", "http://"+r.OriginAddr+"/v1/snapshot?wait=60&after="+strconv.FormatInt(rev, 10), nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(key)))
	answered := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- -1
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	// Held: no answer for a while (nothing changes at the origin).
	select {
	case code := <-answered:
		t.Fatalf("long-poll answered HTTP %d at once; want it held", code)
	case <-time.After(500 * time.Millisecond):
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err = r.stop(ctx)
	took := time.Since(start)
	if err != nil || took > 2*time.Second {
		t.Fatalf("serve stop with a held long-poll: %v after %v, want nil in under 2s", err, took)
	}
	select {
	case code := <-answered:
		if code != http.StatusServiceUnavailable {
			t.Fatalf("held long-poll answered HTTP %d at shutdown, want 503 shutting_down", code)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("held long-poll not answered at shutdown")
	}
	t.Logf("serve stopped in %v with a held long-poll", took.Round(time.Millisecond))
}
