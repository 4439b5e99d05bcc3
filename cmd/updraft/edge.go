package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/cache"
	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin"
	"github.com/updraft-cdn/updraft/proxy"
)

// edgeSetup is what `updraft edge` runs with, from its flags.
type edgeSetup struct {
	ec                   config.Edge
	upstreams, statsURLs []string
	pubs                 []ed25519.PublicKey
	probeEvery           time.Duration
	logLevel             string
}

func newEdgeFlags() (*roleFlags, *edgeSetup) {
	r := newRoleFlags("edge")
	s := &edgeSetup{ec: config.NewEdge(filepath.Join(config.DefaultDataDir, "edge"))}
	ec := &s.ec
	fs := r.fs
	fs.StringVar(&ec.DataDir, "data", ec.DataDir, "edge data folder (cache, persisted snapshot); env UPDRAFT_DATA (its edge folder)")
	fs.StringVar(&ec.Listen, "listen", ec.Listen, "device API address; env UPDRAFT_EDGE_LISTEN")
	upstreamList := fs.String("upstream", "", "origin or parent edge URL, e.g. http://origin:8090, or several separated by commas (origins sharing one store and bucket, or parent edges): "+
		"the edge uses one at a time, moves to the next on a connection error, timeout or 5xx, stays there while it answers, and returns to the first once a probe finds it back (--primary-probe-interval); env UPDRAFT_UPSTREAM")
	fs.DurationVar(&s.probeEvery, "primary-probe-interval", proxy.DefaultProbeInterval, "with several --upstream URLs: how often, while another is in use, the first one is probed to return to it")
	fs.StringVar(&ec.EdgeKey, "edge-key", "", "edge key (the origin's DATA/edge-key); env UPDRAFT_EDGE_KEY")
	keyFile := fs.String("edge-key-file", "", "read the edge key from this file")
	prevKeyFile := fs.String("previous-edge-key-file", "", "also accept this key from child edges (the old edge key, during a rotation's overlap)")
	fs.DurationVar(&ec.MaxSnapshotAge, "max-snapshot-age", 0, "refuse snapshots, and answer update checks 503 snapshot_stale, once the snapshot is older than this by the origin's signed time or heartbeat (0: off)")
	statsList := fs.String("stats-url", "", "where device events go (POST /v1/events): the origin or a parent edge, or several separated by commas, failed over like --upstream (default: the --upstream list); env UPDRAFT_STATS_URL")
	pubText := fs.String("origin-pubkey", "", "origin's snapshot public key (updraft keys show), or a comma-separated list of trusted keys during a signing key rotation; env UPDRAFT_ORIGIN_PUBKEY")
	acmeDomains := edgeFlags(fs, ec, proxy.TLSOff, "0.0.0.0:443")
	fs.StringVar(&s.logLevel, "log-level", "info", "debug, info, warn or error")
	r.withEnv(edgeEnv)
	r.withEnv(map[string]string{"listen": "UPDRAFT_EDGE_LISTEN", "upstream": "UPDRAFT_UPSTREAM", "edge-key": "UPDRAFT_EDGE_KEY",
		"stats-url": "UPDRAFT_STATS_URL", "origin-pubkey": "UPDRAFT_ORIGIN_PUBKEY"})
	r.env["data"] = dataEnv("edge")
	r.secret["edge-key"] = true
	r.finish = func() error {
		ec.ACMEDomains = splitList(*acmeDomains)
		if err := checkLogLevel(s.logLevel); err != nil {
			return err
		}
		if *keyFile != "" {
			b, err := os.ReadFile(*keyFile)
			if err != nil {
				return fmt.Errorf("--edge-key-file: %w", err)
			}
			ec.EdgeKey = strings.TrimSpace(string(b))
		}
		if *prevKeyFile != "" {
			b, err := os.ReadFile(*prevKeyFile)
			if err != nil {
				return fmt.Errorf("--previous-edge-key-file: %w", err)
			}
			ec.PreviousEdgeKey = strings.TrimSpace(string(b))
		}
		if strings.TrimSpace(*upstreamList) == "" || ec.EdgeKey == "" || *pubText == "" {
			return errors.New("edge: --upstream, --edge-key (or --edge-key-file) and --origin-pubkey are required; `updraft keys show` on the origin prints them")
		}
		var err error
		if s.upstreams, err = proxy.ParseUpstreamList(*upstreamList); err != nil {
			return fmt.Errorf("edge: --upstream: %w", err)
		}
		s.statsURLs = s.upstreams
		if strings.TrimSpace(*statsList) != "" {
			if s.statsURLs, err = proxy.ParseUpstreamList(*statsList); err != nil {
				return fmt.Errorf("edge: --stats-url: %w", err)
			}
		}
		// The configuration names the primaries (the lists are validated above).
		ec.Upstream, ec.StatsURL = s.upstreams[0], s.statsURLs[0]
		if s.pubs, err = parsePublicKeys(*pubText); err != nil {
			return err
		}
		return ec.Validate()
	}
	return r, s
}

