package store

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestAuditAppendAndQuery(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	recs := []AuditRecord{
		{App: "com.a", Actor: "ci", Addr: "10.0.0.1", Action: "bundle.uploaded", Target: "1.0.0", After: json.RawMessage(`{"version":"1.0.0"}`)},
		{App: "com.a", Actor: "alice", Action: "channel.changed", Target: "production", Before: json.RawMessage(`{"bundle":null}`), After: json.RawMessage(`{"bundle":"1.0.0"}`)},
		{App: "com.b", Actor: "guard", Action: "guard.acted", Target: "beta"},
		{Actor: "admin", Action: "key.created", Target: "ci"},
	}
	var ids []int64
	for _, r := range recs {
		id, err := s.AppendAudit(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("ids not increasing: %v", ids)
		}
	}
	all, err := s.Audit(ctx, AuditQuery{})
	if err != nil || len(all) != 4 {
		t.Fatalf("all: %d records, %v", len(all), err)
	}
	if all[1].Actor != "alice" || string(all[1].Before) != `{"bundle":null}` || string(all[1].After) != `{"bundle":"1.0.0"}` || all[1].At == 0 {
		t.Fatalf("record 2 read back as %+v", all[1])
	}
	if all[3].Before != nil || all[3].After != nil {
		t.Fatalf("empty before/after read back as %q %q", all[3].Before, all[3].After)
	}
	a, _ := s.Audit(ctx, AuditQuery{App: "com.a"})
	if len(a) != 2 {
		t.Fatalf("app com.a: %d records", len(a))
	}
	after, _ := s.Audit(ctx, AuditQuery{AfterID: ids[1], Actions: []string{"guard.acted", "key.created"}})
	if len(after) != 2 || after[0].Action != "guard.acted" {
		t.Fatalf("after id %d: %+v", ids[1], after)
	}
	tg, _ := s.Audit(ctx, AuditQuery{App: "com.a", Target: "production"})
	if len(tg) != 1 || tg[0].Actor != "alice" {
		t.Fatalf("target production: %+v", tg)
	}
	lim, _ := s.Audit(ctx, AuditQuery{Limit: 1, AfterID: ids[0]})
	if len(lim) != 1 || lim[0].ID != ids[1] {
		t.Fatalf("limit 1 after first: %+v", lim)
	}
}

