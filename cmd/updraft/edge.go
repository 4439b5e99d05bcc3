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
	"strings"

	"github.com/updraft-cdn/updraft/cache"
	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin"
	"github.com/updraft-cdn/updraft/proxy"
)

func cmdEdge(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ec := config.NewEdge(filepath.Join(config.DataDir(), "edge"))
	fs.StringVar(&ec.DataDir, "data", ec.DataDir, "edge data folder (cache, persisted snapshot)")
	fs.StringVar(&ec.Listen, "listen", config.Env("UPDRAFT_EDGE_LISTEN", ec.Listen), "device API address")
	fs.StringVar(&ec.Upstream, "upstream", config.Env("UPDRAFT_UPSTREAM", ""), "origin or parent edge URL, e.g. http://origin:8090; env UPDRAFT_UPSTREAM")
	fs.StringVar(&ec.EdgeKey, "edge-key", os.Getenv("UPDRAFT_EDGE_KEY"), "edge key (the origin's DATA/edge-key); env UPDRAFT_EDGE_KEY")
	keyFile := fs.String("edge-key-file", "", "read the edge key from this file")
	fs.StringVar(&ec.StatsURL, "stats-url", config.Env("UPDRAFT_STATS_URL", ""), "where device events go (POST /v1/events): the origin or a parent edge (default: --upstream)")
	pubText := fs.String("origin-pubkey", os.Getenv("UPDRAFT_ORIGIN_PUBKEY"), "origin's snapshot public key (updraft keys show); env UPDRAFT_ORIGIN_PUBKEY")
	acmeDomains := edgeFlags(fs, &ec, proxy.TLSOff, "0.0.0.0:443")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	ec.ACMEDomains = splitList(*acmeDomains)
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return fmt.Errorf("--edge-key-file: %w", err)
		}
		ec.EdgeKey = strings.TrimSpace(string(b))
	}
	if ec.Upstream == "" || ec.EdgeKey == "" || *pubText == "" {
		return errors.New("edge: --upstream, --edge-key (or --edge-key-file) and --origin-pubkey are required; `updraft keys show` on the origin prints them")
	}
	pub, err := base64.StdEncoding.DecodeString(strings.TrimSpace(*pubText))
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("edge: --origin-pubkey %q: want the base64 Ed25519 key printed by `updraft keys show`", *pubText)
	}
	if err := ec.Validate(); err != nil {
		return err
	}
	c, err := cache.New(cache.Options{Dir: filepath.Join(ec.DataDir, "cache"), Upstream: proxy.NewHTTPUpstream(ec.Upstream, ec.EdgeKey), Log: log,
		MemoryBudget: int64(ec.CacheMemory), DiskBudget: int64(ec.CacheDisk)})
	if err != nil {
		return err
	}
	edge := proxy.New(ec, c, log)
	defer edge.Close()
	statsURL := ec.StatsURL
	if statsURL == "" {
		statsURL = ec.Upstream
	}
	if err := edge.StartStats(proxy.NewHTTPEventSink(statsURL, ec.EdgeKey)); err != nil {
		return err
	}
	// Legacy plugins' setChannel is stored at the origin, through the same
	// upstream as snapshots (a parent edge relays it).
	edge.SetDeviceChannels(proxy.NewHTTPDeviceChannels(ec.Upstream, ec.EdgeKey))
	rep := proxy.NewReplica(edge, ec.Upstream, ec.EdgeKey, ed25519.PublicKey(pub))
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
	log.Info("updraft edge: ready", "listen", el.Plain, "tls", ec.TLS, "https_h3", el.TLS, "upstream", ec.Upstream, "stats_url", statsURL, "stats_spool", ec.StatsSpool.String(), "data", ec.DataDir,
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

func cmdKeys(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", config.DataDir(), "origin data folder")
	only := fs.Bool("pubkey", false, "print only the public key (for $(updraft keys show --pubkey))")
	keyDir := fs.String("dir", ".", "create-bundle-key: folder for .capgo_key_v2 and .capgo_key_v2.pub")
	force := fs.Bool("force", false, "create-bundle-key: replace an existing key pair")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 1 && pos[0] == "create-bundle-key" {
		return createBundleKey(*keyDir, *force, stdout)
	}
	if len(pos) != 1 || pos[0] != "show" {
		return errors.New("keys: want `updraft keys show [--data DIR]` or `updraft keys create-bundle-key [--dir DIR] [--force]`")
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
	fmt.Fprintf(stdout, "edge key file (edges: --edge-key-file):     %s\n", config.EdgeKeyFile(*data))
	fmt.Fprintf(stdout, "operator API key file:                      %s\n", config.APIKeyFile(*data))
	fmt.Fprintf(stdout, "\nstart an edge:\n  updraft edge --upstream http://ORIGIN:8090 --origin-pubkey %s --edge-key-file %s --data edge-data --listen 0.0.0.0:8080\n",
		pub, config.EdgeKeyFile(*data))
	return nil
}
