package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/proxy"
)

// edgeListeners are an edge's running listeners: HTTP/1.1 on ec.Listen and,
// with TLS on, HTTPS (HTTP/1.1) and HTTP/3 on ec.TLSListen (TCP and UDP).
type edgeListeners struct {
	Plain, TLS, QUIC string // bound addresses ("" when off)
	SPKIHash         string // of the TLS certificate, for pinning clients
	Certs            *proxy.Certificates
	stops            []func(context.Context) error
	done             chan error
}

func startEdgeListeners(ec config.Edge, edge *proxy.Edge, log *slog.Logger) (*edgeListeners, error) {
	l := &edgeListeners{done: make(chan error, 3)}
	fail := func(err error) (*edgeListeners, error) {
		l.stop(context.Background())
		return nil, err
	}
	ln, err := net.Listen("tcp", ec.Listen)
	if err != nil {
		return nil, fmt.Errorf("edge listen %s: %w (another updraft running? use --edge-listen)", ec.Listen, err)
	}
	plain := proxy.NewHTTP1(edge)
	l.Plain = ln.Addr().String()
	warnHostURLs(ec, ln.Addr(), log)
	ln = proxy.LimitSendBuffer(ln, int(ec.TCPSendBuffer))
	ln = proxy.ProxyProtocolListener(ln, ec) // --proxy-protocol
	go func() { l.done <- plain.Serve(ln) }()
	l.stops = append(l.stops, plain.Shutdown)
	if ec.TLS == "" || ec.TLS == proxy.TLSOff {
		return l, nil
	}
	tln, udp, err := listenTCPAndUDP(ec.TLSListen)
	if err != nil {
		return fail(err)
	}
	port := tln.Addr().(*net.TCPAddr).Port
	var certs *proxy.Certificates
	if ec.TLS == proxy.TLSACME {
		actx, cancel := context.WithCancel(context.Background())
		l.stops = append(l.stops, func(context.Context) error { cancel(); return nil })
		certs, err = proxy.LoadACME(actx, proxy.ACMEOptions{Domains: ec.ACMEDomains, CA: ec.ACMECA, Email: ec.ACMEEmail,
			CARoot: ec.ACMECARoot, OnDemand: ec.ACMEOnDemand, TLSPort: port, DataDir: ec.DataDir})
	} else {
		certs, err = proxy.LoadCertificates(ec.TLS, ec.CertFile, ec.KeyFile, ec.DataDir)
	}
	if err != nil {
		tln.Close()
		udp.Close()
		return fail(err)
	}
	l.Certs, l.SPKIHash = certs, certs.SPKIHash
	reportUDPBuffers(udp, log)
	secure := proxy.NewHTTP1(edge)
	secure.AdvertiseHTTP3(port)
	h3 := proxy.NewHTTP3(edge, certs)
	l.TLS, l.QUIC = tln.Addr().String(), udp.LocalAddr().String()
	alpn := []string{"http/1.1"}
	if ec.HTTP2 {
		alpn = []string{"h2", "http/1.1"}
	}
	ts := proxy.NewTLSServer(edge, secure, certs.Config(alpn...))
	go func() {
		l.done <- ts.Serve(proxy.ProxyProtocolListener(proxy.LimitSendBuffer(tln, int(ec.TCPSendBuffer)), ec))
	}()
	go func() { l.done <- h3.Serve(udp) }()
	l.stops = append(l.stops, ts.Shutdown, h3.Shutdown)
	if ec.TLS == proxy.TLSFiles {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		go func() {
			for range hup {
				if err := certs.Reload(); err != nil {
					log.Error("tls: reload failed; keeping the current certificate", "err", err)
				} else {
					log.Info("tls: certificate reloaded", "file", ec.CertFile, "spki_sha256", certs.SPKIHash)
				}
			}
		}()
	}
	return l, nil
}

// stop shuts every listener down, letting in-flight requests finish until
// ctx ends.
func (l *edgeListeners) stop(ctx context.Context) error {
	var errs []error
	for _, s := range l.stops {
		errs = append(errs, s(ctx))
	}
	return errors.Join(errs...)
}

