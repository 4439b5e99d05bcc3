package main

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// cluster is two origin processes on one PostgreSQL store and one S3
// bucket, and two edges, each listing both origins (in opposite orders).
type cluster struct {
	pg, blobs    string
	dataA, dataB string
	addrA, addrB string
	procA        *os.Process
	key, edgeKey string
	pub          string
	edges        []string
}

func originFlags(data, addr, pg, blobs string) []string {
	return []string{"origin", "--data", data, "--listen", addr, "--store", pg, "--blobs", blobs,
		"--job-stale-after", "3s", "--log-level", "info"}
}

// readEither returns the first of the files that exists: of two origins
// starting at once on an empty store, either may generate a key.
func readEither(t *testing.T, paths ...string) string {
	t.Helper()
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	t.Fatalf("none of %v exists", paths)
	return ""
}

// startCluster starts the cluster; each edge's upstream list is given with
// A and B standing for the origins (default: "A,B" and "B,A").
func startCluster(t *testing.T, edgeUpstreams ...string) *cluster {
	t.Helper()
	pg := testenv.PostgresURL(t)
	s3 := testenv.Seaweed(t)
	s3.SetEnv(t) // the children inherit the credentials
	c := &cluster{pg: pg, blobs: s3.URL(s3.Prefix()), dataA: t.TempDir(), dataB: t.TempDir(), addrA: freePort(t), addrB: freePort(t)}
	// Both start at once on an empty database: migrations, keys and the
	// shared signing key must come out right anyway.
	c.procA = startChild(t, originFlags(c.dataA, c.addrA, c.pg, c.blobs)...).Process
	startChild(t, originFlags(c.dataB, c.addrB, c.pg, c.blobs)...)
	waitHTTP(t, "http://"+c.addrA+"/healthz")
	waitHTTP(t, "http://"+c.addrB+"/healthz")
	c.key = readEither(t, config.APIKeyFile(c.dataA), config.APIKeyFile(c.dataB))
	c.edgeKey = readEither(t, config.EdgeKeyFile(c.dataA), config.EdgeKeyFile(c.dataB))
	ka, _ := origin.LoadSigningKeyFile(config.SigningKeyFile(c.dataA))
	kb, _ := origin.LoadSigningKeyFile(config.SigningKeyFile(c.dataB))
	if ka == nil || !ka.Equal(kb) {
		t.Fatal("the two origins sign with different keys")
	}
	c.pub = origin.EncodePublicKey(ka.Public().(ed25519.PublicKey))
	keyFile := filepath.Join(t.TempDir(), "edge-key")
	os.WriteFile(keyFile, []byte(c.edgeKey+"\n"), 0o600)
	if len(edgeUpstreams) == 0 {
		edgeUpstreams = []string{"A,B", "B,A"}
	}
	for i, list := range edgeUpstreams {
		ups := strings.NewReplacer("A", "http://"+c.addrA, "B", "http://"+c.addrB).Replace(list)
		addr := freePort(t)
		startChild(t, "edge", "--upstream", ups, "--origin-pubkey", c.pub, "--edge-key-file", keyFile,
			"--data", filepath.Join(t.TempDir(), fmt.Sprintf("edge-%d", i)), "--listen", addr,
			"--primary-probe-interval", "500ms", "--log-level", "warn")
		waitHTTP(t, "http://"+addr+"/healthz")
		c.edges = append(c.edges, addr)
	}
	return c
}

func (c *cluster) client(addr string) *client.Client {
	return client.New("http://"+addr, c.key)
}

