package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/bench"
	"github.com/updraft-cdn/updraft/internal/expotest"
	"github.com/updraft-cdn/updraft/origin/client"
)

// TestBenchExpo runs `updraft bench --client expo` against a real serve
// with an Expo export uploaded with --expo, through a counting proxy: a
// fresh fleet downloads every asset of the manifest once per device and
// verifies it, warm and cold; a fleet already on the offered update gets
// noUpdateAvailable and downloads nothing; an asset served with one wrong
// byte fails every update; without --app, bench uploads --bundle DIR as
// its throwaway app's Expo update and deletes the app.
func TestBenchExpo(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	const app = "com.example.rn"
	cli(t, r, data, "app", "create", app)
	exp, err := expotest.Write(t.TempDir(), expotest.Options{Seed: "bench", RuntimeVersion: "1.0.0", ExtraAssets: 6})
	if err != nil {
		t.Fatal(err)
	}
	cli(t, r, data, "bundle", "upload", exp.Dir, "--app", app, "--version", "1.0.0", "--expo", "--channel", "production", "--wait")
	px := startEdgeProxy(t, r.EdgeAddr)

	// The manifest a fresh Android install is offered, through the proxy
	// (its asset URLs name the proxy), once the edge serves it.
	var manifest struct {
		ID          string
		LaunchAsset struct{ Hash, Key, URL, ContentType string }
		Assets      []struct{ Hash, Key, URL, ContentType string }
	}
	eventually(t, 30*time.Second, "the edge to offer the Expo update", func() bool {
		parts := multipartParts(t, expoGet(t, px.addr, app, "5e0c3d3a-4b1e-4f5e-9c1a-2b3c4d5e6f70", "", "1.0.0"))
		return parts["manifest"] != nil && json.Unmarshal(parts["manifest"], &manifest) == nil
	})
	var assetPaths []string
	var png string // an asset stored as it is (incompressible), served without an encoding
	for i, u := range append([]string{manifest.LaunchAsset.URL}, func() (us []string) {
		for _, a := range manifest.Assets {
			us = append(us, a.URL)
		}
		return
	}()...) {
		pu, err := url.Parse(u)
		if err != nil || pu.Host != px.addr {
			t.Fatalf("asset URL %q does not name the proxy %s", u, px.addr)
		}
		assetPaths = append(assetPaths, pu.Path)
		if i > 0 && manifest.Assets[i-1].ContentType == "image/png" {
			png = pu.Path
		}
	}
	if n := len(exp.Assets["android"]) + 1; len(assetPaths) != n || png == "" {
		t.Fatalf("manifest has %d assets (png %q), want the export's %d: %+v", len(assetPaths), png, n, manifest)
	}
	manifestPath := "/expo/" + app + "/manifest"

	const devices = 10
	runBench := func(extra ...string) (bench.Report, bench.PhaseReport) {
		t.Helper()
		px.reset()
		args := append([]string{"bench", "--client", "expo", "--target", "http://" + px.addr, "--app", app, "--i-know-this-is-production",
			"--devices", strconv.Itoa(devices), "--duration", "2s", "--connections", "4", "--json"}, extra...)
		var out, errb bytes.Buffer
		if err := run(context.Background(), args, &out, &errb); err != nil {
			t.Fatalf("bench %v: %v\n%s", extra, err, errb.String())
		}
		var rep bench.Report
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil || len(rep.Phases) != 1 {
			t.Fatalf("%v: %s", err, out.String())
		}
		if rep.Client != "expo" || rep.AssetConcurrency != bench.DefaultExpoConcurrency {
			t.Fatalf("report: client %q, %d assets at once", rep.Client, rep.AssetConcurrency)
		}
		return rep, rep.Phases[0]
	}
	fetchedOnce := func(what string, want int) {
		t.Helper()
		px.mu.Lock()
		defer px.mu.Unlock()
		for _, p := range assetPaths {
			if px.gets[p] != want {
				t.Errorf("%s: %s fetched %d times, want %d", what, p, px.gets[p], want)
			}
		}
	}

	// A fresh fleet (on its embedded update), warm: every asset, once per
	// device, each verified.
	rep, p := runBench()
	if p.Failures != 0 || len(p.Paths) != 1 || p.Paths[0].Path != bench.PathExpo || p.Paths[0].TimeToUpdate.Count != devices ||
		p.Paths[0].FilesDownloaded != devices*int64(len(assetPaths)) || p.Paths[0].FilesReused != 0 || rep.HeldFiles != 0 ||
		!slices.Contains(p.Outcomes, bench.Outcome{Outcome: "update", Count: devices}) {
		t.Fatalf("fresh fleet, warm: %+v", p)
	}
	fetchedOnce("fresh fleet", devices)
	px.mu.Lock()
	if px.gets[manifestPath] != devices {
		t.Errorf("%d manifest requests, want %d", px.gets[manifestPath], devices)
	}
	px.mu.Unlock()
	t.Logf("fresh fleet, warm: time to update p50 %.2f ms, p99 %.2f ms, %d bytes; %d connections opened",
		p.TimeToUpdate.P50, p.TimeToUpdate.P99, p.BytesDown, p.ConnectionsOpened)

	// Cold: every update opens its own connections, counted by the proxy
	// as by the client.
	_, p = runBench("--conn", "cold")
	if p.Failures != 0 || p.TimeToUpdate.Count != devices || p.ConnectionsOpened < devices || px.accepted.Load() < p.ConnectionsOpened {
		t.Fatalf("cold: %d connections reported, %d accepted: %+v", p.ConnectionsOpened, px.accepted.Load(), p)
	}
	fetchedOnce("cold", devices)
	t.Logf("fresh fleet, cold: time to update p50 %.2f ms, p99 %.2f ms; %d connections for %d updates", p.TimeToUpdate.P50, p.TimeToUpdate.P99, px.accepted.Load(), devices)

	// Devices already on the offered update: they report the id the edge
	// gave for it and get noUpdateAvailable; no asset is fetched.
	rep, p = runBench("--version-name", "offered")
	if p.Failures != 0 || p.TimeToUpdate.Count != 0 || len(p.Outcomes) != 1 || p.Outcomes[0] != (bench.Outcome{Outcome: "noUpdateAvailable", Count: devices}) ||
		rep.HeldFiles != len(assetPaths) || rep.ExpoCurrentUpdateID == "" {
		t.Fatalf("fleet on the update: held %d, current %q: %+v", rep.HeldFiles, rep.ExpoCurrentUpdateID, p)
	}
	fetchedOnce("fleet on the update", 0)

	// One wrong byte in an asset: every update fails, by its hash.
	px.corrupt.Store(png)
	_, p = runBench()
	px.corrupt.Store("")
	if p.Failures != devices || p.TimeToUpdate.Count != 0 || !slices.Contains(p.Outcomes, bench.Outcome{Outcome: "asset_hash_mismatch", Count: devices}) {
		t.Fatalf("corrupt %s: %+v", png, p)
	}

	// The throwaway app: --bundle DIR uploaded as its Expo update, built,
	// offered, loaded, then deleted.
	other, err := expotest.Write(t.TempDir(), expotest.Options{Seed: "throwaway", ExtraAssets: 2})
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	err = run(context.Background(), []string{"bench", "--client", "expo", "--target", "http://" + r.EdgeAddr, "--bundle", other.Dir,
		"--devices", "5", "--duration", "1s", "--connections", "2", "--origin", "http://" + r.OriginAddr, "--data", data, "--json"}, &out, &errb)
	if err != nil {
		t.Fatalf("bench on a throwaway app: %v\n%s", err, errb.String())
	}
	var trep bench.Report
	if err := json.Unmarshal(out.Bytes(), &trep); err != nil || len(trep.Phases) != 1 || trep.Phases[0].Failures != 0 ||
		trep.Phases[0].TimeToUpdate.Count != 5 || trep.Phases[0].Paths[0].FilesDownloaded != 5*int64(len(other.Assets["android"])+1) {
		t.Fatalf("throwaway app: %v %s\n%s", err, out.String(), errb.String())
	}
	apps, err := client.New("http://"+r.OriginAddr, readKey(t, data)).ListApps(context.Background())
	if err != nil || len(apps) != 1 || apps[0].ID != app {
		t.Fatalf("apps after the bench: %+v %v (the bench app must be deleted)", apps, err)
	}
}

