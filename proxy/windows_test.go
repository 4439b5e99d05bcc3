package proxy

import (
	"bytes"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// windowSnapshot is testSnapshot with production open on Saturdays 01:00-05:00
// in Rome and blacked out on 2026-12-12.
func windowSnapshot(t testing.TB) *snapshot.Snapshot {
	s := testSnapshot(t, 1, fakeSHA("bundle"))
	ch := s.App(testAppID).Channel("production")
	ch.Windows = &snapshot.Windows{Weekly: []snapshot.Window{{Day: "sat", Start: "01:00", End: "05:00", TZ: "Europe/Rome"}},
		Blackouts: []snapshot.Blackout{{Date: "2026-12-12", TZ: "Europe/Rome"}}}
	if err := s.Index(nil); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestUpdatesMaintenanceWindow: at the edge, on a fixed clock, a device on
// a channel with windows gets its update inside a window and Capgo's
// no_new_version_available outside one or on a blackout date; a channel
// without windows answers the same at any time.
func TestUpdatesMaintenanceWindow(t *testing.T) {
	e := newCoreEdge(t, windowSnapshot(t))
	var now time.Time
	e.clock = func() time.Time { return now }
	base := []byte("https://edge.example.com")
	check := func(at string, body []byte, wantPrefix string) {
		t.Helper()
		now = utcTime(t, at)
		out := &reply{}
		e.updates(body, base, "", out)
		if got := answerBody(out); out.status != 200 || !bytes.HasPrefix(got, []byte(wantPrefix)) {
			t.Errorf("at %s: HTTP %d %s, want %s…", at, out.status, got, wantPrefix)
		}
	}
	const held = `{"error":"no_new_version_available","message":"No new version available","kind":"up_to_date"}`
	check("2026-12-05T00:30:00Z", []byte(pluginBody), `{"version":"1.1.0"`) // Sat 01:30 Rome
	check("2026-12-05T04:00:00Z", []byte(pluginBody), held)                 // Sat 05:00 Rome
	check("2026-12-06T01:00:00Z", []byte(pluginBody), held)                 // Sunday
	check("2026-12-12T01:00:00Z", []byte(pluginBody), held)                 // a blackout Saturday
	check("2026-12-19T01:00:00Z", []byte(pluginBody), `{"version":"1.1.0"`)
	// A channel without windows: updated at any time.
	other := body(t, map[string]any{"defaultChannel": "no-emulators"})
	check("2026-12-06T01:00:00Z", other, `{"version":"1.1.0"`)
}

func utcTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// BenchmarkUpdatesWindowed: an update check on a channel with maintenance
// windows, inside one (the update answer) and outside (held): no
// allocation either way.
func BenchmarkUpdatesWindowed(b *testing.B) {
	for _, c := range []struct{ name, at, want string }{
		{"inside", "2026-12-05T00:30:00Z", `{"version":"1.1.0"`},
		{"outside", "2026-12-06T01:00:00Z", `{"error":"no_new_version_available"`},
	} {
		b.Run(c.name, func(b *testing.B) {
			e := newCoreEdge(b, windowSnapshot(b))
			at := utcTime(b, c.at)
			e.clock = func() time.Time { return at }
			body, base := []byte(pluginBody), []byte("https://edge.example.com")
			out := &reply{body: make([]byte, 0, 512)}
			e.updates(body, base, "", out)
			if out.status != 200 || !bytes.HasPrefix(answerBody(out), []byte(c.want)) {
				b.Fatalf("HTTP %d %s, want %s", out.status, answerBody(out), c.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				out.reset()
				e.updates(body, base, "", out)
			}
		})
	}
}
