package origin

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/store"
)

// hookRequest is one request a test receiver got.
type hookRequest struct {
	at     time.Time
	header http.Header
	body   []byte
	status int // what the receiver answered
}

// hookReceiver is a real HTTP receiver on 127.0.0.1 that records every
// request and answers answer(n) for the nth (1-based; nil: 200).
type hookReceiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []hookRequest
	answer func(n int) int
}

func newHookReceiver(t *testing.T, answer func(n int) int) *hookReceiver {
	t.Helper()
	h := &hookReceiver{answer: answer}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		status := http.StatusOK
		if h.answer != nil {
			status = h.answer(len(h.got) + 1)
		}
		h.got = append(h.got, hookRequest{at: time.Now(), header: r.Header.Clone(), body: body, status: status})
		h.mu.Unlock()
		if status/100 == 3 {
			w.Header().Set("Location", "http://127.0.0.1:1/elsewhere")
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, "answer %d", status)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) requests() []hookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

// delivered are the requests answered 2xx.
func (h *hookReceiver) delivered() []hookRequest {
	return slices.DeleteFunc(h.requests(), func(r hookRequest) bool { return r.status/100 != 2 })
}

// verifyHook checks a request the way a receiver should (docs/cli.md,
// "Verifying deliveries"), written apart from the origin's signing code:
// the signature is HMAC-SHA256(secret, "<t>.<body>") and t is within 5
// minutes of now.
func verifyHook(secret string, header http.Header, body []byte, now time.Time) error {
	var ts, sig string
	for _, part := range strings.Split(header.Get("Updraft-Signature"), ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("signature %q: no timestamp", header.Get("Updraft-Signature"))
	}
	if d := now.Sub(time.Unix(t, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("signature timestamp %d is %s away from now", t, d)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(body)))
	want := mac.Sum(nil)
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, want) {
		return errors.New("signature does not match")
	}
	return nil
}

// openHookOrigin opens an origin on dir with cfg (testConfig's, adjusted)
// and serves it; stop closes it (also at the test's end).
func openHookOrigin(t *testing.T, cfg config.Origin) (o *testOrigin, stop func()) {
	t.Helper()
	srv, err := Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	var once sync.Once
	stop = func() { once.Do(func() { hs.Close(); srv.Close() }) }
	t.Cleanup(stop)
	key, _ := os.ReadFile(filepath.Join(cfg.DataDir, "api-key"))
	return &testOrigin{srv: srv, http: hs, client: client.New(hs.URL, strings.TrimSpace(string(key))), dir: cfg.DataDir}, stop
}

func hookConfig(t *testing.T, dir string, backoff ...time.Duration) config.Origin {
	cfg := testConfig(t, dir)
	cfg.WebhookPoll = 100 * time.Millisecond
	cfg.WebhookBackoff = backoff
	return cfg
}

