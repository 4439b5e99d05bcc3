package store

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// TestChannelWindows: a channel's maintenance schedule is stored
// (normalized), published in the snapshot, shown by the audit record of
// the change, refused with invalid_window when malformed, and cleared.
func TestChannelWindows(t *testing.T) {
	ctx := WithWho(context.Background(), Who{Actor: "alice"})
	s, _ := open(t)
	const app = "com.example.windows"
	if _, err := s.CreateApp(ctx, app, ""); err != nil {
		t.Fatal(err)
	}
	sched := &snapshot.Windows{
		Weekly: []snapshot.Window{{Day: "Saturday", Start: "1:00", End: "05:00", TZ: "Europe/Rome"},
			{Day: "sun", Start: "23:00", End: "02:00", TZ: "Europe/Rome"}},
		Blackouts: []snapshot.Blackout{{Date: "2026-12-24"}},
	}
	ch, _, _, err := s.PutChannel(ctx, app, "production", ChannelPatch{Windows: sched}, false)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"weekly":[{"day":"sat","start":"01:00","end":"05:00","tz":"Europe/Rome"},{"day":"sun","start":"23:00","end":"02:00","tz":"Europe/Rome"}],"blackouts":[{"date":"2026-12-24","tz":"Europe/Rome"}]}`
	if got := mustJSON(t, ch.Windows); got != want {
		t.Fatalf("stored windows %s, want %s", got, want)
	}
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustJSON(t, snap.Apps[0].Channels[0].Windows); got != want {
		t.Fatalf("snapshot windows %s, want %s", got, want)
	}
	// Another change keeps the windows.
	if ch, _, _, err = s.PutChannel(ctx, app, "production", ChannelPatch{Public: ptr(true)}, false); err != nil || mustJSON(t, ch.Windows) != want {
		t.Fatalf("unrelated change lost the windows: %s, %v", mustJSON(t, ch.Windows), err)
	}
	for _, bad := range []struct {
		w   snapshot.Windows
		msg string
	}{
		{snapshot.Windows{Weekly: []snapshot.Window{{Day: "sat", Start: "01:00", End: "01:00", TZ: "UTC"}}}, "end equals start"},
		{snapshot.Windows{Weekly: []snapshot.Window{{Day: "sat", Start: "01:00", End: "02:00", TZ: "Europe/Nowhere"}}}, "unknown time zone"},
		{snapshot.Windows{Blackouts: []snapshot.Blackout{{Date: "2026-12-24"}}}, "name its time zone"},
	} {
		_, _, _, err := s.PutChannel(ctx, app, "production", ChannelPatch{Windows: &bad.w}, false)
		var ie *InvalidError
		if !errors.As(err, &ie) || ie.Code != snapshot.CodeInvalidWindow || !strings.Contains(ie.Msg, bad.msg) {
			t.Errorf("windows %+v: %v, want invalid_window with %q", bad.w, err, bad.msg)
		}
	}
	recs, err := s.Audit(ctx, AuditQuery{App: app, Target: "production"})
	if err != nil {
		t.Fatal(err)
	}
	// created (with the windows), then made public: the refused changes left no record.
	if len(recs) != 2 || !strings.Contains(string(recs[0].After), `"windows":["Sat 01:00-05:00 Europe/Rome","Sun 23:00-02:00 Europe/Rome"],"blackouts":["2026-12-24 Europe/Rome"]`) {
		t.Fatalf("audit: %d records, first %s", len(recs), recs[0].After)
	}
	if strings.Contains(string(recs[1].After), "windows") {
		t.Errorf("audit of an unrelated change shows the windows: %s", recs[1].After)
	}
	// An empty schedule clears it.
	if ch, _, _, err = s.PutChannel(ctx, app, "production", ChannelPatch{Windows: &snapshot.Windows{}}, false); err != nil || ch.Windows != nil {
		t.Fatalf("clear: %+v, %v", ch.Windows, err)
	}
	recs, _ = s.Audit(ctx, AuditQuery{App: app, Target: "production"})
	last := recs[len(recs)-1]
	if !strings.Contains(string(last.Before), `"windows":["Sat 01:00-05:00 Europe/Rome"`) || !strings.Contains(string(last.After), `"windows":null`) {
		t.Errorf("audit of the clearing: before %s after %s", last.Before, last.After)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(j)
}

// TestSegmentWindows: a segment's windows are stored in its rule
// (normalized), published, and a malformed one is invalid_window.
func TestSegmentWindows(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	const app = "com.example.segwindows"
	if _, err := s.CreateApp(ctx, app, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.PutChannel(ctx, app, "production", ChannelPatch{}, false); err != nil {
		t.Fatal(err)
	}
	bad := snapshot.Rule{Name: "corp", Channel: "production", Windows: &snapshot.Windows{Weekly: []snapshot.Window{{Day: "sat", Start: "01:00", End: "99:00", TZ: "UTC"}}}}
	_, err := s.AddSegment(ctx, app, bad, -1)
	var ie *InvalidError
	if !errors.As(err, &ie) || ie.Code != snapshot.CodeInvalidWindow || !strings.Contains(ie.Msg, `end "99:00"`) {
		t.Fatalf("bad segment window: %v", err)
	}
	good := snapshot.Rule{Name: "corp", Channel: "production", CustomIDPrefix: "corp-",
		Windows: &snapshot.Windows{Weekly: []snapshot.Window{{Day: "Saturday", Start: "1:00", End: "05:00", TZ: "UTC"}}, Blackouts: []snapshot.Blackout{{Date: "2026-12-24"}}}}
	if _, err := s.AddSegment(ctx, app, good, -1); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"weekly":[{"day":"sat","start":"01:00","end":"05:00","tz":"UTC"}],"blackouts":[{"date":"2026-12-24","tz":"UTC"}]}`
	if got := mustJSON(t, snap.Apps[0].Rules[0].Windows); got != want {
		t.Fatalf("published segment windows %s, want %s", got, want)
	}
}
