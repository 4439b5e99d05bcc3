package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/updraft-cdn/updraft/cache"
)

type edgeMetrics struct {
	reg         *prometheus.Registry
	updatesVec  *prometheus.CounterVec
	blobsVec    *prometheus.CounterVec
	bytesServed prometheus.Counter
	snapshotRev prometheus.Gauge

	channelSelfVec *prometheus.CounterVec
	protoVec       *prometheus.CounterVec
	refusals       *prometheus.CounterVec
	pollErrors     prometheus.Counter
	snapshotDecode prometheus.Histogram

	statsEvents         *prometheus.CounterVec // accepted events, by action class
	statsRequests       *prometheus.CounterVec // POST /stats answers, by outcome
	statsDropped        *prometheus.CounterVec // events not kept, by reason
	statsFsyncs         prometheus.Counter
	statsForwardErrors  prometheus.Counter
	statsForwardSeconds prometheus.Histogram
	statsForwardedBytes prometheus.Counter

	// Update answers by content coding (identity, gzip, br): count and
	// body bytes; compressions made for the answer cache.
	answers, answerBytes [3]prometheus.Counter
	answerCompressions   *prometheus.CounterVec
	// manifestOmitted: update answers to plugins that take a manifest
	// sent without it, the zip being expected faster (manifestchoice.go).
	manifestOmitted prometheus.Counter
	// inlineDeltas: update answers that carried their delta inline.
	inlineDeltas prometheus.Counter
	// h1HandOffs: HTTP/1.1 connections the device front handed to
	// fasthttp (h1fast.go).
	h1HandOffs prometheus.Counter
	// frontLoopReleases: connections moved from the device front's event
	// loops to a goroutine of their own (h1loop_linux.go).
	frontLoopReleases prometheus.Counter

	// Counters of the hot path, resolved once: update answers, requests
	// by protocol.
	updatesUpdate, requestsH1, requestsH3 prometheus.Counter
}

func newEdgeMetrics(c *cache.Tiered) *edgeMetrics {
	m := &edgeMetrics{
		reg: prometheus.NewRegistry(),
		updatesVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "updraft_edge_updates_total", Help: "Update checks answered, by outcome (update or the error code).",
		}, []string{"outcome"}),
		blobsVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "updraft_edge_blob_requests_total", Help: "Blob requests answered, by status or error code.",
		}, []string{"outcome"}),
		bytesServed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "updraft_edge_blob_bytes_served_total", Help: "Blob body bytes handed to the transport.",
		}),
		snapshotRev: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "updraft_edge_snapshot_rev", Help: "Revision of the snapshot being served.",
		}),
		protoVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "updraft_edge_requests_total", Help: "Requests by HTTP version (h1, h3).",
		}, []string{"proto"}),
		channelSelfVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "updraft_edge_channel_self_total", Help: "/channel_self answers by operation and outcome.",
		}, []string{"op", "outcome"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "updraft_edge_snapshot_refusals_total", Help: "Snapshots refused, by reason (bad_signature, malformed, format, older_rev).",
		}, []string{"reason"}),
		pollErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "updraft_edge_snapshot_poll_errors_total", Help: "Failed snapshot polls of the upstream.",
		}),
		snapshotDecode: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "updraft_edge_snapshot_decode_seconds", Help: "Time to verify, decode and index an accepted snapshot.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		statsEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "updraft_edge_stats_events_total", Help: "Device events accepted (durable in the spool), by class (ok, failure).",
		}, []string{"class"}),
		statsRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "updraft_edge_stats_requests_total", Help: "POST /stats answers, by outcome (ok or the error code).",
		}, []string{"outcome"}),
		statsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "updraft_edge_stats_dropped_total", Help: "Device events not kept, by reason (spool_full, queue_full, write_error, refused_by_origin). Events refused with a 4xx are not counted here.",
		}, []string{"reason"}),
		statsFsyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "updraft_edge_stats_spool_fsyncs_total", Help: "Group commits of the stats spool (one fsync each).",
		}),
		statsForwardErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "updraft_edge_stats_forward_errors_total", Help: "Failed deliveries of spool segments to the origin (retried).",
		}),
		statsForwardSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "updraft_edge_stats_forward_seconds", Help: "Time to deliver one spool segment to the origin.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
		}),
		statsForwardedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "updraft_edge_stats_forwarded_bytes_total", Help: "Spool bytes acknowledged by the origin.",
		}),
	}
	answersVec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "updraft_edge_update_answers_total", Help: "Update answers (new version) sent, by content coding (identity, gzip, br).",
	}, []string{"encoding"})
	answerBytesVec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "updraft_edge_update_answer_bytes_total", Help: "Body bytes of update answers (new version) sent, by content coding.",
	}, []string{"encoding"})
	for i, enc := range []string{encIdentity, encGzip, encBrotli} {
		m.answers[i], m.answerBytes[i] = answersVec.WithLabelValues(enc), answerBytesVec.WithLabelValues(enc)
	}
	m.answerCompressions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "updraft_edge_update_answer_compressions_total", Help: "Update answers compressed for the answer cache, by content coding.",
	}, []string{"encoding"})
	m.manifestOmitted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "updraft_edge_update_manifest_omitted_total",
		Help: "Update answers sent without the bundle's manifest to a plugin that takes one: for the bundle the device runs, the device profile (--device-rtt, --delta-link) expects the zip to finish first.",
	})
	m.inlineDeltas = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "updraft_edge_update_inline_deltas_total",
		Help: "Update answers that carried the offered delta inline, to a client asking with Updraft-Inline-Delta (the delta's bytes count in updraft_edge_bytes_served_total).",
	})
	m.h1HandOffs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "updraft_edge_h1_handoffs_total",
		Help: "HTTP/1.1 connections the edge's device front handed to fasthttp (a request other than a device's POST, or one it does not parse strictly).",
	})
	m.frontLoopReleases = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "updraft_edge_front_loop_releases_total",
		Help: "HTTP/1.1 connections the device front's event loops gave to a goroutine of their own: a request other than an update check, or an answer the socket could not take at once.",
	})
	m.reg.MustRegister(answersVec, answerBytesVec, m.answerCompressions, m.manifestOmitted, m.inlineDeltas, m.h1HandOffs, m.frontLoopReleases)
	m.updatesUpdate = m.updatesVec.WithLabelValues("update")
	m.requestsH1, m.requestsH3 = m.protoVec.WithLabelValues("h1"), m.protoVec.WithLabelValues("h3")
	m.reg.MustRegister(m.statsEvents, m.statsRequests, m.statsDropped, m.statsFsyncs, m.statsForwardErrors, m.statsForwardSeconds, m.statsForwardedBytes)
	m.reg.MustRegister(m.updatesVec, m.blobsVec, m.bytesServed, m.snapshotRev, m.channelSelfVec, m.protoVec, m.refusals, m.pollErrors, m.snapshotDecode,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if c != nil {
		m.reg.MustRegister(cacheCollector{c})
	}
	return m
}

