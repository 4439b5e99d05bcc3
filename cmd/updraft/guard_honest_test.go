package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/events"
)

// startTestServeWith is startTestServe with the edge configuration changed
// by mod.
func startTestServeWith(t *testing.T, data string, mod func(*config.Edge)) *running {
	t.Helper()
	oc := testOriginConfig(t, data)
	oc.Listen = "127.0.0.1:0"
	ec := config.NewEdge(filepath.Join(data, "edge-cache"))
	ec.Listen = "127.0.0.1:0"
	mod(&ec)
	r, err := startServe(context.Background(), serveOptions{origin: oc, edge: ec, log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.stop(ctx)
	})
	return r
}

// postFrom posts a device request to the edge as a load balancer listed
// in --trusted-proxies forwards it for the client at addr.
func postFrom(t *testing.T, r *running, path, addr, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+r.EdgeAddr+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", addr)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestGuardHonestFailuresPause is the other half of finding 1: devices the
// origin knew before the rollout (they checked for updates), behind many
// client networks (the edge sits behind a trusted load balancer, so each
// request's X-Forwarded-For names the device's address), fail the rollout
// bundle at 30%: the guard, with its default robustness settings, pauses
// the rollout within seconds.
func TestGuardHonestFailuresPause(t *testing.T) {
	data := t.TempDir()
	r := startTestServeWith(t, data, func(ec *config.Edge) {
		ec.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	const app = "com.example.app"
	cli(t, r, data, "app", "create", app)
	cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, "one")), "--app", app, "--version", "1.0.0", "--channel", "production")
	cli(t, r, data, "channel", "set", "production", "--app", app, "--default")
	cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, "two")), "--app", app, "--version", "1.0.1")
	cli(t, r, data, "channel", "guard", "production", "--app", app, "--threshold", "10", "--min-attempts", "50", "--min-failures", "5")
	const devices = 300
	id := func(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", i+0x1000, i) }
	// Device i sits behind its own public /24 (a phone's carrier or home).
	addr := func(i int) string { return fmt.Sprintf("81.%d.%d.%d", 10+i%100, i/100, 7+i%200) }
	check := func(i int) updateAnswer {
		code, body := postFrom(t, r, "/updates", addr(i), device(id(i), "1.0.0", ""))
		var a updateAnswer
		if code != 200 || json.Unmarshal([]byte(body), &a) != nil {
			t.Fatalf("device %d: /updates HTTP %d %s", i, code, body)
		}
		return a
	}
	// Before the rollout, the fleet checks for updates as usual.
	for i := 0; i < devices; i++ {
		if a := check(i); a.Error != "no_new_version_available" {
			t.Fatalf("device %d before the rollout: %+v", i, a)
		}
	}
	r.Edge.FlushStats(context.Background()) // the check-ins reach the origin
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; i < devices; i++ {
		for {
			_, ok, err := r.Origin.Events().Seen(context.Background(), app, id(i))
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the origin never learnt of device %d", i)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	cli(t, r, data, "channel", "rollout", "production", "--app", app, "--bundle", "1.0.1", "--percent", "50")
	deadline = time.Now().Add(10 * time.Second)
	served := func() bool {
		for i := 0; i < 20; i++ {
			if check(i).Version == "1.0.1" {
				return true
			}
		}
		return false
	}
	for !served() {
		if time.Now().After(deadline) {
			t.Fatal("the edge never served the rollout")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The fleet checks for updates again; the devices offered 1.0.1 install
	// it, and 30% of them fail.
	var arm []int
	for i := 0; i < devices; i++ {
		if check(i).Version == "1.0.1" {
			arm = append(arm, i)
		}
	}
	if len(arm) < 100 {
		t.Fatalf("only %d devices in the 50%% arm", len(arm))
	}
	start := time.Now()
	failed := 0
	for n, i := range arm {
		action := "set"
		if n%10 < 3 {
			action = "update_fail"
			failed++
		}
		ev := fmt.Sprintf(`{"app_id":%q,"device_id":%q,"platform":"android","version_name":"1.0.1","old_version_name":"1.0.0",`+
			`"version_build":"1.0.0","version_os":"14","plugin_version":"8.51.14","is_emulator":false,"is_prod":true,"action":%q}`, app, id(i), action)
		if code, body := postFrom(t, r, "/stats", addr(i), ev); code != 200 || body != `{"status":"ok"}` {
			t.Fatalf("device %d: /stats HTTP %d %s", i, code, body)
		}
	}
	var g guardView
	deadline = time.Now().Add(30 * time.Second)
	for {
		if ro := r.Origin.Current().Snap.App(app).Channel("production").Rollout; ro != nil && ro.Paused {
			break
		}
		if time.Now().After(deadline) {
			json.Unmarshal([]byte(cli(t, r, data, "channel", "guard", "production", "--app", app, "--json")), &g)
			t.Fatalf("the failing rollout (%d of %d devices failed) was not paused: %+v", failed, len(arm), g.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d devices in the arm, %d failed: paused %v after their reports began", len(arm), failed, time.Since(start).Round(time.Millisecond))
	json.Unmarshal([]byte(cli(t, r, data, "channel", "guard", "production", "--app", app, "--json")), &g)
	if len(g.Actions) != 1 || g.Actions[0].Action != "pause" {
		t.Fatalf("guard actions %+v, want one pause", g.Actions)
	}
}

// Over HTTP/3 the client is the UDP peer (or, from a trusted proxy, its
// X-Forwarded-For), as over HTTP/1.1: each event reaches the origin with
// its client's network.
func TestHTTP3ClientAddress(t *testing.T) {
	data := t.TempDir()
	r := startTestServeWith(t, data, func(ec *config.Edge) {
		ec.TLS, ec.TLSListen = "self-signed", "127.0.0.1:0"
		ec.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	const app = "com.example.app"
	cli(t, r, data, "app", "create", app)
	cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, "one")), "--app", app, "--version", "1.0.0", "--channel", "production")
	leaf, err := x509.ParseCertificate(r.Listeners.Certs.Leaf())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	h3 := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}
	defer h3.Close()
	client := &http.Client{Transport: h3}
	send := func(dev, xff string) {
		ev := fmt.Sprintf(`{"app_id":%q,"device_id":%q,"platform":"ios","version_name":"1.0.0","version_os":"17.2","action":"set"}`, app, dev)
		req, _ := http.NewRequest("POST", "https://"+r.Listeners.TLS+"/stats", strings.NewReader(ev))
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Proto != "HTTP/3.0" || string(b) != `{"status":"ok"}` {
			t.Fatalf("%s %d %s", resp.Proto, resp.StatusCode, b)
		}
	}
	send("00000000-0000-4000-8000-000000000001", "")
	send("00000000-0000-4000-8000-000000000002", "198.51.100.1, 203.0.113.9")
	if err := r.Edge.FlushStats(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	err = r.Origin.Events().RawSegments(context.Background(), 0, time.Now().Add(time.Hour).UnixMilli(), func(_ string, _ uint64, seg []byte) error {
		return events.DecodeSegment(seg, func(e *events.Event) error { got[e.DeviceID] = e.ClientPrefix.String(); return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	if got["00000000-0000-4000-8000-000000000001"] != "127.0.0.0/24" || got["00000000-0000-4000-8000-000000000002"] != "203.0.113.0/24" {
		t.Fatalf("client networks at the origin: %v", got)
	}
}
