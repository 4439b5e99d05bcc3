// Package config holds the typed configuration of each Updraft role (origin,
// edge, and the all-in-one serve), its defaults and its validation. Values come
// from flags and environment variables; every error names the setting and says
// what a valid value looks like.
//
// config imports only the standard library.
package config

import (
	"errors"
	"fmt"
	"net"
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
	Listen        string // TCP address of the operator API and edge replication endpoints
	DataDir       string // SQLite database, blobs and keys live here
	MaxBundleSize Size   // largest accepted upload
	// GCGrace: blob garbage collection deletes only unreferenced blobs
	// whose mtime (last commit, or the deletion of their bundle) is older
	// than this, so uploads and edge fetches in flight keep theirs.
	GCGrace time.Duration
	// GCInterval: how often blob garbage collection runs; 0: only on demand.
	GCInterval time.Duration
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
	TCPSendBuffer     Size
	ReadTimeout       time.Duration // per request header/body read
	WriteTimeout      time.Duration // per response write
	MaxConnsPerIP     int
	ShutdownGraceTime time.Duration
}

// NewOrigin returns the origin defaults, with dataDir as the data folder.
func NewOrigin(dataDir string) Origin {
	return Origin{
		Listen:        DefaultOriginListen,
		DataDir:       dataDir,
		MaxBundleSize: 512 * MiB,
		GCGrace:       time.Hour,
		GCInterval:    time.Hour,
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
		// a user action), far below what makes the origin publish nonstop.
		LegacyChannelWrites: 20,
		ReadTimeout:         30 * time.Second,
		WriteTimeout:        5 * time.Minute,
		MaxConnsPerIP:       0,
		ShutdownGraceTime:   10 * time.Second,
	}
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
	if c.GCInterval != 0 && c.GCInterval < time.Second {
		errs = append(errs, fmt.Errorf("config: origin.gc_interval %s: want 0 (on demand only) or at least 1s, like 1h", c.GCInterval))
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
	if c.StatsSpool < 4*MiB {
		errs = append(errs, fmt.Errorf("config: edge.stats_spool %s: want at least 4MiB", c.StatsSpool))
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

// APIKeyFile is where the origin writes the generated operator API key.
func APIKeyFile(dataDir string) string { return filepath.Join(dataDir, "api-key") }

// EdgeKeyFile is where the origin writes the generated edge replication key.
func EdgeKeyFile(dataDir string) string { return filepath.Join(dataDir, "edge-key") }

// SigningKeyFile is where the origin keeps its Ed25519 snapshot signing key.
func SigningKeyFile(dataDir string) string { return filepath.Join(dataDir, "origin-key") }

// TrimURL removes trailing slashes so that paths can be appended.
func TrimURL(u string) string { return strings.TrimRight(u, "/") }
