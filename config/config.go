// Package config holds the typed configuration of each Updraft role (origin,
// edge, and the all-in-one serve), its defaults and its validation. Values come
// from flags, environment variables and a TOML configuration file (file.go);
// every error names the setting and says what a valid value looks like.
//
// Besides the standard library, config imports only the TOML reader
// (github.com/pelletier/go-toml/v2, file.go).
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Defaults used when neither a flag nor an environment variable sets a value.
const (
	DefaultDataDir      = "updraft-data"
	DefaultOriginListen = "127.0.0.1:8090"
	DefaultEdgeListen   = "127.0.0.1:8080"
	DefaultOriginURL    = "http://127.0.0.1:8090"
	DefaultTLSListen    = "127.0.0.1:8443"
)

// Origin configures the origin role: operator API, metadata store, blob store.
type Origin struct {
	Listen  string // TCP address of the operator API and edge replication endpoints
	DataDir string // SQLite database, blobs and keys live here
	// Store is where metadata and events live: "" for the embedded SQLite
	// databases in DataDir, or a postgres:// URL shared by several origins.
	Store string
	// Blobs is where bundle blobs live: "" for DataDir/blobs, or
	// s3://BUCKET?endpoint=…&region=… (credentials from the AWS environment).
	Blobs string
	// JobStaleAfter: a bundle build untouched this long belongs to an
	// origin that died and is taken over by another (0: the default, 2m).
	JobStaleAfter time.Duration
	MaxBundleSize Size // largest accepted upload
	// GCGrace: blob garbage collection deletes only unreferenced blobs
	// whose mtime (last commit, or the deletion of their bundle) is older
	// than this, so uploads and edge fetches in flight keep theirs.
	GCGrace time.Duration
	// GCInterval: how often blob garbage collection runs; 0: only on demand.
	GCInterval time.Duration

	// Webhooks (origin/webhooks.go): WebhookPoll is how often the origin
	// looks for new audit records to deliver (0: 1s; records this origin
	// appends wake it at once); WebhookBackoff the waits before each retry
	// of a failed delivery, whose count bounds the attempts (nil: the
	// default schedule, 8 attempts over about 17 hours); WebhookTimeout
	// bounds one attempt (0: 10s).
	WebhookPoll    time.Duration
	WebhookBackoff []time.Duration
	WebhookTimeout time.Duration

	// Upload limits (docs/design-notes.md, "Upload limits, streaming
	// builds and durable jobs"), checked on the sizes a zip declares and
	// on the bytes it actually decompresses to: at most MaxZipEntries
	// entries, unpacking to at most MaxUncompressed bytes and at most
	// MaxZipRatio times the zip's size, no entry over 1 MiB compressed
	// more than MaxEntryRatio:1. Ratios of 0 are not checked.
	MaxUncompressed Size
	MaxZipEntries   int
	MaxZipRatio     int
	MaxEntryRatio   int
	// MaxDeltaBundle: deltas are built only between bundles whose
	// canonical archives (their files unpacked) are at most this large;
	// a larger bundle gets its manifest and canonical archive and is
	// served whole. The builder needs about this plus twice this (the
	// zstd window) of memory. 0: no deltas.
	MaxDeltaBundle Size
	// DeviceRetention: devices of the device inventory not seen (no
	// check-in, no event) for this long are removed, with their recent
	// events, by an hourly sweep; 0 keeps them (the inventory's own bound
	// still applies).
	DeviceRetention time.Duration
	// NoDeviceLog: the device inventory keeps each device's last check-in
	// only, not its recent check-ins and events (a write per device and
	// segment at ingest).
	NoDeviceLog bool
	// BuildNice is the scheduling priority (nice, 1 to 19) of the thread
	// that builds bundles, so that builds use only CPU the edge and the API
	// leave idle; 0 builds at the process's own priority. Linux only.
	BuildNice int
}

