package bench

import (
	"sort"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency histograms record microseconds from 1 µs to 10 minutes with three
// significant digits (HDR: bounded memory, exact enough at every percentile).
const (
	histMin = 1
	histMax = int64(10 * time.Minute / time.Microsecond)
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, 3) }

// recorder collects one phase's measurements; safe for concurrent use.
type recorder struct {
	mu       sync.Mutex
	start    time.Time
	check    *hdrhistogram.Histogram
	download *hdrhistogram.Histogram
	update   *hdrhistogram.Histogram // time to update: due time → bundle verified
	outcomes map[string]int64
	bytes    int64
	seconds  []second
	paths    map[string]*pathRecorder // capgo and expo clients: per update path (PathManifest, PathZip, PathExpo)
}

// pathRecorder collects the updates that took one path.
type pathRecorder struct {
	update, download     *hdrhistogram.Histogram
	bytes, files, reused int64
}

// second is one second of the run, for the report's time series.
type second struct {
	Checks    int64 `json:"checks"`
	Downloads int64 `json:"downloads"`
	Errors    int64 `json:"errors"`
	MaxUs     int64 `json:"max_check_us"`
}

func newRecorder(start time.Time) *recorder {
	return &recorder{start: start, check: newHist(), download: newHist(), update: newHist(), outcomes: map[string]int64{}}
}

func (r *recorder) sec(now time.Time) *second {
	i := int(now.Sub(r.start) / time.Second)
	if i < 0 {
		i = 0
	}
	for len(r.seconds) <= i {
		r.seconds = append(r.seconds, second{})
	}
	return &r.seconds[i]
}

func us(d time.Duration) int64 { return max(histMin, min(histMax, d.Microseconds())) }

// checked records an update check: its latency from when it was due and its
// outcome ("update", a Capgo error code, "http_NNN" or "transport").
func (r *recorder) checked(due, done time.Time, outcome string, failed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.check.RecordValue(us(done.Sub(due)))
	r.outcomes[outcome]++
	s := r.sec(done)
	s.Checks++
	if failed {
		s.Errors++
	}
	s.MaxUs = max(s.MaxUs, us(done.Sub(due)))
}

// downloaded records a verified download and the device's time to update.
func (r *recorder) downloaded(due, started, done time.Time, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.download.RecordValue(us(done.Sub(started)))
	r.update.RecordValue(us(done.Sub(due)))
	r.bytes += n
	r.sec(done).Downloads++
}

// updated records a verified update that took path: the download and time
// to update as downloaded does, and per path with the files downloaded and
// reused (manifest).
func (r *recorder) updated(path string, due, started, done time.Time, n int64, files, reused int) {
	r.downloaded(due, started, done, n)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.paths == nil {
		r.paths = map[string]*pathRecorder{}
	}
	p := r.paths[path]
	if p == nil {
		p = &pathRecorder{update: newHist(), download: newHist()}
		r.paths[path] = p
	}
	p.update.RecordValue(us(done.Sub(due)))
	p.download.RecordValue(us(done.Sub(started)))
	p.bytes += n
	p.files += int64(files)
	p.reused += int64(reused)
}

// pathList summarises the paths, by name.
func (r *recorder) pathList() []PathReport {
	var out []PathReport
	for name, p := range r.paths {
		out = append(out, PathReport{Path: name, TimeToUpdate: summarize(p.update), Downloads: summarize(p.download),
			BytesDown: p.bytes, FilesDownloaded: p.files, FilesReused: p.reused})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// failed records a download that did not produce verified bytes.
func (r *recorder) failed(outcome string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes[outcome]++
	r.sec(time.Now()).Errors++
}

// Percentiles summarises a histogram.
type Percentiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

func summarize(h *hdrhistogram.Histogram) Percentiles {
	ms := func(v int64) float64 { return float64(v) / 1000 }
	return Percentiles{Count: h.TotalCount(), P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)),
		P99: ms(h.ValueAtQuantile(99)), P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()), Mean: h.Mean() / 1000}
}

// Outcome is a count of one outcome.
type Outcome struct {
	Outcome string `json:"outcome"`
	Count   int64  `json:"count"`
}

func (r *recorder) outcomeList() []Outcome {
	var out []Outcome
	for k, v := range r.outcomes {
		out = append(out, Outcome{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Count > out[j].Count || out[i].Count == out[j].Count && out[i].Outcome < out[j].Outcome
	})
	return out
}
