package proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
)

const immutable = "public, max-age=31536000, immutable"

// edgeWithBlobs starts an edge whose upstream holds 300 KiB of random bytes
// and the swagger-ui zip.
func edgeWithBlobs(t *testing.T) (te *testEdge, blobs map[string][]byte) {
	t.Helper()
	te = startEdge(t, nil)
	blobs = map[string][]byte{}
	for _, b := range [][]byte{randomBytes(t, 300<<10), readZip(t)} {
		blobs[te.put(t, b)] = b
	}
	return te, blobs
}

func TestBlobGet(t *testing.T) {
	te, blobs := edgeWithBlobs(t)
	for sha, data := range blobs {
		for i, cacheStatus := range []string{"updraft; fwd=miss; stored", "updraft; hit; detail=disk"} {
			a := te.do(t, "GET", "/b/"+sha, nil)
			if a.status != 200 {
				t.Fatalf("GET #%d: HTTP %d %s", i+1, a.status, a.body)
			}
			sum := sha256.Sum256(a.body)
			if !bytes.Equal(a.body, data) || hex.EncodeToString(sum[:]) != sha {
				t.Fatalf("GET #%d: %d bytes hashing to %x, want %d bytes hashing to %s", i+1, len(a.body), sum, len(data), sha)
			}
			for k, want := range map[string]string{
				"ETag":           `"` + sha + `"`,
				"Cache-Control":  immutable,
				"Accept-Ranges":  "bytes",
				"Content-Type":   "application/octet-stream",
				"Content-Length": strconv.Itoa(len(data)),
				"Cache-Status":   cacheStatus,
			} {
				if got := a.header.Get(k); got != want {
					t.Errorf("GET #%d: %s = %q, want %q", i+1, k, got, want)
				}
			}
			if a.header.Get("Content-Range") != "" {
				t.Errorf("GET #%d: Content-Range %q on a full answer", i+1, a.header.Get("Content-Range"))
			}
		}
	}
}

func TestBlobHead(t *testing.T) {
	te, blobs := edgeWithBlobs(t)
	for sha, data := range blobs {
		for _, tc := range []struct {
			rng    string
			status int
			length int
		}{
			{"", 200, len(data)},
			{"bytes=0-99", 206, 100},
			{"bytes=-1", 206, 1},
		} {
			a := te.do(t, "HEAD", "/b/"+sha, nil, "Range", tc.rng)
			if a.status != tc.status || len(a.body) != 0 {
				t.Fatalf("HEAD Range %q: HTTP %d with %d body bytes, want %d and none", tc.rng, a.status, len(a.body), tc.status)
			}
			if got := a.header.Get("Content-Length"); got != strconv.Itoa(tc.length) {
				t.Errorf("HEAD Range %q: Content-Length %q, want %d", tc.rng, got, tc.length)
			}
			if a.header.Get("ETag") != `"`+sha+`"` || a.header.Get("Cache-Control") != immutable {
				t.Errorf("HEAD Range %q: ETag %q Cache-Control %q", tc.rng, a.header.Get("ETag"), a.header.Get("Cache-Control"))
			}
		}
		// The connection is still usable: HEAD did not leave a body behind.
		if a := te.do(t, "GET", "/b/"+sha, nil); !bytes.Equal(a.body, data) {
			t.Fatalf("GET after HEAD: %d bytes, want %d", len(a.body), len(data))
		}
	}
}

func TestBlobIfNoneMatch(t *testing.T) {
	te, blobs := edgeWithBlobs(t)
	var sha string
	for sha = range blobs {
		break
	}
	other := fakeSHA("other")
	for _, tc := range []struct {
		header string
		status int
	}{
		{`"` + sha + `"`, 304},
		{`W/"` + sha + `"`, 304},
		{`"` + other + `", "` + sha + `"`, 304},
		{`*`, 304},
		{`"` + other + `"`, 200},
		{sha, 200}, // not a quoted entity tag
	} {
		a := te.do(t, "GET", "/b/"+sha, nil, "If-None-Match", tc.header)
		if a.status != tc.status {
			t.Errorf("If-None-Match %s: HTTP %d, want %d", tc.header, a.status, tc.status)
			continue
		}
		if tc.status == 304 {
			if len(a.body) != 0 || a.header.Get("ETag") != `"`+sha+`"` || a.header.Get("Cache-Control") != immutable {
				t.Errorf("If-None-Match %s: 304 with %d body bytes, ETag %q, Cache-Control %q",
					tc.header, len(a.body), a.header.Get("ETag"), a.header.Get("Cache-Control"))
			}
		} else if !bytes.Equal(a.body, blobs[sha]) {
			t.Errorf("If-None-Match %s: 200 with %d bytes, want %d", tc.header, len(a.body), len(blobs[sha]))
		}
	}
}