// Edge configures an edge node: device API and blob delivery.
type Edge struct {
	Listen    string // TCP address of the device API
	DataDir   string // disk cache and persisted snapshot
	PublicURL string // base URL put in update answers; empty: derived from the request's Host
	// Upstream is the origin or parent edge the edge fills blobs and snapshots from.
	// Empty only in serve, where origin and edge share a process.
	Upstream string
	// EdgeKey authenticates the edge to its upstream (origin API key).
	EdgeKey string
	// PreviousEdgeKey is also accepted from child edges, during an edge
	// key rotation's overlap (empty: none).
	PreviousEdgeKey string
	// MaxSnapshotAge: when > 0, the edge refuses snapshots, and stops
	// answering update checks (503 snapshot_stale), once its snapshot is
	// older than this by the origin's signed issued time or latest signed
	// heartbeat. 0: off.
	MaxSnapshotAge time.Duration

	// TLS mode of the HTTPS (TCP) and HTTP/3 (UDP) listeners on TLSListen:
	// off, files (CertFile, KeyFile; reloaded on SIGHUP) or self-signed.
	TLS       string
	TLSListen string
	CertFile  string
	KeyFile   string
	// ACME (TLS "acme"): certificates from an ACME CA for these names.
	ACMEDomains  []string
	ACMECA       string // directory URL; empty: Let's Encrypt
	ACMEEmail    string
	ACMECARoot   string // PEM roots for the CA's own HTTPS (private or test CA)
	ACMEOnDemand bool   // also issue at first handshake, for ACMEDomains only

	CacheMemory Size // memory tier budget
	CacheDisk   Size // disk tier budget
	NoPrefetch  bool // do not fill bundles before devices ask
	// UpdatesPerDeviceMinute bounds update checks per device (429 with
	// Retry-After beyond it); 0: no limit.
	UpdatesPerDeviceMinute int
	MaxUpdatesBody         Size // largest accepted POST /updates body
	// LegacyChannelWrites bounds, per second over the whole edge, the
	// setChannel/unsetChannel calls of plugins before 7.34 that it stores
	// at the origin (each one is an origin write and a new snapshot); beyond
	// it they get 429 with Retry-After. Device ids are free to invent, so a
	// per-device limit would not bound them.
	LegacyChannelWrites float64
	// StatsSpool bounds the disk the edge's undelivered device events may
	// use; beyond it POST /stats answers 429 and counts the drop.
	StatsSpool Size
	// StatsURL is where the edge delivers device events (POST /v1/events);
	// empty: Upstream.
	StatsURL string
	// TCPSendBuffer sets each TCP connection's kernel send buffer; 0
	// leaves it to the kernel's autotuning.
	TCPSendBuffer Size
	// HTTP2 offers HTTP/2 (ALPN h2) on the TLS listener beside HTTP/1.1:
	// the stock plugin's stacks (OkHttp, URLSession) then fetch a
	// manifest's files over one connection instead of one each.
	HTTP2 bool
	// DeviceFront serves the devices' POST requests (update checks, stats,
	// channel_self) on HTTP/1.1 with the edge's own strict parser before
	// fasthttp (proxy/h1fast.go); false: fasthttp serves every request.
	DeviceFront bool
	// FrontLoops is how many event loops serve the device front's plain
	// HTTP/1.1 connections on Linux (proxy/h1loop_linux.go): 0, one per
	// processor (GOMAXPROCS); negative, none (a goroutine per connection).
	FrontLoops        int
	ReadTimeout       time.Duration // per request header/body read
	WriteTimeout      time.Duration // per response write
	ShutdownGraceTime time.Duration

	// Client addresses and per-client limits (docs/design-notes.md, "Guard
	// robustness and client limits"). TrustedProxies are the peers whose
	// X-Forwarded-For gives the client address (the rightmost address that
	// is not a trusted proxy); ProxyProtocol reads a PROXY protocol v1/v2
	// header on the TCP listeners instead (from TrustedProxies only, when
	// set). UpdatesPerPrefixSecond and StatsPerPrefixSecond bound POST
	// /updates (requests) and POST /stats (events) per client network
	// (/24 IPv4, /48 IPv6; public addresses only), with bursts of 10 s
	// worth; 0: no limit.
	TrustedProxies         []netip.Prefix
	ProxyProtocol          bool
	UpdatesPerPrefixSecond float64
	StatsPerPrefixSecond   float64

	// The device profile for which the edge chooses between a bundle
	// pair's dcz and dcb deltas (docs/design-notes.md, "Choosing dcz or
	// dcb per pair"): the one a device downloading at DeltaLink, and
	// decoding DeltaDecodeFactor times slower than the origin's builder
	// did, finishes first. DeltaLink 0 or DeltaDecodeFactor 0: the
	// smaller delta.
	DeltaLink         Bandwidth
	DeltaDecodeFactor float64
	// DeviceRTT is the round trip of the same device profile: with
	// DeltaLink, the edge leaves a bundle's manifest out of an update
	// answer when, for the bundle the device runs, the plugin is
	// expected to finish the zip first (docs/design-notes.md, "Manifest
	// or zip per device"). 0, or DeltaLink 0: the manifest whenever the
	// plugin takes one.
	DeviceRTT time.Duration
	// InlineDeltaMax is the largest delta the edge sends inside an update
	// answer to a client that asks for it (docs/protocol.md, "Inline
	// delta"): the answer and the delta in one response, one round trip
	// fewer than answer then delta_url. Only deltas in the memory tier
	// are inlined. 0: never.
	InlineDeltaMax Size

	// Expo Updates code signing (docs/protocol.md, "Expo Updates"): the
	// PEM RSA private key the edge signs manifests and directives with
	// when a client sends expo-expect-signature (empty: such requests get
	// 400 code_signing_unavailable), and the keyid it names in
	// expo-signature (the app's codeSigningMetadata.keyid; empty:
	// DefaultExpoSigningKeyID).
	ExpoSigningKey   string
	ExpoSigningKeyID string
}

