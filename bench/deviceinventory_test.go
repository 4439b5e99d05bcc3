package bench

// The device inventory at scale (issue 20's done-when): fill N devices
// (default 1,000,000) into the event store by bulk insert, then time
// `device list` pages with and without each filter, at the start and deep
// into the keyset, through the store and through a real origin's API;
// measure the storage per device, and per device log entry (a second fill
// through the real ingest path). On SQLite, then PostgreSQL.
//
//	UPDRAFT_BENCH_DEVICES=1000000 go test ./bench/ -run TestDeviceInventoryScale -v -timeout 60m
//
// (bench/device-inventory.sh runs this.) Skipped unless UPDRAFT_BENCH_DEVICES
// is set: the fill takes minutes.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

const benchApp = "com.example.app"

// benchDevice is the i-th device of the fill: a random id, a realistic
// spread of channels, bundles and platforms.
func benchDevice(rng *rand.Rand, now int64) store.Device {
	id := fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", rng.Uint32(), rng.Uint32()&0xffff, rng.Uint32()&0xfff, rng.Uint32()&0xfff, rng.Uint64()&0xffffffffffff)
	d := store.Device{AppID: benchApp, DeviceID: id, EdgeID: "0123456789abcdef0123456789abcdef", PluginVersion: "8.51.14",
		VersionBuild: "2.4.0", Reason: "default", Outcome: "no_new_version_available"}
	switch r := rng.IntN(100); {
	case r < 80:
		d.Channel = "production"
	case r < 95:
		d.Channel, d.Reason = "beta", "segment:testers"
	default:
		d.Channel, d.Reason = "dev", "override"
	}
	// 10 bundles, the newest most common; 1.0.0 is 1 in 200.
	v := []string{"1.0.9", "1.0.9", "1.0.9", "1.0.9", "1.0.8", "1.0.8", "1.0.7", "1.0.6", "1.0.5", "1.0.4", "1.0.3", "1.0.2", "1.0.1"}
	d.VersionName = v[rng.IntN(len(v))]
	if rng.IntN(200) == 0 {
		d.VersionName = "1.0.0"
	}
	d.Bundle = d.VersionName
	d.Platform = "android"
	if rng.IntN(100) < 45 {
		d.Platform = "ios"
	}
	if rng.IntN(3) == 0 {
		d.CustomID = "user-" + strconv.Itoa(rng.IntN(10_000_000))
	}
	d.CheckedIn = now - rng.Int64N(30*24*3600*1000)
	d.LastSeen = d.CheckedIn
	return d
}

func TestDeviceInventoryScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("UPDRAFT_BENCH_DEVICES"))
	if n <= 0 {
		t.Skip("set UPDRAFT_BENCH_DEVICES=1000000 (bench/device-inventory.sh)")
	}
	engines := strings.Fields(os.Getenv("UPDRAFT_BENCH_ENGINES"))
	if len(engines) == 0 {
		engines = []string{"sqlite", "postgres"}
	}
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) { inventoryScale(t, eng, n) })
	}
}

