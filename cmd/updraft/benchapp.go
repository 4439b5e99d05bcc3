package main

import (
	"archive/zip"
	"bytes"
	"cmp"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/bench"
	"github.com/updraft-cdn/updraft/internal/expotest"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/store"
)

// benchAppPrefix names the apps bench creates for a run (an app id needs a
// dot: bench.<time>-<random>).
const benchAppPrefix = "bench."

// benchAppVersion is the bundle the bench app's default channel offers;
// benchSegmentVersion the one a cohorts phase's channel offers.
const (
	benchAppVersion     = "1.0.1"
	benchSegmentVersion = "1.0.2"
)

// newBenchAppID returns a fresh app id for one bench run.
func newBenchAppID() string {
	var b [4]byte
	crand.Read(b[:])
	return benchAppPrefix + time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// setupBenchApp creates the run's own app through the operator API: a
// bundle (bundlePath, or a generated one of about 1 MiB) on a default
// channel "production", and the channels the scenario's switch phases move
// devices to (self-assignable, same bundle). It returns the app id and a
// cleanup that deletes the app (with a fresh context: it runs after a
// cancelled or failed run too); cleanup is non-nil whenever the app may
// exist. It then waits until the target serves the app.
func setupBenchApp(ctx context.Context, c *client.Client, o bench.Options, sc bench.Scenario, bundlePath string, log io.Writer) (string, func(), error) {
	id := newBenchAppID()
	if _, err := c.CreateApp(ctx, id, "updraft bench (deleted when the run ends)"); err != nil {
		return "", nil, fmt.Errorf("bench: create the run's own app through the operator API (--origin %s): %w", c.BaseURL, err)
	}
	cleanup := func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := c.DeleteApp(cctx, id); err != nil {
			fmt.Fprintf(log, "bench: could not delete app %s: %v (delete it with: updraft app delete %s --yes)\n", id, err, id)
			return
		}
		fmt.Fprintf(log, "bench: deleted app %s\n", id)
	}
	fmt.Fprintf(log, "bench: created app %s for this run (deleted when it ends)\n", id)
	opt := client.UploadOptions{Channel: "production", Comment: "updraft bench"}
	var err error
	switch {
	case o.Client == bench.ClientExpo:
		err = uploadBenchExpo(ctx, c, id, o, bundlePath, log)
	case bundlePath != "":
		_, err = c.UploadPath(ctx, id, benchAppVersion, bundlePath, opt)
	default:
		_, err = c.UploadBundle(ctx, id, benchAppVersion, bytes.NewReader(benchBundle()), opt)
	}
	if err != nil {
		return id, cleanup, fmt.Errorf("bench: upload the bench app's bundle: %w", err)
	}
	yes := true
	if _, err := c.SetChannel(ctx, id, "production", store.ChannelPatch{Public: &yes}); err != nil {
		return id, cleanup, fmt.Errorf("bench: default channel: %w", err)
	}
	version := benchAppVersion
	cohorts := false
	for _, p := range sc.Phases {
		if p.Kind == bench.KindSwitch && p.Channel != "production" {
			if _, err := c.SetChannel(ctx, id, p.Channel, store.ChannelPatch{Bundle: &version, AllowDeviceSelfSet: &yes}); err != nil {
				return id, cleanup, fmt.Errorf("bench: channel %s: %w", p.Channel, err)
			}
		}
		if p.Kind == bench.KindCohorts && !cohorts {
			// The bundle the segment on the power cohort routes to.
			cohorts = true
			ch := cmp.Or(p.Channel, bench.DefaultCohortRoute)
			if _, err := c.UploadBundle(ctx, id, benchSegmentVersion, bytes.NewReader(benchBundleSeed(2)), client.UploadOptions{Channel: ch, Comment: "updraft bench"}); err != nil {
				return id, cleanup, fmt.Errorf("bench: upload the bundle of channel %s: %w", ch, err)
			}
		}
	}
	switch {
	case o.Client == bench.ClientExpo:
		err = waitServedExpo(ctx, o, id)
	case cohorts:
		err = waitListed(ctx, o, id)
	default:
		err = waitServed(ctx, o, id)
	}
	if err != nil {
		return id, cleanup, err
	}
	return id, cleanup, nil
}

// Expo bench app: the generated export (benchExpoExport), uploaded as an
// Expo update with the devices' runtime version.
const (
	benchExpoLaunchBytes = 2_000_000
	benchExpoAssets      = 40
)

// uploadBenchExpo uploads the bench app's Expo update: the export folder
// dir (`npx expo export` output), or a generated one, with the runtime
// version the devices send (the first of --version-build) on channel
// production, and waits for the origin's build.
func uploadBenchExpo(ctx context.Context, c *client.Client, app string, o bench.Options, dir string, log io.Writer) error {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "updraft-bench-expo-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		if err := benchExpoExport(tmp, strings.Split(o.VersionBuild, ",")[0]); err != nil {
			return fmt.Errorf("generate an Expo export: %w", err)
		}
		dir = tmp
	}
	runtime := strings.Split(o.VersionBuild, ",")[0]
	exp, err := client.ExpoFromExport(dir, runtime)
	if err != nil {
		return err
	}
	opt := client.UploadOptions{Channel: "production", Comment: "updraft bench", Expo: exp}
	if _, err := c.UploadPath(ctx, app, benchAppVersion, dir, opt); err != nil {
		return err
	}
	bctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	b, err := followBuild(bctx, c, app, benchAppVersion, o.Progress)
	if err != nil {
		return err
	}
	if p, ok := exp.Platforms["android"]; ok {
		fmt.Fprintf(log, "bench: Expo update %s (runtime version %s) built: android launch asset %s and %d assets, %d files stored\n",
			benchAppVersion, runtime, p.Launch, len(p.Assets), b.ManifestFiles)
	}
	return nil
}

