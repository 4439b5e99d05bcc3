package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestWebhookMatches(t *testing.T) {
	w := Webhook{App: "com.a", Events: []string{"rollout.*", "bundle.uploaded"}}
	for _, c := range []struct {
		rec  AuditRecord
		want bool
	}{
		{AuditRecord{App: "com.a", Action: "rollout.paused"}, true},
		{AuditRecord{App: "com.a", Action: "rollout.rolled_back"}, true},
		{AuditRecord{App: "com.a", Action: "rollouts.x"}, false},
		{AuditRecord{App: "com.a", Action: "bundle.uploaded"}, true},
		{AuditRecord{App: "com.a", Action: "bundle.deleted"}, false},
		{AuditRecord{App: "com.b", Action: "rollout.paused"}, false},
		{AuditRecord{Action: "rollout.paused"}, false},
	} {
		if got := w.Matches(c.rec); got != c.want {
			t.Errorf("%+v matches %+v: %v, want %v", w, c.rec, got, c.want)
		}
	}
	all := Webhook{Events: []string{"*"}}
	if !all.Matches(AuditRecord{Action: "key.created"}) || !all.Matches(AuditRecord{App: "com.b", Action: "gc.run"}) {
		t.Error("* does not match every record of every app")
	}
	all.Disabled = true
	if all.Matches(AuditRecord{Action: "key.created"}) {
		t.Error("a disabled webhook matches")
	}
}