func TestBlobRange(t *testing.T) {
	te := startEdge(t, nil)
	data := randomBytes(t, 300<<10)
	sha := te.put(t, data)
	size := int64(len(data))
	sz := strconv.FormatInt(size, 10)
	etag := `"` + sha + `"`

	tests := []struct {
		name, rng, ifRange string
		status             int
		first, last        int64  // bytes sent on 200/206
		code               string // on 416
	}{
		{name: "first 100", rng: "bytes=0-99", status: 206, first: 0, last: 99},
		{name: "open-ended", rng: "bytes=100-", status: 206, first: 100, last: size - 1},
		{name: "suffix", rng: "bytes=-50", status: 206, first: size - 50, last: size - 1},
		{name: "suffix larger than blob", rng: "bytes=-999999999", status: 206, first: 0, last: size - 1},
		{name: "end clamped", rng: "bytes=0-999999999", status: 206, first: 0, last: size - 1},
		{name: "last byte", rng: "bytes=" + strconv.FormatInt(size-1, 10) + "-", status: 206, first: size - 1, last: size - 1},
		{name: "middle, sendfile-sized", rng: "bytes=1000-200000", status: 206, first: 1000, last: 200000},
		{name: "If-Range match", rng: "bytes=0-99", ifRange: etag, status: 206, first: 0, last: 99},

		{name: "start at the end", rng: "bytes=" + sz + "-", status: 416, code: "range_not_satisfiable"},
		{name: "start past the end", rng: "bytes=999999999-", status: 416, code: "range_not_satisfiable"},
		{name: "empty suffix", rng: "bytes=-0", status: 416, code: "range_not_satisfiable"},
		{name: "not digits", rng: "bytes=abc", status: 416, code: "invalid_range"},
		{name: "last before first", rng: "bytes=5-2", status: 416, code: "invalid_range"},
		{name: "no numbers", rng: "bytes=-", status: 416, code: "invalid_range"},
		{name: "too many digits", rng: "bytes=0-1234567890123456789", status: 416, code: "invalid_range"},

		{name: "several ranges: whole blob", rng: "bytes=0-1,5-6", status: 200, first: 0, last: size - 1},
		{name: "If-Range mismatch: whole blob", rng: "bytes=0-99", ifRange: `"` + fakeSHA("other") + `"`, status: 200, first: 0, last: size - 1},
		{name: "If-Range weak: whole blob", rng: "bytes=0-99", ifRange: "W/" + etag, status: 200, first: 0, last: size - 1},
	}
	// One client and keep-alive throughout: a body longer or shorter than
	// its Content-Length would break the next answer on the connection.
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := []string{"Range", tc.rng}
			if tc.ifRange != "" {
				h = append(h, "If-Range", tc.ifRange)
			}
			a := te.do(t, "GET", "/b/"+sha, nil, h...)
			if a.status != tc.status {
				t.Fatalf("Range %q: HTTP %d %.200s, want %d", tc.rng, a.status, a.body, tc.status)
			}
			if tc.status == 416 {
				checkEnvelope(t, a, tc.code, "")
				if got := a.header.Get("Content-Range"); got != "bytes */"+sz {
					t.Errorf("Content-Range %q, want %q", got, "bytes */"+sz)
				}
				return
			}
			if want := data[tc.first : tc.last+1]; !bytes.Equal(a.body, want) {
				t.Fatalf("Range %q: got %d bytes, want bytes %d-%d (%d)", tc.rng, len(a.body), tc.first, tc.last, len(want))
			}
			wantCR := ""
			if tc.status == 206 {
				wantCR = "bytes " + strconv.FormatInt(tc.first, 10) + "-" + strconv.FormatInt(tc.last, 10) + "/" + sz
			}
			if got := a.header.Get("Content-Range"); got != wantCR {
				t.Errorf("Content-Range %q, want %q", got, wantCR)
			}
			if got, want := a.header.Get("Content-Length"), strconv.FormatInt(tc.last-tc.first+1, 10); got != want {
				t.Errorf("Content-Length %q, want %s", got, want)
			}
			if a.header.Get("ETag") != etag || a.header.Get("Accept-Ranges") != "bytes" {
				t.Errorf("ETag %q Accept-Ranges %q", a.header.Get("ETag"), a.header.Get("Accept-Ranges"))
			}
		})
	}
}

