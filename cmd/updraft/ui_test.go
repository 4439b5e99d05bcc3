package main

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin"
)

// TestChromiumStatsUI renders the origin's /ui page in headless Chromium and
// checks that the charts were drawn: the screenshot must hold enough pixels
// of the first two series colours (bundles 1.0.0 and 1.0.1), which appear
// only in the SVG lines and the legend swatches.
func TestChromiumStatsUI(t *testing.T) {
	browser := chromiumPath(t)
	data := t.TempDir()
	r := startTestServe(t, data)
	cli(t, r, data, "app", "create", "com.example.app")
	cli(t, r, data, "bundle", "upload", fixture(t, "swagger-ui-5.34.0.zip"), "--app", "com.example.app", "--version", "1.0.0", "--channel", "production")
	cli(t, r, data, "channel", "set", "production", "--app", "com.example.app", "--default")
	cli(t, r, data, "bundle", "upload", fixture(t, "swagger-ui-5.34.1.zip"), "--app", "com.example.app", "--version", "1.0.1")
	cli(t, r, data, "channel", "rollout", "production", "--app", "com.example.app", "--bundle", "1.0.1", "--percent", "50")

	rng := rand.New(rand.NewPCG(1, 2))
	acc := &tally{n: map[[2]string]int64{}}
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < 20; i++ {
		batch := make([]map[string]any, 50)
		for j := range batch {
			batch[j], _, _ = fleetEvent(rng, "com.example.app", []string{"1.0.0", "1.0.1"})
		}
		if _, err := sendBatch(client, r.EdgeAddr, batch, acc); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Edge.FlushStats(ctx); err != nil {
		t.Fatal(err)
	}
	out := cli(t, r, data, "stats", "--app", "com.example.app")
	if !strings.Contains(out, "1000 events") || !strings.Contains(out, "1.0.1") {
		t.Fatalf("updraft stats:\n%s", out)
	}

	// Without the key the page asks for it; with ?key= Chromium gets the
	// cookie, follows the redirect and renders the charts.
	if code, body := post(t, "http://"+r.OriginAddr+"/ui/apps/com.example.app", "GET", ""); code != 401 || !strings.Contains(body, "API key") {
		t.Fatalf("/ui without key: %d %s", code, body)
	}
	shot := filepath.Join(t.TempDir(), "ui.png")
	if d := os.Getenv("UPDRAFT_UI_SHOT"); d != "" {
		shot = d
	}
	url := fmt.Sprintf("http://%s/ui/apps/com.example.app?since=1h&key=%s", r.OriginAddr, readKey(t, data))
	img := chromiumShot(t, browser, url, shot, "900,1000")
	// Count pixels close to each series colour.
	colors := map[string][3]int{"1.0.0": {0x1f, 0x77, 0xb4}, "1.0.1": {0xd6, 0x27, 0x28}}
	counts := countColours(img, colors)
	// A legend swatch is 12×12 = 144 pixels; the series' lines and dots
	// must add at least 100 more (the lines may overlap where two bundles
	// have the same adoption, so each colour is not fully visible).
	for v, n := range counts {
		if n < 144+100 {
			t.Errorf("series %s: %d pixels of its colour in the screenshot; the chart was not drawn", v, n)
		}
	}
	if len(counts) != 2 {
		t.Errorf("series colours found: %v", counts)
	}
	t.Logf("pixels per series colour: %v", counts)
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// TestChromiumAdoptionUI: devices check in at a real edge (two testers in
// segment testers, four others in default) and report installs of 1.0.1;
// `updraft stats --adoption` gives the shares, and headless Chromium
// renders /ui's cumulative adoption chart per segment: the screenshot holds
// the segments' colours (which only the adoption chart and its legend use).
func TestChromiumAdoptionUI(t *testing.T) {
	browser := chromiumPath(t)
	data := t.TempDir()
	r := startTestServe(t, data)
	const app = "com.example.app"
	cli(t, r, data, "app", "create", app)
	cli(t, r, data, "bundle", "upload", writeZip(t, smallZip(t, "1.0.1")), "--app", app, "--version", "1.0.1")
	cli(t, r, data, "channel", "set", "production", "--app", app, "--bundle", "1.0.1", "--default")
	cli(t, r, data, "segment", "add", "testers", "--app", app, "--channel", "production", "--custom-id-prefix", "qa-")

	dev := func(i int) string { return fmt.Sprintf("0000%04x-eefe-490a-9c60-8e965132ae51", i) }
	custom := func(i int) string {
		if i <= 2 {
			return fmt.Sprintf(`,"custom_id":"qa-%d"`, i)
		}
		return ""
	}
	for i := 1; i <= 6; i++ {
		if a := answer(t, r, device(dev(i), "builtin", custom(i))); a.Version != "1.0.1" {
			t.Fatalf("device %d: %+v", i, a)
		}
	}
	for _, i := range []int{1, 2, 3} { // both testers, one of the four others
		body := fmt.Sprintf(`{"app_id":%q,"device_id":%q,"action":"set","version_name":"1.0.1","old_version_name":"builtin",
			"version_build":"1.0.0","version_code":"1","version_os":"14","platform":"android","plugin_version":"7.1.0",
			"is_emulator":false,"is_prod":true%s}`, app, dev(i), custom(i))
		if code, b := post(t, "http://"+r.EdgeAddr+"/stats", "POST", body); code != 200 {
			t.Fatalf("/stats: HTTP %d %s", code, b)
		}
	}
	var rep origin.AdoptionReport
	eventually(t, 30*time.Second, "the check-ins and installs in the adoption report", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.Edge.FlushStats(ctx)
		rep = origin.AdoptionReport{}
		if err := json.Unmarshal([]byte(cli(t, r, data, "stats", "--app", app, "--adoption", "--json")), &rep); err != nil {
			t.Fatal(err)
		}
		return len(rep.Releases) == 1 && len(rep.Releases[0].Segments) == 3 && rep.Releases[0].Segments[0].Active == 6 &&
			rep.Releases[0].Segments[0].Devices == 3
	})
	rel := rep.Releases[0]
	if rel.Channel != "production" || rel.Version != "1.0.1" || rel.StartSource != "audit" {
		t.Fatalf("release %+v", rel)
	}
	shares := map[string]float64{}
	for _, s := range rel.Segments {
		shares[s.Segment] = s.Share
	}
	if want := map[string]float64{"": 0.5, "default": 0.25, "segment:testers": 1}; !reflect.DeepEqual(shares, want) {
		t.Fatalf("shares %v, want %v", shares, want)
	}
	if s := rel.Segments[2]; s.TimeTo95 == nil || *s.TimeTo95 > 120 || s.Installs != 2 || *s.SuccessRate != 1 {
		t.Fatalf("testers: %+v", s)
	}
	if out := cli(t, r, data, "stats", "--app", app, "--adoption"); !strings.Contains(out, "segment:testers") || !strings.Contains(out, "TO 95%") {
		t.Fatalf("stats --adoption:\n%s", out)
	}

	shot := filepath.Join(t.TempDir(), "adoption.png")
	if d := os.Getenv("UPDRAFT_UI_SHOT"); d != "" {
		shot = d
	}
	url := fmt.Sprintf("http://%s/ui/apps/%s?channel=production&key=%s", r.OriginAddr, app, readKey(t, data))
	img := chromiumShot(t, browser, url, shot, "900,1400")
	// default (#e6a100) and segment:testers (#00a087): uiSegmentPalette[1:3].
	colors := map[string][3]int{"default": {0xe6, 0xa1, 0x00}, "segment:testers": {0x00, 0xa0, 0x87}}
	counts := countColours(img, colors)
	// A legend swatch is 144 pixels; a curve across the plot adds hundreds.
	for _, v := range []string{"default", "segment:testers"} {
		if counts[v] < 144+300 {
			t.Errorf("segment %s: %d pixels of its colour in the screenshot; the adoption chart was not drawn", v, counts[v])
		}
	}
	t.Logf("pixels per segment colour: %v", counts)
}

// chromiumShot has headless Chromium render url at size ("W,H") into the
// PNG file shot and returns the decoded image.
func chromiumShot(t *testing.T, browser, url, shot, size string) image.Image {
	t.Helper()
	cctx, ccancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer ccancel()
	cmd := exec.CommandContext(cctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--user-data-dir="+t.TempDir(), "--hide-scrollbars", "--window-size="+size, "--screenshot="+shot, url)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, b)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// countColours counts, per name, the pixels of img within 24 of its RGB
// colour in every channel.
func countColours(img image.Image, colors map[string][3]int) map[string]int {
	counts := map[string]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			for v, c := range colors {
				if abs(int(r>>8)-c[0]) < 24 && abs(int(g>>8)-c[1]) < 24 && abs(int(bl>>8)-c[2]) < 24 {
					counts[v]++
				}
			}
		}
	}
	return counts
}