func cmdEdge(ctx context.Context, args []string, stderr io.Writer) error {
	r, s := newEdgeFlags()
	if err := r.load(args); err != nil {
		return err
	}
	ec, upstreams, statsURLs, pubs, probeEvery := s.ec, s.upstreams, s.statsURLs, s.pubs, &s.probeEvery
	log, err := newLogger(stderr, s.logLevel)
	if err != nil {
		return err
	}
	// One list, and one current upstream, for snapshots, blobs and legacy
	// channel changes (and events, unless --stats-url names others).
	ups := proxy.NewUpstreams("upstream", upstreams, ec.EdgeKey, log)
	ups.SetProbeInterval(*probeEvery)
	statsUps := ups
	if !slices.Equal(statsURLs, upstreams) {
		statsUps = proxy.NewUpstreams("stats", statsURLs, ec.EdgeKey, log)
		statsUps.SetProbeInterval(*probeEvery)
	}
	c, err := cache.New(cache.Options{Dir: filepath.Join(ec.DataDir, "cache"), Upstream: ups.Blobs(), Log: log,
		MemoryBudget: int64(ec.CacheMemory), DiskBudget: int64(ec.CacheDisk)})
	if err != nil {
		return err
	}
	edge := proxy.New(ec, c, log)
	defer edge.Close()
	edge.AddUpstreams(ups)
	edge.AddUpstreams(statsUps)
	if err := edge.StartStats(statsUps.EventSink()); err != nil {
		return err
	}
	// Legacy plugins' setChannel is stored at the origin, through the same
	// upstream as snapshots (a parent edge relays it).
	edge.SetDeviceChannels(ups.DeviceChannels())
	rep := proxy.NewReplicaFrom(edge, ups, pubs...)
	if err := rep.LoadPersisted(); err != nil {
		log.Error("edge: ignoring persisted snapshot", "err", err)
	}
	rctx, stopReplica := context.WithCancel(ctx)
	defer stopReplica()
	go rep.Run(rctx)

	el, err := startEdgeListeners(ec, edge, log)
	if err != nil {
		return err
	}
	log.Info("updraft edge: ready", "listen", el.Plain, "tls", ec.TLS, "https_h3", el.TLS, "upstream", strings.Join(upstreams, ","), "stats_url", strings.Join(statsURLs, ","), "stats_spool", ec.StatsSpool.String(), "data", ec.DataDir,
		"cache_memory", ec.CacheMemory.String(), "cache_disk", ec.CacheDisk.String(), "max_updates_body", ec.MaxUpdatesBody.String())
	select {
	case <-ctx.Done():
	case err := <-el.done:
		return err
	}
	log.Info("updraft edge: shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), ec.ShutdownGraceTime)
	defer cancel()
	return el.stop(sctx)
}

// parsePublicKeys reads --origin-pubkey: one base64 Ed25519 key, or several
// separated by commas (trusted during a signing key rotation).
func parsePublicKeys(text string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, k := range strings.Split(text, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		pub, err := base64.StdEncoding.DecodeString(k)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, usagef("", "edge: --origin-pubkey %q: want the base64 Ed25519 key printed by `updraft keys show` (several separated by commas)", k)
		}
		keys = append(keys, ed25519.PublicKey(pub))
	}
	if len(keys) == 0 {
		return nil, usagef("", "edge: --origin-pubkey: no key given")
	}
	return keys, nil
}

// cmdKeys is `updraft keys show` and `updraft keys create-bundle-key`.
func cmdKeys(sub string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keys "+sub, flag.ContinueOnError)
	var data, keyDir *string
	var only, force *bool
	if sub == "create-bundle-key" {
		keyDir = fs.String("dir", ".", "folder for .capgo_key_v2 and .capgo_key_v2.pub")
		force = fs.Bool("force", false, "replace an existing key pair")
	} else {
		data = fs.String("data", config.DataDir(), "origin data folder; env UPDRAFT_DATA")
		only = fs.Bool("pubkey", false, "print only the public key (for $(updraft keys show --pubkey))")
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := want(0, pos, "no arguments"); err != nil {
		return err
	}
	if sub == "create-bundle-key" {
		return createBundleKey(*keyDir, *force, stdout)
	}
	if _, err := os.Stat(config.SigningKeyFile(*data)); err != nil {
		return fmt.Errorf("keys: no origin key in %s (start the origin once first): %w", *data, err)
	}
	priv, err := origin.LoadOrCreateSigningKey(*data)
	if err != nil {
		return err
	}
	pub := origin.EncodePublicKey(priv.Public().(ed25519.PublicKey))
	if *only {
		fmt.Fprintln(stdout, pub)
		return nil
	}
	fmt.Fprintf(stdout, "origin public key (edges: --origin-pubkey): %s\n", pub)
	for _, f := range []struct{ what, path string }{{"prepared next key (keys rotate --signing):", origin.NextSigningKeyFile(*data)},
		{"previous key (before the last rotation): ", origin.PreviousSigningKeyFile(*data)}} {
		if _, err := os.Stat(f.path); err == nil {
			if k, err := origin.LoadSigningKeyFile(f.path); err == nil {
				fmt.Fprintf(stdout, "%s  %s\n", f.what, origin.EncodePublicKey(k.Public().(ed25519.PublicKey)))
			}
		}
	}
	fmt.Fprintf(stdout, "edge key file (edges: --edge-key-file):     %s\n", config.EdgeKeyFile(*data))
	fmt.Fprintf(stdout, "admin API key file:                         %s\n", config.APIKeyFile(*data))
	fmt.Fprintf(stdout, "\nstart an edge:\n  updraft edge --upstream http://ORIGIN:8090 --origin-pubkey %s --edge-key-file %s --data edge-data --listen 0.0.0.0:8080\n",
		pub, config.EdgeKeyFile(*data))
	return nil
}
