package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// FetchOptions configure a plain GET load: the same client for any server,
// so that Updraft and a peer (Caddy, nginx) are measured alike.
type FetchOptions struct {
	URL         string
	Proto       string // h3, h2 or h1
	Requests    int
	Concurrency int // parallel requests (each h3/h2 client multiplexes them on one connection)
	// Insecure skips certificate verification (loopback benchmarks against
	// development certificates only).
	Insecure bool
}

// FetchResult is what a fetch run measured.
type FetchResult struct {
	Proto     string      `json:"proto"`
	Requests  int64       `json:"requests"`
	Errors    int64       `json:"errors"`
	Bytes     int64       `json:"bytes"`
	Seconds   float64     `json:"seconds"`
	ReqPerSec float64     `json:"requests_per_sec"`
	MBPerSec  float64     `json:"mb_per_sec"`
	Latency   Percentiles `json:"latency"`
}

// Fetch runs Requests GETs of URL with Concurrency workers over one client.
func Fetch(ctx context.Context, o FetchOptions) (FetchResult, error) {
	if o.Requests <= 0 || o.Concurrency <= 0 || o.Requests > 10_000_000 {
		return FetchResult{}, errors.New("fetch: want 1..10000000 requests and a positive concurrency")
	}
	tlsConf := &tls.Config{InsecureSkipVerify: o.Insecure}
	var rt http.RoundTripper
	switch o.Proto {
	case "h3":
		t := &http3.Transport{TLSClientConfig: tlsConf}
		defer t.Close()
		rt = t
	case "h2":
		rt = &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true, MaxConnsPerHost: 1}
	case "h1":
		rt = &http.Transport{TLSClientConfig: tlsConf, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
			MaxIdleConnsPerHost: o.Concurrency}
	default:
		return FetchResult{}, fmt.Errorf("fetch: proto %q: want h3, h2 or h1", o.Proto)
	}
	client := &http.Client{Transport: rt, Timeout: 2 * time.Minute}
	hist := newHist()
	var mu sync.Mutex
	var next, bytes, errs atomic.Int64
	var wg sync.WaitGroup
	buf := make([][]byte, o.Concurrency)
	start := time.Now()
	for w := 0; w < o.Concurrency; w++ {
		buf[w] = make([]byte, 256<<10)
		wg.Add(1)
		go func(b []byte) {
			defer wg.Done()
			for next.Add(1) <= int64(o.Requests) && ctx.Err() == nil {
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.URL, nil)
				resp, err := client.Do(req)
				if err != nil {
					errs.Add(1)
					continue
				}
				n, err := io.CopyBuffer(io.Discard, resp.Body, b)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || (o.Proto == "h3" && resp.ProtoMajor != 3) {
					errs.Add(1)
					continue
				}
				bytes.Add(n)
				mu.Lock()
				hist.RecordValue(us(time.Since(t0)))
				mu.Unlock()
			}
		}(buf[w])
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	r := FetchResult{Proto: o.Proto, Requests: hist.TotalCount(), Errors: errs.Load(), Bytes: bytes.Load(), Seconds: el,
		Latency: summarize(hist)}
	r.ReqPerSec = float64(r.Requests) / el
	r.MBPerSec = float64(r.Bytes) / 1e6 / el
	return r, nil
}
