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
	refusals       *prometheus.CounterVec
	pollErrors     prometheus.Counter
	snapshotDecode prometheus.Histogram
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
	}
	m.reg.MustRegister(m.updatesVec, m.blobsVec, m.bytesServed, m.snapshotRev, m.channelSelfVec, m.refusals, m.pollErrors, m.snapshotDecode,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if c != nil {
		m.reg.MustRegister(cacheCollector{c})
	}
	return m
}

func (m *edgeMetrics) updates(outcome string) { m.updatesVec.WithLabelValues(outcome).Inc() }
func (m *edgeMetrics) blob(outcome string)    { m.blobsVec.WithLabelValues(outcome).Inc() }
func (m *edgeMetrics) channelSelf(op, outcome string) {
	m.channelSelfVec.WithLabelValues(op, outcome).Inc()
}

// cacheCollector exports the cache's own counters at scrape time.
type cacheCollector struct{ c *cache.Tiered }

var cacheDescs = map[string]*prometheus.Desc{
	"disk_hits":       prometheus.NewDesc("updraft_cache_disk_hits_total", "Blob reads served from the disk tier.", nil, nil),
	"fills":           prometheus.NewDesc("updraft_cache_fills_total", "Upstream fetches.", nil, nil),
	"coalesced":       prometheus.NewDesc("updraft_cache_coalesced_total", "Requests that waited on another request's fill.", nil, nil),
	"not_found":       prometheus.NewDesc("updraft_cache_not_found_total", "Requests for blobs upstream does not have.", nil, nil),
	"verify_failures": prometheus.NewDesc("updraft_cache_verify_failures_total", "Blobs that failed SHA-256 verification (disk or upstream).", nil, nil),
}

func (cc cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range cacheDescs {
		ch <- d
	}
}

func (cc cacheCollector) Collect(ch chan<- prometheus.Metric) {
	s := cc.c.Stats()
	for name, v := range map[string]uint64{"disk_hits": s.DiskHits, "fills": s.Fills, "coalesced": s.Coalesced, "not_found": s.NotFound, "verify_failures": s.VerifyFailures} {
		ch <- prometheus.MustNewConstMetric(cacheDescs[name], prometheus.CounterValue, float64(v))
	}
}