// benchExpoExport writes the default Expo export of the bench app: a
// launch bundle of 2 MB per platform (a third of it incompressible, as
// bytecode and strings are: brotli stores it at about 40%) and 43 assets
// shared by both platforms (images of 2 to 40 KB, fonts of 60 to 250 KB),
// as a mid-sized React Native app.
func benchExpoExport(dir, runtime string) error {
	_, err := expotest.Write(dir, expotest.Options{Seed: "updraft bench", RuntimeVersion: runtime,
		LaunchBytes: benchExpoLaunchBytes, ExtraAssets: benchExpoAssets})
	return err
}

// waitServedExpo waits until the target offers the app's Expo update to a
// fresh Android install (a manifest part in the answer).
func waitServedExpo(ctx context.Context, o bench.Options, app string) error {
	u := strings.TrimRight(o.Target, "/") + "/expo/" + app + "/manifest"
	return pollTarget(ctx, o, "offer the bench app's Expo update ("+app+")", 1<<20, func(ctx context.Context) *http.Request {
		req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
		for k, v := range map[string]string{"Accept": "multipart/mixed,application/expo+json,application/json", "Expo-Platform": "android",
			"Expo-Protocol-Version": "1", "EAS-Client-ID": "00000000-0000-4000-8000-000000000000",
			"Expo-Runtime-Version": strings.Split(o.VersionBuild, ",")[0], "Expo-Channel-Name": bench.ExpoChannel} {
			req.Header.Set(k, v)
		}
		return req
	}, func(b []byte) bool { return bytes.Contains(b, []byte(`name="manifest"`)) })
}

// waitServed waits until the target offers the app's bundle to a device on
// the store build (edges pick up the new snapshot shortly).
func waitServed(ctx context.Context, o bench.Options, app string) error {
	body := fmt.Sprintf(`{"app_id":%q,"device_id":"00000000-0000-4000-8000-000000000000","version_name":"builtin","version_build":%q,"version_code":"1","version_os":"14","platform":"android","plugin_version":"8.51.14","is_emulator":false,"is_prod":true}`,
		app, strings.Split(o.VersionBuild, ",")[0])
	u := strings.TrimRight(o.Target, "/") + "/updates"
	return pollTarget(ctx, o, "serve the bench app "+app, 64<<10, func(ctx context.Context) *http.Request {
		req, _ := http.NewRequestWithContext(ctx, "POST", u, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		return req
	}, func(b []byte) bool { return bytes.Contains(b, []byte(`"url"`)) })
}

// waitListed waits until the target lists the app's default channel to a
// device (GET /channel_self, the plugin's listChannels): the edge has the
// app's snapshot. Unlike an update check it records no check-in, so the
// device inventory holds only the run's devices (the cohorts phases count
// on it).
func waitListed(ctx context.Context, o bench.Options, app string) error {
	u := strings.TrimRight(o.Target, "/") + "/channel_self?" + url.Values{"app_id": {app}, "platform": {"android"}, "is_prod": {"true"},
		"version_build": {strings.Split(o.VersionBuild, ",")[0]}}.Encode()
	return pollTarget(ctx, o, "list the bench app "+app+"'s channels", 64<<10, func(ctx context.Context) *http.Request {
		req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
		return req
	}, func(b []byte) bool { return bytes.Contains(b, []byte(`"name":"production"`)) })
}

// pollTarget sends the request newReq makes every 50 ms until the target
// answers it 200 with a body (up to limit bytes read) that ready accepts,
// for at most 30 s; the error then says what the target does not do
// (what) and its last answer. An h3 target is not polled: it may listen
// on UDP only, and the run reports what it answers.
func pollTarget(ctx context.Context, o bench.Options, what string, limit int64, newReq func(context.Context) *http.Request, ready func([]byte) bool) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if o.Proto == "h3" {
		return nil
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.Insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	var last string
	for {
		if resp, err := hc.Do(newReq(ctx)); err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, limit))
			resp.Body.Close()
			if resp.StatusCode == 200 && ready(b) {
				return nil
			}
			last = fmt.Sprintf("HTTP %d %.300s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("bench: %s does not %s after 30s: %s", o.Target, what, last)
			}
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// benchBundle is the bench app's default bundle: an index.html and 1 MiB
// of incompressible bytes (deterministic), like a small web app's assets.
func benchBundle() []byte { return benchBundleSeed(1) }

// benchBundleSeed is benchBundle with other bytes for another seed.
func benchBundleSeed(seed uint64) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("index.html")
	io.WriteString(w, "<!doctype html><title>updraft bench</title><script src=\"app.js\"></script>\n")
	w, _ = zw.CreateHeader(&zip.FileHeader{Name: "app.bin", Method: zip.Store})
	rng := rand.New(rand.NewPCG(seed, 2))
	chunk := make([]byte, 64<<10)
	for i := 0; i < 16; i++ {
		for j := range chunk {
			chunk[j] = byte(rng.Uint32())
		}
		w.Write(chunk)
	}
	zw.Close()
	return buf.Bytes()
}
