package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/store"
)

// edgeAnswer asks an edge for an update as a device on 1.0.0.
func edgeAnswer(edge string) (updateAnswer, error) {
	body := strings.Replace(deviceBody, `"builtin"`, `"1.0.0"`, 1)
	resp, err := http.Post("http://"+edge+"/updates", "application/json", strings.NewReader(body))
	if err != nil {
		return updateAnswer{}, err
	}
	defer resp.Body.Close()
	var a updateAnswer
	err = json.NewDecoder(resp.Body).Decode(&a)
	return a, err
}

func smallZip(t *testing.T, marker string) []byte {
	var buf bytes.Buffer
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("<html>"+marker+"</html>"), 0o644)
	os.WriteFile(filepath.Join(dir, "app.js"), bytes.Repeat([]byte("console.log('"+marker+"');\n"), 2000), 0o644)
	if err := client.ZipDir(dir, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestReplicationTiers runs an origin, a shield edge and two leaf edges as
// separate processes on 127.0.0.1 and checks that every channel change at
// the origin reaches both leaves, that leaves keep serving with the origin
// down, and that a leaf restarted while the origin is down serves its
// persisted snapshot.
func TestReplicationTiers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four processes")
	}
	data := t.TempDir()
	originAddr := freePort(t)
	originProc := startChild(t, "origin", "--data", data, "--listen", originAddr, "--log-level", "warn")
	waitHTTP(t, "http://"+originAddr+"/healthz")

	priv, err := origin.LoadOrCreateSigningKey(data)
	if err != nil {
		t.Fatal(err)
	}
	pub := origin.EncodePublicKey(priv.Public().(ed25519.PublicKey))
	keyFile := config.EdgeKeyFile(data)
	apiKey, _ := os.ReadFile(config.APIKeyFile(data))
	c := client.New("http://"+originAddr, strings.TrimSpace(string(apiKey)))
	ctx := context.Background()

	edgeArgs := func(name, upstream, listen string) []string {
		return []string{"edge", "--upstream", "http://" + upstream, "--origin-pubkey", pub, "--edge-key-file", keyFile,
			"--data", filepath.Join(data, name), "--listen", listen, "--log-level", "warn"}
	}
	shield := freePort(t)
	shieldProc := startChild(t, edgeArgs("shield", originAddr, shield)...)
	leaves := []string{freePort(t), freePort(t)}
	leafProcs := make([]*exec.Cmd, 2)
	for i, l := range leaves {
		leafProcs[i] = startChild(t, edgeArgs(fmt.Sprintf("leaf%d", i), shield, l)...)
	}
	for _, e := range append([]string{shield}, leaves...) {
		waitHTTP(t, "http://"+e+"/healthz")
	}

	if _, err := c.CreateApp(ctx, "com.example.app", ""); err != nil {
		t.Fatal(err)
	}
	zips := map[string][]byte{"1.0.1": smallZip(t, "one"), "1.0.2": smallZip(t, "two")}
	for _, v := range []string{"1.0.1", "1.0.2"} {
		if _, err := c.UploadBundle(ctx, "com.example.app", v, bytes.NewReader(zips[v]), client.UploadOptions{Channel: "production"}); err != nil {
			t.Fatal(err)
		}
	}
	tr := true
	if _, err := c.SetChannel(ctx, "com.example.app", "production", store.ChannelPatch{Public: &tr}); err != nil {
		t.Fatal(err)
	}

	// 100 changes: flip the channel between the two bundles and time how long
	// each leaf takes to answer with the new bundle.
	var lat []time.Duration
	for i := 0; i < 100; i++ {
		v := []string{"1.0.1", "1.0.2"}[i%2]
		start := time.Now()
		if _, err := c.SetChannel(ctx, "com.example.app", "production", store.ChannelPatch{Bundle: &v}); err != nil {
			t.Fatal(err)
		}
		for _, l := range leaves {
			deadline := start.Add(10 * time.Second)
			for {
				a, err := edgeAnswer(l)
				if err == nil && a.Version == v {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("change %d: leaf %s still answers %+v (%v) after 10s", i, l, a, err)
				}
				time.Sleep(time.Millisecond)
			}
			lat = append(lat, time.Since(start))
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	t.Logf("propagation origin → shield → leaf over %d observations: p50 %v, p99 %v, max %v",
		len(lat), p(0.50).Round(100*time.Microsecond), p(0.99).Round(100*time.Microsecond), lat[len(lat)-1].Round(100*time.Microsecond))

	// Device overrides travel in shards: pin 200,000 devices to beta, then
	// time how fast one more override reaches the leaves.
	one := "1.0.1"
	if _, err := c.SetChannel(ctx, "com.example.app", "beta", store.ChannelPatch{Bundle: &one}); err != nil {
		t.Fatal(err)
	}
	bulk := make([]string, 100000)
	bulkStart := time.Now()
	for round := 0; round < 2; round++ {
		for i := range bulk {
			bulk[i] = fmt.Sprintf("%08x-%04x-4000-8000-%012x", i*7919+round, round, i)
		}
		if err := c.SetOverrides(ctx, "com.example.app", "beta", bulk); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until both leaves serve the bulk overrides.
	bulkDev := strings.Replace(deviceBody, "00009A6B-EEFE-490A-9C60-8E965132AE51", bulk[99999], 1)
	for _, l := range leaves {
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := http.Post("http://"+l+"/updates", "application/json", strings.NewReader(bulkDev))
			if err == nil {
				var a updateAnswer
				json.NewDecoder(resp.Body).Decode(&a)
				resp.Body.Close()
				if a.Version == "1.0.1" {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("bulk overrides did not reach leaf %s", l)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Logf("200,000 overrides (2 calls of 100,000) reached both leaves %v after the first call", time.Since(bulkStart).Round(time.Millisecond))
	pinned := strings.ToLower("00009A6B-EEFE-490A-9C60-8E965132AE51")
	current, _ := edgeAnswer(leaves[0])
	start := time.Now()
	if err := c.SetOverrides(ctx, "com.example.app", "beta", []string{pinned}); err != nil {
		t.Fatal(err)
	}
	for _, l := range leaves {
		deadline := start.Add(10 * time.Second)
		for {
			a, err := edgeAnswer(l)
			if err == nil && a.Version == "1.0.1" && current.Version != "1.0.1" || err == nil && a.Error == "no_new_version_available" && current.Version == "1.0.1" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("override did not reach leaf %s: %+v %v", l, a, err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	t.Logf("one device override on top of 200,000 reached both leaves in %v", time.Since(start).Round(100*time.Microsecond))
	if err := c.SetOverrides(ctx, "com.example.app", "", []string{pinned}); err != nil {
		t.Fatal(err)
	}
	for _, l := range leaves {
		deadline := time.Now().Add(10 * time.Second)
		for {
			if a, err := edgeAnswer(l); err == nil && a.Version == current.Version {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cleared override did not reach leaf %s", l)
			}
			time.Sleep(time.Millisecond)
		}
	}

	// Download the current bundle through a leaf (fills leaf ← shield ← origin).
	cur, _ := edgeAnswer(leaves[0])
	download := func(url string) error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		sum := sha256.Sum256(b)
		if resp.StatusCode != 200 || hex.EncodeToString(sum[:]) != cur.Checksum {
			return fmt.Errorf("HTTP %d, sha256 %x, want %s", resp.StatusCode, sum, cur.Checksum)
		}
		return nil
	}
	if err := download(cur.URL); err != nil {
		t.Fatalf("download via leaf: %v", err)
	}

	// Origin down: leaves answer and serve the cached bundle.
	originProc.Process.Kill()
	originProc.Wait()
	for _, l := range leaves {
		if a, err := edgeAnswer(l); err != nil || a.Version != cur.Version {
			t.Fatalf("leaf %s with origin down: %+v %v", l, a, err)
		}
	}
	if err := download(cur.URL); err != nil {
		t.Fatalf("download with origin down: %v", err)
	}

	// A leaf restarted while origin and shield are down serves its persisted
	// snapshot (and its cached bundle).
	shieldProc.Process.Kill()
	shieldProc.Wait()
	// Wait for the old process to be gone (and its spool lock released)
	// before starting the new one on the same data folder.
	leafProcs[1].Process.Kill()
	leafProcs[1].Wait()
	restarted := freePort(t)
	startChild(t, edgeArgs("leaf1", shield, restarted)...)
	waitHTTP(t, "http://"+restarted+"/readyz")
	resp, err := http.Get("http://" + restarted + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("restarted leaf not ready: %v %v", resp, err)
	}
	resp.Body.Close()
	if a, err := edgeAnswer(restarted); err != nil || a.Version != cur.Version {
		t.Fatalf("restarted leaf: %+v %v", a, err)
	}
	if err := download(strings.Replace(cur.URL, leaves[0], leaves[0], 1)); err != nil {
		t.Fatalf("download from leaf 0 with origin and shield down: %v", err)
	}
}
