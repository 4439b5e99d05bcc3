package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin/events"
)

// detailed is a check-in record of one device with its detail.
func detailed(dev int, d events.CheckInDetail) events.CheckIns {
	ci := checkInsOf(evApp, dev)
	ci.At = d.At + 500
	ci.Details = []events.CheckInDetail{d}
	return ci
}

// The inventory keeps each device's latest check-in (a late, older one does
// not move it back) and a bounded log of its check-ins and events, in
// order; kind 2 check-ins (older edges) record the time only.
func TestDeviceInventory(t *testing.T) {
	saved := deviceSeenRefresh
	deviceSeenRefresh = 24 * time.Hour // the test's times are an hour old
	t.Cleanup(func() { deviceSeenRefresh = saved })
	s := openEvents(t)
	ctx := context.Background()
	b := baseTime()
	d1 := events.CheckInDetail{At: b + 1000, Platform: "ios", VersionBuild: "2.1.0", VersionName: "1.0.0", PluginVersion: "7.1.0",
		CustomID: "user-1", Channel: "production", Segment: "segment:beta", Arm: "rollout", Outcome: "update", Bundle: "1.0.1"}
	ingestAll(t, s, 1, []events.Event{ev(b+2000, 1, "set", "1.0.1", "production")}, detailed(1, d1))
	dev, ok, err := s.Device(ctx, evApp, devID(1))
	want := Device{AppID: evApp, DeviceID: devID(1), LastSeen: b + 2000, CheckedIn: b + 1000, EdgeID: edgeA, Platform: "ios",
		VersionBuild: "2.1.0", VersionName: "1.0.0", PluginVersion: "7.1.0", CustomID: "user-1", Channel: "production",
		Reason: "segment:beta", Arm: "rollout", Outcome: "update", Bundle: "1.0.1"}
	if err != nil || !ok || dev != want {
		t.Fatalf("device: %+v %v %v\nwant %+v", dev, ok, err, want)
	}
	log, err := s.DeviceLog(ctx, evApp, devID(1), 0)
	if err != nil || len(log) != 2 || log[0].Kind != LogCheckIn || log[0].Action != "update" || log[0].Target != "1.0.1" ||
		log[0].Reason != "segment:beta/rollout" || log[1].Kind != LogEvent || log[1].Action != "set" || log[1].Seq != 2 {
		t.Fatalf("log %+v %v", log, err)
	}
	// An older check-in, arriving later (another edge's segment), does not
	// replace the last one, but is logged.
	old := d1
	old.At, old.VersionName = b+500, "0.9.0"
	ingestAll(t, s, 2, nil, detailed(1, old))
	if dev, _, _ := s.Device(ctx, evApp, devID(1)); dev.VersionName != "1.0.0" || dev.CheckedIn != b+1000 {
		t.Fatalf("after an older check-in: %+v", dev)
	}
	// A newer one does.
	nw := d1
	nw.At, nw.VersionName, nw.Outcome, nw.Bundle, nw.Segment, nw.Arm = b+3000, "1.0.1", "no_new_version_available", "1.0.1", "default", "base"
	ingestAll(t, s, 3, nil, detailed(1, nw))
	if dev, _, _ := s.Device(ctx, evApp, devID(1)); dev.VersionName != "1.0.1" || dev.Reason != "default" || dev.CheckedIn != b+3000 ||
		dev.LastSeen != b+3000 || dev.Outcome != "no_new_version_available" {
		t.Fatalf("after a newer check-in: %+v", dev)
	}
	// A newer check-in that keeps the indexed columns (channel, version,
	// platform) rewrites the others only.
	same := nw
	same.At, same.Outcome, same.Bundle, same.CustomID, same.Segment, same.Arm = b+4000, "update", "1.0.2", "user-2", "override", ""
	ingestAll(t, s, 30, nil, detailed(1, same))
	if dev, _, _ := s.Device(ctx, evApp, devID(1)); dev.CheckedIn != b+4000 || dev.LastSeen != b+4000 || dev.Outcome != "update" ||
		dev.Bundle != "1.0.2" || dev.CustomID != "user-2" || dev.Reason != "override" || dev.Arm != "" || dev.VersionName != "1.0.1" {
		t.Fatalf("after a check-in moving no indexed column: %+v", dev)
	}
	if l, _ := s.Devices(ctx, DeviceQuery{AppID: evApp, Version: "1.0.1", Limit: 10}); len(l) != 1 || l[0].CustomID != "user-2" {
		t.Fatalf("listed by version after it: %+v", l)
	}
	// An event moves last_seen only once it is an hour stale.
	ingestAll(t, s, 31, []events.Event{ev(b+4500, 1, "get", "1.0.1", "production")})
	if dev, _, _ := s.Device(ctx, evApp, devID(1)); dev.LastSeen != b+4000 {
		t.Fatalf("an event moved a fresh last_seen: %+v", dev)
	}
	// The log is a ring of DeviceLogSize: a segment of 70 more events
	// leaves the latest DeviceLogSize, in order (a segment's older ones
	// are not even numbered).
	var evs []events.Event
	for i := range 70 {
		evs = append(evs, ev(b+10_000+int64(i), 1, "app_moved_to_foreground", "1.0.1", "production"))
	}
	ingestAll(t, s, 4, evs)
	log, err = s.DeviceLog(ctx, evApp, devID(1), 0)
	if err != nil || len(log) != DeviceLogSize || log[0].Seq != 7 || log[len(log)-1].Seq != 6+DeviceLogSize ||
		log[len(log)-1].At != b+10_069 {
		t.Fatalf("ring: %d entries, first %+v, last %+v (%v)", len(log), log[0], log[len(log)-1], err)
	}
	for i := 1; i < len(log); i++ {
		if log[i].Seq != log[i-1].Seq+1 || log[i].At < log[i-1].At {
			t.Fatalf("ring out of order at %d: %+v", i, log[i-1:i+1])
		}
	}
	if tail, _ := s.DeviceLog(ctx, evApp, devID(1), 54); len(tail) != 2 || tail[0].Seq != 55 {
		t.Fatalf("after seq 54: %+v", tail)
	}
	// An older edge's check-in (no detail) records the time; a device
	// known only from events has no check-in.
	ingestAll(t, s, 5, []events.Event{ev(b+5000, 2, "set", "1.0.1", "production")}, checkInsOf(evApp, 3))
	if dev, ok, _ := s.Device(ctx, evApp, devID(3)); !ok || dev.CheckedIn != 1_700_000_000_000 || dev.Platform != "" {
		t.Fatalf("kind 2 check-in: %+v", dev)
	}
	if dev, ok, _ := s.Device(ctx, evApp, devID(2)); !ok || dev.CheckedIn != 0 || dev.LastSeen != b+5000 {
		t.Fatalf("events only: %+v", dev)
	}
	if _, ok, _ := s.Device(ctx, evApp, devID(4)); ok {
		t.Fatal("an unknown device is listed")
	}
	if n, _ := s.InventoryDevices(ctx); n != 3 {
		t.Fatalf("%d devices counted, want 3", n)
	}
	// ... and a stale one (device 3's check-in is from 2023) moves.
	ingestAll(t, s, 32, []events.Event{ev(b+6000, 3, "get", "1.0.1", "production")})
	if dev, _, _ := s.Device(ctx, evApp, devID(3)); dev.LastSeen != b+6000 || dev.CheckedIn != 1_700_000_000_000 {
		t.Fatalf("an event did not move a stale last_seen: %+v", dev)
	}
	// A duplicate segment changes nothing.
	ingestAll(t, s, 3, nil, detailed(1, nw))
	if n, _ := s.DeviceLogSeq(ctx, evApp, devID(1)); n != 6+DeviceLogSize {
		t.Fatalf("duplicate segment logged: %+v", dev)
	}
}

