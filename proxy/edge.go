package proxy

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/updraft-cdn/updraft/cache"
	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

const contentTypeJSON = "application/json"

// Edge is one edge node: device API and blob delivery over a snapshot and a
// cache. Its methods are safe for concurrent use.
type Edge struct {
	cfg     config.Edge
	cache   *cache.Tiered
	log     *slog.Logger
	snap    atomic.Pointer[snapshot.Snapshot]
	metrics *edgeMetrics

	// wire is the signed encoding of snap, re-served to child edges; nil
	// when the snapshot came from an origin in the same process.
	wireMu  sync.Mutex
	wire    []byte
	changed chan struct{} // closed and replaced at every swap
	// childKey authenticates child edges (they use the same edge key);
	// prevChildKey too, during an edge key rotation (nil: none).
	childKey, prevChildKey []byte
	// follow is the replica's state, the snapshot's freshness and the
	// heartbeat relayed to children (follow.go).
	follow followState

	prefetchQ    chan string
	stopPrefetch func()
	limiter      *deviceLimiter // nil: no per-device limit
	// clock, when set (tests), replaces time.Now for the maintenance
	// windows of update checks (now).
	clock func() time.Time
	// baseURL is cfg.PublicURL without a trailing slash; empty: from Host.
	baseURL []byte
	// spool holds accepted device events until the origin has them; nil
	// until StartStats.
	spool     *spool
	statsSink EventSink
	// deviceChannels stores legacy plugins' setChannel at the origin; nil:
	// refused with 503 (see SetDeviceChannels).
	deviceChannels DeviceChannels
	// channelWrites bounds legacy plugins' stored channel changes edge-wide
	// (nil: unbounded).
	channelWrites *rate.Limiter
	// clients: client addresses behind trusted proxies, per-network
	// limits and check-in reports (clients.go).
	clients *clients
	// answers: update answers encoded once per snapshot (answers.go).
	answers answerCache
	// expo: the Expo Updates endpoints' state (expo.go).
	expo *expoState
	// deltaCost is the device profile deltas are chosen for
	// (cfg.DeltaLink, cfg.DeltaDecodeFactor; snapshot.Bundle.DeltaFrom).
	deltaCost snapshot.DeltaCost
	// manifestCost is the device profile the edge chooses between a
	// bundle's manifest and its zip for (cfg.DeviceRTT, cfg.DeltaLink;
	// manifestchoice.go).
	manifestCost manifestCost
	// inlineMax is --inline-delta-max: the largest delta sent inside an
	// update answer (updates.go, inlineDelta).
	inlineMax int64
	// previews: the preview tokens verified (preview.go).
	previews previewCache
}

// maxSegmentBytes bounds a spool segment (and so one POST /v1/events);
// maxRecordBytes bounds one record, so that a request's events always fit
// in a segment (a larger request is split into several records).
const (
	maxSegmentBytes = 512 << 10
	maxRecordBytes  = 256 << 10
)

// maxBody is the most a transport reads of a request body. Device requests
// are held to MaxUpdatesBody by route. A child edge's segment holds at most
// maxSegmentBytes of small requests, or the records of one request, which
// are no larger than its JSON body (≤ MaxUpdatesBody) plus a few headers.
func (e *Edge) maxBody() int64 {
	return max(int64(e.cfg.MaxUpdatesBody), maxSegmentBytes) + 64<<10
}

// StartStats makes the edge accept POST /stats: events are spooled durably
// in DataDir/stats (bounded by cfg.StatsSpool) and delivered to sink.
func (e *Edge) StartStats(sink EventSink) error {
	sp, err := openSpool(spoolOptions{Dir: filepath.Join(e.cfg.DataDir, "stats"), Budget: int64(e.cfg.StatsSpool),
		MaxSegment: maxSegmentBytes, Sink: sink, Log: e.log, Metrics: e.metrics})
	if err != nil {
		return err
	}
	e.spool, e.statsSink = sp, sink
	e.startCheckIns()
	e.startExpoEvents()
	e.metrics.reg.MustRegister(spoolCollector{sp})
	return nil
}

// FlushStats waits until every accepted event has been delivered or ctx
// ends. Events still in the open segment are sealed first.
func (e *Edge) FlushStats(ctx context.Context) error {
	if e.spool == nil {
		return nil
	}
	e.flushCheckIns()
	if err := e.flushExpoEvents(ctx); err != nil {
		return err
	}
	return e.spool.flush(ctx)
}

