package proxy

import (
	"crypto/ed25519"
	"crypto/rand"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// Finding 2 of issue 15, third cause: a snapshot whose override shards the
// edge cannot fetch is refused (shard_unavailable) and re-polled with the
// same capped backoff as a bad signature, logged once, and /readyz and the
// state metric say why. Before the fix every refusal re-polled at once.
func TestReplicaBacksOffOnUnfetchableShard(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	hashes, _, _ := snapshot.ShardOverrides(map[[16]byte]string{{1}: "production"})
	s := &snapshot.Snapshot{Rev: 2, Apps: []*snapshot.App{{ID: "com.example.app", OverrideShards: hashes}}}
	wire, err := snapshot.Encode(s, priv)
	if err != nil {
		t.Fatal(err)
	}
	u := startUpstream(t)
	u.serve(wire, nil)
	// The edge has no blob cache: no shard can be fetched.
	e, r, logs := replicaEdge(t, u, nil, pub)
	if err := r.Accept(signedAt(t, 1, time.Now().Add(-time.Minute), priv), false); err != nil {
		t.Fatal(err)
	}
	logged := len(logs.lines("replica:"))
	start := time.Now()
	runReplica(t, r)
	time.Sleep(3*time.Second - time.Since(start))
	polls := u.polls.Load()
	if polls > 10 || polls < 2 {
		t.Fatalf("%d polls of a snapshot with an unfetchable shard in 3s, want 2..10 (capped exponential backoff)", polls)
	}
	if got := testutil.ToFloat64(e.metrics.refusals.WithLabelValues("shard_unavailable")); got < float64(polls)-1 {
		t.Fatalf("refusals{shard_unavailable} = %v after %d polls: %q", got, polls, logs.lines("replica:"))
	}
	if n := len(logs.lines("replica:")) - logged; n != 1 {
		t.Fatalf("%d replica log lines, want 1: %q", n, logs.lines("replica:"))
	}
	if code, m := readyz(t, e); code != 200 || m["rev"] != 1.0 || m["following"] != false || m["reason"] != "shard_unavailable" {
		t.Fatalf("readyz: %d %v", code, m)
	}
	if testutil.ToFloat64(e.follow.reasonGauge.WithLabelValues("shard_unavailable")) != 1 {
		t.Fatal("updraft_edge_replica_reason does not say shard_unavailable")
	}
}

// FuzzForwardedFor: X-Forwarded-For is outside input (the client writes
// its left part). Whatever the header lines, the scan never panics and the
// client it finds is the peer or an address written in the header; when it
// is not the peer, every address right of it was a trusted proxy.
func FuzzForwardedFor(f *testing.F) {
	for _, s := range []string{"", "203.0.113.9", "198.51.100.1, 203.0.113.9", "1.2.3.4, 10.0.0.1 ,, ",
		"[2001:db8::1]:443", "203.0.113.9:4711", "junk, 10.9.9.9", "fe80::1%eth0", "::ffff:1.2.3.4", ",,,", "10.0.0.5, 10.1.1.1"} {
		f.Add(s, "10.1.2.3")
	}
	c := &clients{trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}}
	peer := netip.MustParseAddr("127.0.0.1")
	f.Fuzz(func(t *testing.T, first, second string) {
		lines := []string{first, second}
		s := forwardedScan{c: c, client: peer}
		for i := len(lines) - 1; i >= 0 && !s.done; i-- {
			s.line(lines[i])
		}
		if s.client == peer {
			return
		}
		// The entries, right to left, as the scan walks them.
		var entries []string
		for i := len(lines) - 1; i >= 0; i-- {
			parts := strings.Split(lines[i], ",")
			for j := len(parts) - 1; j >= 0; j-- {
				if p := strings.TrimSpace(parts[j]); p != "" {
					entries = append(entries, p)
				}
			}
		}
		for _, en := range entries {
			a, ok := parseForwardedAddr(en)
			if !ok {
				t.Fatalf("%q: client %s found past an unparsable entry %q", lines, s.client, en)
			}
			if a == s.client {
				return
			}
			if !c.trustedPeer(a) {
				t.Fatalf("%q: client %s, but %s right of it is not a trusted proxy", lines, s.client, a)
			}
		}
		t.Fatalf("%q: client %s is neither the peer nor in the header", lines, s.client)
	})
}