// NewOrigin returns the origin defaults, with dataDir as the data folder.
func NewOrigin(dataDir string) Origin {
	return Origin{
		Listen:        DefaultOriginListen,
		DataDir:       dataDir,
		MaxBundleSize: 512 * MiB,
		GCGrace:       time.Hour,
		GCInterval:    time.Hour,
		// Same as delta.DefaultLimits (what the CLI checks before
		// encrypting); web bundles unpack to tens of MB at under 10:1.
		MaxUncompressed: 1 * GiB,
		MaxZipEntries:   20000,
		MaxZipRatio:     100,
		MaxEntryRatio:   100,
		MaxDeltaBundle:  64 * MiB, // the zstd matcher reaches ~32 MiB back into a base (design notes)
		BuildNice:       19,
		DeviceRetention: 90 * 24 * time.Hour,
	}
}

// NewEdge returns the edge defaults, with dataDir as its data folder.
func NewEdge(dataDir string) Edge {
	return Edge{
		Listen:         DefaultEdgeListen,
		DataDir:        dataDir,
		CacheMemory:    512 * MiB,
		CacheDisk:      20 * GiB,
		MaxUpdatesBody: 1 * MiB,
		StatsSpool:     1 * GiB,
		// Far above what a fleet of pre-7.34 plugins sends (a setChannel is
		// a user action); the origin adds its own bound across edges (10/s)
		// and publishes device changes at most once a second.
		LegacyChannelWrites: 5,
		DeviceFront:         true,
		ReadTimeout:         30 * time.Second,
		WriteTimeout:        5 * time.Minute,
		ShutdownGraceTime:   10 * time.Second,
		// Far above what the devices behind one /24 send, even behind a
		// carrier-grade NAT (design notes); far below a forging client.
		UpdatesPerPrefixSecond: DefaultUpdatesPerPrefixSecond,
		StatsPerPrefixSecond:   DefaultStatsPerPrefixSecond,
		DeltaLink:              DefaultDeltaLink,
		DeltaDecodeFactor:      DefaultDeltaDecodeFactor,
		DeviceRTT:              DefaultDeviceRTT,
		InlineDeltaMax:         DefaultInlineDeltaMax,
		ExpoSigningKeyID:       DefaultExpoSigningKeyID,
		HTTP2:                  true,
	}
}

// Defaults of the delta choice's device profile: a mobile link, and a
// phone's core against a server's (the builder decodes every delta once
// to verify it, and measures it).
const (
	DefaultDeltaLink         = 20 * Mbit
	DefaultDeltaDecodeFactor = 4
	// DefaultDeviceRTT: a mobile round trip (4G to a nearby edge is 40 to
	// 100 ms, 3G and congested cells more).
	DefaultDeviceRTT = 100 * time.Millisecond
	// DefaultInlineDeltaMax: the deltas of web bundles are tens of KB
	// (bench/RESULTS.md); a larger one is fetched from delta_url.
	DefaultInlineDeltaMax = 512 * KiB
)

// Defaults of the per-client-network limits (docs/design-notes.md).
const (
	DefaultUpdatesPerPrefixSecond = 100
	DefaultStatsPerPrefixSecond   = 200
)

