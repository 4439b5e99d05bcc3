package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/updraft-cdn/updraft/config"
	"github.com/valyala/fasthttp"
)

// warmInlineEdge is an edge with a memory tier serving deltaPairSnapshot,
// whose offered dcz (44,000 bytes, returned) is already in memory.
func warmInlineEdge(tb testing.TB) (*testEdge, []byte) {
	tb.Helper()
	te := startEdgeMemory(tb, 64<<20, func(e *config.Edge) { e.NoPrefetch = true })
	dcz := bytes.Repeat([]byte("z"), 44_000)
	s := deltaPairSnapshot(tb, te.put(tb, bytes.Repeat([]byte("b"), 40_000)), te.put(tb, dcz))
	te.edge.SetSnapshot(s)
	g, err := te.edge.cache.Get(tb.Context(), s.Apps[0].Bundles[1].Deltas[1].SHA256)
	if err != nil {
		tb.Fatal(err)
	}
	g.Close()
	return te, dcz
}

// splitInline splits an inline-delta answer at its Updraft-Delta-Offset:
// the JSON answer and the delta's bytes.
func splitInline(t *testing.T, a answer) (offer map[string]any, delta []byte) {
	t.Helper()
	off, err := strconv.Atoi(a.header.Get(DeltaOffsetHeader))
	if err != nil || off <= 0 || off > len(a.body) {
		t.Fatalf("HTTP %d, %s %q in a %d-byte body", a.status, DeltaOffsetHeader, a.header.Get(DeltaOffsetHeader), len(a.body))
	}
	if ct := a.header.Get("Content-Type"); ct != contentTypeInlined {
		t.Fatalf("Content-Type %q, want %q", ct, contentTypeInlined)
	}
	if err := json.Unmarshal(a.body[:off], &offer); err != nil {
		t.Fatalf("answer before the offset is not JSON: %v: %q", err, a.body[:off])
	}
	return offer, a.body[off:]
}

// An Updraft-aware client asking with Updraft-Inline-Delta gets the
// offered delta inside the update answer once the delta is in the edge's
// memory tier: the JSON answer (no manifest; url still the fallback), then
// the delta's exact bytes at Updraft-Delta-Offset. Before that (a cold
// edge), and when the delta is larger than the client or
// --inline-delta-max allows, the answer is the usual JSON with delta_url.
// Over HTTP/1.1 and HTTP/3 alike.
func TestInlineDelta(t *testing.T) {
	te := startEdgeMemory(t, 64<<20, func(e *config.Edge) { e.NoPrefetch = true })
	dcbBytes, dczBytes := bytes.Repeat([]byte("b"), 40_000), bytes.Repeat([]byte("z"), 44_000)
	s := deltaPairSnapshot(t, te.put(t, dcbBytes), te.put(t, dczBytes))
	te.edge.SetSnapshot(s) // default profile: the dcz is offered (TestDeltaChoiceFollowsProfile)

	plain := func(a answer) map[string]any {
		t.Helper()
		if a.header.Get(DeltaOffsetHeader) != "" {
			t.Fatalf("inline delta where none was due: %s %s", DeltaOffsetHeader, a.header.Get(DeltaOffsetHeader))
		}
		var m map[string]any
		if err := json.Unmarshal(a.body, &m); err != nil || a.status != 200 || m["delta_url"] == nil {
			t.Fatalf("HTTP %d %q: want a JSON answer with delta_url", a.status, a.body)
		}
		return m
	}
	ask := func(max string) answer {
		return te.do(t, http.MethodPost, "/updates", []byte(pluginBody), InlineDeltaHeader, max, "Accept-Encoding", "gzip")
	}

	// Cold: the delta is in no tier yet.
	offer := plain(ask("1048576"))
	// The client fetches delta_url, which brings it into memory.
	d := te.do(t, http.MethodGet, "/b/"+offer["delta_url"].(string)[len(te.base)+3:], nil)
	if d.status != 200 || !bytes.Equal(d.body, dczBytes) {
		t.Fatalf("delta_url: HTTP %d, %d bytes", d.status, len(d.body))
	}

	a := ask("1048576")
	got, delta := splitInline(t, a)
	if !bytes.Equal(delta, dczBytes) {
		t.Fatalf("inline delta: %d bytes, want the dcz's %d", len(delta), len(dczBytes))
	}
	if got["version"] != "1.1.0" || got["delta_encoding"] != "dcz" || got["delta_size"] != float64(len(dczBytes)) || got["url"] == nil {
		t.Fatalf("inline answer %v", got)
	}
	if _, ok := got["manifest"]; ok {
		t.Fatalf("inline answer carries the manifest: %v", got)
	}
	if a.header.Get("Content-Encoding") != "" {
		t.Fatalf("inline answer encoded %q", a.header.Get("Content-Encoding"))
	}
	// Without the header, or a client taking less than the delta: JSON.
	plain(te.do(t, http.MethodPost, "/updates", []byte(pluginBody)))
	plain(ask("43999"))
	plain(ask("lots"))

	// Over HTTP/3, the same bytes.
	addr, client := serveHTTP3(t, te.edge)
	req, _ := http.NewRequest(http.MethodPost, "https://"+addr+"/updates", bytes.NewReader([]byte(pluginBody)))
	req.Header.Set(InlineDeltaHeader, "1048576")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, delta := splitInline(t, answer{resp.StatusCode, resp.Header, body}); !bytes.Equal(delta, dczBytes) {
		t.Fatalf("HTTP/3 inline delta: %d bytes", len(delta))
	}

	// --inline-delta-max below the delta: never inline.
	small := startEdgeMemory(t, 64<<20, func(e *config.Edge) { e.NoPrefetch, e.InlineDeltaMax = true, 43_999 })
	s2 := deltaPairSnapshot(t, small.put(t, dcbBytes), small.put(t, dczBytes))
	small.edge.SetSnapshot(s2)
	sha := s2.Apps[0].Bundles[1].Deltas[1].SHA256
	if d := small.do(t, http.MethodGet, "/b/"+sha, nil); d.status != 200 {
		t.Fatalf("GET the delta: HTTP %d", d.status)
	}
	if _, ok := small.edge.cache.Memory(sha); !ok {
		t.Fatal("the delta is not in the memory tier")
	}
	a = small.do(t, http.MethodPost, "/updates", []byte(pluginBody), InlineDeltaHeader, "1048576")
	if a.header.Get(DeltaOffsetHeader) != "" || !bytes.Contains(a.body, []byte(`"delta_url"`)) {
		t.Fatalf("--inline-delta-max 43999: HTTP %d %s %q", a.status, DeltaOffsetHeader, a.header.Get(DeltaOffsetHeader))
	}
}

