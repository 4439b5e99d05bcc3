package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/store"
)

// labelledMetric reads one metric with exactly these labels (as the
// exposition writes them, e.g. `role="upstream",upstream="http://a"`).
func labelledMetric(addr, name, labels string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name+"{"+labels+"}") + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("no %s{%s}", name, labels)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// currentUpstream reports whether the edge at addr uses upstream (a URL).
func currentUpstream(addr, upstream string) bool {
	v, err := labelledMetric(addr, "updraft_edge_upstream_current", `role="upstream",upstream="`+upstream+`"`)
	return err == nil && v == 1
}

// downloadChecked downloads an update answer's url and checks its SHA-256.
func downloadChecked(a updateAnswer) error {
	resp, err := http.Get(a.URL)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sum := sha256.Sum256(b)
	if resp.StatusCode != 200 || hex.EncodeToString(sum[:]) != a.Checksum {
		return fmt.Errorf("HTTP %d, sha256 %x, want %s", resp.StatusCode, sum, a.Checksum)
	}
	return nil
}

// waitSpoolDrained waits until the edge delivered every accepted event.
func waitSpoolDrained(t *testing.T, edge string) {
	t.Helper()
	eventually(t, 60*time.Second, "edge "+edge+" spool drained", func() bool {
		b, err := metricValue("http://"+edge+"/metrics", "updraft_edge_stats_spool_bytes")
		return err == nil && b == 0
	})
}

// checkOriginCounts compares the origin's aggregates for app with the
// events the edges accepted: exactly once each.
func checkOriginCounts(t *testing.T, c *client.Client, app string, acc *tally) {
	t.Helper()
	rep, err := c.Stats(context.Background(), app, url.Values{"from": {strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)}})
	if err != nil {
		t.Fatal(err)
	}
	if total := acc.total.Load(); rep.Events != total {
		t.Fatalf("origin aggregates hold %d events; the edge accepted %d", rep.Events, total)
	}
	acc.mu.Lock()
	defer acc.mu.Unlock()
	for _, b := range rep.Bundles {
		want := []int64{acc.n[[2]string{b.Version, "set"}], acc.n[[2]string{b.Version, "download_complete"}],
			acc.n[[2]string{b.Version, "update_fail"}] + acc.n[[2]string{b.Version, "download_fail"}]}
		if b.Installs != want[0] || b.Downloads != want[1] || b.Failures != want[2] {
			t.Errorf("bundle %s: installs %d downloads %d failures %d; accepted %v", b.Version, b.Installs, b.Downloads, b.Failures, want)
		}
	}
}

// sendEvents posts n batches of fleet events for app (bundle versions) to
// edge and records the accepted ones.
func sendEvents(t *testing.T, edge, app string, versions []string, batches int, acc *tally) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	rng := rand.New(rand.NewPCG(uint64(batches), 7))
	for i := 0; i < batches; i++ {
		batch := make([]map[string]any, 1+rng.IntN(30))
		for j := range batch {
			batch[j], _, _ = fleetEvent(rng, app, versions)
		}
		if _, err := sendBatch(client, edge, batch, acc); err != nil {
			t.Fatal(err)
		}
	}
}