// The outbox: records become deliveries once, claims are exclusive until
// their lease runs out, a stale claim cannot record its attempt, a
// released claim is due again uncounted, settled deliveries are pruned.
func TestWebhookOutbox(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	old, err := s.AppendAudit(ctx, AuditRecord{App: "com.a", Actor: "ci", Action: "bundle.uploaded", Target: "0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.AddWebhook(ctx, Webhook{URL: "https://x.example/h", Events: []string{"bundle.*"}, Secret: "k", Format: WebhookJSON, CreatedBy: "ci"},
		AuditRecord{Actor: "ci"})
	if err != nil || w.ID == 0 || w.Cursor <= old {
		t.Fatalf("add: %+v %v", w, err)
	}
	uids := 0
	newUID := func() string { uids++; return fmt.Sprintf("u%d", uids) }
	render := func(w Webhook, rec AuditRecord, uid string) (string, error) {
		return fmt.Sprintf(`{"id":%q,"audit":%d}`, uid, rec.ID), nil
	}
	enqueue := func(want int) {
		t.Helper()
		n, more, err := s.EnqueueWebhookDeliveries(ctx, time.Now(), 100, newUID, render)
		if err != nil || n != want || more {
			t.Fatalf("enqueue: %d more=%v %v, want %d", n, more, err, want)
		}
	}
	enqueue(0) // the record older than the webhook is not sent
	id1, _ := s.AppendAudit(ctx, AuditRecord{App: "com.a", Actor: "ci", Action: "bundle.uploaded", Target: "1.0.0"})
	s.AppendAudit(ctx, AuditRecord{App: "com.a", Actor: "ci", Action: "channel.changed", Target: "production"})
	enqueue(1)
	enqueue(0) // the cursor moved past both
	if w2, _ := s.GetWebhook(ctx, w.ID); w2.Cursor != id1+1 {
		t.Fatalf("cursor %d, want %d", w2.Cursor, id1+1)
	}

	now := time.Now()
	ds, err := s.ClaimWebhookDeliveries(ctx, now, time.Minute, 8)
	if err != nil || len(ds) != 1 || ds[0].Attempts != 1 || ds[0].AuditID != id1 || ds[0].URL != w.URL || ds[0].Secret != "k" ||
		ds[0].Body != `{"id":"u1","audit":`+fmt.Sprint(id1)+`}` || ds[0].UID != "u1" {
		t.Fatalf("claim: %+v %v", ds, err)
	}
	first := ds[0]
	if ds, _ := s.ClaimWebhookDeliveries(ctx, now.Add(30*time.Second), time.Minute, 8); len(ds) != 0 {
		t.Fatalf("claimed again under its lease: %+v", ds)
	}
	// The claiming origin died: once the lease is over, it is claimed again.
	ds, err = s.ClaimWebhookDeliveries(ctx, now.Add(2*time.Minute), time.Minute, 8)
	if err != nil || len(ds) != 1 || ds[0].Attempts != 2 || ds[0].UID != first.UID {
		t.Fatalf("claim after the lease: %+v %v", ds, err)
	}
	if ok, err := s.RecordWebhookAttempt(ctx, first, WebhookAttempt{Status: 200}); ok || err != nil {
		t.Fatalf("a stale claim recorded its attempt: %v %v", ok, err)
	}
	if ok, err := s.RecordWebhookAttempt(ctx, ds[0], WebhookAttempt{Status: 500, Err: "HTTP 500", RetryAt: now.Add(time.Hour)}); !ok || err != nil {
		t.Fatalf("record: %v %v", ok, err)
	}
	if at, ok, err := s.NextWebhookAttempt(ctx); !ok || err != nil || at.UnixMilli() != now.Add(time.Hour).UnixMilli() {
		t.Fatalf("next attempt %v %v %v, want in an hour", at, ok, err)
	}
	ds, _ = s.ClaimWebhookDeliveries(ctx, now.Add(time.Hour), time.Minute, 8)
	if len(ds) != 1 || ds[0].Attempts != 3 {
		t.Fatalf("retry claim: %+v", ds)
	}
	// Released (its origin stops): due again at once, the attempt not counted.
	if err := s.ReleaseWebhookDelivery(ctx, ds[0]); err != nil {
		t.Fatal(err)
	}
	ds, _ = s.ClaimWebhookDeliveries(ctx, now.Add(time.Hour), time.Minute, 8)
	if len(ds) != 1 || ds[0].Attempts != 3 {
		t.Fatalf("claim after release: %+v", ds)
	}
	if ok, _ := s.RecordWebhookAttempt(ctx, ds[0], WebhookAttempt{Status: 204}); !ok {
		t.Fatal("record ok")
	}
	log, err := s.WebhookDeliveries(ctx, w.ID, 0)
	if err != nil || len(log) != 1 || log[0].State != DeliveryOK || log[0].Attempts != 3 || log[0].LastStatus != 204 || log[0].LastError != "" {
		t.Fatalf("log: %+v %v", log, err)
	}
	if _, ok, _ := s.NextWebhookAttempt(ctx); ok {
		t.Fatal("a pending delivery is left")
	}
	if n, err := s.PruneWebhookDeliveries(ctx, time.Now().Add(-time.Hour)); n != 0 || err != nil {
		t.Fatalf("pruned a fresh delivery: %d %v", n, err)
	}
	if n, err := s.PruneWebhookDeliveries(ctx, time.Now().Add(time.Hour)); n != 1 || err != nil {
		t.Fatalf("prune: %d %v", n, err)
	}
	// Removal takes the webhook; its id is not given again.
	if _, err := s.RemoveWebhook(ctx, w.ID, AuditRecord{Actor: "ci"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveWebhook(ctx, w.ID, AuditRecord{Actor: "ci"}); err != ErrNotFound {
		t.Fatalf("second remove: %v", err)
	}
	w3, err := s.AddWebhook(ctx, Webhook{URL: "https://x.example/3", Events: []string{"*"}, Format: WebhookSlack}, AuditRecord{Actor: "ci"})
	if err != nil || w3.ID <= w.ID {
		t.Fatalf("next webhook id %d after removing %d (%v)", w3.ID, w.ID, err)
	}
	recs, _ := s.Audit(ctx, AuditQuery{Actions: []string{"webhook.added", "webhook.removed"}})
	if len(recs) != 3 || recs[1].Action != "webhook.removed" || recs[1].Target != fmt.Sprint(w.ID) {
		t.Fatalf("audit: %+v", recs)
	}
}
