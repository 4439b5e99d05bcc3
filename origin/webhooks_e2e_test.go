package origin

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/store"
)

// Issue 20, end to end: writes through the operator API and the rollout
// guard's own action reach a webhook subscribed to bundle.uploaded,
// channel.changed, rollout.paused and guard.acted, each exactly once,
// signed (verified as a receiver would), named by the key that acted or
// by the guard; a Slack-format webhook gets a readable line for the
// guard's pause. The records come from the audit trail the changes wrote
// in their own transactions: no test code appends them.
func TestWebhookFromRealWrites(t *testing.T) {
	o := guardOrigin(t, store.GuardPause)
	ctx := context.Background()
	c := o.client
	recv := newHookReceiver(t, nil)
	slack := newHookReceiver(t, nil)
	hook, err := c.AddWebhook(ctx, api.WebhookRequest{URL: recv.srv.URL, App: guardApp,
		Events: []string{"bundle.uploaded", "channel.changed", "rollout.paused", "guard.acted"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddWebhook(ctx, api.WebhookRequest{URL: slack.srv.URL, App: guardApp, Events: []string{"rollout.paused"}, Format: "slack"}); err != nil {
		t.Fatal(err)
	}
	// Operator writes: an upload, a channel created (not subscribed) then
	// changed.
	z := makeZip(t, map[string]string{"index.html": "<html>3</html>"})
	if _, err := c.UploadBundle(ctx, guardApp, "1.0.2", bytes.NewReader(z), client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetChannel(ctx, guardApp, "beta", store.ChannelPatch{Bundle: ptrTo("1.0.1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetChannel(ctx, guardApp, "beta", store.ChannelPatch{Bundle: ptrTo("1.0.2")}); err != nil {
		t.Fatal(err)
	}
	// The guard's own action: 30% of the rollout's installs fail.
	ingest(t, o, 1, outcomes(0, 100, thirtyPercent, time.Now().UnixMilli()))

	type event struct{ Event, Actor, Target string }
	want := []event{
		{"bundle.uploaded", operatorKeyName(t, o), "1.0.2"},
		{"channel.changed", operatorKeyName(t, o), "beta"},
		{"guard.acted", ActorGuard, "production"},
		{"rollout.paused", ActorGuard, "production"},
	}
	var got []hookRequest
	deadline := time.Now().Add(testenv.Patience(30 * time.Second))
	for got = recv.delivered(); len(got) < len(want) || len(slack.delivered()) < 1; got = recv.delivered() {
		if time.Now().After(deadline) {
			t.Fatalf("deliveries after 30s: %d of %d (slack %d); guard: %s", len(got), len(want), len(slack.delivered()), describeGuard(t, o)())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var seen []event
	for _, r := range got {
		if err := verifyHook(hook.Secret, r.header, r.body, time.Now()); err != nil {
			t.Errorf("delivery %s: %v", r.body, err)
		}
		var p struct {
			Event  string `json:"event"`
			Actor  string `json:"actor"`
			Target string `json:"target"`
			App    string `json:"app_id"`
		}
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatalf("payload %s: %v", r.body, err)
		}
		if r.header.Get("Updraft-Event") != p.Event || p.App != guardApp {
			t.Errorf("delivery %s: Updraft-Event %q", r.body, r.header.Get("Updraft-Event"))
		}
		seen = append(seen, event{p.Event, p.Actor, p.Target})
	}
	// The guard's two records come from one transaction; deliveries of
	// one webhook may be sent concurrently, so compare as sets.
	sortEvents := func(es []event) {
		slices.SortFunc(es, func(a, b event) int { return strings.Compare(a.Event+a.Target, b.Event+b.Target) })
	}
	sortEvents(seen)
	sortEvents(want)
	if !slices.Equal(seen, want) {
		t.Fatalf("delivered %+v\nwant      %+v", seen, want)
	}
	var sl struct{ Text string }
	if err := json.Unmarshal(slack.delivered()[0].body, &sl); err != nil || !strings.Contains(sl.Text, guardApp) ||
		!strings.Contains(sl.Text, "paused") || !strings.Contains(sl.Text, "guard") {
		t.Fatalf("slack body %s: want the app, the pause and the guard named", slack.delivered()[0].body)
	}
	// Nothing more arrives: each event once (the delivery log agrees).
	ds := waitDeliveries(t, c, hook.ID, len(want))
	for _, d := range ds {
		if d.State != store.DeliveryOK || d.Attempts != 1 {
			t.Errorf("delivery %+v: want ok after one attempt", d)
		}
	}
	if n := len(recv.requests()); n != len(want) {
		t.Fatalf("%d requests, want %d", n, len(want))
	}
}