// Issue 13 (a): the first --upstream is a closed port, the second a real
// origin: the edge follows, answers, serves blobs and delivers events
// through the second, and says so in its metrics.
func TestEdgeUpstreamDeadFirst(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two processes")
	}
	data := t.TempDir()
	originAddr := freePort(t)
	startChild(t, "origin", "--data", data, "--listen", originAddr, "--log-level", "warn")
	waitHTTP(t, "http://"+originAddr+"/healthz")
	publishBundle(t, originAddr, data, "1.0.1")
	apiKey, _ := os.ReadFile(config.APIKeyFile(data))
	c := client.New("http://"+originAddr, strings.TrimSpace(string(apiKey)))

	dead, edge := freePort(t), freePort(t) // nothing listens on dead
	edgeChild(t, data, "edge", dead+",http://"+originAddr, edge, originPubkey(t, data))
	var a updateAnswer
	eventually(t, 20*time.Second, "the edge answering 1.0.1", func() bool {
		var err error
		a, err = edgeAnswer(edge)
		return err == nil && a.Version == "1.0.1"
	})
	if err := downloadChecked(a); err != nil {
		t.Fatalf("download through the edge: %v", err)
	}
	eventually(t, 15*time.Second, "readyz following", func() bool {
		_, m, err := readyzOf(edge)
		return err == nil && m["following"] == true
	})
	acc := &tally{n: map[[2]string]int64{}}
	sendEvents(t, edge, "com.example.app", []string{"1.0.1"}, 20, acc)
	waitSpoolDrained(t, edge)
	checkOriginCounts(t, c, "com.example.app", acc)

	if !currentUpstream(edge, "http://"+originAddr) || currentUpstream(edge, "http://"+dead) {
		t.Fatal("updraft_edge_upstream_current does not name the origin")
	}
	if n, err := labelledMetric(edge, "updraft_edge_upstream_failovers_total", `role="upstream"`); err != nil || n < 1 {
		t.Fatalf("failovers_total %v %v, want ≥ 1", n, err)
	}
}