// While the answer cache is not the resolving snapshot's (a swap under
// way), the answer is encoded into the pooled reply, whose buffer the next
// request reuses before fasthttp has streamed this one's body: no inline
// delta then (the usual JSON, with delta_url), never the reply's buffer
// as the inline answer.
func TestInlineDeltaAnswerCacheMiss(t *testing.T) {
	te, dcz := warmInlineEdge(t)
	body, base := []byte(pluginBody), []byte("https://edge.example.com")
	out := &reply{body: make([]byte, 0, 512)}
	te.edge.updatesInline(body, base, "", 1<<20, out)
	if !bytes.Equal(out.tail, dcz) {
		t.Fatalf("cached answer: %d inline bytes, want the dcz's %d", len(out.tail), len(dcz))
	}
	// The answer cache moves to another snapshot; the edge still resolves
	// against s.
	te.edge.answers.swap(deltaPairSnapshot(t, fakeSHA("x"), fakeSHA("y")))
	out.reset()
	te.edge.updatesInline(body, base, "", 1<<20, out)
	if out.tail != nil || out.status != 200 || !bytes.Contains(out.body, []byte(`"delta_url"`)) {
		t.Fatalf("answer cache miss: %d inline bytes, HTTP %d %s", len(out.tail), out.status, out.body)
	}
}

// An update check answered with its delta inline (40 KB dcz from the
// memory tier): no allocation beyond the cached answer and the shared
// delta bytes.
func BenchmarkUpdatesInlineDelta(b *testing.B) {
	te, dcz := warmInlineEdge(b)
	body, base := []byte(pluginBody), []byte("https://edge.example.com")
	out := &reply{body: make([]byte, 0, 512)}
	te.edge.updatesInline(body, base, "gzip", 1<<20, out)
	if out.status != 200 || !bytes.Equal(out.tail, dcz) {
		b.Fatalf("HTTP %d, %d inline bytes, want the dcz's %d", out.status, len(out.tail), len(dcz))
	}
	b.ReportAllocs()
	for b.Loop() {
		out.reset()
		te.edge.updatesInline(body, base, "gzip", 1<<20, out)
	}
}

// The same over HTTP/1.1 (fasthttp, in-memory listener): the answer and
// the delta are streamed from the shared bytes, without allocating.
func BenchmarkUpdatesInlineDeltaHTTP1(b *testing.B) {
	te, dcz := warmInlineEdge(b)
	client := inMemoryHTTP1(b, te.edge)
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://edge.example.com/updates")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.Set(InlineDeltaHeader, "1048576")
	req.SetBodyString(pluginBody)
	if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 || !bytes.HasSuffix(resp.Body(), dcz) {
		b.Fatalf("POST /updates: %v: HTTP %d, %d bytes", err, resp.StatusCode(), len(resp.Body()))
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(resp.Body())))
	for b.Loop() {
		if err := client.Do(req, resp); err != nil {
			b.Fatal(err)
		}
	}
}
