package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/bench"
	"github.com/updraft-cdn/updraft/config"
)

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "link" {
		return cmdBenchLink(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "fetch" {
		return cmdBenchFetch(ctx, args[1:], stdout, stderr)
	}
	compare := len(args) > 0 && args[0] == "compare"
	if compare {
		args = args[1:]
	}
	name := "bench"
	if compare {
		name = "bench compare"
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var o bench.Options
	fs.StringVar(&o.Target, "target", "http://127.0.0.1:8080", "edge (or any server speaking the device protocol) to load")
	fs.StringVar(&o.AppID, "app", "", "load this existing app instead of a throwaway bench.* app (needs --i-know-this-is-production)")
	production := fs.Bool("i-know-this-is-production", false, "allow --app: the run's devices, events and failures stay in that app's statistics for good")
	bundlePath := fs.String("bundle", "", "zip or folder the throwaway bench app offers (default: a generated 1 MiB bundle); --client expo: an npx expo export folder (default: a generated export, a 2 MB launch bundle per platform and 40 assets)")
	var cf clientFlags // the operator API that creates and deletes the bench app
	fs.StringVar(&cf.origin, "origin", config.Env("UPDRAFT_ORIGIN", config.DefaultOriginURL), "origin URL (operator API) for the bench app; env UPDRAFT_ORIGIN")
	fs.StringVar(&cf.apiKey, "api-key", os.Getenv("UPDRAFT_API_KEY"), "operator API key; env UPDRAFT_API_KEY (default: read DATA/api-key)")
	fs.StringVar(&cf.data, "data", config.DataDir(), "data folder whose api-key file is used when no key is given")
	scenario := fs.String("scenario", "release-storm", "release-storm, steady, stats (device events), cohort-fleet (behaviour cohorts and a segment on them, checked exactly), or a scenario file (.json)")
	power := fs.String("power", "", "cohort-fleet: the share of the fleet that checks in heavily, the power cohort's rule (default 5%)")
	fs.IntVar(&o.Devices, "devices", 1000, "fleet size")
	duration := fs.Duration("duration", 30*time.Second, "duration of a built-in scenario")
	fs.IntVar(&o.Connections, "connections", 64, "HTTP connections to the target (steady: closed-loop workers; --client capgo --conn warm: opened before the clock starts, in lanes of --manifest-concurrency + 1 per updating device)")
	fs.StringVar(&o.VersionBuild, "version-build", "1.0.0", "native version the devices report, or a mix: 1.0.0,1.0.0,2.0.0 (--client expo: the runtime version they send; the bench app's update has the first)")
	fs.StringVar(&o.VersionName, "version-name", "builtin", "bundle the devices run (--client expo: builtin, their embedded update, or offered, the update the target offers: they report its id and hold its assets)")
	fs.BoolVar(&o.Deltas, "deltas", false, "download and apply offered deltas instead of zips (an Updraft-aware client); needs --version-name")
	fs.BoolVar(&o.InlineDeltas, "inline-deltas", true, "with --deltas: ask for the delta inside the update answer (Updraft-Inline-Delta; the edge inlines deltas it holds in memory, up to its --inline-delta-max): one round trip fewer; --inline-deltas=false fetches delta_url")
	fs.StringVar(&o.Client, "client", bench.ClientUpdraft, "device software: updraft (the zip, or with --deltas the offered delta), capgo (the stock @capgo/capacitor-updater 8.x: the manifest's missing files, else the zip; never a delta) or expo (the stock expo-updates Android client: GET /expo/APP/manifest, then the assets it lacks, each SHA-256-checked)")
	fs.StringVar(&o.Conn, "conn", bench.ConnWarm, "capgo and expo clients: warm (connections opened before the clock and reused) or cold (each device update on new connections, TCP+TLS or QUIC handshakes included: the first check after an app launch)")
	fs.IntVar(&o.ManifestConcurrency, "manifest-concurrency", bench.DefaultManifestConcurrency, "capgo client: manifest files a device downloads at once (the plugin: min(64, max(8, 2 × CPU cores)), 16 on an 8-core phone)")
	fs.IntVar(&o.ExpoConcurrency, "expo-concurrency", bench.DefaultExpoConcurrency, "expo client: assets a device downloads at once (expo-updates: one coroutine per asset on Dispatchers.IO, 64 threads; 5 before its coroutine loader)")
	fs.BoolVar(&o.CapgoZip, "capgo-zip", false, "capgo client: download the zip even when the answer has a manifest (the plugin's path for a bundle without one), to compare")
	link := fs.String("link", "", "emulate a network path, e.g. 40ms/100mbit or 150ms/10mbit/1%")
	fs.StringVar(&o.Proto, "proto", "h1", "h1 (http:// or https://) or h3 (https://)")
	fs.BoolVar(&o.Insecure, "insecure", false, "skip certificate verification (development certificates)")
	jsonOut := fs.Bool("json", false, "print the report as JSON")
	out := fs.String("out", "", "also write the JSON report to this file")
	htmlOut := fs.String("html", "", "also write an HTML report with charts (works offline) to this file")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		if compare {
			return usagef("", "bench compare: takes flags only, got %q", pos[0])
		}
		return unknownSub("bench", pos[0], subcommands("bench"))
	}
	if o.Client != bench.ClientUpdraft && o.Client != bench.ClientCapgo && o.Client != bench.ClientExpo {
		return usagef("", "bench --client %q: want updraft, capgo or expo", o.Client)
	}
	if o.Conn != bench.ConnWarm && o.Conn != bench.ConnCold {
		return usagef("", "bench --conn %q: want warm or cold", o.Conn)
	}
	if o.Client == bench.ClientUpdraft && o.Conn == bench.ConnCold {
		return usagef("", "bench --conn cold models the stock clients: add --client capgo or --client expo")
	}
	if o.Client != bench.ClientCapgo && o.CapgoZip {
		return usagef("", "bench --capgo-zip models the stock plugin: add --client capgo")
	}
	if o.Client != bench.ClientUpdraft && o.Deltas {
		return usagef("", "bench --client %s --deltas: the stock clients never use deltas; drop --deltas", o.Client)
	}
	if o.Client == bench.ClientExpo && o.VersionName != "builtin" && o.VersionName != bench.ExpoOffered {
		return usagef("", "bench --client expo --version-name %q: want builtin (the devices' embedded update) or %s (the update the target offers)", o.VersionName, bench.ExpoOffered)
	}
	if compare && o.Client == bench.ClientExpo {
		return usagef("", "bench compare --client expo: nginx and Caddy do not speak the Expo Updates protocol")
	}
	if o.ExpoConcurrency < 1 || o.ExpoConcurrency > bench.MaxExpoConcurrency {
		return usagef("", "bench --expo-concurrency %d: want 1..%d", o.ExpoConcurrency, bench.MaxExpoConcurrency)
	}
	if o.ManifestConcurrency < 1 || o.ManifestConcurrency > bench.MaxManifestConcurrency {
		return usagef("", "bench --manifest-concurrency %d: want 1..%d (the plugin's cap)", o.ManifestConcurrency, bench.MaxManifestConcurrency)
	}
	var sc bench.Scenario
	if strings.HasSuffix(*scenario, ".json") {
		sc, err = bench.LoadScenario(*scenario)
	} else {
		sc, err = bench.Builtin(*scenario, *duration, o.Connections)
		if err != nil { // a mistyped scenario name
			err = usagef("", "bench --%v", err)
		}
	}
	if err != nil {
		return err
	}
	cohorts := false
	for i := range sc.Phases {
		if sc.Phases[i].Kind == bench.KindCohorts {
			cohorts = true
			if *power != "" {
				v, perr := strconv.ParseFloat(strings.TrimSuffix(*power, "%"), 64)
				if perr != nil || v < 0.01 || v > 50 {
					return usagef("", "bench --power %q: want a share of the fleet like 5%% (0.01%% to 50%%)", *power)
				}
				sc.Phases[i].Power = v
			}
		}
	}
	if *power != "" && !cohorts {
		return usagef("", "bench --power is the cohort-fleet scenario's: add --scenario cohort-fleet")
	}
	if cohorts && (o.AppID != "" || compare || *link != "") {
		return usagef("", "bench --scenario cohort-fleet adds cohorts and a segment to its own throwaway app, directly against the edge: drop --app, --link and compare")
	}
	if *link != "" {
		p, err := bench.ParseLink(*link)
		if err != nil {
			return usagef("", "bench --link: %v", err)
		}
		u, err := url.Parse(o.Target)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return usagef("", "bench --link: target %q must be an http:// or https:// URL", o.Target)
		}
		var addr string
		if o.Proto == "h3" {
			l, err := bench.StartUDPLink("127.0.0.1:0", u.Host, p)
			if err != nil {
				return err
			}
			defer l.Close()
			addr = l.Addr()
		} else {
			start := bench.StartLink
			if o.Client != bench.ClientUpdraft { // a device's parallel connections share its access link
				start = bench.StartLinkShared
			}
			l, err := start("127.0.0.1:0", u.Host, p)
			if err != nil {
				return err
			}
			defer l.Close()
			addr = l.Addr()
		}
		fmt.Fprintf(stderr, "link %s (%s): 127.0.0.1 → %s via %s\n", p, o.Proto, u.Host, addr)
		o.Target = u.Scheme + "://" + addr
	}
	// The live progress line only on a terminal, and never with --json.
	if w := progressTo(stderr, *jsonOut); w != nil {
		o.Progress = w
	}
	// Load goes to a throwaway app unless an existing one is named on
	// purpose: a run's devices and events stay in an app's statistics.
	if o.AppID != "" && !*production {
		return usagef("", "bench --app %s: the run's fake devices, events and failures would stay in that app's statistics for good; "+
			"add --i-know-this-is-production to load it anyway, or drop --app to let bench create and delete its own app", o.AppID)
	}
	if o.AppID == "" {
		if o.Deltas || o.VersionName != "builtin" && (o.Client != bench.ClientExpo || o.VersionName != bench.ExpoOffered) {
			return usagef("", "bench --deltas and --version-name measure an existing app's bundles (--client capgo: the files the devices hold): give --app APP --i-know-this-is-production")
		}
		c, err := cf.client()
		if err != nil {
			return fmt.Errorf("bench creates and deletes its own app through the operator API: %w", err)
		}
		app, cleanup, err := setupBenchApp(ctx, c, o, sc, *bundlePath, stderr)
		if cleanup != nil {
			defer cleanup()
		}
		if err != nil {
			return err
		}
		o.AppID = app
		if cohorts {
			o.Operator = c
		}
	}
	if compare {
		return benchCompare(ctx, sc, o, stdout, stderr)
	}
	rep, err := bench.Run(ctx, sc, o)
	if err != nil {
		return err
	}
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		rep.WriteJSON(f)
		f.Close()
	}
	if *htmlOut != "" {
		f, err := os.Create(*htmlOut)
		if err != nil {
			return err
		}
		err = rep.WriteHTML(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	if *jsonOut {
		err = rep.WriteJSON(stdout)
	} else {
		rep.WriteText(stdout)
	}
	if n := rep.Mismatches(); n > 0 && err == nil {
		err = fmt.Errorf("bench: %d cohort or routing mismatches (see the report)", n)
	}
	return err
}

func cmdBenchLink(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench link", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9080", "address to accept connections (or datagrams) on")
	upstream := fs.String("upstream", "127.0.0.1:8080", "address to relay to")
	profile := fs.String("profile", "40ms/100mbit", "RTT[/BANDWIDTH][/LOSS%]")
	udp := fs.Bool("udp", false, "relay UDP (QUIC, HTTP/3) instead of TCP")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	p, err := bench.ParseLink(*profile)
	if err != nil {
		return usagef("", "bench link --profile: %v", err)
	}
	var addr string
	var closer io.Closer
	if *udp {
		l, err := bench.StartUDPLink(*listen, *upstream, p)
		if err != nil {
			return err
		}
		addr, closer = l.Addr(), l
	} else {
		l, err := bench.StartLink(*listen, *upstream, p)
		if err != nil {
			return err
		}
		addr, closer = l.Addr(), l
	}
	fmt.Fprintf(stdout, "link %s: %s → %s (Ctrl-C to stop)\n", p, addr, *upstream)
	<-ctx.Done()
	closer.Close()
	return nil
}

