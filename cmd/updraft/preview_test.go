package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// previewDevice builds the update check (or channel_self body) of a current
// plugin (8.x keeps its channel itself and sends it as defaultChannel).
func previewDevice(app, id, plugin, defaultChannel, channel string) string {
	b, _ := json.Marshal(map[string]any{"app_id": app, "device_id": id, "version_name": "1.0.0", "version_build": "1.0.0",
		"platform": "android", "plugin_version": plugin, "is_emulator": false, "is_prod": true,
		"defaultChannel": defaultChannel, "channel": channel})
	return string(b)
}

// startFollowingEdge starts `updraft edge` following upstream, trusting the
// origin's signing key of data, and returns its address once it is ready.
func startFollowingEdge(t *testing.T, data, upstream, name string) string {
	t.Helper()
	priv, err := origin.LoadOrCreateSigningKey(data)
	if err != nil {
		t.Fatal(err)
	}
	pub := origin.EncodePublicKey(priv.Public().(ed25519.PublicKey))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("edge did not stop")
		}
	})
	addr := freePort(t)
	args := []string{"edge", "--upstream", "http://" + upstream, "--origin-pubkey", pub, "--edge-key-file", config.EdgeKeyFile(data),
		"--data", filepath.Join(data, name), "--listen", addr, "--log-level", "error"}
	go func() { done <- run(ctx, args, io.Discard, io.Discard) }()
	waitFor(t, "edge "+name+" ready", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return addr
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(testenv.Patience(15 * time.Second)); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestPreviewChannelEndToEnd: `channel preview` against a real origin makes
// a preview channel; at the origin's own edge and at an edge following it
// (which trusts the origin's key through --origin-pubkey), a device that
// sends the token through setChannel gets the preview bundle on its next
// checks, others do not, and forged, expired, other-app and plain-name
// attempts are refused with Capgo's channel_not_found. The CLI prints the
// link and the QR code, writes the QR code as a PNG, and the edge serves
// the page the link opens. A preview stops working at its TTL and the
// origin deletes it.
func TestPreviewChannelEndToEnd(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	const app, other = "com.example.app", "com.example.other"
	cli(t, r, data, "app", "create", app)
	cli(t, r, data, "app", "create", other)
	for _, v := range []string{"1.0.1", "1.0.2"} {
		cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, v)), "--app", app, "--version", v)
	}
	cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, "other")), "--app", other, "--version", "1.0.1")
	cli(t, r, data, "channel", "set", "production", "--app", app, "--bundle", "1.0.1", "--default")
	cli(t, r, data, "channel", "set", "production", "--app", other, "--bundle", "1.0.1", "--default")
	edge := startFollowingEdge(t, data, r.OriginAddr, "edge")

	pngPath := filepath.Join(t.TempDir(), "preview.png")
	out := cli(t, r, data, "channel", "preview", "--app", app, "--bundle", "1.0.2", "--ttl", "1h", "--name", "pr-7",
		"--edge-url", "http://"+edge+"/", "--qr-png", pngPath)
	m := regexp.MustCompile(`(?m)^link: +(http://\S+/preview/([A-Za-z0-9_-]+))$`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "preview channel pr-7 of com.example.app serves 1.0.2 until ") {
		t.Fatalf("channel preview output:\n%s", out)
	}
	link, token := m[1], m[2]
	if link != "http://"+edge+"/preview/"+token || !strings.Contains(out, "deep link: com.example.app://updraft-preview?token="+token+"\n") {
		t.Fatalf("link %s, output:\n%s", link, out)
	}
	// The terminal QR code: half blocks, for the link.
	q, err := qrcode.New(link, qrcode.Medium)
	if err != nil {
		t.Fatal(err)
	}
	if block := q.ToSmallString(false); !strings.Contains(out, block) || !strings.ContainsAny(block, "▀▄") {
		t.Fatalf("no QR block for %s in:\n%s", link, out)
	}
	checkQRPNG(t, pngPath, q.Bitmap())

	priv, err := origin.LoadOrCreateSigningKey(data)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := ed25519.GenerateKey(nil)
	tok, err := snapshot.ParsePreviewToken(token, app, time.Now().Unix(), priv.Public().(ed25519.PublicKey))
	if err != nil || tok.Channel != "pr-7" {
		t.Fatalf("token: %+v %v", tok, err)
	}
	forged, _ := snapshot.SignPreviewToken(otherKey, app, "pr-7", tok.Expires)
	expired, _ := snapshot.SignPreviewToken(priv, app, "pr-7", time.Now().Add(-time.Minute).Unix())

	// The following edge has it once the page answers.
	waitFor(t, "the preview page at the edge", func() bool {
		resp, _ := get(t, link)
		return resp.StatusCode == 200
	})
	resp, page := get(t, link+"?scheme=exampleapp")
	for _, want := range []string{app, "1.0.2", "pr-7", token, `href="exampleapp://updraft-preview?token=` + token + `"`} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("preview page lacks %q:\n%s", want, page)
		}
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("preview page Content-Type %q", ct)
	}
	if _, page := get(t, link); !bytes.Contains(page, []byte(`href="com.example.app://updraft-preview?token=`+token+`"`)) {
		t.Errorf("default scheme: %s", page)
	}
	for _, bad := range []string{forged, expired, "x"} {
		if resp, _ := get(t, "http://"+edge+"/preview/"+bad); resp.StatusCode != 404 {
			t.Errorf("preview page of a bad token: %d", resp.StatusCode)
		}
	}
	if _, page := get(t, link+"?scheme=javascript"); bytes.Contains(page, []byte("javascript:")) {
		t.Errorf("javascript scheme written: %s", page)
	}

	const notFound = `{"error":"channel_not_found","message":"Cannot find channel","channel":%q,"app_id":%q}`
	for _, e := range []string{r.EdgeAddr, edge} {
		const tester, other8, plain = "11111111-2222-4333-8444-000000000001", "11111111-2222-4333-8444-000000000002", "11111111-2222-4333-8444-000000000003"
		if code, b := post(t, "http://"+e+"/channel_self", "POST", previewDevice(app, tester, "8.51.14", "", token)); code != 200 || b != `{"status":"ok","allowSet":true}` {
			t.Fatalf("%s: setChannel with the token: %d %s", e, code, b)
		}
		for range 3 {
			if a := answer(t, &running{EdgeAddr: e}, previewDevice(app, tester, "8.51.14", token, "")); a.Version != "1.0.2" {
				t.Fatalf("%s: check with the token: %+v, want the preview's 1.0.2", e, a)
			}
		}
		if a := answer(t, &running{EdgeAddr: e}, previewDevice(app, other8, "8.51.14", "", "")); a.Version != "1.0.1" {
			t.Fatalf("%s: device without token: %+v, want production's 1.0.1", e, a)
		}
		// The preview channel's name is no way in.
		if code, b := post(t, "http://"+e+"/channel_self", "POST", previewDevice(app, plain, "8.51.14", "", "pr-7")); code != 200 || b != sprintf(notFound, "pr-7", app) {
			t.Fatalf("%s: setChannel by name: %d %s", e, code, b)
		}
		if a := answer(t, &running{EdgeAddr: e}, previewDevice(app, plain, "8.51.14", "pr-7", "")); a.Version != "1.0.1" {
			t.Fatalf("%s: check with the name as defaultChannel: %+v", e, a)
		}
		for name, bad := range map[string]string{"forged": forged, "expired": expired} {
			if code, b := post(t, "http://"+e+"/channel_self", "POST", previewDevice(app, plain, "8.51.14", "", bad)); code != 200 || b != sprintf(notFound, bad, app) {
				t.Errorf("%s: %s token: %d %s", e, name, code, b)
			}
			if a := answer(t, &running{EdgeAddr: e}, previewDevice(app, plain, "8.51.14", bad, "")); a.Version != "1.0.1" {
				t.Errorf("%s: check with a %s token: %+v", e, name, a)
			}
		}
		if code, b := post(t, "http://"+e+"/channel_self", "POST", previewDevice(other, plain, "8.51.14", "", token)); code != 200 || b != sprintf(notFound, token, other) {
			t.Errorf("%s: the token for another app: %d %s", e, code, b)
		}
		// Plugins that keep their channel on the server cannot hold one.
		if code, b := post(t, "http://"+e+"/channel_self", "POST", previewDevice(app, plain, "7.1.0", "", token)); code != 200 || !strings.Contains(b, `"error":"channel_self_set_not_allowed"`) {
			t.Errorf("%s: legacy plugin with the token: %d %s", e, code, b)
		}
		if _, list := get(t, "http://"+e+"/channel_self?app_id="+app+"&platform=android&is_emulator=false&is_prod=true"); bytes.Contains(list, []byte("pr-7")) {
			t.Errorf("%s: listChannels shows the preview: %s", e, list)
		}
	}
	if out := cli(t, r, data, "channel", "list", "--app", app); !regexp.MustCompile(`(?m)^pr-7 .* until 20\d\d-`).MatchString(out) {
		t.Errorf("channel list does not mark the preview:\n%s", out)
	}
	if out := cli(t, r, data, "channel", "preview", "--app", app, "--list", "--edge-url", "http://"+edge); !strings.Contains(out, link) {
		t.Errorf("preview --list:\n%s", out)
	}

	// Expiry: a four-second preview works, then is refused, then deleted.
	out = cli(t, r, data, "channel", "preview", "--app", app, "--bundle", "1.0.2", "--ttl", "4s", "--name", "brief", "--edge-url", "http://"+edge, "--json")
	var short struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
		Link      string    `json:"link"`
	}
	if err := json.Unmarshal([]byte(out), &short); err != nil || short.Token == "" || short.Link != "http://"+edge+"/preview/"+short.Token {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	const brief = "11111111-2222-4333-8444-000000000004"
	waitFor(t, "the brief preview at the edge", func() bool {
		_, b := post(t, "http://"+edge+"/channel_self", "POST", previewDevice(app, brief, "8.51.14", "", short.Token))
		return b == `{"status":"ok","allowSet":true}`
	})
	if time.Now().Before(short.ExpiresAt) {
		if a := answer(t, &running{EdgeAddr: edge}, previewDevice(app, brief, "8.51.14", short.Token, "")); a.Version != "1.0.2" && time.Now().Before(short.ExpiresAt) {
			t.Fatalf("brief preview before its expiry: %+v", a)
		}
	}
	waitFor(t, "the brief preview to expire", func() bool {
		a := answer(t, &running{EdgeAddr: edge}, previewDevice(app, brief, "8.51.14", short.Token, ""))
		return a.Version == "1.0.1"
	})
	if time.Now().Before(short.ExpiresAt) {
		t.Fatal("the preview stopped before its expiry")
	}
	if _, b := post(t, "http://"+edge+"/channel_self", "POST", previewDevice(app, brief, "8.51.14", "", short.Token)); b != sprintf(notFound, short.Token, app) {
		t.Errorf("expired preview's token: %s", b)
	}
	waitFor(t, "the origin to delete the expired preview", func() bool {
		return !strings.Contains(cli(t, r, data, "channel", "list", "--app", app), "brief")
	})

	cli(t, r, data, "channel", "preview", "--app", app, "--delete", "pr-7")
	waitFor(t, "the deleted preview to stop working", func() bool {
		a := answer(t, &running{EdgeAddr: edge}, previewDevice(app, "11111111-2222-4333-8444-000000000001", "8.51.14", token, ""))
		return a.Version == "1.0.1"
	})
}

