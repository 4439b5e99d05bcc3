package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin/store"
)

// TestWebhookCLI drives webhook add, list, remove, deliveries and test
// against a real serve; a real receiver subscribed to webhook.* gets the
// audit records the other webhook's add and remove append, signed with the
// secret given on the command line.
func TestWebhookCLI(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	var mu sync.Mutex
	var got []http.Header
	var bodies [][]byte
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		mu.Lock()
		got, bodies = append(got, req.Header.Clone()), append(bodies, b)
		mu.Unlock()
	}))
	defer recv.Close()
	const secret = "cli-test-secret"
	cli(t, r, data, "app", "create", "com.example.app")

	out := cli(t, r, data, "webhook", "add", "--url", recv.URL, "--events", "webhook.*", "--secret", secret)
	if !strings.Contains(out, "webhook 1: "+recv.URL+" gets webhook.* (all apps, json)") || !strings.Contains(out, "secret: "+secret) {
		t.Fatalf("webhook add:\n%s", out)
	}
	out = cli(t, r, data, "webhook", "add", "--url", "https://hooks.example.com/services/T/B/X", "--app", "com.example.app",
		"--events", "bundle.uploaded,channel.changed,rollout.paused,guard.acted", "--format", "slack")
	if !strings.Contains(out, "webhook 2: ") || !strings.Contains(out, "(com.example.app, slack)") {
		t.Fatalf("second webhook add:\n%s", out)
	}
	generated := strings.TrimSpace(strings.SplitN(strings.SplitN(out, "secret: ", 2)[1], "\n", 2)[0])
	if _, err := hex.DecodeString(generated); err != nil || len(generated) != 64 {
		t.Fatalf("generated secret %q: want 64 hex digits", generated)
	}

	out = cli(t, r, data, "webhook", "list")
	if !strings.Contains(out, "ID") || !strings.Contains(out, "webhook.*") || !strings.Contains(out, "bundle.uploaded,channel.changed,rollout.paused,guard.acted") ||
		strings.Contains(out, secret) || strings.Contains(out, generated) {
		t.Fatalf("webhook list:\n%s", out)
	}
	var hooks []store.Webhook
	if err := json.Unmarshal([]byte(cli(t, r, data, "webhook", "list", "--json")), &hooks); err != nil || len(hooks) != 2 || hooks[1].Format != "slack" || hooks[1].App != "com.example.app" {
		t.Fatalf("webhook list --json: %+v %v", hooks, err)
	}
	if out := cli(t, r, data, "webhook", "remove", "2"); !strings.Contains(out, "webhook 2 (https://hooks.example.com/services/T/B/X) removed") {
		t.Fatalf("webhook remove:\n%s", out)
	}
	if out := cli(t, r, data, "webhook", "list", "--json"); !strings.Contains(out, `"id": 1`) || strings.Contains(out, `"id": 2`) {
		t.Fatalf("list after remove:\n%s", out)
	}

	// Webhook 1 gets webhook 2's addition and removal.
	deadline := time.Now().Add(testenv.Patience(30 * time.Second))
	var ds []store.WebhookDelivery
	for {
		if err := json.Unmarshal([]byte(cli(t, r, data, "webhook", "deliveries", "1", "--json")), &ds); err != nil {
			t.Fatal(err)
		}
		if len(ds) == 2 && ds[0].State == "ok" && ds[1].State == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries not ok in 30s: %+v", ds)
		}
		time.Sleep(20 * time.Millisecond)
	}
	events := map[string]bool{ds[0].Event: true, ds[1].Event: true}
	if !events["webhook.added"] || !events["webhook.removed"] {
		t.Fatalf("deliveries %+v: want webhook.added and webhook.removed", ds)
	}
	out = cli(t, r, data, "webhook", "deliveries", "1")
	if !strings.Contains(out, "DELIVERY") || !strings.Contains(out, ds[0].UID) || !strings.Contains(out, "webhook.removed") || !strings.Contains(out, " ok ") {
		t.Fatalf("webhook deliveries:\n%s", out)
	}
	if out := cli(t, r, data, "webhook", "test", "1"); !strings.Contains(out, "webhook 1: test ping") || !strings.Contains(out, "delivered (HTTP 200") {
		t.Fatalf("webhook test:\n%s", out)
	}
	mu.Lock()
	if len(got) != 3 || got[2].Get("Updraft-Event") != "webhook.test" {
		t.Fatalf("receiver got %d requests, want 2 deliveries and the ping", len(got))
	}
	for i, h := range got {
		ts, sig, _ := strings.Cut(strings.TrimPrefix(h.Get("Updraft-Signature"), "t="), ",v1=")
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(ts + "." + string(bodies[i])))
		if hex.EncodeToString(mac.Sum(nil)) != sig {
			t.Errorf("request %d: signature %q does not verify with the secret given to webhook add", i, h.Get("Updraft-Signature"))
		}
	}
	mu.Unlock()

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"webhook", "add", "--url", "ftp://x/y", "--events", "bundle.uploaded"}, "invalid_url"},
		{[]string{"webhook", "add", "--url", "https://x/y", "--events", "bundle.uploaded,bundle.exploded"}, "invalid_events: unknown events: bundle.exploded"},
		{[]string{"webhook", "add", "--url", "https://x/y"}, "--url and --events are required"},
		{[]string{"webhook", "add", "--url", "https://x/y", "--events", "*", "--format", "xml"}, `--format "xml": want json or slack`},
		{[]string{"webhook", "remove", "99"}, "webhook_not_found"},
		{[]string{"webhook", "remove", "x"}, `ID "x": want a webhook id`},
		{[]string{"webhook", "deliveries", "99"}, "webhook_not_found"},
		{[]string{"webhook", "test", "99"}, "webhook_not_found"},
	} {
		if msg := cliErr(t, r, data, c.args...); !strings.Contains(msg, c.want) {
			t.Errorf("updraft %s: %s, want %q", strings.Join(c.args, " "), msg, c.want)
		}
	}
	// A ping the receiver refuses fails the command.
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { w.WriteHeader(http.StatusGone) }))
	defer down.Close()
	cli(t, r, data, "webhook", "add", "--url", down.URL, "--events", "guard.acted")
	if msg := cliErr(t, r, data, "webhook", "test", "3"); !strings.Contains(msg, "not delivered: HTTP 410") {
		t.Fatalf("test of a refusing receiver: %s", msg)
	}
}
