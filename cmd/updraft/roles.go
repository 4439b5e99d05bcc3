package main

import (
	"context"
	"errors"
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
	edge.SetPreviewKeys(srv.PublicKey())
	srv.Subscribe(func(s *snapshot.Snapshot) {
		edge.SetPreviewKeys(srv.PublicKey()) // preview tokens: the key snapshots are signed with now
		edge.SetSnapshot(s)
	})
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

// serveSetup is what `updraft serve` runs with, from its flags.
type serveSetup struct {
	oc             config.Origin
	ec             config.Edge
	data, logLevel string
}

func newServeFlags() (*roleFlags, *serveSetup) {
	r := newRoleFlags("serve")
	s := &serveSetup{oc: config.NewOrigin(""), ec: config.NewEdge("")}
	fs := r.fs
	fs.StringVar(&s.data, "data", config.DefaultDataDir, "data folder (SQLite, blobs, keys, edge cache); env UPDRAFT_DATA")
	fs.StringVar(&s.oc.Listen, "origin-listen", s.oc.Listen, "operator API address; env UPDRAFT_ORIGIN_LISTEN")
	fs.StringVar(&s.ec.Listen, "edge-listen", s.ec.Listen, "device API address (use 0.0.0.0:8080 for devices on your network); env UPDRAFT_EDGE_LISTEN")
	acmeDomains := edgeFlags(fs, &s.ec, proxy.TLSSelfSigned, config.DefaultTLSListen)
	fs.Var(&s.oc.MaxBundleSize, "max-bundle-size", "largest accepted bundle upload")
	gcFlags(fs, &s.oc)          // lifecycle.go
	uploadLimitFlags(fs, &s.oc) // rebuild.go
	backendFlags(fs, &s.oc)     // backends.go
	webhookFlags(fs, &s.oc)     // webhooks.go
	deviceFlags(fs, &s.oc)      // devices.go
	fs.StringVar(&s.logLevel, "log-level", "info", "debug, info, warn or error")
	r.withEnv(originEnv)
	r.withEnv(edgeEnv)
	r.withEnv(map[string]string{"origin-listen": "UPDRAFT_ORIGIN_LISTEN", "edge-listen": "UPDRAFT_EDGE_LISTEN"})
	r.env["data"] = dataEnv("")
	r.finish = func() error {
		s.ec.ACMEDomains = splitList(*acmeDomains)
		s.oc.DataDir = s.data
		s.ec.DataDir = filepath.Join(s.data, "edge-cache")
		return errors.Join(checkLogLevel(s.logLevel), s.oc.Validate(), s.ec.Validate())
	}
	return r, s
}

func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	r, s := newServeFlags()
	if err := r.load(args); err != nil {
		return err
	}
	oc, ec, data := s.oc, s.ec, &s.data
	log, err := newLogger(stderr, s.logLevel)
	if err != nil {
		return err
	}
	rs, err := startServe(ctx, serveOptions{origin: oc, edge: ec, log: log})
	if err != nil {
		return err
	}
	log.Info("updraft serve: ready",
		"data", *data, "origin", "http://"+rs.OriginAddr, "edge", "http://"+rs.EdgeAddr,
		"api_key_file", config.APIKeyFile(*data), "max_bundle_size", oc.MaxBundleSize.String(),
		"cache_memory", ec.CacheMemory.String(), "cache_disk", ec.CacheDisk.String(), "max_updates_body", ec.MaxUpdatesBody.String(),
		"stats_spool", ec.StatsSpool.String())
	fmt.Fprintf(stderr, "\n  device update URL:  http://%s/updates\n  device stats URL:   http://%s/stats\n  operator API:       http://%s/api/v1 (key in %s)\n  analytics page:     http://%s/ui\n",
		rs.EdgeAddr, rs.EdgeAddr, rs.OriginAddr, config.APIKeyFile(*data), rs.OriginAddr)
	if rs.Listeners.TLS != "" {
		fmt.Fprintf(stderr, "  HTTPS + HTTP/3:     https://%s/updates (%s certificate, SPKI sha256 %s)\n", rs.Listeners.TLS, ec.TLS, rs.Listeners.SPKIHash)
	}
	fmt.Fprintln(stderr)
	select {
	case <-ctx.Done():
	case err := <-rs.done:
		return err
	}
	log.Info("updraft serve: shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), ec.ShutdownGraceTime)
	defer cancel()
	return rs.stop(sctx)
}

// originSetup is what `updraft origin` runs with, from its flags.
type originSetup struct {
	oc       config.Origin
	logLevel string
}

func newOriginFlags() (*roleFlags, *originSetup) {
	r := newRoleFlags("origin")
	s := &originSetup{oc: config.NewOrigin(config.DefaultDataDir)}
	fs := r.fs
	fs.StringVar(&s.oc.DataDir, "data", s.oc.DataDir, "data folder; env UPDRAFT_DATA")
	fs.StringVar(&s.oc.Listen, "listen", s.oc.Listen, "operator API and edge replication address; env UPDRAFT_ORIGIN_LISTEN")
	fs.Var(&s.oc.MaxBundleSize, "max-bundle-size", "largest accepted bundle upload")
	gcFlags(fs, &s.oc)          // lifecycle.go
	uploadLimitFlags(fs, &s.oc) // rebuild.go
	backendFlags(fs, &s.oc)     // backends.go
	webhookFlags(fs, &s.oc)     // webhooks.go
	deviceFlags(fs, &s.oc)      // devices.go
	fs.StringVar(&s.logLevel, "log-level", "info", "debug, info, warn or error")
	r.withEnv(originEnv)
	r.withEnv(map[string]string{"listen": "UPDRAFT_ORIGIN_LISTEN"})
	r.env["data"] = dataEnv("")
	r.finish = func() error { return errors.Join(checkLogLevel(s.logLevel), s.oc.Validate()) }
	return r, s
}

func cmdOrigin(ctx context.Context, args []string, stderr io.Writer) error {
	r, s := newOriginFlags()
	if err := r.load(args); err != nil {
		return err
	}
	oc := s.oc
	log, err := newLogger(stderr, s.logLevel)
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