// checkQRPNG decodes the PNG and checks that it draws the QR code bitmap
// (quiet zone included) module by module, with three finder patterns.
func checkQRPNG(t *testing.T, path string, bitmap [][]bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("--qr-png: %v", err)
	}
	b := img.Bounds()
	n := len(bitmap)
	if b.Dx() != b.Dy() || b.Dx() < n*2 {
		t.Fatalf("--qr-png: %v for %d modules", b, n)
	}
	dark := func(img image.Image, x, y int) bool {
		r, g, bl, _ := img.At(x, y).RGBA()
		return r+g+bl < 3*0x8000
	}
	for my := range n {
		for mx := range n {
			x := b.Min.X + (2*mx+1)*b.Dx()/(2*n)
			y := b.Min.Y + (2*my+1)*b.Dy()/(2*n)
			if dark(img, x, y) != bitmap[my][mx] {
				t.Fatalf("--qr-png: module (%d,%d) differs from the QR code of the link", mx, my)
			}
		}
	}
	// Finder patterns (7×7: dark ring, light ring, dark 3×3) after the
	// 4-module quiet zone, in three corners.
	const qz = 4
	size := n - 2*qz
	for _, c := range [][2]int{{qz, qz}, {qz + size - 7, qz}, {qz, qz + size - 7}} {
		for i := range 7 {
			for j := range 7 {
				ring := max(abs(i-3), abs(j-3))
				if want := ring != 2; bitmap[c[1]+j][c[0]+i] != want {
					t.Fatalf("no finder pattern at %v", c)
				}
			}
		}
	}
}

func sprintf(format string, args ...any) string {
	b, _ := json.Marshal(args[0])
	c, _ := json.Marshal(args[1])
	return strings.Replace(strings.Replace(format, "%q", string(b), 1), "%q", string(c), 1)
}