// Issue 13 (b): a leaf edge with --upstream P1,P2 (two parent edges of one
// origin). P1 is killed (SIGKILL) while devices keep sending events to the
// leaf: the leaf keeps converging to new revisions, fetching blobs and
// delivering events through P2, and the origin counts every accepted event
// exactly once. P1 restarted: the leaf returns to it and follows through
// it.
func TestEdgeUpstreamParentKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four processes")
	}
	data := t.TempDir()
	originAddr := freePort(t)
	startChild(t, "origin", "--data", data, "--listen", originAddr, "--log-level", "warn")
	waitHTTP(t, "http://"+originAddr+"/healthz")
	const app = "com.example.app"
	publishBundle(t, originAddr, data, "1.0.1")
	apiKey, _ := os.ReadFile(config.APIKeyFile(data))
	c := client.New("http://"+originAddr, strings.TrimSpace(string(apiKey)))
	pub := originPubkey(t, data)

	parentArgs := func(name, listen string) []string {
		return []string{"edge", "--upstream", "http://" + originAddr, "--origin-pubkey", pub, "--edge-key-file", config.EdgeKeyFile(data),
			"--data", filepath.Join(data, name), "--listen", listen, "--log-level", "warn"}
	}
	p1, p2, leaf := freePort(t), freePort(t), freePort(t)
	p1Proc := startChild(t, parentArgs("p1", p1)...)
	startChild(t, parentArgs("p2", p2)...)
	waitHTTP(t, "http://"+p1+"/healthz")
	waitHTTP(t, "http://"+p2+"/healthz")
	edgeChild(t, data, "leaf", p1+",http://"+p2, leaf, pub, "--primary-probe-interval", "500ms")
	eventually(t, 20*time.Second, "the leaf answering 1.0.1", func() bool {
		a, err := edgeAnswer(leaf)
		return err == nil && a.Version == "1.0.1"
	})
	if !currentUpstream(leaf, "http://"+p1) {
		t.Fatal("the leaf does not use its primary upstream")
	}
	// A channel legacy plugins may pick themselves (stored at the origin
	// through the upstream).
	one, tr := "1.0.1", true
	if _, err := c.SetChannel(context.Background(), app, "beta", store.ChannelPatch{Bundle: &one, AllowDeviceSelfSet: &tr}); err != nil {
		t.Fatal(err)
	}

	// Devices send events to the leaf all along.
	acc := &tally{n: map[[2]string]int64{}}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var sendErrs atomic.Int64
	var lastErr atomic.Value
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			rng := rand.New(rand.NewPCG(uint64(w), 13))
			for !stop.Load() {
				batch := make([]map[string]any, 1+rng.IntN(40))
				for j := range batch {
					batch[j], _, _ = fleetEvent(rng, app, []string{"1.0.1"})
				}
				if _, err := sendBatch(client, leaf, batch, acc); err != nil {
					sendErrs.Add(1)
					lastErr.Store(err.Error())
				}
				time.Sleep(time.Duration(5+rng.IntN(10)) * time.Millisecond)
			}
		}(w)
	}
	defer func() { stop.Store(true); wg.Wait() }()
	eventually(t, 20*time.Second, "events delivered through P1", func() bool {
		n, err := metricValue("http://"+leaf+"/metrics", "updraft_edge_stats_forwarded_bytes_total")
		return err == nil && n > 0
	})

	// P1 dies mid-run.
	p1Proc.Process.Signal(syscall.SIGKILL)
	p1Proc.Wait()
	atKill := acc.total.Load()

	// New revisions reach the leaf through P2, and their blobs too.
	for _, v := range []string{"1.0.2", "1.0.3"} {
		if _, err := c.UploadBundle(context.Background(), app, v, bytes.NewReader(smallZip(t, v)), client.UploadOptions{Channel: "production"}); err != nil {
			t.Fatal(err)
		}
		var a updateAnswer
		eventually(t, 30*time.Second, "the leaf answering "+v, func() bool {
			var err error
			a, err = edgeAnswer(leaf)
			return err == nil && a.Version == v
		})
		if err := downloadChecked(a); err != nil {
			t.Fatalf("download %s through the leaf with P1 down: %v", v, err)
		}
	}
	if !currentUpstream(leaf, "http://"+p2) {
		t.Fatal("the leaf does not say it uses P2")
	}
	// A legacy plugin's setChannel at the leaf is stored at the origin
	// through P2 and served by the leaf.
	const dev = "00000000-0000-4000-8000-0000000000be" // not deviceBody's device (edgeAnswer)
	if code, b := post(t, "http://"+leaf+"/channel_self", "POST", device(dev, "1.0.0", `,"channel":"beta"`)); code != 200 || b != `{"status":"ok"}` {
		t.Fatalf("legacy setChannel at the leaf with P1 down: %d %s", code, b)
	}
	eventually(t, 15*time.Second, "the leaf answering beta's 1.0.1 to the device", func() bool {
		return answer(t, &running{EdgeAddr: leaf}, device(dev, "1.0.0", "")).Version == "1.0.1"
	})
	if n, err := labelledMetric(leaf, "updraft_edge_upstream_failovers_total", `role="upstream"`); err != nil || n < 1 {
		t.Fatalf("failovers_total %v %v, want ≥ 1", n, err)
	}
	if n, err := labelledMetric(leaf, "updraft_edge_upstream_errors_total", `role="upstream",upstream="http://`+p1+`"`); err != nil || n < 1 {
		t.Fatalf("errors_total of P1 %v %v, want ≥ 1", n, err)
	}
	eventually(t, 30*time.Second, "events accepted and delivered after the kill", func() bool {
		return acc.total.Load() > atKill+200
	})

	// P1 is back (same address and data): the leaf returns to it and
	// follows through it.
	startChild(t, parentArgs("p1", p1)...)
	eventually(t, 30*time.Second, "the leaf back on P1", func() bool { return currentUpstream(leaf, "http://"+p1) })
	if _, err := c.UploadBundle(context.Background(), app, "1.0.4", bytes.NewReader(smallZip(t, "1.0.4")), client.UploadOptions{Channel: "production"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the leaf answering 1.0.4 through P1", func() bool {
		a, err := edgeAnswer(leaf)
		return err == nil && a.Version == "1.0.4"
	})

	stop.Store(true)
	wg.Wait()
	if n := sendErrs.Load(); n > 0 {
		t.Fatalf("%d batches were not accepted by the leaf; last: %v", n, lastErr.Load())
	}
	t.Logf("the leaf accepted %d events, %d of them after P1 was killed", acc.total.Load(), acc.total.Load()-atKill)
	waitSpoolDrained(t, leaf)
	checkOriginCounts(t, c, app, acc)
}
