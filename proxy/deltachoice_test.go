package proxy

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// deltaPairSnapshot is testSnapshot with canonical archives for 1.0.0 and
// 1.1.0, and a dcb (blob dcb, 40,000 bytes, 10 ms to decode at the origin)
// and a dcz (blob dcz, 44,000 bytes, 2 ms) from 1.0.0 to 1.1.0.
func deltaPairSnapshot(tb testing.TB, dcb, dcz string) *snapshot.Snapshot {
	tb.Helper()
	s := testSnapshot(tb, 1, fakeSHA("1.1.0"))
	from, to := s.Apps[0].Bundles[0], s.Apps[0].Bundles[1]
	from.Canonical, from.CanonicalSize = fakeSHA("canonical-1.0.0"), 100_000
	to.Canonical, to.CanonicalSize = fakeSHA("canonical-1.1.0"), 100_000
	to.Deltas = []snapshot.Delta{
		{From: "1.0.0", Base: from.Canonical, Encoding: "dcb", SHA256: dcb, Size: 40_000, DecodeNs: int64(10 * time.Millisecond)},
		{From: "1.0.0", Base: from.Canonical, Encoding: "dcz", SHA256: dcz, Size: 44_000, DecodeNs: int64(2 * time.Millisecond)},
	}
	if err := s.Index(nil); err != nil {
		tb.Fatal(err)
	}
	return s
}

// The edge offers, in /updates and in RFC 9842 negotiation on /b/, the
// delta of a pair that its device profile (--delta-link,
// --delta-decode-factor) finishes first: here a dcb 4 KB smaller than the
// dcz but 8 ms slower to decode at the origin (32 ms on the device), so
// the dcz on the default 20 Mbit/s, the dcb at 256 kbit/s, and the
// smaller (dcb) with the profile off.
func TestDeltaChoiceFollowsProfile(t *testing.T) {
	for _, c := range []struct {
		name   string
		link   config.Bandwidth
		factor float64
		want   string
	}{
		{"default profile", config.DefaultDeltaLink, config.DefaultDeltaDecodeFactor, "dcz"},
		{"slow link", 256 * config.Kbit, 4, "dcb"},
		{"profile off", 0, 4, "dcb"},
	} {
		t.Run(c.name, func(t *testing.T) {
			te := startEdge(t, func(e *config.Edge) { e.DeltaLink, e.DeltaDecodeFactor, e.NoPrefetch = c.link, c.factor, true })
			s := deltaPairSnapshot(t, te.put(t, bytes.Repeat([]byte("b"), 40_000)), te.put(t, bytes.Repeat([]byte("z"), 44_000)))
			from, to := s.Apps[0].Bundles[0], s.Apps[0].Bundles[1]
			te.edge.SetSnapshot(s)

			a := te.do(t, http.MethodPost, "/updates", []byte(pluginBody))
			var offer struct {
				Version  string `json:"version"`
				Encoding string `json:"delta_encoding"`
				Size     int64  `json:"delta_size"`
			}
			if err := json.Unmarshal(a.body, &offer); err != nil || a.status != 200 || offer.Version != "1.1.0" || offer.Encoding != c.want {
				t.Fatalf("/updates: HTTP %d %s (want a %s offer)", a.status, a.body, c.want)
			}
			// Again: the cached answer carries the same choice.
			if b := te.do(t, http.MethodPost, "/updates", []byte(pluginBody)); !bytes.Equal(b.body, a.body) {
				t.Fatalf("second answer differs:\n%s\n%s", a.body, b.body)
			}

			raw, _ := hex.DecodeString(from.Canonical)
			dict := ":" + base64.StdEncoding.EncodeToString(raw) + ":"
			for _, ae := range []struct{ accept, want string }{{"gzip, br, dcb, dcz", c.want}, {"dcz", "dcz"}, {"dcb", "dcb"}} {
				b := te.do(t, http.MethodGet, "/b/"+to.Canonical, nil, "Available-Dictionary", dict, "Accept-Encoding", ae.accept)
				if got := b.header.Get("Content-Encoding"); b.status != 200 || got != ae.want {
					t.Errorf("Accept-Encoding %q: HTTP %d, Content-Encoding %q, want %q", ae.accept, b.status, got, ae.want)
				}
			}
		})
	}
}

// An update check whose answer offers a delta, chosen by the default
// profile: the choice adds no allocation to the hot path.
func BenchmarkUpdatesDelta(b *testing.B) {
	e := newCoreEdge(b, deltaPairSnapshot(b, fakeSHA("dcb"), fakeSHA("dcz")))
	body, base := []byte(pluginBody), []byte("https://edge.example.com")
	out := &reply{body: make([]byte, 0, 512)}
	e.updates(body, base, "", out)
	if out.status != 200 || !bytes.Contains(answerBody(out), []byte(`"delta_encoding":"dcz"`)) {
		b.Fatalf("HTTP %d %s, want an update with the dcz delta", out.status, answerBody(out))
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		out.reset()
		e.updates(body, base, "", out)
	}
}