// StatsBacklog reports the spool's undelivered segments and its bytes on
// disk.
func (e *Edge) StatsBacklog() (segments int, bytes int64) {
	if e.spool == nil {
		return 0, 0
	}
	return e.spool.backlog()
}

// New returns an edge serving from c. It is not ready (readyz, /updates)
// until SetSnapshot gives it a snapshot.
func New(cfg config.Edge, c *cache.Tiered, log *slog.Logger) *Edge {
	if log == nil {
		log = slog.Default()
	}
	e := &Edge{cfg: cfg, cache: c, log: log, metrics: newEdgeMetrics(c), changed: make(chan struct{})}
	e.answers.metrics, e.answers.fileDir = e.metrics, cfg.DataDir
	e.metrics.reg.MustRegister(answerCollector{&e.answers})
	if cfg.EdgeKey != "" {
		e.childKey = []byte(cfg.EdgeKey)
	}
	if cfg.PreviousEdgeKey != "" {
		e.prevChildKey = []byte(cfg.PreviousEdgeKey)
	}
	e.limiter = newDeviceLimiter(cfg.UpdatesPerDeviceMinute)
	e.deltaCost = snapshot.DeltaCost{LinkBitsPerSecond: float64(cfg.DeltaLink), DecodeFactor: cfg.DeltaDecodeFactor}
	e.manifestCost = newManifestCost(int64(cfg.DeviceRTT), float64(cfg.DeltaLink))
	e.inlineMax = int64(cfg.InlineDeltaMax)
	e.clients = newClients(cfg, log, e.metrics.reg)
	e.expo = newExpoState(cfg, log, e.metrics.reg)
	if cfg.LegacyChannelWrites > 0 {
		e.channelWrites = rate.NewLimiter(rate.Limit(cfg.LegacyChannelWrites), max(1, int(cfg.LegacyChannelWrites*2)))
	}
	if c != nil && !cfg.NoPrefetch {
		e.startPrefetch()
	}
	if cfg.PublicURL != "" {
		e.baseURL = []byte(config.TrimURL(cfg.PublicURL))
	}
	return e
}

// Registry exposes the edge's Prometheus metrics.
func (e *Edge) Registry() *prometheus.Registry { return e.metrics.reg }

// SetSnapshot swaps in s if it is newer than the current one and reports
// whether it did. s must be indexed and is not modified afterwards.
func (e *Edge) SetSnapshot(s *snapshot.Snapshot) bool { return e.setSnapshot(s, nil) }

// setSnapshot swaps in s and its signed encoding (nil when s came from an
// origin in this process) if s is newer than the current snapshot (by
// revision and issued time, see newerSnapshot).
func (e *Edge) setSnapshot(s *snapshot.Snapshot, wire []byte) bool {
	e.wireMu.Lock()
	defer e.wireMu.Unlock()
	if cur := e.snap.Load(); cur != nil && !newerSnapshot(s, cur) {
		return false
	}
	e.answers.swap(s) // before the snapshot: requests under s find its table
	e.snap.Store(s)
	e.wire = wire
	e.follow.swapped(s)
	close(e.changed)
	e.changed = make(chan struct{})
	e.metrics.snapshotRev.Set(float64(s.Rev))
	e.log.Debug("edge: snapshot swapped", "rev", s.Rev)
	e.prefetchCurrent(s)
	return true
}

// wireAndChanged returns the current signed snapshot (rev, bytes) and a
// channel closed at the next swap.
func (e *Edge) wireAndChanged() (int64, []byte, <-chan struct{}) {
	e.wireMu.Lock()
	defer e.wireMu.Unlock()
	var rev int64 = -1
	if s := e.snap.Load(); s != nil {
		rev = s.Rev
	}
	return rev, e.wire, e.changed
}

// Snapshot returns the current snapshot, or nil before the first one.
func (e *Edge) Snapshot() *snapshot.Snapshot { return e.snap.Load() }