// edgeFlags registers the edge flags serve and edge share (public URL,
// HTTPS/HTTP3 with the role's default TLS mode and address, cache budgets,
// rate limit, the device profile of the delta and manifest choices, Expo code signing); the returned --acme-domain value is split into
// ec.ACMEDomains after parsing.
func edgeFlags(fs *flag.FlagSet, ec *config.Edge, mode, listen string) *string {
	fs.StringVar(&ec.PublicURL, "public-url", "", "base URL devices download from (default: from each request's Host); env UPDRAFT_PUBLIC_URL")
	fs.Var(&ec.CacheMemory, "cache-memory", "edge memory cache budget (0: none)")
	fs.Var(&ec.CacheDisk, "cache-disk", "edge disk cache budget")
	fs.IntVar(&ec.UpdatesPerDeviceMinute, "updates-per-device-minute", 0, "at most this many update checks per device per minute (429 + Retry-After beyond; 0: no limit)")
	fs.Float64Var(&ec.LegacyChannelWrites, "legacy-channel-writes", ec.LegacyChannelWrites, "at most this many setChannel/unsetChannel calls per second from plugins before 7.34 stored at the origin, edge-wide (429 + Retry-After beyond)")
	fs.Var(&ec.StatsSpool, "stats-spool", "disk budget for device events not yet delivered to the origin (beyond it POST /stats answers 429)")
	fs.Func("trusted-proxies", "load balancers or proxies in front of the edge (CIDR or address, comma-separated): their X-Forwarded-For gives the client address (the rightmost address not in the list)", func(v string) error {
		p, err := config.ParsePrefixes(v)
		ec.TrustedProxies = p
		return err
	})
	fs.BoolVar(&ec.ProxyProtocol, "proxy-protocol", false, "TCP listeners read a PROXY protocol v1/v2 header from the load balancer (with --trusted-proxies: only from those peers; without: every connection must start with one)")
	fs.Float64Var(&ec.UpdatesPerPrefixSecond, "updates-per-prefix-second", ec.UpdatesPerPrefixSecond, "at most this many update checks per second from one client network (/24 IPv4, /48 IPv6; public addresses only; bursts of 10 s worth; 429 + Retry-After beyond; 0: no limit)")
	fs.Float64Var(&ec.StatsPerPrefixSecond, "stats-per-prefix-second", ec.StatsPerPrefixSecond, "at most this many device events per second from one client network (/24, /48; public addresses only; bursts of 10 s worth; 429 + Retry-After beyond; 0: no limit)")
	fs.Var(&ec.DeltaLink, "delta-link", "device link the edge chooses between a bundle pair's dcz and dcb deltas for: the one whose download at this rate plus its decode (--delta-decode-factor) is shortest, e.g. 20mbit, 100mbit, 1gbit (0: the smaller)")
	fs.Float64Var(&ec.DeltaDecodeFactor, "delta-decode-factor", ec.DeltaDecodeFactor, "how many times longer a device takes to decode a delta than the origin, which measures each delta's decode (0: the smaller delta)")
	fs.DurationVar(&ec.DeviceRTT, "device-rtt", ec.DeviceRTT, "device round trip the edge chooses between a bundle's manifest and its zip for: the manifest is left out (the stock plugin then downloads the zip) when the files the device lacks, 16 at a time, take longer at this round trip and --delta-link than the zip (0: the manifest whenever the plugin takes one)")
	fs.Var(&ec.InlineDeltaMax, "inline-delta-max", "largest delta sent inside an update answer to a client that asks for it with Updraft-Inline-Delta (one round trip fewer than fetching delta_url; only deltas in the memory tier; 0: never)")
	fs.StringVar(&ec.ExpoSigningKey, "expo-signing-key", "", "PEM RSA private key (PKCS#1 or PKCS#8) that signs Expo Updates manifests and directives for clients sending expo-expect-signature (without it they get 400 code_signing_unavailable)")
	fs.StringVar(&ec.ExpoSigningKeyID, "expo-signing-keyid", config.DefaultExpoSigningKeyID, "keyid named in expo-signature: the app's updates.codeSigningMetadata.keyid")
	fs.BoolVar(&ec.HTTP2, "http2", ec.HTTP2, "offer HTTP/2 (ALPN h2) beside HTTP/1.1 on --tls-listen: the stock plugin then fetches a manifest's files over one connection (--http2=false: HTTP/1.1 only)")
	fs.BoolVar(&ec.DeviceFront, "device-front", ec.DeviceFront, "serve the devices' POST requests on HTTP/1.1 (update checks, /stats, /channel_self) with the edge's own strict parser, in front of fasthttp, which serves every other request (--device-front=false: fasthttp serves all)")
	fs.IntVar(&ec.FrontLoops, "device-front-loops", ec.FrontLoops, "event loops (epoll, Linux) serving the device front's plain HTTP/1.1 connections, as nginx's workers do: update checks are answered by the loop their connection waits in, without waking a goroutine; GOMAXPROCS is raised by their number while they run (0: one per processor; -1: none, a goroutine per connection)")
	fs.Var(&ec.TCPSendBuffer, "tcp-send-buffer", "kernel send buffer per TCP connection, e.g. 128KiB (0: autotuned). Evens out many concurrent large downloads on short paths; caps each connection's rate on long ones")
	ec.TLS, ec.TLSListen = mode, listen
	fs.StringVar(&ec.TLS, "tls", ec.TLS, "HTTPS + HTTP/3 on --tls-listen: off, self-signed (development), files or acme")
	fs.StringVar(&ec.TLSListen, "tls-listen", ec.TLSListen, "HTTPS (TCP) and HTTP/3 (UDP) address; env UPDRAFT_TLS_LISTEN")
	fs.StringVar(&ec.CertFile, "cert", "", "certificate file (--tls files; reloaded on SIGHUP)")
	fs.StringVar(&ec.KeyFile, "key", "", "key file (--tls files)")
	fs.StringVar(&ec.ACMECA, "acme-ca", "", "--tls acme: ACME directory URL (default: Let's Encrypt)")
	fs.StringVar(&ec.ACMEEmail, "acme-email", "", "--tls acme: contact email")
	fs.StringVar(&ec.ACMECARoot, "acme-ca-root", "", "--tls acme: PEM roots to trust for a private ACME CA")
	fs.BoolVar(&ec.ACMEOnDemand, "acme-on-demand", false, "--tls acme: issue at first handshake (only for --acme-domain names)")
	return fs.String("acme-domain", "", "--tls acme: names to get certificates for (comma-separated)")
}

