package proxy

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/updraft-cdn/updraft/cache"
	"github.com/updraft-cdn/updraft/config"
	blobfs "github.com/updraft-cdn/updraft/origin/blob/fs"
)

// memoryEdge is an edge whose cache has a memory tier, filled from a blob
// store holding data.
func memoryEdge(tb testing.TB, data []byte) (*Edge, string) {
	tb.Helper()
	fs, err := blobfs.Open(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	info, err := fs.Put(bytes.NewReader(data), 0)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := cache.New(cache.Options{Dir: tb.TempDir(), Upstream: LocalUpstream{Blobs: fs}, Log: quiet, MemoryBudget: 64 << 20})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := config.NewEdge(tb.TempDir())
	cfg.NoPrefetch = true
	e := New(cfg, c, quiet)
	tb.Cleanup(e.Close)
	return e, info.SHA256
}

func TestBlobFromMemoryTier(t *testing.T) {
	data := randomBytes(t, 200<<10)
	e, sha := memoryEdge(t, data)
	for i, want := range []string{"updraft; fwd=miss; stored", "updraft; hit; detail=memory"} {
		var out reply
		e.blob(context.Background(), &blobRequest{id: sha, rangeHdr: "bytes=100-199"}, &out)
		if out.status != 206 || out.cacheStatus != want || !bytes.Equal(out.data, data[100:200]) || out.file != nil {
			t.Fatalf("GET %d: status %d, Cache-Status %q, %d bytes", i, out.status, out.cacheStatus, len(out.data))
		}
	}
}

func TestPrefetchOnSnapshot(t *testing.T) {
	fs, _ := blobfs.Open(t.TempDir())
	zip := readZip(t)
	info, _ := fs.Put(bytes.NewReader(zip), 0)
	c, _ := cache.New(cache.Options{Dir: t.TempDir(), Upstream: LocalUpstream{Blobs: fs}, Log: quiet, MemoryBudget: 64 << 20})
	e := New(config.NewEdge(t.TempDir()), c, quiet)
	defer e.Close()
	e.SetSnapshot(testSnapshot(t, 1, info.SHA256))
	deadline := time.Now().Add(5 * time.Second)
	for !c.Has(info.SHA256) {
		if time.Now().After(deadline) {
			t.Fatal("current bundle not prefetched within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The snapshot's channels use three distinct bundles (two of them not
	// in the blob store): each is prefetched once, only the zip is stored.
	deadline = time.Now().Add(5 * time.Second)
	for c.Stats().Prefetches < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s := c.Stats(); s.Prefetches != 3 || s.Coalesced != 0 || s.BytesFilled != uint64(len(zip)) {
		t.Fatalf("stats %+v", s)
	}
	var out reply
	e.blob(context.Background(), &blobRequest{id: info.SHA256}, &out)
	if out.cacheStatus != "updraft; hit; detail=memory" {
		t.Fatalf("first device request after prefetch: %q", out.cacheStatus)
	}
}

// BenchmarkBlobHitHTTP1 measures a memory-tier hit through fasthttp over an
// in-memory listener (client and server in this process).
func BenchmarkBlobHitHTTP1(b *testing.B) {
	for _, size := range []int{64 << 10, 5 << 20} {
		b.Run(strconv.Itoa(size>>10)+"KiB", func(b *testing.B) {
			e, sha := memoryEdge(b, randomBytes(b, size))
			client := inMemoryHTTP1(b, e)
			client.MaxResponseBodySize = 16 << 20
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://edge.example.com/b/" + sha)
			for i := 0; i < 2; i++ { // fill, then hit
				if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 || len(resp.Body()) != size {
					b.Fatalf("GET: %v HTTP %d", err, resp.StatusCode())
				}
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := client.Do(req, resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// 0-RTT data can be replayed: route accepts only GET and HEAD early.
func TestEarlyDataOnlyForReads(t *testing.T) {
	e, sha := memoryEdge(t, randomBytes(t, 1000))
	e.SetSnapshot(testSnapshot(t, 1, sha))
	for _, c := range []struct {
		method, path string
		want         int
	}{{"GET", "/b/" + sha, 200}, {"HEAD", "/b/" + sha, 200}, {"POST", "/updates", 425}, {"PUT", "/channel_self", 425}, {"POST", "/channel_self", 425}} {
		var out reply
		r := request{ctx: context.Background(), method: c.method, path: c.path, host: "edge", proto: "h3", early: true,
			body: []byte(pluginBody), header: httpHeaders{}, query: urlQuery{}}
		e.route(&r, &out)
		if out.status != c.want {
			t.Errorf("early %s %s: HTTP %d, want %d", c.method, c.path, out.status, c.want)
		}
		if out.file != nil {
			out.file.Close()
		}
	}
}

// With a snapshot, devices get only the blobs it lists; anything else is a
// 404 without an upstream fetch.
func TestOnlyListedBlobsForDevices(t *testing.T) {
	e, other := memoryEdge(t, randomBytes(t, 1000))
	e.SetSnapshot(testSnapshot(t, 1, fakeSHA("listed"))) // lists other bundles, not the one upstream holds
	var out reply
	e.blob(context.Background(), &blobRequest{id: other}, &out)
	if out.status != 404 {
		t.Fatalf("unlisted blob: HTTP %d", out.status)
	}
	if s := e.cache.Stats(); s.Fills != 0 {
		t.Fatalf("unlisted blob caused %d upstream fetches", s.Fills)
	}
	out = reply{}
	e.blob(context.Background(), &blobRequest{id: other, child: true}, &out)
	if out.status != 200 {
		t.Fatalf("child edge: HTTP %d", out.status)
	}
	if out.file != nil {
		out.file.Close()
	}
}

func TestDeviceLimiter(t *testing.T) {
	l := newDeviceLimiter(60) // 1 per second, bursts of 30
	var a, b [16]byte
	b[0] = 1
	now := time.Now()
	for i := 0; i < 30; i++ {
		if ok, _ := l.allow(a, now); !ok {
			t.Fatalf("check %d refused inside the burst", i)
		}
	}
	ok, wait := l.allow(a, now)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("31st check: %v, retry after %v", ok, wait)
	}
	if ok, _ := l.allow(b, now); !ok {
		t.Fatal("another device was limited")
	}
	if ok, _ := l.allow(a, now.Add(time.Second)); !ok {
		t.Fatal("a token did not come back after a second")
	}
	if newDeviceLimiter(0) != nil {
		t.Fatal("0 should mean no limiter")
	}
}

// Over HTTP: the check past the budget is a 429 with
// Retry-After and Capgo's body, which the plugin honours.
func TestUpdatesRateLimited(t *testing.T) {
	te := startEdge(t, func(c *config.Edge) { c.UpdatesPerDeviceMinute = 10 }) // bursts of 5
	te.edge.SetSnapshot(testSnapshot(t, 1, fakeSHA("bundle")))
	var last answer
	for i := 0; i < 6; i++ {
		last = te.do(t, "POST", "/updates", []byte(pluginBody))
	}
	if last.status != 429 || last.header.Get("Retry-After") == "" || !bytes.Contains(last.body, []byte(`"error":"too_many_requests"`)) {
		t.Fatalf("6th check: HTTP %d %s (Retry-After %q)", last.status, last.body, last.header.Get("Retry-After"))
	}
}
