package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
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
	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/store"
)

// fleetEvent is one device event as the plugin sends it.
func fleetEvent(rng *rand.Rand, app string, versions []string) (map[string]any, string, string) {
	dev := fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", rng.Uint32(), rng.Uint32()&0xffff, rng.Uint32()&0xfff, rng.Uint32()&0xfff, rng.Uint64()&0xffffffffffff)
	v := versions[rng.IntN(len(versions))]
	action := []string{"set", "set", "set", "download_complete", "update_fail", "download_fail", "get", "app_moved_to_foreground"}[rng.IntN(8)]
	return map[string]any{
		"app_id": app, "device_id": dev, "platform": []string{"ios", "android"}[rng.IntN(2)], "version_name": v,
		"old_version_name": "", "version_build": "1.0.0", "version_code": "1", "version_os": "17.2", "plugin_version": "8.51.14",
		"is_emulator": false, "is_prod": true, "action": action, "timestamp": time.Now().UnixMilli(),
		"metadata": map[string]string{"source": "fleet"},
	}, v, action
}

// tally counts accepted events by (version, action).
type tally struct {
	mu    sync.Mutex
	n     map[[2]string]int64
	total atomic.Int64
}

func (t *tally) add(v, action string) {
	t.mu.Lock()
	t.n[[2]string{v, action}]++
	t.mu.Unlock()
	t.total.Add(1)
}