// TestAuditRecordCommitsWithItsChange: a change and its audit record commit
// together. With the audit table unwritable, an audited write fails and
// leaves nothing behind (no change, no revision); once it is back, the
// same write commits with its record. Without a Who (device traffic,
// background work) nothing is recorded.
func TestAuditRecordCommitsWithItsChange(t *testing.T) {
	s, _ := open(t)
	bg := context.Background()
	ctx := WithWho(bg, Who{Actor: "alice", Addr: "10.1.2.3"})
	const app = "com.example.tx"
	if _, err := s.CreateApp(ctx, app, ""); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.0.0", "1.0.1"} {
		if _, err := s.CreateBundle(ctx, Bundle{AppID: app, Version: v, SHA256: strings.Repeat("a", 64), Size: 1}); err != nil {
			t.Fatal(err)
		}
	}
	v0 := "1.0.0"
	if _, _, _, err := s.PutChannel(ctx, app, "production", ChannelPatch{Bundle: &v0}, true); err != nil {
		t.Fatal(err)
	}
	recs, _ := s.Audit(bg, AuditQuery{})
	if len(recs) != 4 || recs[3].Action != "channel.created" || recs[3].Actor != "alice" || recs[3].Addr != "10.1.2.3" {
		t.Fatalf("records: %+v", recs)
	}
	rev, _ := s.Rev(bg)

	if _, err := s.db.ExecContext(bg, `ALTER TABLE audit_log RENAME TO audit_log_away`); err != nil {
		t.Fatal(err)
	}
	v1 := "1.0.1"
	bps := 1000
	writes := map[string]func() error{
		"channel": func() error {
			_, _, _, err := s.PutChannel(ctx, app, "production", ChannelPatch{Bundle: &v1}, false)
			return err
		},
		"rollout": func() error { _, err := s.SetRollout(ctx, app, "production", RolloutSet, v1, bps); return err },
		"bundle": func() error {
			_, err := s.CreateBundle(ctx, Bundle{AppID: app, Version: "1.0.2", SHA256: strings.Repeat("b", 64), Size: 1})
			return err
		},
		"delete": func() error { _, err := s.DeleteBundle(ctx, app, "1.0.1"); return err },
		"keep":   func() error { return s.SetKeepBundles(ctx, app, 1) },
		"app":    func() error { _, err := s.DeleteApp(ctx, app); return err },
	}
	for what, w := range writes {
		if err := w(); err == nil {
			t.Fatalf("%s: committed although its audit record could not be written", what)
		}
	}
	chs, err := s.ListChannels(bg, app)
	if err != nil || len(chs) != 1 || chs[0].Bundle != "1.0.0" || chs[0].Rollout != nil {
		t.Fatalf("channels after the failed writes: %+v, %v; want production on 1.0.0, no rollout", chs, err)
	}
	bs, _ := s.ListBundles(bg, app)
	keep, _ := s.KeepBundles(bg, app)
	if len(bs) != 2 || keep != 0 {
		t.Fatalf("after the failed writes: %d bundles, keep %d; want 2 and 0", len(bs), keep)
	}
	if r, _ := s.Rev(bg); r != rev {
		t.Fatalf("revision moved from %d to %d with every write rolled back", rev, r)
	}
	// Unaudited writes (no Who) do not touch the table.
	if _, _, _, err := s.PutChannel(bg, app, "beta", ChannelPatch{Bundle: &v0}, false); err != nil {
		t.Fatalf("unaudited write: %v", err)
	}

	if _, err := s.db.ExecContext(bg, `ALTER TABLE audit_log_away RENAME TO audit_log`); err != nil {
		t.Fatal(err)
	}
	if err := writes["channel"](); err != nil {
		t.Fatal(err)
	}
	recs, _ = s.Audit(bg, AuditQuery{AfterID: recs[3].ID})
	if len(recs) != 1 || recs[0].Action != "channel.changed" || string(recs[0].Before) != `{"bundle":"1.0.0"}` || string(recs[0].After) != `{"bundle":"1.0.1"}` {
		t.Fatalf("after the table is back: %+v, want one channel.changed 1.0.0 → 1.0.1 (and none for the unaudited beta)", recs)
	}
}

// TestAuditChannelDemoted: making a channel public takes the default role
// from another public channel; that channel's change is recorded too, in
// the same transaction, and a created channel shows only its bundle and
// the settings that differ from a new channel's.
func TestAuditChannelDemoted(t *testing.T) {
	s, _ := open(t)
	bg := context.Background()
	ctx := WithWho(bg, Who{Actor: "bob", Addr: "::1"})
	const app = "com.example.demote"
	if _, err := s.CreateApp(ctx, app, "Demote"); err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	if _, _, _, err := s.PutChannel(ctx, app, "production", ChannelPatch{Public: &yes}, true); err != nil {
		t.Fatal(err)
	}
	if _, _, demoted, err := s.PutChannel(ctx, app, "next", ChannelPatch{Public: &yes, Electron: &no}, true); err != nil || len(demoted) != 1 {
		t.Fatalf("demoted %v, %v", demoted, err)
	}
	recs, err := s.Audit(bg, AuditQuery{App: app, Actions: []string{"channel.created", "channel.changed"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Actor+" "+r.Action+" "+r.Target+" "+string(r.Before)+" → "+string(r.After))
	}
	want := []string{
		`bob channel.created production  → {"bundle":"","public":true}`,
		`bob channel.created next  → {"bundle":"","public":true,"electron":false}`,
		`bob channel.changed production {"public":true} → {"public":false}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