// TestBlobRangeUnknownUnit is finding 9 of issue 15: a Range header that is
// not in the bytes unit is ignored and the whole blob is sent with 200, as
// RFC 9110 §14.2 requires ("An origin server MUST ignore a Range header field
// that contains a range unit it does not understand"); it used to be 416.
// Range units are case-insensitive (§14.1), so "Bytes=" is a bytes range.
func TestBlobRangeUnknownUnit(t *testing.T) {
	te := startEdge(t, nil)
	data := randomBytes(t, 300<<10)
	sha := te.put(t, data)
	size := strconv.Itoa(len(data))
	for _, tc := range []struct {
		rng    string
		status int
		want   []byte
	}{
		{"items=0-10", 200, data},
		{"items=0-1", 200, data},
		{"pages=1", 200, data},
		{"bytes0-1", 200, data},         // no "=": no range unit at all
		{"=0-1", 200, data},             // empty unit
		{"byte=0-1", 200, data},         // a different unit, not a typo we guess at
		{"bytesx=0-1", 200, data},       // prefix of a longer unit
		{"bytes =0-1", 200, data},       // "bytes " is not the token bytes
		{"Bytes=0-99", 206, data[:100]}, // §14.1: units are case-insensitive
		{"BYTES=-50", 206, data[len(data)-50:]},
	} {
		for _, method := range []string{"GET", "HEAD"} {
			a := te.do(t, method, "/b/"+sha, nil, "Range", tc.rng)
			wantBody := tc.want
			if method == "HEAD" {
				wantBody = nil
			}
			if a.status != tc.status || !bytes.Equal(a.body, wantBody) {
				t.Errorf("%s Range %q: HTTP %d with %d bytes %.100s, want %d with %d bytes", method, tc.rng, a.status, len(a.body), a.body, tc.status, len(wantBody))
				continue
			}
			if got := a.header.Get("Content-Length"); got != strconv.Itoa(len(tc.want)) {
				t.Errorf("%s Range %q: Content-Length %q, want %d", method, tc.rng, got, len(tc.want))
			}
			wantCR := ""
			if tc.status == 206 {
				first := bytes.Index(data, tc.want)
				wantCR = "bytes " + strconv.Itoa(first) + "-" + strconv.Itoa(first+len(tc.want)-1) + "/" + size
			}
			if got := a.header.Get("Content-Range"); got != wantCR {
				t.Errorf("%s Range %q: Content-Range %q, want %q", method, tc.rng, got, wantCR)
			}
			if a.header.Get("ETag") != `"`+sha+`"` || a.header.Get("Accept-Ranges") != "bytes" {
				t.Errorf("%s Range %q: ETag %q Accept-Ranges %q", method, tc.rng, a.header.Get("ETag"), a.header.Get("Accept-Ranges"))
			}
		}
	}
}

// TestParseRangeAllocs: the range parser runs on every ranged download and
// allocates nothing, whatever the header.
func TestParseRangeAllocs(t *testing.T) {
	for _, h := range []string{"bytes=0-99", "Bytes=100-", "bytes=-50", "items=0-1", "bytes0-1", "bytes=abc", "bytes=0-1,5-6"} {
		if n := testing.AllocsPerRun(100, func() { parseRange(h, 300<<10) }); n != 0 {
			t.Errorf("parseRange(%q): %v allocations, want 0", h, n)
		}
	}
}

func TestBlobEmpty(t *testing.T) {
	te := startEdge(t, nil)
	sha := te.put(t, nil)
	if a := te.do(t, "GET", "/b/"+sha, nil); a.status != 200 || len(a.body) != 0 || a.header.Get("Content-Length") != "0" {
		t.Errorf("GET empty blob: HTTP %d, %d bytes, Content-Length %q", a.status, len(a.body), a.header.Get("Content-Length"))
	}
	if a := te.do(t, "HEAD", "/b/"+sha, nil); a.status != 200 || a.header.Get("Content-Length") != "0" {
		t.Errorf("HEAD empty blob: HTTP %d, Content-Length %q", a.status, a.header.Get("Content-Length"))
	}
	for _, rng := range []string{"bytes=0-", "bytes=-1"} {
		a := te.do(t, "GET", "/b/"+sha, nil, "Range", rng)
		if a.status != 416 || a.header.Get("Content-Range") != "bytes */0" {
			t.Errorf("Range %s on an empty blob: HTTP %d, Content-Range %q, want 416 bytes */0", rng, a.status, a.header.Get("Content-Range"))
		}
	}
}