// The generated export of the Expo bench app is one `bundle upload --expo`
// takes: a 2 MB launch bundle per platform and dozens of assets.
func TestBenchExpoExport(t *testing.T) {
	dir := t.TempDir()
	if err := benchExpoExport(dir, "1.0.0"); err != nil {
		t.Fatal(err)
	}
	e, err := client.ExpoFromExport(dir, "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	for _, platform := range []string{"ios", "android"} {
		p := e.Platforms[platform]
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(p.Launch)))
		if err != nil || fi.Size() < benchExpoLaunchBytes || len(p.Assets) != benchExpoAssets+3 || p.RuntimeVersion != "1.0.0" {
			t.Fatalf("%s: %+v (%v)", platform, p, err)
		}
	}
}

// Flags of the expo client that are refused as usage errors.
func TestBenchExpoFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--client", "expo", "--deltas"}, {"--client", "expo", "--version-name", "1.0.1"}, {"--client", "expo", "--capgo-zip"},
		{"--client", "expo", "--expo-concurrency", "0"}, {"--client", "expo", "--expo-concurrency", "257"},
	} {
		var out, errb bytes.Buffer
		err := run(context.Background(), append([]string{"bench", "--target", "http://127.0.0.1:1"}, args...), &out, &errb)
		if code := exitCode(err); code != 2 {
			t.Errorf("bench %v: exit %d (%v), want 2", args, code, err)
		}
	}
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"bench", "compare", "--target", "http://127.0.0.1:1", "--client", "expo"}, &out, &errb)
	if code := exitCode(err); code != 2 {
		t.Errorf("bench compare --client expo: exit %d (%v), want 2", code, err)
	}
}