// ParsePrefixes reads a comma-separated list of CIDR prefixes or single
// addresses (a /32 or /128), e.g. "10.0.0.0/8,192.168.1.5,fd00::/8".
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("config: %q: want a CIDR prefix like 10.0.0.0/8 or an address like 192.168.1.5", f)
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Validate checks the origin configuration.
func (c Origin) Validate() error {
	var errs []error
	errs = append(errs, checkAddr("origin.listen", c.Listen))
	if c.DataDir == "" {
		errs = append(errs, errors.New(`config: origin.data: want a folder path like "updraft-data"`))
	}
	if c.MaxBundleSize < 1*KiB {
		errs = append(errs, fmt.Errorf("config: origin.max_bundle_size %s: want at least 1KiB", c.MaxBundleSize))
	}
	if c.GCGrace < 0 {
		errs = append(errs, fmt.Errorf("config: origin.gc_grace %s: want 0 or more, like 1h", c.GCGrace))
	}
	if c.WebhookPoll < 0 || c.WebhookPoll > time.Hour {
		errs = append(errs, fmt.Errorf("config: origin.webhook_poll %s: want 0 (the default, 1s) to 1h, like 1s", c.WebhookPoll))
	}
	if c.GCInterval != 0 && c.GCInterval < time.Second {
		errs = append(errs, fmt.Errorf("config: origin.gc_interval %s: want 0 (on demand only) or at least 1s, like 1h", c.GCInterval))
	}
	if c.MaxUncompressed < 1*KiB || c.MaxUncompressed > 1*GiB {
		errs = append(errs, fmt.Errorf("config: origin.max_bundle_uncompressed %s: want 1KiB to 1GiB (the canonical archive limit)", c.MaxUncompressed))
	}
	if c.MaxZipEntries < 1 || c.MaxZipEntries > 1000000 {
		errs = append(errs, fmt.Errorf("config: origin.max_bundle_entries %d: want 1 to 1000000", c.MaxZipEntries))
	}
	if c.MaxZipRatio < 0 || c.MaxZipRatio == 1 || c.MaxEntryRatio < 0 || c.MaxEntryRatio == 1 {
		errs = append(errs, fmt.Errorf("config: origin.max_bundle_ratio %d, origin.max_entry_ratio %d: want 0 (unchecked) or at least 2, like 100", c.MaxZipRatio, c.MaxEntryRatio))
	}
	if c.DeviceRetention != 0 && c.DeviceRetention < time.Hour {
		errs = append(errs, fmt.Errorf("config: origin.device_retention %s: want 0 (kept) or at least 1h, like 90d", c.DeviceRetention))
	}
	if c.BuildNice < 0 || c.BuildNice > 19 {
		errs = append(errs, fmt.Errorf("config: origin.build_nice %d: want 0 (normal priority) to 19 (lowest)", c.BuildNice))
	}
	if c.MaxDeltaBundle < 0 || c.MaxDeltaBundle > 512*MiB {
		errs = append(errs, fmt.Errorf("config: origin.max_delta_bundle %s: want 0 (no deltas) to 512MiB", c.MaxDeltaBundle))
	}
	return errors.Join(errs...)
}

