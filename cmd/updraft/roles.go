package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/updraft-cdn/updraft/cache"
	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
	"github.com/updraft-cdn/updraft/proxy"
)

// serveOptions is what `updraft serve` needs; tests fill it directly.
type serveOptions struct {
	origin config.Origin
	edge   config.Edge
	log    *slog.Logger
}

// running is a started serve: its listeners' real addresses and a stop.
type running struct {
	OriginAddr, EdgeAddr string
	Listeners            *edgeListeners
	Origin               *origin.Server
	Edge                 *proxy.Edge
	stop                 func(context.Context) error
	done                 chan error
}

// startServe starts origin and edge in this process on their listeners and
// returns once both accept connections.
func startServe(ctx context.Context, o serveOptions) (*running, error) {
	if err := o.edge.Validate(); err != nil {
		return nil, err
	}
	srv, err := origin.Open(ctx, o.origin, o.log)
	if err != nil {
		return nil, err
	}
	c, err := cache.New(cache.Options{Dir: o.edge.DataDir, Upstream: proxy.LocalUpstream{Blobs: srv.Blobs()},
		MaxBlob: int64(o.origin.MaxBundleSize), Log: o.log,
		MemoryBudget: int64(o.edge.CacheMemory), DiskBudget: int64(o.edge.CacheDisk)})
	if err != nil {
		srv.Close()
		return nil, err
	}
	edge := proxy.New(o.edge, c, o.log)
	srv.Subscribe(func(s *snapshot.Snapshot) { edge.SetSnapshot(s) })
	if err := edge.StartStats(localEvents{srv}); err != nil {
		edge.Close()
		srv.Close()
		return nil, err
	}
	edge.SetDeviceChannels(localDeviceChannels{srv})

	oln, err := net.Listen("tcp", o.origin.Listen)
	if err != nil {
		edge.Close()
		srv.Close()
		return nil, fmt.Errorf("origin listen %s: %w (another updraft running? use --origin-listen)", o.origin.Listen, err)
	}
	el, err := startEdgeListeners(o.edge, edge, o.log)
	if err != nil {
		oln.Close()
		edge.Close()
		srv.Close()
		return nil, err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(o.log.Handler(), slog.LevelWarn)}
	hs.RegisterOnShutdown(srv.StopLongPolls) // child edges' snapshot long-polls end at once
	r := &running{OriginAddr: oln.Addr().String(), EdgeAddr: el.Plain, Listeners: el, Origin: srv, Edge: edge, done: make(chan error, 1)}
	go func() { r.done <- ignoreClosed(hs.Serve(oln)) }()
	r.stop = func(ctx context.Context) error {
		err := errors.Join(el.stop(ctx), hs.Shutdown(ctx))
		edge.Close()
		<-r.done
		return errors.Join(err, srv.Close())
	}
	return r, nil
}

// localEvents delivers the in-process edge's event segments to the origin
// in the same process.
type localEvents struct{ srv *origin.Server }

func (l localEvents) DeliverEvents(ctx context.Context, edgeID string, seq uint64, segment []byte) error {
	err := l.srv.IngestSegment(ctx, edgeID, seq, segment)
	if errors.Is(err, origin.ErrCorruptSegment) {
		return &proxy.PermanentError{Err: err}
	}
	return err
}

// localDeviceChannels stores the in-process edge's legacy setChannel
// choices at the origin in the same process.
type localDeviceChannels struct{ srv *origin.Server }