func inventoryScale(t *testing.T, eng string, n int) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := config.NewOrigin(dir)
	cfg.Listen = "127.0.0.1:0"
	cfg.BuildNice = 0
	if eng == "postgres" {
		cfg.Store = testenv.PostgresURL(t)
	}
	// The fill, straight into the store.
	es, err := store.OpenEventsURL(ctx, cfg.Store, filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Now().UnixMilli()
	start := time.Now()
	const batch = 5000
	const middle = "80000000-0000-4000-8000-000000000000" // the middle of the keyset (random ids)
	for done := 0; done < n; done += batch {
		devs := make([]store.Device, 0, batch)
		for range min(batch, n-done) {
			devs = append(devs, benchDevice(rng, now))
		}
		if err := es.BulkDevices(ctx, devs); err != nil {
			t.Fatal(err)
		}
	}
	if err := es.AnalyzeInventory(ctx); err != nil { // what autovacuum does after a large load
		t.Fatal(err)
	}
	fill := time.Since(start)
	count, _ := es.InventoryDevices(ctx)
	t.Logf("%s: filled %d devices in %v (%.0f devices/s)", eng, count, fill.Round(time.Second), float64(count)/fill.Seconds())
	sizes, err := es.InventorySize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	var parts []string
	for _, s := range sizes {
		if s.Name != "device_log" && s.Name != "device_log_pkey" {
			total += s.Bytes
			parts = append(parts, fmt.Sprintf("%s %.0f", s.Name, float64(s.Bytes)/float64(count)))
		}
	}
	t.Logf("%s: storage per device %.0f bytes (%s)", eng, float64(total)/float64(count), strings.Join(parts, ", "))
	es.Close()

	// The pages, through a real origin on the same store.
	srv, err := origin.Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	key, err := os.ReadFile(filepath.Join(dir, "api-key"))
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(hs.URL, strings.TrimSpace(string(key)))
	c.HTTP = &http.Client{Timeout: time.Minute}
	type listCase struct {
		name string
		q    store.DeviceQuery
	}
	cases := []listCase{
		{"no filter", store.DeviceQuery{}},
		{"channel production (80%)", store.DeviceQuery{Channel: "production"}},
		{"channel dev (5%)", store.DeviceQuery{Channel: "dev"}},
		{"version 1.0.9 (30%)", store.DeviceQuery{Version: "1.0.9"}},
		{"version 1.0.0 (0.5%)", store.DeviceQuery{Version: "1.0.0"}},
		{"platform ios (45%)", store.DeviceQuery{Platform: "ios"}},
		{"channel+version+platform", store.DeviceQuery{Channel: "production", Version: "1.0.8", Platform: "android"}},
		{"channel dev + version 1.0.0 (rare)", store.DeviceQuery{Channel: "dev", Version: "1.0.0"}},
		{"no match (version 9.9.9)", store.DeviceQuery{Channel: "production", Version: "9.9.9"}},
	}
	t.Logf("%s: page times, 100 devices a page, median/max of 15 (first page | a page from the middle of the keyset | API first page)", eng)
	worst := time.Duration(0)
	for _, lc := range cases {
		measure := func(fn func() error) (med, mx time.Duration) {
			var ds []time.Duration
			for range 15 {
				st := time.Now()
				if err := fn(); err != nil {
					t.Fatal(err)
				}
				ds = append(ds, time.Since(st))
			}
			slices.Sort(ds)
			return ds[len(ds)/2], ds[len(ds)-1]
		}
		q := lc.q
		q.AppID, q.Limit = benchApp, 100
		got := 0
		m1, x1 := measure(func() error {
			d, err := srv.Events().Devices(ctx, q)
			got = len(d)
			return err
		})
		q.After = middle
		m2, x2 := measure(func() error { _, err := srv.Events().Devices(ctx, q); return err })
		cq := client.DeviceQuery{Channel: lc.q.Channel, Version: lc.q.Version, Platform: lc.q.Platform, Limit: 100}
		m3, x3 := measure(func() error { _, err := c.ListDevices(ctx, benchApp, cq); return err })
		t.Logf("  %-36s %3d devices  %8v / %-8v | %8v / %-8v | %8v / %-8v", lc.name, got, m1.Round(10*time.Microsecond), x1.Round(10*time.Microsecond),
			m2.Round(10*time.Microsecond), x2.Round(10*time.Microsecond), m3.Round(10*time.Microsecond), x3.Round(10*time.Microsecond))
		worst = max(worst, m1, m2, m3)
	}
	// Walking pages: 50 consecutive pages of 1000 through the API.
	st := time.Now()
	cq := client.DeviceQuery{Limit: 1000}
	for range 50 {
		p, err := c.ListDevices(ctx, benchApp, cq)
		if err != nil {
			t.Fatal(err)
		}
		cq.Cursor = p.NextCursor
	}
	t.Logf("%s: 50 consecutive API pages of 1000 devices: %v a page", eng, (time.Since(st) / 50).Round(10*time.Microsecond))
	if worst > 100*time.Millisecond {
		t.Errorf("%s: a page took %v (median), over 100 ms", eng, worst)
	}

	// The log: 2,000 devices × 60 events through the real ingest (the ring
	// keeps 50 each), storage per entry.
	before, _ := srv.Events().InventorySize(ctx)
	logBytes := func(s []store.RelationSize) (b int64) {
		for _, r := range s {
			if strings.HasPrefix(r.Name, "device_log") {
				b += r.Bytes
			}
		}
		return b
	}
	const logDevices, perDevice = 2000, 60
	st = time.Now()
	seq := uint64(1)
	for d0 := 0; d0 < logDevices; d0 += 20 {
		var evs []events.Event
		var cis []events.CheckIns
		for d := d0; d < d0+20; d++ {
			dev := fmt.Sprintf("%08x-0000-4000-8000-%012x", d, d)
			id, _ := snapshot.ParseDeviceID(dev)
			cis = append(cis, events.CheckIns{AppID: benchApp, At: now, Devices: [][16]byte{id}, Details: []events.CheckInDetail{{At: now,
				Platform: "ios", VersionBuild: "2.4.0", VersionName: "1.0.8", PluginVersion: "8.51.14", Channel: "production",
				Segment: "default", Arm: "rollout", Outcome: "update", Bundle: "1.0.9"}}})
			for e := range perDevice - 1 {
				evs = append(evs, events.Event{Received: now + int64(e), AppID: benchApp, DeviceID: dev, Action: "app_moved_to_foreground",
					VersionName: "1.0.9", OldVersionName: "1.0.8", Platform: "ios", Channel: "production", Segment: "default", Arm: "rollout"})
			}
		}
		seg := []byte(events.Magic)
		for i := 0; i < len(evs); i += events.MaxBatch {
			seg = events.AppendRecord(seg, evs[i:min(i+events.MaxBatch, len(evs))])
		}
		for i := range cis {
			seg = events.AppendCheckIns(seg, &cis[i])
		}
		if _, err := srv.Events().IngestAll(ctx, "0123456789abcdef0123456789abcdef", seq, seg, evs, cis); err != nil {
			t.Fatal(err)
		}
		seq++
	}
	took := time.Since(st)
	after, _ := srv.Events().InventorySize(ctx)
	entries := int64(logDevices * store.DeviceLogSize)
	t.Logf("%s: ingest of %d devices × %d check-ins and events (segments of 20 devices): %v, %.0f entries/s; log storage %.0f bytes an entry, %.0f bytes a device with a full log",
		eng, logDevices, perDevice, took.Round(time.Millisecond), float64(logDevices*perDevice)/took.Seconds(),
		float64(logBytes(after)-logBytes(before))/float64(entries), float64(logBytes(after)-logBytes(before))/float64(logDevices))
}
