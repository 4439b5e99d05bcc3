package store

import (
	"context"
	"encoding/json"
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