// Validate checks the edge configuration.
func (c Edge) Validate() error {
	var errs []error
	errs = append(errs, checkAddr("edge.listen", c.Listen))
	if c.DataDir == "" {
		errs = append(errs, errors.New(`config: edge.data: want a folder path like "updraft-data/edge"`))
	}
	if c.PublicURL != "" {
		errs = append(errs, checkURL("edge.public_url", c.PublicURL))
	}
	if c.Upstream != "" {
		errs = append(errs, checkURL("edge.upstream", c.Upstream))
	}
	if c.StatsURL != "" {
		errs = append(errs, checkURL("edge.stats_url", c.StatsURL))
	}
	if c.TCPSendBuffer != 0 && (c.TCPSendBuffer < 16*KiB || c.TCPSendBuffer > 64*MiB) {
		errs = append(errs, fmt.Errorf("config: edge.tcp_send_buffer %s: want 0 (autotuned) or 16KiB..64MiB", c.TCPSendBuffer))
	}
	if c.MaxSnapshotAge != 0 && c.MaxSnapshotAge < 2*time.Second {
		errs = append(errs, fmt.Errorf("config: edge.max_snapshot_age %s: want 0 (off) or at least 2s, like 10m", c.MaxSnapshotAge))
	}
	if c.StatsSpool < 4*MiB {
		errs = append(errs, fmt.Errorf("config: edge.stats_spool %s: want at least 4MiB", c.StatsSpool))
	}
	if !(c.UpdatesPerPrefixSecond >= 0) || !(c.StatsPerPrefixSecond >= 0) {
		errs = append(errs, fmt.Errorf("config: edge.updates_per_prefix_second %g, edge.stats_per_prefix_second %g: want 0 (no limit) or more",
			c.UpdatesPerPrefixSecond, c.StatsPerPrefixSecond))
	}
	switch c.TLS {
	case "", "off":
	case "files", "self-signed", "acme":
		errs = append(errs, checkAddr("edge.tls_listen", c.TLSListen))
		if c.TLS == "acme" && len(c.ACMEDomains) == 0 {
			errs = append(errs, errors.New("config: edge.tls acme: want at least one domain (--acme-domain)"))
		}
		if c.TLS == "files" && (c.CertFile == "" || c.KeyFile == "") {
			errs = append(errs, errors.New("config: edge.tls files: want a certificate and key file (--cert, --key)"))
		}
	default:
		errs = append(errs, fmt.Errorf("config: edge.tls %q: want off, files, self-signed or acme", c.TLS))
	}
	if c.MaxUpdatesBody < 1*KiB || c.MaxUpdatesBody > 64*MiB {
		errs = append(errs, fmt.Errorf("config: edge.max_updates_body %s: want between 1KiB and 64MiB", c.MaxUpdatesBody))
	}
	if c.CacheDisk < 1*MiB {
		errs = append(errs, fmt.Errorf("config: edge.cache.disk %s: want at least 1MiB", c.CacheDisk))
	}
	if c.CacheMemory < 0 || c.CacheMemory > 1*TiB {
		errs = append(errs, fmt.Errorf("config: edge.cache.memory %s: want 0 (no memory tier) to 1TiB", c.CacheMemory))
	}
	if c.DeltaLink != 0 && (c.DeltaLink < 8*Kbit || c.DeltaLink > 1000*Gbit) {
		errs = append(errs, fmt.Errorf("config: edge.delta_link %s: want 0 (the smaller delta) or 8kbit to 1000gbit, like 20mbit", c.DeltaLink))
	}
	if !(c.DeltaDecodeFactor >= 0 && c.DeltaDecodeFactor <= 1000) {
		errs = append(errs, fmt.Errorf("config: edge.delta_decode_factor %g: want 0 (the smaller delta) to 1000, like 4 (a device decodes 4 times slower than the origin)", c.DeltaDecodeFactor))
	}
	if c.InlineDeltaMax < 0 || c.InlineDeltaMax > 16*MiB {
		errs = append(errs, fmt.Errorf("config: edge.inline_delta_max %s: want 0 (never) to 16MiB, like 512KiB", c.InlineDeltaMax))
	}
	if c.DeviceRTT != 0 && (c.DeviceRTT < time.Millisecond || c.DeviceRTT > 10*time.Second) {
		errs = append(errs, fmt.Errorf("config: edge.device_rtt %s: want 0 (the manifest whenever the plugin takes one) or 1ms to 10s, like 100ms", c.DeviceRTT))
	}
	if c.ExpoSigningKeyID != "" && !validExpoKeyID(c.ExpoSigningKeyID) {
		errs = append(errs, fmt.Errorf("config: edge.expo_signing_keyid %q: want 1-64 printable ASCII characters without '\"' or '\\', like %q (the app's codeSigningMetadata.keyid)", c.ExpoSigningKeyID, DefaultExpoSigningKeyID))
	}
	if c.ExpoSigningKey != "" {
		if _, err := LoadExpoSigningKey(c.ExpoSigningKey); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func checkAddr(name, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("config: %s %q: want host:port like 127.0.0.1:8080 (%v)", name, addr, err)
	}
	return nil
}

func checkURL(name, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("config: %s %q: want an absolute URL like http://127.0.0.1:8090", name, raw)
	}
	return nil
}

// Env returns the value of the environment variable name, or def when unset or empty.
func Env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// DataDir returns the data folder from UPDRAFT_DATA, defaulting to ./updraft-data.
func DataDir() string { return Env("UPDRAFT_DATA", DefaultDataDir) }

// APIKeyFile is where the origin writes the generated admin API key.
func APIKeyFile(dataDir string) string { return filepath.Join(dataDir, "api-key") }

// EdgeKeyFile is where the origin writes the generated edge replication key.
func EdgeKeyFile(dataDir string) string { return filepath.Join(dataDir, "edge-key") }

// SigningKeyFile is where the origin keeps its Ed25519 snapshot signing key.
func SigningKeyFile(dataDir string) string { return filepath.Join(dataDir, "origin-key") }

// TrimURL removes trailing slashes so that paths can be appended.
func TrimURL(u string) string { return strings.TrimRight(u, "/") }
