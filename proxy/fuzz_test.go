package proxy

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// FuzzUpdatesBody feeds arbitrary bodies to the update check: it must never
// panic, answer 200, 400 or 503 only, always with valid JSON, and a 200 is
// either an update (version + url) or a refusal (error + kind).
func FuzzUpdatesBody(f *testing.F) {
	for _, s := range []string{
		pluginBody,
		strings.Replace(pluginBody, `"version_name":"1.0.0"`, `"version_name":"builtin"`, 1),
		strings.Replace(pluginBody, `"version_name":"1.0.0"`, `"version_name":"1.1.0"`, 1),
		strings.Replace(pluginBody, `"install_source"`, `"defaultChannel":"major-guard","install_source"`, 1),
		strings.Replace(pluginBody, `"install_source"`, `"defaultChannel":"empty","install_source"`, 1),
		strings.Replace(pluginBody, `"com.example.app"`, `"com.example.other"`, 1),
		strings.Replace(pluginBody, `"version_build":"1.0.0"`, `"version_build":"v1.\u0000\"<x>\ud800"`, 1),
		strings.Replace(pluginBody, `"00009a6b`, `"00009A6B`, 1),
		strings.Replace(pluginBody, `"is_prod":true`, `"is_prod":"yes"`, 1),
		strings.Replace(pluginBody, `"platform":"android"`, `"platform":"electron"`, 1),
		`{}`, `[]`, `null`, `"x"`, `1e999`, ``, `{"device_id":1,"app_id":[]}`,
		`{"app_id":"a.b","device_id":"` + strings.Repeat("A", 40) + `"}`,
		strings.Repeat(`[`, 1000),
	} {
		f.Add([]byte(s))
	}
	e := newCoreEdge(f, testSnapshot(f, 1, fakeSHA("bundle")))
	cold := newCoreEdge(f, nil)
	base := []byte("http://x")
	f.Fuzz(func(t *testing.T, body []byte) {
		in := bytes.Clone(body)
		for _, edge := range []*Edge{e, cold} {
			out := &reply{}
			edge.updates(body, base, "gzip", out)
			if !bytes.Equal(body, in) {
				t.Fatalf("updates modified its input")
			}
			if out.contentEncoding != "" {
				t.Fatalf("small answer %q sent with Content-Encoding %s", answerBody(out), out.contentEncoding)
			}
			out.body = answerBody(out)
			switch out.status {
			case 200, 400, 503:
			default:
				t.Fatalf("HTTP %d for %q", out.status, body)
			}
			if out.contentType != contentTypeJSON || !json.Valid(out.body) {
				t.Fatalf("HTTP %d: invalid JSON answer %q (Content-Type %q) for %q", out.status, out.body, out.contentType, body)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(out.body, &m); err != nil {
				t.Fatalf("answer is not an object: %q", out.body)
			}
			_, hasVersion := m["version"]
			_, hasURL := m["url"]
			_, hasError := m["error"]
			_, hasKind := m["kind"]
			switch {
			case out.status != 200:
				if !hasError || hasKind {
					t.Fatalf("HTTP %d answer %s: want error and no kind", out.status, out.body)
				}
			case hasError:
				if !hasKind || hasURL {
					t.Fatalf("200 refusal %s: want kind and no url", out.body)
				}
			default:
				if !hasVersion || !hasURL || !bytes.HasPrefix(m["url"], []byte(`"http://x/b/`)) {
					t.Fatalf("200 answer %s: neither an update nor a refusal", out.body)
				}
			}
			if edge == cold && out.status == 200 {
				t.Fatalf("edge without a snapshot answered 200: %s", out.body)
			}
		}
	})
}

// FuzzParseRange checks that whatever the header, an accepted range lies
// inside the blob and is not empty, and that a header in any unit other than
// bytes (case-insensitive) is ignored, never refused (RFC 9110 §14.2).
func FuzzParseRange(f *testing.F) {
	for _, c := range []struct {
		h    string
		size int64
	}{
		{"bytes=0-99", 300 << 10}, {"bytes=100-", 300 << 10}, {"bytes=-50", 300 << 10},
		{"bytes=-999999999", 100}, {"bytes=0-999999999", 100}, {"bytes=100-", 100},
		{"bytes=0-", 0}, {"bytes=-0", 10}, {"bytes=5-2", 10}, {"bytes=0-1,5-6", 10},
		{"items=0-1", 10}, {"bytes=abc", 10}, {"bytes=999999999999999999-", 1 << 40},
		{"bytes=-9999999999999999999", 1 << 40}, {"bytes= 1-2", 10}, {"bytes=1--2", 10},
		{"Bytes=0-1", 10}, {"BYTES=-5", 10}, {"bytes0-1", 10}, {"=0-1", 10}, {"bytesx=0-1", 10},
	} {
		f.Add(c.h, c.size)
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		size = int64(uint64(size) % (1<<40 + 1)) // [0, 1<<40]
		start, length, res := parseRange(h, size)
		bytesUnit := len(h) > 5 && h[5] == '=' && strings.EqualFold(h[:5], "bytes")
		if !bytesUnit && res != rangeIgnored {
			t.Fatalf("parseRange(%q, %d) = result %d for a unit other than bytes, want it ignored", h, size, res)
		}
		switch res {
		case rangeOK:
			if start < 0 || length < 1 || start+length > size {
				t.Fatalf("parseRange(%q, %d) = start %d, length %d: outside the blob", h, size, start, length)
			}
		case rangeIgnored, rangeInvalid, rangeUnsatisfiable:
			if start != 0 || length != 0 {
				t.Fatalf("parseRange(%q, %d) = %d, %d with result %d", h, size, start, length, res)
			}
		default:
			t.Fatalf("parseRange(%q, %d): unknown result %d", h, size, res)
		}
	})
}