// waitDeliveries waits until webhook id's delivery log has n deliveries,
// all settled (ok or failed), and returns them oldest first.
func waitDeliveries(t *testing.T, c *client.Client, id int64, n int) []store.WebhookDelivery {
	t.Helper()
	deadline := time.Now().Add(testenv.Patience(30 * time.Second))
	for {
		ds, err := c.WebhookDeliveries(context.Background(), id, 0)
		if err != nil {
			t.Fatal(err)
		}
		settled := len(ds) == n
		for _, d := range ds {
			settled = settled && d.State != store.DeliveryPending
		}
		if settled {
			slices.Reverse(ds)
			return ds
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook %d: %d deliveries settled not reached in 30s: %+v", id, n, ds)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func appendAudit(t *testing.T, st *store.Store, recs ...store.AuditRecord) []int64 {
	t.Helper()
	var ids []int64
	for _, r := range recs {
		id, err := st.AppendAudit(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// A receiver gets each event it subscribed to once, signed, with the
// audit record's content; events of other actions or other apps, and
// records older than the webhook, are not sent.
func TestWebhookDeliversMatchingEventsOnce(t *testing.T) {
	ctx := context.Background()
	o, _ := openHookOrigin(t, hookConfig(t, t.TempDir()))
	for _, app := range []string{"com.example.app", "com.example.other"} {
		if _, err := o.client.CreateApp(ctx, app, ""); err != nil {
			t.Fatal(err)
		}
	}
	st := o.srv.store
	before := appendAudit(t, st, store.AuditRecord{App: "com.example.app", Actor: "ci", Action: "bundle.uploaded", Target: "0.9.0"})

	a, b := newHookReceiver(t, nil), newHookReceiver(t, nil)
	ha, err := o.client.AddWebhook(ctx, api.WebhookRequest{URL: a.srv.URL + "/hook", Events: []string{"bundle.uploaded", "rollout.*"},
		App: "com.example.app", Secret: "a-secret-of-ours"})
	if err != nil {
		t.Fatal(err)
	}
	hb, err := o.client.AddWebhook(ctx, api.WebhookRequest{URL: b.srv.URL, Events: []string{"guard.acted"}})
	if err != nil {
		t.Fatal(err)
	}
	if ha.Secret != "a-secret-of-ours" || len(hb.Secret) != 64 || ha.Cursor <= before[0] {
		t.Fatalf("created: secret %q, generated secret %q (want 64 hex), cursor %d (want past %d)", ha.Secret, hb.Secret, ha.Cursor, before[0])
	}
	if _, err := hex.DecodeString(hb.Secret); err != nil {
		t.Fatalf("generated secret %q: %v", hb.Secret, err)
	}

	recs := []store.AuditRecord{
		{App: "com.example.app", Actor: "ci", Addr: "192.0.2.7", Action: "bundle.uploaded", Target: "1.2.0", After: json.RawMessage(`{"version":"1.2.0"}`)}, // a
		{App: "com.example.other", Actor: "ci", Action: "bundle.uploaded", Target: "1.0.0"},                                                                 // other app
		{App: "com.example.app", Actor: "alice", Action: "channel.changed", Target: "production"},                                                           // not subscribed
		{App: "com.example.app", Actor: "guard", Action: "rollout.paused", Target: "production",
			Before: json.RawMessage(`{"paused":false}`), After: json.RawMessage(`{"paused":true}`)}, // a
		{App: "com.example.other", Actor: "guard", Action: "guard.acted", Target: "beta"},     // b
		{App: "com.example.app", Actor: "guard", Action: "guard.acted", Target: "production"}, // b
		{Actor: "admin", Action: "key.created", Target: "ci"},                                 // nobody
	}
	start := time.Now()
	ids := appendAudit(t, st, recs...)
	da := waitDeliveries(t, o.client, ha.ID, 2)
	db := waitDeliveries(t, o.client, hb.ID, 2)

	check := func(name string, h *hookReceiver, secret string, ds []store.WebhookDelivery, want ...int) {
		t.Helper()
		got := h.requests()
		if len(got) != len(want) {
			t.Fatalf("receiver %s got %d requests, want %d", name, len(got), len(want))
		}
		// Deliveries are sent a few at once: they may arrive in any order.
		byAudit := func(r hookRequest) int64 {
			var p WebhookPayload
			json.Unmarshal(r.body, &p)
			return p.AuditID
		}
		slices.SortFunc(got, func(x, y hookRequest) int { return int(byAudit(x) - byAudit(y)) })
		for i, req := range got {
			rec, id := recs[want[i]], ids[want[i]]
			if err := verifyHook(secret, req.header, req.body, time.Now()); err != nil {
				t.Errorf("receiver %s, request %d: %v", name, i, err)
			}
			if err := verifyHook(secret+"x", req.header, req.body, time.Now()); err == nil {
				t.Errorf("receiver %s: the signature verifies with a wrong secret", name)
			}
			if err := verifyHook(secret, req.header, req.body, time.Now().Add(time.Hour)); err == nil {
				t.Errorf("receiver %s: an hour-old signature accepted", name)
			}
			var p WebhookPayload
			dec := json.NewDecoder(strings.NewReader(string(req.body)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&p); err != nil {
				t.Fatalf("receiver %s: body %s: %v", name, req.body, err)
			}
			at, err := time.Parse(time.RFC3339, p.At)
			if p.Event != rec.Action || p.App != rec.App || p.Actor != rec.Actor || p.Addr != rec.Addr || p.Target != rec.Target ||
				p.AuditID != id || err != nil || at.Before(start.Truncate(time.Second)) || at.After(time.Now()) {
				t.Errorf("receiver %s, request %d: payload %+v, want the record %+v (id %d)", name, i, p, rec, id)
			}
			if string(p.Before) != orNull(rec.Before) || string(p.After) != orNull(rec.After) {
				t.Errorf("receiver %s: before %s after %s, want %s %s", name, p.Before, p.After, rec.Before, rec.After)
			}
			h := req.header
			if h.Get("Content-Type") != "application/json" || h.Get("User-Agent") != "Updraft-Webhook/1" || h.Get("Updraft-Event") != rec.Action ||
				h.Get("Updraft-Delivery") != p.ID || p.ID != ds[i].UID || ds[i].AuditID != id || ds[i].State != store.DeliveryOK || ds[i].Attempts != 1 ||
				ds[i].LastStatus != 200 {
				t.Errorf("receiver %s, request %d: headers %v, payload id %s, delivery %+v", name, i, h, p.ID, ds[i])
			}
		}
	}
	check("a", a, ha.Secret, da, 0, 3)
	check("b", b, hb.Secret, db, 4, 5)
	if a.requests()[0].header.Get("Updraft-Delivery") == a.requests()[1].header.Get("Updraft-Delivery") {
		t.Error("two deliveries share an Updraft-Delivery id")
	}
	// Nothing more comes: another wake-up finds nothing new.
	o.srv.webhooks.wake()
	appendAudit(t, st, store.AuditRecord{App: "com.example.app", Actor: "ci", Action: "bundle.uploaded", Target: "1.3.0"})
	waitDeliveries(t, o.client, ha.ID, 3)
	if n := len(b.requests()); n != 2 {
		t.Fatalf("receiver b got %d requests, want still 2", n)
	}
	metrics := fetchMetrics(t, o)
	for _, want := range []string{`updraft_origin_webhook_deliveries_total{state="ok"} 5`, `updraft_origin_webhook_deliveries{state="ok"} 5`,
		`updraft_origin_webhook_deliveries{state="pending"} 0`, `updraft_origin_webhook_deliveries{state="failed"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics: want %s:\n%s", want, grepLines(metrics, "webhook"))
		}
	}
}

func orNull(m json.RawMessage) string {
	if len(m) == 0 {
		return "null"
	}
	return string(m)
}

func fetchMetrics(t *testing.T, o *testOrigin) string {
	t.Helper()
	resp, err := http.Get(o.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A receiver failing its first two attempts sees the retries, the second
// gap longer than the first, then the delivery is ok after 3 attempts; a
// receiver that always fails, or redirects, is given up after the attempts
// (and the redirect is not followed).
func TestWebhookRetriesWithBackoff(t *testing.T) {
	ctx := context.Background()
	o, _ := openHookOrigin(t, hookConfig(t, t.TempDir(), 250*time.Millisecond, 2*time.Second))
	flaky := newHookReceiver(t, func(n int) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	down := newHookReceiver(t, func(int) int { return http.StatusServiceUnavailable })
	moved := newHookReceiver(t, func(int) int { return http.StatusFound })
	var hooks []api.WebhookCreated
	for _, h := range []*hookReceiver{flaky, down, moved} {
		w, err := o.client.AddWebhook(ctx, api.WebhookRequest{URL: h.srv.URL, Events: []string{"bundle.uploaded"}})
		if err != nil {
			t.Fatal(err)
		}
		hooks = append(hooks, w)
	}
	appendAudit(t, o.srv.store, store.AuditRecord{App: "com.example.app", Actor: "ci", Action: "bundle.uploaded", Target: "1.0.0"})

	d := waitDeliveries(t, o.client, hooks[0].ID, 1)[0]
	got := flaky.requests()
	if d.State != store.DeliveryOK || d.Attempts != 3 || d.LastStatus != 204 || d.LastError != "" || len(got) != 3 {
		t.Fatalf("flaky receiver: delivery %+v, %d requests; want ok after 3 attempts", d, len(got))
	}
	gap1, gap2 := got[1].at.Sub(got[0].at), got[2].at.Sub(got[1].at)
	if gap1 < 200*time.Millisecond || gap2 < 1600*time.Millisecond || gap2 <= gap1 {
		t.Fatalf("retry gaps %s, %s: want about 250ms then 2s (±20%%)", gap1, gap2)
	}
	var ids []string
	for _, r := range got {
		ids = append(ids, r.header.Get("Updraft-Delivery"))
		if err := verifyHook(hooks[0].Secret, r.header, r.body, time.Now()); err != nil {
			t.Error(err)
		}
	}
	if ids[0] != d.UID || ids[1] != d.UID || ids[2] != d.UID {
		t.Fatalf("Updraft-Delivery across retries: %v, want %s each time", ids, d.UID)
	}

	for i, h := range []*hookReceiver{down, moved} {
		d := waitDeliveries(t, o.client, hooks[i+1].ID, 1)[0]
		want := []string{"HTTP 503: answer 503", "HTTP 302: redirect to http://127.0.0.1:1/elsewhere not followed"}[i]
		if d.State != store.DeliveryFailed || d.Attempts != 3 || d.LastStatus != []int{503, 302}[i] || d.LastError != want || len(h.requests()) != 3 {
			t.Fatalf("receiver %d: delivery %+v after %d requests; want failed after 3 attempts with %q", i, d, len(h.requests()), want)
		}
	}
	m := fetchMetrics(t, o)
	for _, want := range []string{`_total{state="ok"} 1`, `_total{state="retry"} 6`, `_total{state="failed"} 2`, `{state="ok"} 1`, `{state="failed"} 2`} {
		if !strings.Contains(m, "updraft_origin_webhook_deliveries"+want) {
			t.Errorf("metrics: want %s:\n%s", want, grepLines(m, "webhook"))
		}
	}
}

// Deliveries survive the origin: one queued and failing when the origin
// stops, and a record appended while no origin runs, are each delivered
// once when it opens again on the same data.
func TestWebhookSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	backoff := slices.Repeat([]time.Duration{200 * time.Millisecond}, 10) // attempts to spare: the test stops the origin after the first
	cfg := hookConfig(t, dir, backoff...)
	var mu sync.Mutex
	up := false
	h := newHookReceiver(t, func(int) int {
		mu.Lock()
		defer mu.Unlock()
		if up {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	o, stop := openHookOrigin(t, cfg)
	w, err := o.client.AddWebhook(ctx, api.WebhookRequest{URL: h.srv.URL, Events: []string{"bundle.*"}})
	if err != nil {
		t.Fatal(err)
	}
	ids := appendAudit(t, o.srv.store,
		store.AuditRecord{App: "com.example.app", Actor: "ci", Action: "bundle.uploaded", Target: "1.0.0"},
		store.AuditRecord{App: "com.example.app", Actor: "ci", Action: "bundle.deleted", Target: "0.9.0"})
	// Both tried, failed and recorded at least once, still pending.
	deadline := time.Now().Add(testenv.Patience(30 * time.Second))
	for {
		ds, err := o.client.WebhookDeliveries(ctx, w.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 2 && ds[0].LastStatus == 503 && ds[1].LastStatus == 503 { // an attempt recorded (not only claimed)
			if ds[0].State != store.DeliveryPending || ds[1].State != store.DeliveryPending {
				t.Fatalf("deliveries to a receiver answering 503: %+v", ds)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries not tried in 30s: %+v", ds)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()

	// No origin runs: a record appended now is delivered at the next start.
	st, err := store.OpenURL(ctx, cfg.Store, filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, appendAudit(t, st, store.AuditRecord{App: "com.example.app", Actor: "retention", Action: "bundle.deleted", Target: "0.8.0"})...)
	st.Close()
	failedBefore := len(h.requests())
	mu.Lock()
	up = true
	mu.Unlock()

	o2, _ := openHookOrigin(t, cfg)
	ds := waitDeliveries(t, o2.client, w.ID, 3)
	okByAudit := map[int64]int{}
	for _, r := range h.delivered() {
		var p WebhookPayload
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatal(err)
		}
		okByAudit[p.AuditID]++
	}
	for i, id := range ids {
		if okByAudit[id] != 1 || ds[i].State != store.DeliveryOK || ds[i].AuditID != id {
			t.Errorf("audit record %d: delivered %d times, delivery %+v; want once, ok", id, okByAudit[id], ds[i])
		}
	}
	if ds[0].Attempts < 2 || ds[2].Attempts != 1 || failedBefore < 2 {
		t.Errorf("attempts %d, %d, %d with %d failed requests before the restart: want the first retried after it, the last at once",
			ds[0].Attempts, ds[1].Attempts, ds[2].Attempts, failedBefore)
	}
}

// Two origins on one PostgreSQL store both run the webhook worker: each
// delivery is sent once, whichever origin appended its record.
func TestWebhookTwoOriginsSendOnce(t *testing.T) {
	if testenv.StoreEngine() != "postgres" {
		t.Skip("several origins share a PostgreSQL store only")
	}
	ctx := context.Background()
	cfg1 := hookConfig(t, t.TempDir())
	cfg1.WebhookPoll = 20 * time.Millisecond
	cfg2 := hookConfig(t, t.TempDir())
	cfg2.Store, cfg2.Blobs, cfg2.WebhookPoll = cfg1.Store, cfg1.Blobs, 20*time.Millisecond
	o1, _ := openHookOrigin(t, cfg1)
	o2, _ := openHookOrigin(t, cfg2)
	h := newHookReceiver(t, func(int) int { time.Sleep(5 * time.Millisecond); return http.StatusOK })
	w, err := o1.client.AddWebhook(ctx, api.WebhookRequest{URL: h.srv.URL, Events: []string{"bundle.uploaded"}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 60
	var wg sync.WaitGroup
	for i := range n {
		st := []*store.Store{o1.srv.store, o2.srv.store}[i%2]
		wg.Go(func() {
			if _, err := st.AppendAudit(ctx, store.AuditRecord{App: "com.example.app", Actor: "ci", Action: "bundle.uploaded", Target: fmt.Sprintf("1.0.%d", i)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	ds := waitDeliveries(t, o1.client, w.ID, n)
	got := map[string]int{}
	audits := map[int64]bool{}
	for _, r := range h.requests() {
		var p WebhookPayload
		json.Unmarshal(r.body, &p)
		got[r.header.Get("Updraft-Delivery")]++
		audits[p.AuditID] = true
	}
	for _, d := range ds {
		if got[d.UID] != 1 || d.Attempts != 1 || d.State != store.DeliveryOK {
			t.Errorf("delivery %+v sent %d times", d, got[d.UID])
		}
	}
	if len(h.requests()) != n || len(audits) != n {
		t.Fatalf("%d requests for %d audit records, want %d each", len(h.requests()), len(audits), n)
	}
}

// The slack format posts {"text": "…"}: one line a person reads.
func TestWebhookSlackFormat(t *testing.T) {
	ctx := context.Background()
	o, _ := openHookOrigin(t, hookConfig(t, t.TempDir()))
	h := newHookReceiver(t, nil)
	w, err := o.client.AddWebhook(ctx, api.WebhookRequest{URL: h.srv.URL, Events: []string{"rollout.paused", "bundle.uploaded"}, Format: "slack"})
	if err != nil {
		t.Fatal(err)
	}
	if w.Format != "slack" {
		t.Fatalf("format %q", w.Format)
	}
	appendAudit(t, o.srv.store,
		store.AuditRecord{App: "com.example.app", Actor: "guard", Action: "rollout.paused", Target: "production",
			Before: json.RawMessage(`{"rollout":{"bundle":"1.2.0","bps":1000,"paused":false}}`),
			After:  json.RawMessage(`{"rollout":{"bundle":"1.2.0","bps":1000,"paused":true},"failure_rate":0.12}`)},
		store.AuditRecord{App: "com.example.app", Actor: "ci", Action: "bundle.uploaded", Target: "1.3.0"})
	waitDeliveries(t, o.client, w.ID, 2)
	want := []string{
		`{"text":"com.example.app: rollout of 1.2.0 on production paused by guard (failure rate 12%)"}`,
		`{"text":"com.example.app: bundle 1.3.0 uploaded by ci"}`,
	}
	var got []string
	for _, r := range h.requests() {
		got = append(got, string(r.body))
		if r.header.Get("Content-Type") != "application/json" {
			t.Errorf("slack delivery's Content-Type %q", r.header.Get("Content-Type"))
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("slack bodies:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The API refuses bad subscriptions with stable codes, tests a webhook
// with a ping, and removes it with its delivery log.
func TestWebhookAPI(t *testing.T) {
	ctx := context.Background()
	o, _ := openHookOrigin(t, hookConfig(t, t.TempDir()))
	if _, err := o.client.CreateApp(ctx, "com.example.app", ""); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		req  api.WebhookRequest
		want string
	}{
		{api.WebhookRequest{URL: "ftp://x/y", Events: []string{"bundle.uploaded"}}, "400 invalid_url"},
		{api.WebhookRequest{URL: "http://", Events: []string{"bundle.uploaded"}}, "400 invalid_url"},
		{api.WebhookRequest{URL: "http://u:p@x/", Events: []string{"bundle.uploaded"}}, "400 invalid_url"},
		{api.WebhookRequest{URL: "http://x/", Events: []string{"bundle.uploaded", "bundle.exploded", "nope.*"}}, "400 invalid_events"},
		{api.WebhookRequest{URL: "http://x/"}, "400 invalid_events"},
		{api.WebhookRequest{URL: "http://x/", Events: []string{"*"}, Format: "xml"}, "400 invalid_format"},
		{api.WebhookRequest{URL: "http://x/", Events: []string{"*"}, App: "com.example.missing"}, "404 app_not_found"},
	} {
		_, err := o.client.AddWebhook(ctx, c.req)
		if got := apiCode(err); got != c.want {
			t.Errorf("add %+v: %s, want %s", c.req, got, c.want)
		}
		if c.want == "400 invalid_events" && len(c.req.Events) > 0 && !strings.Contains(err.Error(), "bundle.exploded, nope.*") {
			t.Errorf("invalid_events does not name the unknown events: %v", err)
		}
	}
	for _, path := range []string{"/api/v1/webhooks/99", "/api/v1/webhooks/x"} {
		err := o.client.DoJSON(ctx, http.MethodDelete, path, nil, nil)
		if got := apiCode(err); got != "404 webhook_not_found" {
			t.Errorf("DELETE %s: %s", path, got)
		}
	}

	h := newHookReceiver(t, nil)
	w, err := o.client.AddWebhook(ctx, api.WebhookRequest{URL: h.srv.URL, Events: []string{"rollout.*", "guard.acted"}, App: "com.example.app"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := o.client.TestWebhook(ctx, w.ID)
	if err != nil || !res.OK || res.Status != 200 || len(h.requests()) != 1 {
		t.Fatalf("test ping: %+v %v, %d requests", res, err, len(h.requests()))
	}
	ping := h.requests()[0]
	var p WebhookPayload
	json.Unmarshal(ping.body, &p)
	if err := verifyHook(w.Secret, ping.header, ping.body, time.Now()); err != nil || p.Event != "webhook.test" || p.ID != res.ID ||
		ping.header.Get("Updraft-Event") != "webhook.test" || p.App != "com.example.app" {
		t.Fatalf("ping %s: %v", ping.body, err)
	}
	list, err := o.client.ListWebhooks(ctx)
	if err != nil || len(list) != 1 || list[0].ID != w.ID || !slices.Equal(list[0].Events, []string{"rollout.*", "guard.acted"}) {
		t.Fatalf("list: %+v %v", list, err)
	}
	raw, _ := json.Marshal(list)
	if strings.Contains(string(raw), w.Secret) {
		t.Fatalf("the list shows the secret: %s", raw)
	}
	audit, err := o.srv.store.Audit(ctx, store.AuditQuery{Actions: []string{"webhook.added", "webhook.removed"}})
	if err != nil || len(audit) != 1 || audit[0].Actor == "" || audit[0].Target != strconv.FormatInt(w.ID, 10) ||
		strings.Contains(string(audit[0].After), w.Secret) {
		t.Fatalf("audit after add: %+v %v", audit, err)
	}
	if _, err := o.client.RemoveWebhook(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := o.client.WebhookDeliveries(ctx, w.ID, 0); apiCode(err) != "404 webhook_not_found" {
		t.Fatalf("deliveries of a removed webhook: %v", err)
	}
	if _, err := o.client.TestWebhook(ctx, w.ID); apiCode(err) != "404 webhook_not_found" {
		t.Fatalf("test of a removed webhook: %v", err)
	}
	audit, _ = o.srv.store.Audit(ctx, store.AuditQuery{Actions: []string{"webhook.removed"}})
	if len(audit) != 1 || audit[0].Target != strconv.FormatInt(w.ID, 10) {
		t.Fatalf("audit after remove: %+v", audit)
	}
}