// Listing: each filter, keyset pages that hold every device exactly once,
// in device id order.
func TestDeviceInventoryList(t *testing.T) {
	s := openEvents(t)
	ctx := context.Background()
	var devs []Device
	for i := range 250 {
		devs = append(devs, Device{AppID: evApp, DeviceID: devID(i), LastSeen: int64(i), CheckedIn: int64(i),
			Platform: []string{"ios", "android"}[i%2], Channel: []string{"production", "beta", "dev"}[i%3],
			VersionName: fmt.Sprintf("1.0.%d", i%5)})
	}
	devs = append(devs, Device{AppID: "com.example.other", DeviceID: devID(1), Platform: "ios", Channel: "production"})
	if err := s.BulkDevices(ctx, devs); err != nil {
		t.Fatal(err)
	}
	count := func(f func(Device) bool) int {
		n := 0
		for _, d := range devs[:250] {
			if f(d) {
				n++
			}
		}
		return n
	}
	for _, q := range []DeviceQuery{{}, {Channel: "beta"}, {Version: "1.0.3"}, {Platform: "ios"}, {Channel: "dev", Platform: "android", Version: "1.0.2"}} {
		want := count(func(d Device) bool {
			return (q.Channel == "" || d.Channel == q.Channel) && (q.Platform == "" || d.Platform == q.Platform) && (q.Version == "" || d.VersionName == q.Version)
		})
		q.AppID, q.Limit = evApp, 7
		seen := map[string]bool{}
		last := ""
		for {
			page, err := s.Devices(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range page {
				if seen[d.DeviceID] || d.DeviceID <= last || d.AppID != evApp {
					t.Fatalf("%+v: %s twice or out of order", q, d.DeviceID)
				}
				if q.Channel != "" && d.Channel != q.Channel || q.Platform != "" && d.Platform != q.Platform || q.Version != "" && d.VersionName != q.Version {
					t.Fatalf("%+v: listed %+v", q, d)
				}
				seen[d.DeviceID], last = true, d.DeviceID
			}
			if len(page) < q.Limit {
				break
			}
			q.After = last
		}
		if len(seen) != want || want == 0 {
			t.Fatalf("%+v: %d devices listed, want %d", q, len(seen), want)
		}
	}
}

// Devices not seen within the retention are removed with their log; the
// others stay.
func TestDeviceInventoryPrune(t *testing.T) {
	s := openEvents(t)
	ctx := context.Background()
	b := baseTime()
	for i := range 5 {
		ingestAll(t, s, uint64(i+1), []events.Event{ev(b+int64(i)*1000, i, "set", "1.0.1", "production")})
	}
	saved := pruneDevicesBatch
	pruneDevicesBatch = 2 // several transactions
	t.Cleanup(func() { pruneDevicesBatch = saved })
	n, err := s.PruneDevices(ctx, b+3000)
	if err != nil || n != 3 {
		t.Fatalf("pruned %d (%v), want 3", n, err)
	}
	for i := range 5 {
		_, ok, _ := s.Device(ctx, evApp, devID(i))
		log, _ := s.DeviceLog(ctx, evApp, devID(i), 0)
		if ok != (i >= 3) || (len(log) > 0) != (i >= 3) {
			t.Fatalf("device %d: kept %v, %d log entries", i, ok, len(log))
		}
	}
	if c, _ := s.InventoryDevices(ctx); c != 2 {
		t.Fatalf("%d devices counted after the sweep, want 2", c)
	}
}

// Deleting an app deletes its device inventory and logs, and the count
// MaxInventoryDevices bounds drops with them; another app's devices stay.
func TestDeviceInventoryDeleteApp(t *testing.T) {
	s := openEvents(t)
	ctx := context.Background()
	b := baseTime()
	other := ev(b+10, 9, "set", "1.0.1", "production")
	other.AppID = "com.example.other"
	ingestAll(t, s, 1, []events.Event{ev(b, 1, "set", "1.0.1", "production"), ev(b, 2, "set", "1.0.1", "production"), other})
	if c, _ := s.InventoryDevices(ctx); c != 3 {
		t.Fatalf("%d devices counted, want 3", c)
	}
	// A log row whose device the inventory no longer holds goes too.
	if _, err := s.db.ExecContext(ctx, `INSERT INTO device_log (app_id, device_id, slot, seq, at, edge_id, kind, action, version_name, target, channel, reason)
		VALUES (?, ?, 0, 1, ?, 'e', ?, 'set', '', '', '', '')`, evApp, devID(7), b, LogEvent); err != nil {
		t.Fatal(err)
	}
	saved := pruneDevicesBatch
	pruneDevicesBatch = 1 // a transaction per device
	t.Cleanup(func() { pruneDevicesBatch = saved })
	rows, err := s.DeleteApp(ctx, evApp)
	if err != nil || rows["devices"] != 2 {
		t.Fatalf("deleted %v (%v), want 2 devices", rows, err)
	}
	if log, _ := s.DeviceLog(ctx, evApp, devID(7), 0); len(log) > 0 {
		t.Fatalf("an orphan log row kept: %v", log)
	}
	for i := 1; i <= 2; i++ {
		if _, ok, _ := s.Device(ctx, evApp, devID(i)); ok {
			t.Fatalf("device %d kept after its app was deleted", i)
		}
		if log, _ := s.DeviceLog(ctx, evApp, devID(i), 0); len(log) > 0 {
			t.Fatalf("device %d: %d log entries kept", i, len(log))
		}
	}
	if _, ok, _ := s.Device(ctx, "com.example.other", devID(9)); !ok {
		t.Fatal("the other app's device was deleted")
	}
	if c, _ := s.InventoryDevices(ctx); c != 1 {
		t.Fatalf("%d devices counted after the deletion, want 1", c)
	}
}

// A full inventory records no new device but keeps updating the known ones.
func TestDeviceInventoryBounded(t *testing.T) {
	s := openEvents(t)
	ctx := context.Background()
	saved := MaxInventoryDevices
	MaxInventoryDevices = 2
	t.Cleanup(func() { MaxInventoryDevices = saved })
	b := baseTime()
	ingestAll(t, s, 1, []events.Event{ev(b, 1, "set", "1.0.1", "production"), ev(b, 2, "set", "1.0.1", "production")})
	ingestAll(t, s, 2, []events.Event{ev(b+1, 1, "get", "1.0.1", "production"), ev(b+1, 3, "set", "1.0.1", "production")})
	if _, ok, _ := s.Device(ctx, evApp, devID(3)); ok {
		t.Fatal("a device past the bound was recorded")
	}
	if n, _ := s.DeviceLogSeq(ctx, evApp, devID(1)); n != 2 {
		t.Fatalf("a known device was not logged: seq %d", n)
	}
}

// With the log off (--device-log=false), only the last check-in is kept.
func TestDeviceInventoryWithoutLog(t *testing.T) {
	s := openEvents(t)
	s.SetDeviceLog(false)
	ctx := context.Background()
	b := baseTime()
	ingestAll(t, s, 1, []events.Event{ev(b, 1, "set", "1.0.1", "production")},
		detailed(1, events.CheckInDetail{At: b, Platform: "ios", VersionName: "1.0.0", Channel: "production", Segment: "default", Outcome: "update"}))
	if d, ok, _ := s.Device(ctx, evApp, devID(1)); !ok || d.CheckedIn != b || d.Platform != "ios" {
		t.Fatalf("device %+v", d)
	}
	if log, _ := s.DeviceLog(ctx, evApp, devID(1), 0); len(log) != 0 {
		t.Fatalf("log kept: %+v", log)
	}
}
