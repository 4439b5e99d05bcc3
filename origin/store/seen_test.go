package store

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store/sqlite"
)

func checkInsOf(app string, devices ...int) events.CheckIns {
	ci := events.CheckIns{AppID: app, At: 1_700_000_000_000}
	for _, d := range devices {
		id, _ := snapshot.ParseDeviceID(devID(d))
		ci.Devices = append(ci.Devices, id)
	}
	return ci
}

func ingestAll(t *testing.T, s *EventStore, seq uint64, evs []events.Event, cis ...events.CheckIns) IngestResult {
	t.Helper()
	seg := encodeSegment(evs)
	for i := range cis {
		seg = events.AppendCheckIns(seg, &cis[i])
	}
	res, err := s.IngestAll(context.Background(), edgeA, seq, seg, evs, cis)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// Devices are recorded as seen from events and check-ins: first sighting
// (origin time), first check-in; events from devices never seen checking
// in are counted.
func TestDevicesSeen(t *testing.T) {
	s := openEvents(t)
	ctx := context.Background()
	b := baseTime()
	before := time.Now().UnixMilli()
	res := ingestAll(t, s, 1, []events.Event{ev(b, 1, "set", "1.0.1", "production"), ev(b, 2, "set", "1.0.1", "production"),
		ev(b, 2, "download_complete", "1.0.1", "production")}, checkInsOf(evApp, 1, 3))
	if res.CheckIns != 2 || res.NewDevices != 3 || res.WithoutCheckIn != 2 || res.SeenDropped != 0 || res.Events != 3 {
		t.Fatalf("first segment: %+v, want 2 check-ins, 3 new devices, 2 events without a check-in", res)
	}
	after := time.Now().UnixMilli()
	for _, d := range []int{1, 2, 3} {
		seen, ok, err := s.Seen(ctx, evApp, devID(d))
		if err != nil || !ok || seen.FirstSeen < before || seen.FirstSeen > after || seen.LastSeen != seen.FirstSeen {
			t.Fatalf("device %d: %+v %v %v", d, seen, ok, err)
		}
		if checked := seen.CheckedIn != 0; checked != (d != 2) {
			t.Fatalf("device %d: checked_in %d", d, seen.CheckedIn)
		}
	}
	first2, _, _ := s.Seen(ctx, evApp, devID(2))
	// Device 2 checks in later: its first sighting stays, checked_in is set;
	// its events count as from a device seen checking in from then on.
	time.Sleep(2 * time.Millisecond)
	res = ingestAll(t, s, 2, []events.Event{ev(b, 2, "set", "1.0.1", "production"), ev(b, 4, "set", "1.0.1", "production")}, checkInsOf(evApp, 2))
	if res.NewDevices != 1 || res.WithoutCheckIn != 1 || res.CheckIns != 1 {
		t.Fatalf("second segment: %+v, want device 4 new and without a check-in", res)
	}
	seen2, _, _ := s.Seen(ctx, evApp, devID(2))
	if seen2.FirstSeen != first2.FirstSeen || seen2.CheckedIn <= first2.FirstSeen {
		t.Fatalf("device 2 after its check-in: %+v (before %+v)", seen2, first2)
	}
	// Upper-case ids are the same device; another app's device is another.
	res = ingestAll(t, s, 3, nil, checkInsOf("com.example.other", 1))
	if res.NewDevices != 1 {
		t.Fatalf("another app's device: %+v", res)
	}
	if n, err := s.SeenDevices(ctx); err != nil || n != 5 {
		t.Fatalf("SeenDevices = %d, %v; want 5", n, err)
	}
	// Pruning forgets devices not seen since.
	if n, err := s.PruneSeen(ctx, time.Now().Add(time.Hour).UnixMilli()); err != nil || n != 5 {
		t.Fatalf("PruneSeen = %d, %v", n, err)
	}
	if n, _ := s.SeenDevices(ctx); n != 0 {
		t.Fatalf("SeenDevices after prune = %d", n)
	}
	// A duplicate segment changes nothing.
	res = ingestAll(t, s, 3, nil, checkInsOf("com.example.other", 1))
	if !res.Duplicate || res.NewDevices != 0 {
		t.Fatalf("duplicate: %+v", res)
	}
}

// Past MaxSeenDevices, new devices are not recorded (and counted).
func TestDevicesSeenBounded(t *testing.T) {
	saved := MaxSeenDevices
	MaxSeenDevices = 3
	t.Cleanup(func() { MaxSeenDevices = saved })
	s := openEvents(t)
	res := ingestAll(t, s, 1, nil, checkInsOf(evApp, 1, 2, 3, 4, 5))
	if res.NewDevices != 3 || res.SeenDropped != 2 {
		t.Fatalf("%+v, want 3 recorded and 2 dropped", res)
	}
	if n, _ := s.SeenDevices(context.Background()); n != 3 {
		t.Fatalf("SeenDevices = %d", n)
	}
	// Known devices still update.
	known := 0
	for d := 1; d <= 5 && known == 0; d++ {
		if _, ok, _ := s.Seen(context.Background(), evApp, devID(d)); ok {
			known = d
		}
	}
	res = ingestAll(t, s, 2, []events.Event{ev(baseTime(), known, "set", "1.0.1", "production")})
	if res.NewDevices != 0 || res.SeenDropped != 0 || res.WithoutCheckIn != 0 {
		t.Fatalf("known device: %+v", res)
	}
}

// GuardOutcomes counts established devices only, by network, capped.
func TestGuardOutcomes(t *testing.T) {
	s := openEvents(t)
	ctx := context.Background()
	b := time.Now().UnixMilli()
	ingestAll(t, s, 1, nil, checkInsOf(evApp, rangeOf(0, 100)...)) // established
	time.Sleep(2 * time.Millisecond)
	start := time.Now().UnixMilli()
	time.Sleep(2 * time.Millisecond)
	prefix := func(i int) netip.Prefix { return events.PrefixOf(netip.AddrFrom4([4]byte{10, 0, byte(i), 1})) }
	var evs []events.Event
	for i := 0; i < 100; i++ { // 10 networks of 10 devices; devices 0..29 fail, in networks 0..2
		e := ev(b, i, "set", "1.0.1", "production")
		if i < 30 {
			e.Action = "update_fail"
		}
		e.ClientPrefix = prefix(i / 10)
		evs = append(evs, e)
	}
	for i := 100; i < 150; i++ { // new devices, failing, in network 9
		e := ev(b, i, "update_fail", "1.0.1", "production")
		e.ClientPrefix = prefix(9)
		evs = append(evs, e)
	}
	ingestAll(t, s, 2, evs)
	q := GuardQuery{AppID: evApp, Channel: "production", Version: "1.0.1", Arm: "rollout", Since: b - 1000, RolloutStart: start}
	c, err := s.GuardOutcomes(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if want := (GuardCounts{Attempts: 100, Failures: 30, FailurePrefixes: 3, NewDevices: 50, NewFailures: 50}); c != want {
		t.Fatalf("GuardOutcomes = %+v, want %+v", c, want)
	}
	q.CountNew = true
	c, _ = s.GuardOutcomes(ctx, q)
	if want := (GuardCounts{Attempts: 150, Failures: 80, FailurePrefixes: 4, NewDevices: 50, NewFailures: 50}); c != want {
		t.Fatalf("CountNew: %+v, want %+v", c, want)
	}
	// Network 9 now holds 60 devices, 50 failing: capped at 20, 17 failing.
	q.MaxPerPrefix = 20
	c, _ = s.GuardOutcomes(ctx, q)
	if want := (GuardCounts{Attempts: 110, Failures: 47, FailurePrefixes: 4, NewDevices: 50, NewFailures: 50, Capped: 40}); c != want {
		t.Fatalf("CountNew, 20 per network: %+v, want %+v", c, want)
	}
	// Without a known rollout start every device counts.
	c, _ = s.GuardOutcomes(ctx, GuardQuery{AppID: evApp, Channel: "production", Version: "1.0.1", Since: b - 1000})
	if c.Attempts != 150 || c.NewDevices != 0 {
		t.Fatalf("no rollout start: %+v", c)
	}
}

func rangeOf(from, to int) []int {
	var r []int
	for i := from; i < to; i++ {
		r = append(r, i)
	}
	return r
}

// A database from before devices_seen is backfilled from what the
// aggregates know: those devices are established.
func TestDevicesSeenBackfill(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	if testenv.StoreEngine() != "sqlite" {
		t.Skip("a migration of an SQLite database written before devices_seen")
	}
	e, err := sqlite.Open(ctx, path, sqlite.Events.Upto(1))
	if err != nil {
		t.Fatal(err)
	}
	old := &EventStore{db: newDB(e)}
	b := baseTime()
	// The old Ingest wrote these tables only; reproduce its rows.
	for _, q := range []string{
		`INSERT INTO device_versions VALUES ('com.example.app', '` + devID(1) + `', '1.0.1', 'production', 'default', 'android', ?)`,
		`INSERT INTO device_outcomes VALUES ('com.example.app', '1.0.1', '` + devID(2) + `', 'production', 'rollout', 1, ?)`,
	} {
		if _, err := old.db.ExecContext(ctx, q, b); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()
	s, err := OpenEvents(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, d := range []int{1, 2} {
		if seen, ok, err := s.Seen(ctx, evApp, devID(d)); err != nil || !ok || seen.FirstSeen != b {
			t.Fatalf("device %d after the migration: %+v %v %v", d, seen, ok, err)
		}
	}
	if n, _ := s.SeenDevices(ctx); n != 2 {
		t.Fatalf("SeenDevices = %d, want 2", n)
	}
	c, err := s.GuardOutcomes(ctx, GuardQuery{AppID: evApp, Channel: "production", Version: "1.0.1", Arm: "rollout", Since: b - 1, RolloutStart: b + 1})
	if err != nil || c.Attempts != 1 || c.Failures != 1 || c.NewDevices != 0 {
		t.Fatalf("backfilled outcome: %+v, %v", c, err)
	}
}