func TestBlobErrors(t *testing.T) {
	te, blobs := edgeWithBlobs(t)
	var sha string
	for sha = range blobs {
		break
	}
	tests := []struct {
		name, method, path string
		status             int
		code               string
	}{
		{"not hex", "GET", "/b/" + strings.Repeat("z", 64), 400, "invalid_blob_id"},
		{"upper-case hex", "GET", "/b/" + strings.ToUpper(sha), 400, "invalid_blob_id"},
		{"63 characters", "GET", "/b/" + sha[:63], 400, "invalid_blob_id"},
		{"65 characters", "GET", "/b/" + sha + "0", 400, "invalid_blob_id"},
		{"trailing segment", "GET", "/b/" + sha + "/x", 400, "invalid_blob_id"},
		{"escaped slashes", "GET", "/b/%2Fetc%2Fpasswd", 400, "invalid_blob_id"},
		{"escaped NUL", "GET", "/b/" + sha[:63] + "%00", 400, "invalid_blob_id"},
		// fasthttp decodes and resolves dot segments before routing, so an
		// escaped ../ climbs out of /b/ and never reaches the blob store.
		{"escaped traversal", "GET", "/b/..%2F..%2Fetc%2Fpasswd", 404, "not_found"},
		{"escaped dots", "GET", "/b/%2e%2e%2fetc%2fpasswd", 404, "not_found"},
		{"unknown blob", "GET", "/b/" + fakeSHA("missing"), 404, "blob_not_found"},
		{"unknown blob, HEAD", "HEAD", "/b/" + fakeSHA("missing"), 404, ""},
		{"POST", "POST", "/b/" + sha, 405, "method_not_allowed"},
		{"PUT", "PUT", "/b/" + sha, 405, "method_not_allowed"},
		{"DELETE", "DELETE", "/b/" + sha, 405, "method_not_allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := te.do(t, tc.method, tc.path, nil)
			if a.status != tc.status {
				t.Fatalf("%s %s: HTTP %d %s, want %d", tc.method, tc.path, a.status, a.body, tc.status)
			}
			if tc.code != "" {
				checkEnvelope(t, a, tc.code, "")
			}
			if a.header.Get("ETag") != "" || a.header.Get("Cache-Control") != "" {
				t.Errorf("error answer carries ETag %q / Cache-Control %q", a.header.Get("ETag"), a.header.Get("Cache-Control"))
			}
		})
	}
	// A 404 is not remembered as the blob: once upstream has it, it is served.
	data := []byte("late arrival")
	late := te.put(t, data)
	if a := te.do(t, "GET", "/b/"+late, nil); a.status != 200 || !bytes.Equal(a.body, data) {
		t.Errorf("GET new blob: HTTP %d %q", a.status, a.body)
	}
}

// TestBlobIDTraversal calls the handler directly with ids the HTTP layer
// would have normalised away.
func TestBlobIDTraversal(t *testing.T) {
	te := startEdge(t, nil)
	for _, id := range []string{"../etc/passwd", "..", "/" + fakeSHA("x")[1:], fakeSHA("x")[:62] + "/."} {
		var out reply
		te.edge.blob(t.Context(), &blobRequest{id: id}, &out)
		if out.status != 400 || !bytes.Contains(out.body, []byte(`"error":"invalid_blob_id"`)) || out.file != nil {
			t.Errorf("blob(%q): HTTP %d %s, want 400 invalid_blob_id", id, out.status, out.body)
		}
	}
}

// TestBlobConcurrent fetches one cold blob from many clients at once: every
// reader gets the verified bytes (run with -race).
func TestBlobConcurrent(t *testing.T) {
	te := startEdge(t, nil)
	data := randomBytes(t, 300<<10)
	sha := te.put(t, data)
	const n = 16
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		go func() {
			resp, err := te.client.Get(te.base + "/b/" + sha)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			if _, err := buf.ReadFrom(resp.Body); err != nil {
				errs <- err.Error()
				return
			}
			if resp.StatusCode != 200 || !bytes.Equal(buf.Bytes(), data) {
				errs <- "HTTP " + strconv.Itoa(resp.StatusCode) + ", " + strconv.Itoa(buf.Len()) + " bytes"
				return
			}
			errs <- ""
		}()
	}
	for i := 0; i < n; i++ {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
}

// If-None-Match: * is true only for a blob that exists (RFC 9110 §13.1.2).
func TestBlobIfNoneMatchStarMissing(t *testing.T) {
	te, _ := edgeWithBlobs(t)
	missing := strings.Repeat("ab", 32)
	if a := te.do(t, "GET", "/b/"+missing, nil, "If-None-Match", "*"); a.status != 404 {
		t.Fatalf("If-None-Match * on a missing blob: HTTP %d, want 404", a.status)
	}
}