// reply describes an answer independently of the transport that writes it.
type reply struct {
	status      int
	contentType string
	body        []byte // small answers; reused between requests
	scratch     []byte // reused scratch (base URL)

	data []byte // blob body from the memory tier (shared, never modified)
	// sendfile: the transport sends large data by sendfile (the device
	// front on plain TCP), and dataFile, when set, holds data for it.
	sendfile     bool
	dataFile     *answerFile
	file         *os.File // blob body, positioned at the first byte; the adapter closes it
	length       int64    // bytes of file to send
	headLength   int64    // Content-Length of a HEAD answer
	etag         string   // the blob's hash; written as the strong tag "hash"
	contentRange string
	cacheStatus  string
	immutable    bool
	acceptRanges bool
	rev          int64  // X-Updraft-Rev on snapshot answers, when > 0
	heartbeat    string // X-Updraft-Heartbeat relayed to child edges
	retryAfter   int    // seconds, on 429 answers

	req request // the request being answered (pooled with the reply)

	// stream is a body of unknown length (an Expo asset decoded on the
	// fly); the adapter sends it chunked and closes it. A Read error ends
	// the answer without its last chunk, so the client sees it fail.
	stream io.ReadCloser

	// tail follows data in the body: the delta of an update answer sent
	// inline (shared, never modified); deltaOffset, the length of data, is
	// sent as Updraft-Delta-Offset.
	tail        []byte
	deltaOffset int
	offsetText  [20]byte // deltaOffset in decimal, for the header without allocating

	contentEncoding string // dcz or dcb for a delta answer
	useAsDictionary bool   // Use-As-Dictionary on canonical archives
	vary            bool   // Vary: accept-encoding, available-dictionary
	varyEncoding    bool   // Vary: Accept-Encoding (update answers with compressed variants)

	// expoProto ('0' or '1') marks an Expo manifest answer: the protocol
	// headers go with it (expo-protocol-version, expo-sfv-version, the
	// filters and server-defined headers, Cache-Control: private,
	// max-age=0); expoSig is the expo-signature of a JSON (not multipart)
	// manifest.
	expoProto byte
	expoSig   string
}

func (r *reply) reset() {
	*r = reply{body: r.body[:0], scratch: r.scratch[:0]}
}

var okBody = []byte(`{"status":"ok"}`)

func (out *reply) ok() {
	out.status = 200
	out.contentType = contentTypeJSON
	out.body = append(out.body[:0], okBody...)
}

// eachHeader lists the reply's response headers (other than Content-Type and
// Content-Length, which adapters set with the body). Values may alias the
// reply's scratch buffer: set must copy them.
func (out *reply) eachHeader(set func(k, v string)) {
	// The device API and blobs are public: web clients (and their timing
	// APIs) may read them from any origin, as from Capgo's backend.
	set("Access-Control-Allow-Origin", "*")
	set("Timing-Allow-Origin", "*")
	if out.etag != "" {
		out.scratch = append(append(append(out.scratch[:0], '"'), out.etag...), '"')
		set("ETag", bstr(out.scratch))
	}
	if out.immutable {
		set("Cache-Control", "public, max-age=31536000, immutable")
	}
	if out.acceptRanges {
		set("Accept-Ranges", "bytes")
	}
	if out.contentRange != "" {
		set("Content-Range", out.contentRange)
	}
	if out.rev > 0 {
		set("X-Updraft-Rev", strconv.FormatInt(out.rev, 10))
	}
	if out.heartbeat != "" {
		set("X-Updraft-Heartbeat", out.heartbeat)
	}
	if out.retryAfter > 0 {
		set("Retry-After", strconv.Itoa(out.retryAfter))
	}
	if out.contentEncoding != "" {
		set("Content-Encoding", out.contentEncoding)
	}
	if out.vary {
		set("Vary", "accept-encoding, available-dictionary")
	} else if out.varyEncoding {
		set("Vary", "Accept-Encoding")
	}
	if out.useAsDictionary && out.status == 200 {
		set("Use-As-Dictionary", dictionaryMatch)
	}
	if out.cacheStatus != "" {
		set("Cache-Status", out.cacheStatus)
	}
	if out.tail != nil {
		set(DeltaOffsetHeader, bstr(strconv.AppendInt(out.offsetText[:0], int64(out.deltaOffset), 10)))
	}
	if out.expoProto != 0 {
		proto := "0"
		if out.expoProto == '1' {
			proto = "1"
		}
		set("expo-protocol-version", proto)
		set("expo-sfv-version", "0")
		// Empty dictionaries: no manifest filters, no headers to send back
		// (and whatever an earlier server stored is replaced).
		set("expo-manifest-filters", "")
		set("expo-server-defined-headers", "")
		set("Cache-Control", "private, max-age=0")
		if out.expoSig != "" {
			set("expo-signature", out.expoSig)
		}
	}
}

// now is the instant an update check is resolved at: the edge's clock, so
// that maintenance windows (snapshot.Windows) are a pure function of the
// snapshot and the time, the same at every edge.
func (e *Edge) now() time.Time {
	if e.clock != nil {
		return e.clock()
	}
	return time.Now()
}