func (m *edgeMetrics) updates(outcome string) {
	if outcome == "update" {
		m.updatesUpdate.Inc()
		return
	}
	m.updatesVec.WithLabelValues(outcome).Inc()
}

func (m *edgeMetrics) blob(outcome string) { m.blobsVec.WithLabelValues(outcome).Inc() }

func (m *edgeMetrics) requests(proto string) {
	switch proto {
	case "h1":
		m.requestsH1.Inc()
	case "h3":
		m.requestsH3.Inc()
	default:
		m.protoVec.WithLabelValues(proto).Inc()
	}
}

func (m *edgeMetrics) channelSelf(op, outcome string) {
	m.channelSelfVec.WithLabelValues(op, outcome).Inc()
}

// answer counts an update answer of n body bytes sent with encoding.
func (m *edgeMetrics) answer(encoding string, n int) {
	i := 0
	switch encoding {
	case encGzip:
		i = 1
	case encBrotli:
		i = 2
	}
	m.answers[i].Inc()
	m.answerBytes[i].Add(float64(n))
}

// answerCollector exports the answer cache's size at scrape time.
type answerCollector struct{ c *answerCache }

var (
	answerEntriesDesc = prometheus.NewDesc("updraft_edge_answer_cache_entries", "Update answers held encoded for the current snapshot.", nil, nil)
	answerBytesDesc   = prometheus.NewDesc("updraft_edge_answer_cache_bytes", "Bytes of the update answers held (plain and compressed).", nil, nil)
)

func (a answerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- answerEntriesDesc
	ch <- answerBytesDesc
}

func (a answerCollector) Collect(ch chan<- prometheus.Metric) {
	n, b := a.c.stats()
	ch <- prometheus.MustNewConstMetric(answerEntriesDesc, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(answerBytesDesc, prometheus.GaugeValue, float64(b))
}

// cacheCollector exports the cache's own counters at scrape time.
type cacheCollector struct{ c *cache.Tiered }

func cacheDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("updraft_cache_"+name, help, labels, nil)
}

var (
	descHits      = cacheDesc("hits_total", "Blob reads served from a tier.", "tier")
	descMisses    = cacheDesc("misses_total", "Blob reads that needed an upstream fill.")
	descFills     = cacheDesc("fills_total", "Upstream fetches.")
	descFilled    = cacheDesc("filled_bytes_total", "Bytes fetched from upstream.")
	descCoalesced = cacheDesc("coalesced_total", "Requests that shared another request's fill.")
	descNotFound  = cacheDesc("not_found_total", "Requests for blobs upstream does not have.")
	descVerify    = cacheDesc("verify_failures_total", "Blobs that failed SHA-256 verification (disk or upstream); never served.")
	descEvictions = cacheDesc("evictions_total", "Blobs evicted to stay within budget.", "tier")
	descPrefetch  = cacheDesc("prefetches_total", "Fills started before any device asked.")
	descBytes     = cacheDesc("bytes", "Bytes held.", "tier")
	descBudget    = cacheDesc("budget_bytes", "Configured budget.", "tier")
	descItems     = cacheDesc("items", "Blobs held.", "tier")
)

func (cc cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHits, descMisses, descFills, descFilled, descCoalesced, descNotFound, descVerify, descEvictions, descPrefetch, descBytes, descBudget, descItems} {
		ch <- d
	}
}

func (cc cacheCollector) Collect(ch chan<- prometheus.Metric) {
	s := cc.c.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	counter(descHits, s.MemoryHits, "memory")
	counter(descHits, s.DiskHits, "disk")
	counter(descMisses, s.Misses)
	counter(descFills, s.Fills)
	counter(descFilled, s.BytesFilled)
	counter(descCoalesced, s.Coalesced)
	counter(descNotFound, s.NotFound)
	counter(descVerify, s.VerifyFailures)
	counter(descEvictions, s.MemoryEvictions, "memory")
	counter(descEvictions, s.DiskEvictions, "disk")
	counter(descPrefetch, s.Prefetches)
	gauge(descBytes, s.MemoryBytes, "memory")
	gauge(descBytes, s.DiskBytes, "disk")
	gauge(descBudget, s.MemoryBudget, "memory")
	gauge(descBudget, s.DiskBudget, "disk")
	gauge(descItems, int64(s.MemoryItems), "memory")
	gauge(descItems, int64(s.DiskItems), "disk")
}