// sendBatch posts a batch to an edge and records the events its answer
// says were accepted. It reports whether the edge took the request.
func sendBatch(client *http.Client, edge string, batch []map[string]any, acc *tally) (bool, error) {
	body, _ := json.Marshal(batch)
	resp, err := client.Post("http://"+edge+"/stats", "application/json", bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return false, fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	var out struct {
		Status  string `json:"status"`
		Results []struct {
			Status string `json:"status"`
			Index  int    `json:"index"`
			Error  string `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Status != "ok" || len(out.Results) != len(batch) {
		return false, fmt.Errorf("answer %s (%v)", b, err)
	}
	for _, r := range out.Results {
		if r.Status != "ok" {
			return false, fmt.Errorf("event %d refused: %s", r.Index, r.Error)
		}
		e := batch[r.Index]
		acc.add(e["version_name"].(string), e["action"].(string))
	}
	return true, nil
}

// metricValue reads one unlabelled metric from a Prometheus endpoint.
func metricValue(url, name string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("%s: no %s", url, name)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// TestStatsThroughEdgesWithOriginOutage is issue 9's integration test: a
// simulated fleet sends events through two edges (one relaying through the
// other), the origin is killed (SIGKILL) and stays down for 10 s in the
// middle of the run, and at the end the origin's aggregates equal exactly
// the events the edges accepted.
func TestStatsThroughEdgesWithOriginOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three processes and stops the origin for 10 s")
	}
	data := t.TempDir()
	originAddr := freePort(t)
	originArgs := []string{"origin", "--data", data, "--listen", originAddr, "--log-level", "warn"}
	originProc := startChild(t, originArgs...)
	waitHTTP(t, "http://"+originAddr+"/healthz")

	priv, err := origin.LoadOrCreateSigningKey(data)
	if err != nil {
		t.Fatal(err)
	}
	pub := origin.EncodePublicKey(priv.Public().(ed25519.PublicKey))
	apiKey, _ := os.ReadFile(config.APIKeyFile(data))
	c := client.New("http://"+originAddr, strings.TrimSpace(string(apiKey)))
	ctx := context.Background()
	const app = "com.example.fleet"
	if _, err := c.CreateApp(ctx, app, ""); err != nil {
		t.Fatal(err)
	}
	versions := []string{"1.0.0", "1.0.1"}
	for i, v := range versions {
		if _, err := c.UploadBundle(ctx, app, v, bytes.NewReader(smallZip(t, v)), client.UploadOptions{Channel: "production"}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			tr := true
			if _, err := c.SetChannel(ctx, app, "production", store.ChannelPatch{Public: &tr}); err != nil {
				t.Fatal(err)
			}
		}
	}
	bps := 5000
	if _, err := c.Rollout(ctx, app, "production", origin.RolloutRequest{Action: store.RolloutSet, Bundle: "1.0.1", BPS: &bps}); err != nil {
		t.Fatal(err)
	}

	// Edge A follows the origin; edge B follows edge A, and its events are
	// relayed by A.
	edgeA, edgeB := freePort(t), freePort(t)
	edgeArgs := func(name, upstream, listen string) []string {
		return []string{"edge", "--upstream", "http://" + upstream, "--origin-pubkey", pub, "--edge-key-file", config.EdgeKeyFile(data),
			"--data", filepath.Join(data, name), "--listen", listen, "--log-level", "warn"}
	}
	startChild(t, edgeArgs("edge-a", originAddr, edgeA)...)
	startChild(t, edgeArgs("edge-b", edgeA, edgeB)...)
	edges := []string{edgeA, edgeB}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, e := range edges {
		waitHTTP(t, "http://"+e+"/healthz")
		deadline := time.Now().Add(20 * time.Second)
		for {
			// Ready when the edge knows the app and both bundles.
			code, body := post(t, "http://"+e+"/stats", "POST", `[]`)
			probe := `{"app_id":"` + app + `","device_id":"00000000-0000-4000-8000-000000000000","platform":"ios","version_name":"1.0.1","version_os":"17","action":"ping"}`
			if code == 200 && body != "" {
				req, _ := http.NewRequest("POST", "http://"+e+"/stats", strings.NewReader(probe))
				if resp, err := client.Do(req); err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 && string(b) == `{"status":"ok"}` {
						break
					}
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("edge %s not ready for stats: %d %s", e, code, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The two probes above were accepted too.
	acc := &tally{n: map[[2]string]int64{}}
	acc.add("1.0.1", "ping")
	acc.add("1.0.1", "ping")

	// The fleet: 6 senders, each posting batches of 1..60 events to both
	// edges in turn for phases before, during and after the outage.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var sendErrs atomic.Int64
	var lastErr atomic.Value
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for i := 0; i < 100000 && !stop.Load(); i++ {
				n := 1 + rng.IntN(60)
				batch := make([]map[string]any, n)
				for j := range batch {
					batch[j], _, _ = fleetEvent(rng, app, versions)
				}
				if _, err := sendBatch(client, edges[(w+i)%2], batch, acc); err != nil {
					sendErrs.Add(1)
					lastErr.Store(err.Error())
				}
				time.Sleep(time.Duration(10+rng.IntN(20)) * time.Millisecond)
			}
		}(w)
	}
	time.Sleep(3 * time.Second)
	before := acc.total.Load()
	originProc.Process.Signal(syscall.SIGKILL)
	originProc.Wait()
	t.Logf("origin killed after %d accepted events; down for 10 s", before)
	time.Sleep(10 * time.Second)
	during := acc.total.Load() - before
	startChild(t, originArgs...)
	waitHTTP(t, "http://"+originAddr+"/healthz")
	time.Sleep(3 * time.Second)
	stop.Store(true)
	wg.Wait()
	if n := sendErrs.Load(); n > 0 {
		t.Fatalf("%d batches were not accepted; last: %v", n, lastErr.Load())
	}
	if during == 0 {
		t.Fatal("no event was accepted while the origin was down")
	}
	total := acc.total.Load()
	t.Logf("accepted %d events (%d while the origin was down)", total, during)

	// Every edge drains its spool to the origin.
	for _, e := range edges {
		deadline := time.Now().Add(testenv.Patience(60 * time.Second))
		for {
			b, err := metricValue("http://"+e+"/metrics", "updraft_edge_stats_spool_bytes")
			if err == nil && b == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("edge %s spool not drained: %v bytes (%v)", e, b, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	rep, err := c.Stats(ctx, app, url.Values{"from": {strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != total {
		t.Fatalf("origin aggregates hold %d events; the edges accepted %d", rep.Events, total)
	}
	for _, b := range rep.Bundles {
		acc.mu.Lock()
		want := map[string]int64{"set": acc.n[[2]string{b.Version, "set"}], "download_complete": acc.n[[2]string{b.Version, "download_complete"}],
			"fail": acc.n[[2]string{b.Version, "update_fail"}] + acc.n[[2]string{b.Version, "download_fail"}]}
		acc.mu.Unlock()
		if b.Installs != want["set"] || b.Downloads != want["download_complete"] || b.Failures != want["fail"] {
			t.Errorf("bundle %s: installs %d downloads %d failures %d; accepted %d, %d, %d", b.Version,
				b.Installs, b.Downloads, b.Failures, want["set"], want["download_complete"], want["fail"])
		}
	}
	if len(rep.Bundles) != 2 {
		t.Fatalf("bundles in report: %+v", rep.Bundles)
	}
	// Placement: the rollout splits production's devices into arms; every
	// event was placed in the default segment.
	for _, s := range rep.Segments {
		if s.Segment != "default" {
			t.Errorf("segment %q: want default", s.Segment)
		}
	}
}

// TestRolloutGuardEndToEnd: devices report through the edge; the rollout of
// a bundle failing on 30% of devices is paused by the guard and the edge
// stops offering it to new devices, while a healthy rollout on another
// channel is left alone.
func TestRolloutGuardEndToEnd(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	const app = "com.example.app"
	cli(t, r, data, "app", "create", app)
	cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, "one")), "--app", app, "--version", "1.0.0", "--channel", "production")
	cli(t, r, data, "channel", "set", "production", "--app", app, "--default")
	cli(t, r, data, "channel", "set", "healthy", "--app", app, "--bundle", "1.0.0", "--allow-device-self-set")
	cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, "two")), "--app", app, "--version", "1.0.1")
	for _, ch := range []string{"production", "healthy"} {
		cli(t, r, data, "channel", "rollout", ch, "--app", app, "--bundle", "1.0.1", "--percent", "100")
		// The devices below are made up after the rollout, from one client:
		// the guard's defaults would ignore them (guard_attack_test.go);
		// these settings count them, as before those defaults.
		cli(t, r, data, "channel", "guard", ch, "--app", app, "--threshold", "10", "--min-attempts", "50", "--min-failures", "5",
			"--count-new-devices", "--min-prefixes", "1", "--max-devices-per-prefix", "1000")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	acc := &tally{n: map[[2]string]int64{}}
	report := func(channel string, from, n int, failEvery int) {
		t.Helper()
		var batch []map[string]any
		for i := from; i < from+n; i++ {
			action := "set"
			if failEvery > 0 && i%failEvery == 0 {
				action = "update_fail"
			}
			ev := map[string]any{"app_id": app, "device_id": fmt.Sprintf("00000000-0000-4000-8000-%012d", i), "platform": "android",
				"version_name": "1.0.1", "version_build": "1.0.0", "version_os": "14", "plugin_version": "8.51.14", "action": action}
			if channel != "production" {
				ev["defaultChannel"] = channel
			}
			batch = append(batch, ev)
		}
		if _, err := sendBatch(client, r.EdgeAddr, batch, acc); err != nil {
			t.Fatal(err)
		}
	}
	guard := func(ch string) origin.GuardInfo {
		var info origin.GuardInfo
		if err := json.Unmarshal([]byte(cli(t, r, data, "channel", "guard", ch, "--app", app, "--json")), &info); err != nil {
			t.Fatal(err)
		}
		return info
	}
	// Healthy: 2% of 200 devices fail. Failing: 30% of 100 devices fail,
	// reported after the healthy ones.
	report("healthy", 0, 200, 50)
	report("production", 1000, 100, 10) // i%10 == 0 → every tenth; plus below
	report("production", 2000, 40, 2)   // 20 more failures among 40: 30 of 140 in all
	deadline := time.Now().Add(15 * time.Second)
	for {
		info := guard("production")
		if len(info.Actions) > 0 {
			a := info.Actions[0]
			if a.Action != "pause" || a.Bundle != "1.0.1" || a.Attempts != 140 || a.Failures != 30 {
				t.Fatalf("guard action %+v", a)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the failing rollout was not paused: %+v", info.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The edge sees the pause: a device that never had 1.0.1 is not offered it.
	deadline = time.Now().Add(10 * time.Second)
	for {
		a := answer(t, r, device("00000000-0000-4000-8000-00000000beef", "1.0.0", ""))
		if a.Error == "no_new_version_available" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge still offers %+v after the pause", a)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The healthy rollout: its evaluation covered its 200 devices, no action.
	deadline = time.Now().Add(10 * time.Second)
	for {
		info := guard("healthy")
		if info.Status != nil && info.Status.Attempts == 200 {
			if info.Status.State != "watching" || info.Status.Failures != 4 || len(info.Actions) != 0 {
				t.Fatalf("healthy rollout: %+v, actions %+v", info.Status, info.Actions)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthy guard never evaluated its 200 devices: %+v", info.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if a := answer(t, r, device("00000000-0000-4000-8000-00000000cafe", "1.0.0", `,"defaultChannel":"healthy"`)); a.Version != "1.0.1" {
		t.Fatalf("healthy rollout no longer offered: %+v", a)
	}
	// Changing one setting keeps the others.
	cli(t, r, data, "channel", "guard", "healthy", "--app", app, "--action", "notify")
	if g := guard("healthy").Guard; g.Action != "notify" || g.MinAttempts != 50 || g.ThresholdBPS != 1000 || g.MinFailures != 5 {
		t.Fatalf("guard after changing the action: %+v", g)
	}
}