// snapshotAt fetches an origin's current signed snapshot.
func (c *cluster) snapshotAt(t *testing.T, addr string) *snapshot.Snapshot {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/v1/snapshot", nil)
	req.Header.Set("Authorization", "Bearer "+c.edgeKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	pub, _ := origin.LoadSigningKeyFile(config.SigningKeyFile(c.dataA))
	snap, err := snapshot.DecodeDocument(b, pub.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatalf("snapshot from %s: %v", addr, err)
	}
	return snap
}

// TestTwoOriginsKillOne runs two origins on one PostgreSQL store and S3
// bucket, with two edges following both, under operator writes through
// both origins, an upload and device events; then kills one origin with
// SIGKILL. Edges keep converging through the survivor, no acknowledged
// write, bundle or event is lost or counted twice, the interrupted bundle
// build and the cluster-wide work (guard, retention) resume on the
// survivor.
func TestTwoOriginsKillOne(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, SeaweedFS, two origins and two edges")
	}
	c := startCluster(t)
	ctx := context.Background()
	const app = "com.example.cluster"
	ca, cb := c.client(c.addrA), c.client(c.addrB)
	if _, err := ca.CreateApp(ctx, app, "Cluster"); err != nil {
		t.Fatal(err)
	}
	// Written through B, read through A: one store.
	if _, err := cb.UploadPath(ctx, app, "1.0.1", fixture(t, "swagger-ui-5.34.0.zip"), client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.SetChannel(ctx, app, "production", store.ChannelPatch{Bundle: ptrTo("1.0.1"), Public: ptrTo(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.SetChannel(ctx, app, "beta", store.ChannelPatch{Bundle: ptrTo("1.0.1")}); err != nil {
		t.Fatal(err)
	}
	// Both origins publish the same content under the same revision, with
	// the same issued time (the store's), so that each one's heartbeats
	// vouch for the other's copy at an edge that fails over.
	eventually(t, 30*time.Second, "both origins at one revision", func() bool {
		return c.snapshotAt(t, c.addrA).Rev == c.snapshotAt(t, c.addrB).Rev
	})
	sa, sb := c.snapshotAt(t, c.addrA), c.snapshotAt(t, c.addrB)
	if sa.Rev == sb.Rev && !reflect.DeepEqual(sa, sb) {
		t.Fatalf("rev %d differs between the origins:\n%+v\n%+v", sa.Rev, sa, sb)
	}
	var lastAnswer atomic.Value
	defer func() {
		if t.Failed() {
			t.Logf("last update answer: %v", lastAnswer.Load())
		}
	}()
	dev := func(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i) }
	checkVersion := func(edge, want string) bool {
		code, body := post(t, "http://"+edge+"/updates", "POST", strings.Replace(device(dev(1), "1.0.0", ""), "com.example.app", app, 1))
		ok := code == 200 && strings.Contains(body, `"version":"`+want+`"`)
		if !ok {
			lastAnswer.Store(fmt.Sprintf("%s: HTTP %d %s", edge, code, body))
		}
		return ok
	}
	for _, e := range c.edges {
		eventually(t, 30*time.Second, "edge "+e+" serves 1.0.1", func() bool { return checkVersion(e, "1.0.1") })
	}

	// Load: operators pin devices to beta through both origins (each
	// acknowledged pin recorded), devices report events through both
	// edges (each accepted event tallied).
	var stop atomic.Bool
	var wg sync.WaitGroup
	var pinsMu sync.Mutex
	var pins []string
	var pinNo atomic.Int64
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			cl := []*client.Client{ca, cb}[w]
			for i := 0; i < 10000 && !stop.Load(); i++ {
				d := dev(1000 + int(pinNo.Add(1)))
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := cl.SetOverrides(rctx, app, "beta", []string{d})
				cancel()
				if err == nil {
					pinsMu.Lock()
					pins = append(pins, d)
					pinsMu.Unlock()
				}
				time.Sleep(20 * time.Millisecond)
			}
		}(w)
	}
	acc := &tally{n: map[[2]string]int64{}}
	hc := &http.Client{Timeout: 10 * time.Second}
	var sendErrs atomic.Int64
	var lastErr atomic.Value
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 13))
			for i := 0; i < 100000 && !stop.Load(); i++ {
				batch := make([]map[string]any, 1+rng.IntN(40))
				for j := range batch {
					batch[j], _, _ = fleetEvent(rng, app, []string{"1.0.1"}) // a version the edges know from the start
				}
				if _, err := sendBatch(hc, c.edges[(w+i)%2], batch, acc); err != nil {
					sendErrs.Add(1)
					lastErr.Store(err.Error())
				}
				time.Sleep(time.Duration(10+rng.IntN(20)) * time.Millisecond)
			}
		}(w)
	}

	// An upload through A, then A is killed while its build runs (the
	// build takes seconds on this bundle): the build must finish on B.
	time.Sleep(time.Second)
	b2, err := ca.UploadPath(ctx, app, "1.0.2", fixture(t, "swagger-ui-5.34.1.zip"), client.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.procA.Signal(syscall.SIGKILL)
	killedAt := time.Now()
	pinsMu.Lock()
	pinned := len(pins)
	pinsMu.Unlock()
	t.Logf("origin A killed (%d pins acknowledged, %d events accepted so far)", pinned, acc.total.Load())

	// Through the survivor: production moves to 1.0.2, both edges follow
	// (edge 0 listed A first and must fail over).
	if _, err := cb.SetChannel(ctx, app, "production", store.ChannelPatch{Bundle: ptrTo("1.0.2")}); err != nil {
		t.Fatal(err)
	}
	for _, e := range c.edges {
		eventually(t, 60*time.Second, "edge "+e+" serves 1.0.2 through B", func() bool { return checkVersion(e, "1.0.2") })
	}
	t.Logf("both edges serve 1.0.2 %v after the kill", time.Since(killedAt).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	stop.Store(true)
	wg.Wait()

	// The interrupted build resumes on B: deltas from 1.0.1 exist.
	eventually(t, testenv.Patience(3*time.Minute), "the build of 1.0.2 finished on B", func() bool {
		bs, err := cb.ListBundles(ctx, app)
		if err != nil {
			return false
		}
		for _, b := range bs {
			if b.Version == "1.0.2" && b.Canonical != "" && len(b.Deltas) > 0 {
				return true
			}
		}
		return false
	})
	// The bundle (acknowledged before the kill) downloads through both
	// edges, byte-exact.
	for _, e := range c.edges {
		resp, err := http.Get("http://" + e + "/b/" + b2.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		sum := sha256.Sum256(body)
		if resp.StatusCode != 200 || hex.EncodeToString(sum[:]) != b2.SHA256 {
			t.Fatalf("edge %s: bundle 1.0.2: HTTP %d, sha %x", e, resp.StatusCode, sum)
		}
	}
	// Every acknowledged pin is there.
	have := map[string]bool{}
	for after := ""; ; {
		page, err := cb.ListOverrides(ctx, app, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page {
			have[o.DeviceID] = o.Channel == "beta"
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].DeviceID
	}
	for _, d := range pins {
		if !have[d] {
			t.Fatalf("acknowledged pin of %s lost (%d acknowledged, %d stored)", d, len(pins), len(have))
		}
	}
	// Every accepted event is counted once.
	if n := sendErrs.Load(); n > 0 {
		t.Fatalf("%d event batches refused by the edges; last: %v", n, lastErr.Load())
	}
	for _, e := range c.edges {
		eventually(t, 60*time.Second, "edge "+e+" spool drained", func() bool {
			b, err := metricValue("http://"+e+"/metrics", "updraft_edge_stats_spool_bytes")
			return err == nil && b == 0
		})
	}
	total := acc.total.Load()
	rep, err := cb.Stats(ctx, app, url.Values{"from": {strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != total {
		t.Fatalf("the store counts %d events; the edges accepted %d", rep.Events, total)
	}
	// The cluster-wide work runs on the survivor.
	for _, lease := range []string{"guard", "retention", "blob-gc", "preview-expiry", "cohorts"} {
		eventually(t, 30*time.Second, "B holds the "+lease+" lease", func() bool {
			v, err := metricValue("http://"+c.addrB+"/metrics", `updraft_origin_lease_held{lease="`+lease+`"}`)
			return err == nil && v == 1
		})
	}
	t.Logf("%d pins, %d events, %d pins via each origin on average; all accounted for", len(pins), total, len(pins)/2)
}

// TestClusterPropagation measures how fast a change written on origin A
// reaches a device at an edge that follows only origin B (A's commit →
// PostgreSQL NOTIFY → B publishes → the edge's long-poll answers): 300
// channel changes, each timed from the API call to the edge answering the
// new bundle. The figures go to bench/RESULTS.md (bench/cluster.sh runs
// this); the test fails only when a change does not arrive at all.
func TestClusterPropagation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, SeaweedFS, two origins and an edge")
	}
	c := startCluster(t, "B")
	ctx := context.Background()
	const app = "com.example.propagation"
	ca := c.client(c.addrA)
	if _, err := ca.CreateApp(ctx, app, "Propagation"); err != nil {
		t.Fatal(err)
	}
	for i, f := range []string{"swagger-ui-5.34.0.zip", "swagger-ui-5.34.1.zip"} {
		if _, err := ca.UploadPath(ctx, app, fmt.Sprintf("1.0.%d", i+1), fixture(t, f), client.UploadOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Background work settled first: the bundles' builds (brotli, deltas)
	// would otherwise share the two cores with what is measured.
	eventually(t, testenv.Patience(3*time.Minute), "the builds finished", func() bool {
		bs, err := ca.ListBundles(ctx, app)
		return err == nil && len(bs) == 2 && len(bs[0].Deltas) > 0
	})
	body := strings.Replace(device("00000000-0000-4000-8000-000000000001", "1.0.0", ""), "com.example.app", app, 1)
	client := &http.Client{Timeout: 10 * time.Second}
	answers := func(want string) bool {
		resp, err := client.Post("http://"+c.edges[0]+"/updates", "application/json", strings.NewReader(body))
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200 && strings.Contains(string(b), `"version":"`+want+`"`)
	}
	var took []time.Duration
	for i := 0; i < 300; i++ {
		want := fmt.Sprintf("1.0.%d", i%2+1)
		start := time.Now()
		if _, err := ca.SetChannel(ctx, app, "production", store.ChannelPatch{Bundle: ptrTo(want), Public: ptrTo(true)}); err != nil {
			t.Fatal(err)
		}
		for !answers(want) {
			if time.Since(start) > 30*time.Second {
				t.Fatalf("change %d (production → %s on origin A) never reached the edge on origin B", i, want)
			}
			time.Sleep(time.Millisecond)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	t.Logf("propagation, write on origin A → edge following origin B, %d changes: p50 %v, p99 %v, max %v",
		len(took), took[len(took)/2].Round(100*time.Microsecond), took[len(took)*99/100].Round(100*time.Microsecond), took[len(took)-1].Round(100*time.Microsecond))
}

func ptrTo[T any](v T) *T { return &v }