func (l localDeviceChannels) SetDeviceChannel(ctx context.Context, appID, deviceID, channel string) (int64, error) {
	rev, err := l.srv.SetDeviceChannel(ctx, appID, deviceID, channel)
	if code, msg := origin.APIErrorCode(err); code != "" {
		switch code {
		case store.CodeCannotOverride, store.CodeSelfSetNotAllowed, store.CodeUnknownChannel, store.CodeOverrideNotAllowed, "app_not_found":
			return 0, &proxy.DeviceChannelRefusal{Code: code, Message: msg}
		case "too_many_requests":
			return 0, proxy.ErrDeviceChannelsBusy
		}
	}
	return rev, err
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", config.DataDir(), "data folder (SQLite, blobs, keys, edge cache); env UPDRAFT_DATA")
	oc := config.NewOrigin("")
	ec := config.NewEdge("")
	fs.StringVar(&oc.Listen, "origin-listen", config.Env("UPDRAFT_ORIGIN_LISTEN", oc.Listen), "operator API address")
	fs.StringVar(&ec.Listen, "edge-listen", config.Env("UPDRAFT_EDGE_LISTEN", ec.Listen), "device API address (use 0.0.0.0:8080 for devices on your network)")
	acmeDomains := edgeFlags(fs, &ec, proxy.TLSSelfSigned, config.DefaultTLSListen)
	fs.Var(&oc.MaxBundleSize, "max-bundle-size", "largest accepted bundle upload")
	gcFlags(fs, &oc)          // lifecycle.go
	uploadLimitFlags(fs, &oc) // rebuild.go
	backendFlags(fs, &oc)     // backends.go
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	ec.ACMEDomains = splitList(*acmeDomains)
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	oc.DataDir = *data
	ec.DataDir = filepath.Join(*data, "edge-cache")
	r, err := startServe(ctx, serveOptions{origin: oc, edge: ec, log: log})
	if err != nil {
		return err
	}
	log.Info("updraft serve: ready",
		"data", *data, "origin", "http://"+r.OriginAddr, "edge", "http://"+r.EdgeAddr,
		"api_key_file", config.APIKeyFile(*data), "max_bundle_size", oc.MaxBundleSize.String(),
		"cache_memory", ec.CacheMemory.String(), "cache_disk", ec.CacheDisk.String(), "max_updates_body", ec.MaxUpdatesBody.String(),
		"stats_spool", ec.StatsSpool.String())
	fmt.Fprintf(stderr, "\n  device update URL:  http://%s/updates\n  device stats URL:   http://%s/stats\n  operator API:       http://%s/api/v1 (key in %s)\n  analytics page:     http://%s/ui\n",
		r.EdgeAddr, r.EdgeAddr, r.OriginAddr, config.APIKeyFile(*data), r.OriginAddr)
	if r.Listeners.TLS != "" {
		fmt.Fprintf(stderr, "  HTTPS + HTTP/3:     https://%s/updates (%s certificate, SPKI sha256 %s)\n", r.Listeners.TLS, ec.TLS, r.Listeners.SPKIHash)
	}
	fmt.Fprintln(stderr)
	select {
	case <-ctx.Done():
	case err := <-r.done:
		return err
	}
	log.Info("updraft serve: shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), ec.ShutdownGraceTime)
	defer cancel()
	return r.stop(sctx)
}

func cmdOrigin(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("origin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	oc := config.NewOrigin(config.DataDir())
	fs.StringVar(&oc.DataDir, "data", oc.DataDir, "data folder; env UPDRAFT_DATA")
	fs.StringVar(&oc.Listen, "listen", config.Env("UPDRAFT_ORIGIN_LISTEN", oc.Listen), "operator API and edge replication address")
	fs.Var(&oc.MaxBundleSize, "max-bundle-size", "largest accepted bundle upload")
	gcFlags(fs, &oc)          // lifecycle.go
	uploadLimitFlags(fs, &oc) // rebuild.go
	backendFlags(fs, &oc)     // backends.go
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	srv, err := origin.Open(ctx, oc, log)
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", oc.Listen)
	if err != nil {
		return fmt.Errorf("origin listen %s: %w", oc.Listen, err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	hs.RegisterOnShutdown(srv.StopLongPolls) // edges' snapshot long-polls end at once
	log.Info("updraft origin: ready", "listen", ln.Addr().String(), "data", oc.DataDir, "max_bundle_size", oc.MaxBundleSize.String())
	errc := make(chan error, 1)
	go func() { errc <- ignoreClosed(hs.Serve(ln)) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return hs.Shutdown(sctx)
}