func cmdBenchFetch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench fetch", flag.ContinueOnError)
	var o bench.FetchOptions
	fs.StringVar(&o.Proto, "proto", "h3", "h3, h2 or h1")
	fs.IntVar(&o.Requests, "n", 100, "requests")
	fs.IntVar(&o.Concurrency, "c", 1, "concurrent requests")
	fs.BoolVar(&o.Insecure, "insecure", false, "skip certificate verification (loopback benchmarks with development certificates)")
	jsonOut := fs.Bool("json", false, "print JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("", "bench fetch: want one URL")
	}
	o.URL = pos[0]
	res, err := bench.Fetch(ctx, o)
	if err != nil {
		return err
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		return enc.Encode(res)
	}
	fmt.Fprintf(stdout, "%s %s: %d requests (%d errors) in %.2fs: %.0f req/s, %.1f MB/s; latency p50 %.2f ms, p99 %.2f ms\n",
		o.Proto, o.URL, res.Requests, res.Errors, res.Seconds, res.ReqPerSec, res.MBPerSec, res.Latency.P50, res.Latency.P99)
	return nil
}

// benchCompare runs the scenario against Updraft, then nginx and Caddy
// serving the same bundle and answer, and prints the figures side by side.
func benchCompare(ctx context.Context, sc bench.Scenario, o bench.Options, stdout, stderr io.Writer) error {
	stderr = bench.SyncWriter(stderr) // shared with the peers' output
	if o.Progress != nil {
		o.Progress = stderr
	}
	dir, err := os.MkdirTemp("", "updraft-compare-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	peers, err := bench.StartPeers(ctx, o, dir, stderr)
	if err != nil {
		return err
	}
	defer func() {
		for _, p := range peers {
			p.Stop()
		}
	}()
	names := []string{"updraft"}
	targets := []string{o.Target}
	for _, p := range peers {
		names, targets = append(names, p.Name), append(targets, p.Target)
	}
	var reps []*bench.Report
	for i, t := range targets {
		fmt.Fprintf(stderr, "== %s (%s)\n", names[i], t)
		oo := o
		oo.Target = t
		rep, err := bench.Run(ctx, sc, oo)
		if err != nil {
			return fmt.Errorf("%s: %w", names[i], err)
		}
		reps = append(reps, rep)
	}
	fmt.Fprintf(stdout, "scenario %s, %d devices, %d connections, same client against each server:\n", sc.Name, o.Devices, o.Connections)
	bench.WriteComparison(stdout, names, reps)
	return nil
}