// FuzzAcceptEncoding feeds arbitrary Accept-Encoding values to the choice
// of an update answer's coding: it never panics, picks only a variant that
// exists, and a compressed one only when the header names it or "*".
func FuzzAcceptEncoding(f *testing.F) {
	for _, s := range []string{"", "gzip", "br;q=1.0, gzip;q=0.9, deflate;q=0.8", "gzip, deflate, br", "*;q=0, identity",
		"identity;q=0", "gzip;q=0.5, identity;q=0.6", "x-gzip;Q=1.000", "gzip;q=1.5", ",;=,", "br ;\tq = 0.1"} {
		f.Add(s, true, true)
	}
	f.Fuzz(func(t *testing.T, ae string, haveBr, haveGzip bool) {
		got := pickEncoding(ae, haveBr, haveGzip)
		lower := strings.ToLower(ae)
		switch got {
		case encIdentity:
		case encBrotli:
			if !haveBr || !strings.Contains(lower, "br") && !strings.Contains(ae, "*") {
				t.Fatalf("pickEncoding(%q, %v, %v) = br", ae, haveBr, haveGzip)
			}
		case encGzip:
			if !haveGzip || !strings.Contains(lower, "gzip") && !strings.Contains(ae, "*") {
				t.Fatalf("pickEncoding(%q, %v, %v) = gzip", ae, haveBr, haveGzip)
			}
		default:
			t.Fatalf("pickEncoding(%q) = %q", ae, got)
		}
	})
}

// FuzzScanFlat: whatever scanFlat reads, fastjson reads as a JSON object
// with the same known fields (kinds and bytes) and member count; the update
// check gives the same answer either way.
func FuzzScanFlat(f *testing.F) {
	for _, s := range []string{
		pluginBody, statsBody, `{}`, ` { } `, `{"app_id":null,"is_prod":false,"x":true}`,
		`{"app_id":"a","app_id":"b"}`, `{"app_id":"a\"b"}`, `{"app_id":1}`, `{"a":{}}`, `{"a":[]}`,
		`{"app_id":"x"} x`, `{"app_id":"x",}`, `{"app_id" "x"}`, `{"is_prod":truex}`, "{\"a\":\"\x01\"}",
		`{"device_id":"00009A6B-EEFE-490A-9C60-8E965132AE51","app_id":"com.example.app"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var scanned bodyFields
		if !scanFlat(body, &scanned) {
			return
		}
		var st updateState
		var out reply
		if _, code := parseBody(&st, body, &out); code != "" {
			t.Fatalf("fastjson refuses what scanFlat reads (%s): %q", code, body)
		}
		if st.fields.members != scanned.members {
			t.Fatalf("members: fastjson %d, scanFlat %d", st.fields.members, scanned.members)
		}
		for i := range scanned.f {
			a, b := st.fields.f[i], scanned.f[i]
			if a.kind != b.kind || !bytes.Equal(a.s, b.s) {
				t.Fatalf("%s: fastjson %c %q, scanFlat %c %q", fieldKeys[i], a.kind, a.s, b.kind, b.s)
			}
		}
		// The whole check, by both readers: the same request, or the same refusal.
		var stScan, stTree updateState
		var outScan, outTree reply
		codeScan := checkUpdate(&stScan, body, &outScan)
		_, codeTree := checkUpdateRequest(&stTree, body, &outTree)
		if codeScan != codeTree || outScan.status != outTree.status || !bytes.Equal(outScan.body, outTree.body) {
			t.Fatalf("check: scanFlat %q HTTP %d %.200s, fastjson %q HTTP %d %.200s", codeScan, outScan.status, outScan.body,
				codeTree, outTree.status, outTree.body)
		}
		if !reflect.DeepEqual(stScan.req, stTree.req) {
			t.Fatalf("request: scanFlat %+v, fastjson %+v", stScan.req, stTree.req)
		}
	})
}

// scanJSONString reads eight bytes at a time: every stop byte (quote,
// backslash, each control byte) and a sample of plain ones (space, a letter,
// 0x7f, UTF-8 lead and continuation bytes, 0xff), at every offset of runs
// of 0 to 24 bytes, with plain bytes after it that would match in a later
// lane, give what a byte-by-byte scan gives.
func TestScanJSONStringWords(t *testing.T) {
	ref := func(b []byte, i int) ([]byte, int, bool) {
		for j := i; j < len(b); j++ {
			switch c := b[j]; {
			case c == '"':
				return b[i:j], j + 1, true
			case c == '\\' || c < 0x20:
				return nil, 0, false
			}
		}
		return nil, 0, false
	}
	var probes []byte
	for c := range 0x20 {
		probes = append(probes, byte(c))
	}
	probes = append(probes, '"', '\\', ' ', '!', '#', 'a', '[', ']', 0x7f, 0x80, 0xc3, 0xa9, 0xff)
	for n := 0; n <= 24; n++ {
		for at := 0; at <= n; at++ {
			for _, p := range probes {
				for _, after := range []byte{'"', '\\', 0x01, 'z'} {
					b := bytes.Repeat([]byte{'x'}, n+2)
					b[0] = '{' // the scan starts after it
					if at < n {
						b[1+at] = p
					}
					b[n+1] = after
					gs, gn, gok := scanJSONString(b, 1)
					ws, wn, wok := ref(b, 1)
					if !bytes.Equal(gs, ws) || gn != wn || gok != wok {
						t.Fatalf("%q: got %q %d %v, want %q %d %v", b, gs, gn, gok, ws, wn, wok)
					}
				}
			}
		}
	}
}