// warnHostURLs warns when download URLs will be built from each request's
// Host header (no --public-url) on an address other hosts can reach: a
// client (or a cache in front of the edge) then chooses the host name that
// devices are told to download from.
func warnHostURLs(ec config.Edge, addr net.Addr, log *slog.Logger) {
	if ec.PublicURL != "" {
		return
	}
	if tcp, ok := addr.(*net.TCPAddr); ok && tcp.IP.IsLoopback() {
		return
	}
	log.Warn("edge: --public-url is not set: download URLs in update answers are built from each request's Host header, "+
		"which any client can set; set --public-url to the edge's public base URL", "listen", addr.String())
}

// listenTCPAndUDP opens the TLS listener's TCP socket and the HTTP/3 UDP
// socket on the same port. With port 0 the kernel picks the TCP port,
// which another process may hold in UDP: then another port is tried.
func listenTCPAndUDP(addr string) (net.Listener, net.PacketConn, error) {
	_, p, _ := net.SplitHostPort(addr)
	for attempt := 0; ; attempt++ {
		tln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("edge tls listen %s: %w", addr, err)
		}
		ta := tln.Addr().(*net.TCPAddr)
		udp, err := net.ListenPacket("udp", net.JoinHostPort(ta.IP.String(), fmt.Sprint(ta.Port)))
		if err == nil {
			return tln, udp, nil
		}
		tln.Close()
		if p != "0" || attempt == 20 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("edge http/3 listen udp %s: %w", addr, err)
		}
	}
}
