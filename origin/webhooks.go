package origin

// Webhooks (issue 20): operators subscribe URLs to audit actions; every
// origin delivers them from the audit trail through the store's outbox
// (origin/store/webhooks.go): it queues the records after each webhook's
// cursor as deliveries, claims due deliveries under a lease, POSTs them
// signed, and records each attempt. A failed attempt is retried with a
// capped exponential backoff and jitter until the attempts are spent.
// docs/cli.md ("Webhooks") documents the payload and how to verify the
// signature.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// WebhookEvents are the actions a webhook may subscribe to: the audit
// trail's vocabulary, and the ping `updraft webhook test` sends.
var WebhookEvents = []string{
	"app.created", "app.changed", "app.deleted",
	"bundle.uploaded", "bundle.deleted", "bundle.rebuilt",
	"channel.created", "channel.changed", "channel.deleted", "channel.preview_created",
	"rollout.set", "rollout.paused", "rollout.resumed", "rollout.promoted", "rollout.rolled_back",
	"ab.set", "ab.deleted", "segment.added", "segment.removed", "overrides.changed",
	"cohort.imported", "cohort.computed", "cohort.removed",
	"guard.set", "guard.deleted", "guard.acted",
	"key.created", "key.revoked", "key.rotated", "gc.run",
	"webhook.added", "webhook.removed", "webhook.test",
}

// DefaultWebhookBackoff is the wait before each retry of a failed
// delivery: 8 attempts over about 17 hours. Each wait is jittered by ±20%.
var DefaultWebhookBackoff = []time.Duration{10 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute,
	time.Hour, 4 * time.Hour, 12 * time.Hour}

const (
	defaultWebhookPoll    = time.Second
	defaultWebhookTimeout = 10 * time.Second
	webhookBodyLimit      = 64 << 10 // of a receiver's answer read; the rest is dropped with the connection
	webhookBatch          = 8        // deliveries sent at once
	webhookEnqueueBatch   = 500      // audit records queued per transaction
	// webhookLogRetention: settled deliveries (ok, failed) stay this long
	// in the delivery log, pruned hourly.
	webhookLogRetention = 30 * 24 * time.Hour
)

// webhookSender is an origin's webhook worker. Every origin sharing a
// store runs one: the store's claims give each delivery to one of them.
type webhookSender struct {
	s       *Server
	wakeCh  chan struct{}
	client  *http.Client
	poll    time.Duration
	timeout time.Duration
	backoff []time.Duration
	// attempts counts attempts by outcome: ok, retry, failed.
	attempts   *prometheus.CounterVec
	lastPruned time.Time
}

func newWebhookSender(s *Server) *webhookSender {
	w := &webhookSender{s: s, wakeCh: make(chan struct{}, 1), poll: s.cfg.WebhookPoll, timeout: s.cfg.WebhookTimeout, backoff: s.cfg.WebhookBackoff}
	if w.poll <= 0 {
		w.poll = defaultWebhookPoll
	}
	if w.timeout <= 0 {
		w.timeout = defaultWebhookTimeout
	}
	if len(w.backoff) == 0 {
		w.backoff = DefaultWebhookBackoff
	}
	w.client = &http.Client{
		Timeout: w.timeout,
		// A redirect is not followed: the receiver answered 3xx, which is
		// not a delivery (and following it could send the signed body to
		// a host the operator never named).
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	w.attempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "updraft_origin_webhook_deliveries_total",
		Help: "Webhook delivery attempts by outcome: ok (2xx), retry (failed, tried again later), failed (failed, attempts spent).",
	}, []string{"state"})
	for _, st := range []string{"ok", "retry", "failed"} {
		w.attempts.WithLabelValues(st)
	}
	s.metrics.reg.MustRegister(w.attempts, deliveryStates{s})
	return w
}

// deliveryStates is the gauge of the delivery log by state, read from the
// store at each scrape (the log holds 30 days: a small GROUP BY).
type deliveryStates struct{ s *Server }

var deliveryStatesDesc = prometheus.NewDesc("updraft_origin_webhook_deliveries",
	"Webhook deliveries in the delivery log (kept 30 days) by state: pending (queued or waiting to retry), ok, failed.", []string{"state"}, nil)

func (d deliveryStates) Describe(ch chan<- *prometheus.Desc) { ch <- deliveryStatesDesc }

func (d deliveryStates) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, err := d.s.store.CountWebhookDeliveries(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(deliveryStatesDesc, err)
		return
	}
	for _, st := range []string{store.DeliveryPending, store.DeliveryOK, store.DeliveryFailed} {
		ch <- prometheus.MustNewConstMetric(deliveryStatesDesc, prometheus.GaugeValue, float64(n[st]), st)
	}
}

// wake makes the worker look for new audit records now.
func (w *webhookSender) wake() {
	select {
	case w.wakeCh <- struct{}{}:
	default:
	}
}

// lease is how long a claimed delivery is this origin's: past its
// timeout, so a live origin always records its attempt first.
func (w *webhookSender) lease() time.Duration { return w.timeout + 30*time.Second }

// run queues and sends deliveries until ctx ends: woken by this origin's
// audit records (and other origins' changes), at least every poll, and
// when the next retry is due.
func (w *webhookSender) run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wakeCh:
		case <-t.C:
		}
		w.cycle(ctx)
		next := w.poll
		if at, ok, err := w.s.store.NextWebhookAttempt(ctx); err == nil && ok {
			next = min(next, max(time.Until(at), 5*time.Millisecond))
		}
		t.Reset(next)
	}
}

// cycle queues the new audit records' deliveries, then sends every due one.
func (w *webhookSender) cycle(ctx context.Context) {
	if time.Since(w.lastPruned) > time.Hour {
		w.lastPruned = time.Now()
		if n, err := w.s.store.PruneWebhookDeliveries(ctx, time.Now().Add(-webhookLogRetention)); err != nil && ctx.Err() == nil {
			w.s.log.Warn("origin: webhooks: prune the delivery log", "err", err)
		} else if n > 0 {
			w.s.log.Info("origin: webhooks: pruned the delivery log", "deliveries", n)
		}
	}
	for ctx.Err() == nil {
		_, more, err := w.s.store.EnqueueWebhookDeliveries(ctx, time.Now(), webhookEnqueueBatch, newDeliveryID, renderWebhook)
		if err != nil {
			if ctx.Err() == nil {
				w.s.log.Error("origin: webhooks: queue deliveries", "err", err)
			}
			return
		}
		if !more {
			break
		}
	}
	for ctx.Err() == nil {
		ds, err := w.s.store.ClaimWebhookDeliveries(ctx, time.Now(), w.lease(), webhookBatch)
		if err != nil {
			if ctx.Err() == nil {
				w.s.log.Error("origin: webhooks: claim deliveries", "err", err)
			}
			return
		}
		if len(ds) == 0 {
			return
		}
		var wg sync.WaitGroup
		for _, d := range ds {
			wg.Go(func() { w.deliver(ctx, d) })
		}
		wg.Wait()
	}
}

// deliver makes one attempt at a claimed delivery and records it.
func (w *webhookSender) deliver(ctx context.Context, d store.WebhookDelivery) {
	status, errMsg, took := w.post(ctx, d.URL, d.Secret, d.Event, d.UID, []byte(d.Body))
	if ctx.Err() != nil {
		// Stopping: the attempt was cut short by the shutdown, not by the
		// receiver; give the delivery back, uncounted, to whichever origin
		// runs next.
		if err := w.s.store.ReleaseWebhookDelivery(context.Background(), d); err != nil {
			w.s.log.Warn("origin: webhooks: release delivery", "delivery", d.UID, "err", err)
		}
		return
	}
	a := store.WebhookAttempt{Status: status, Err: errMsg, Duration: took}
	outcome := "ok"
	if errMsg != "" {
		outcome = "failed"
		if d.Attempts <= len(w.backoff) {
			a.RetryAt = time.Now().Add(jitter(w.backoff[d.Attempts-1]))
			outcome = "retry"
		}
	}
	if _, err := w.s.store.RecordWebhookAttempt(ctx, d, a); err != nil {
		w.s.log.Error("origin: webhooks: record attempt", "delivery", d.UID, "err", err)
		return
	}
	w.attempts.WithLabelValues(outcome).Inc()
	switch outcome {
	case "retry":
		w.s.log.Warn("origin: webhook delivery failed; retrying", "webhook", d.WebhookID, "delivery", d.UID, "event", d.Event,
			"attempt", d.Attempts, "status", status, "err", errMsg, "retry_at", a.RetryAt.UTC().Format(time.RFC3339))
	case "failed":
		w.s.log.Error("origin: webhook delivery failed; giving up", "webhook", d.WebhookID, "delivery", d.UID, "event", d.Event,
			"attempts", d.Attempts, "status", status, "err", errMsg)
	}
}

// jitter spreads d by ±20%, so receivers coming back from an outage are
// not hit by every origin's retries at once.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*mrand.Float64()))
}

// post sends one signed delivery and returns the receiver's status, the
// failure ("" for a 2xx) and how long it took.
func (w *webhookSender) post(ctx context.Context, target, secret, event, uid string, body []byte) (int, string, time.Duration) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, err.Error(), time.Since(start)
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Updraft-Webhook/1")
	req.Header.Set("Updraft-Event", event)
	req.Header.Set("Updraft-Delivery", uid)
	req.Header.Set("Updraft-Signature", SignWebhook(secret, ts, body))
	resp, err := w.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the method and URL the log already names
		}
		return 0, err.Error(), time.Since(start)
	}
	defer resp.Body.Close()
	head := make([]byte, 200)
	n, _ := io.ReadFull(resp.Body, head)
	io.Copy(io.Discard, io.LimitReader(resp.Body, webhookBodyLimit-int64(n)))
	took := time.Since(start)
	if resp.StatusCode/100 == 2 {
		return resp.StatusCode, "", took
	}
	msg := "HTTP " + strconv.Itoa(resp.StatusCode)
	if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 && loc != "" {
		msg += ": redirect to " + loc + " not followed"
	} else if s := strings.TrimSpace(strings.ToValidUTF8(string(head[:n]), "?")); s != "" {
		msg += ": " + s
	}
	return resp.StatusCode, msg, took
}

// SignWebhook is the Updraft-Signature header of body sent at Unix time
// ts: "t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>".
func SignWebhook(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "%d.", ts)
	mac.Write(body)
	return fmt.Sprintf("t=%d,v1=%s", ts, hex.EncodeToString(mac.Sum(nil)))
}

// newDeliveryID is a delivery's stable id (Updraft-Delivery): a random
// UUID (version 4).
func newDeliveryID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// WebhookPayload is the JSON body of a delivery (format json).
type WebhookPayload struct {
	ID      string          `json:"id"`    // the delivery's id, as Updraft-Delivery: the same on every retry
	Event   string          `json:"event"` // the audit action
	App     string          `json:"app_id"`
	Actor   string          `json:"actor"` // the key's name, or "guard", "retention"
	Addr    string          `json:"addr"`
	Target  string          `json:"target"`
	Before  json.RawMessage `json:"before"` // null when none
	After   json.RawMessage `json:"after"`
	At      string          `json:"at"` // RFC 3339, UTC
	AuditID int64           `json:"audit_id"`
}

// renderWebhook is a delivery's body for w's format.
func renderWebhook(w store.Webhook, rec store.AuditRecord, uid string) (string, error) {
	var v any
	if w.Format == store.WebhookSlack {
		v = struct {
			Text string `json:"text"`
		}{summarize(rec)}
	} else {
		v = WebhookPayload{ID: uid, Event: rec.Action, App: rec.App, Actor: rec.Actor, Addr: rec.Addr, Target: rec.Target,
			Before: validJSON(rec.Before), After: validJSON(rec.After), At: time.UnixMilli(rec.At).UTC().Format(time.RFC3339), AuditID: rec.ID}
	}
	b, err := json.Marshal(v)
	return string(b), err
}

func validJSON(m json.RawMessage) json.RawMessage {
	if len(m) == 0 || !json.Valid(m) {
		return nil
	}
	return m
}

// summarize is an audit record in one line for people (the slack format):
// "com.example.app: rollout of 1.2.0 on production paused by guard
// (failure rate 12%)".
func summarize(rec store.AuditRecord) string {
	var before, after map[string]any
	json.Unmarshal(rec.Before, &before)
	json.Unmarshal(rec.After, &after)
	str := func(m map[string]any, path ...string) string {
		var v any = m
		for _, k := range path {
			mm, ok := v.(map[string]any)
			if !ok {
				return ""
			}
			v = mm[k]
		}
		switch x := v.(type) {
		case string:
			return x
		case float64:
			return strconv.FormatFloat(x, 'f', -1, 64)
		}
		return ""
	}
	first := func(vals ...string) string {
		for _, v := range vals {
			if v != "" {
				return v
			}
		}
		return ""
	}
	subject := rec.App
	if subject == "" {
		subject = "updraft"
	}
	group, verb, _ := strings.Cut(rec.Action, ".")
	verb = strings.ReplaceAll(verb, "_", " ")
	target := rec.Target
	var what string
	switch group {
	case "rollout":
		bundle := first(str(after, "rollout", "bundle"), str(before, "rollout", "bundle"), str(after, "bundle"), str(before, "bundle"))
		what = "rollout"
		if bundle != "" {
			what += " of " + bundle
		}
		if target != "" {
			what += " on " + target
		}
		if rec.Action == "rollout.set" {
			verb = "set"
			if bps := first(str(after, "rollout", "bps"), str(after, "bps")); bps != "" {
				if n, err := strconv.ParseFloat(bps, 64); err == nil {
					verb = "set to " + strconv.FormatFloat(n/100, 'f', -1, 64) + "%"
				}
			}
		}
	case "bundle":
		what = "bundle " + target
	case "channel":
		what = "channel " + target
		if b := str(after, "bundle"); b != "" && rec.Action != "channel.deleted" {
			verb += " (bundle " + b + ")"
		}
	case "guard":
		what = "rollout guard"
		if target != "" {
			what += " of " + target
		}
		if rec.Action == "guard.acted" {
			verb = "acted"
			if a := first(str(after, "action"), str(after, "guard_action")); a != "" {
				verb = "acted (" + a + ")"
			}
		}
	case "webhook":
		what = "webhook " + target
		if rec.Action == "webhook.test" {
			what, verb = "webhook "+target, "test ping sent"
		}
	default:
		what = strings.TrimSpace(group + " " + target)
	}
	line := subject + ": " + what + " " + verb
	if rec.Actor != "" {
		line += " by " + rec.Actor
	}
	if why := first(str(after, "reason"), str(after, "why")); why != "" {
		line += " (" + why + ")"
	} else if rate := str(after, "failure_rate"); rate != "" {
		if f, err := strconv.ParseFloat(rate, 64); err == nil {
			if f <= 1 {
				f *= 100
			}
			line += " (failure rate " + strconv.FormatFloat(f, 'f', -1, 64) + "%)"
		}
	}
	return line
}

// validEvents checks a subscription's events: known actions, "group.*"
// for a known group, or "*". It returns them deduplicated, and the
// unknown ones.
func validEvents(in []string) (events, unknown []string) {
	for _, e := range in {
		e = strings.TrimSpace(e)
		ok := e == "*" || slices.Contains(WebhookEvents, e)
		if g, found := strings.CutSuffix(e, ".*"); found && g != "" {
			ok = slices.ContainsFunc(WebhookEvents, func(a string) bool { return strings.HasPrefix(a, g+".") })
		}
		switch {
		case !ok:
			unknown = append(unknown, e)
		case !slices.Contains(events, e):
			events = append(events, e)
		}
	}
	return events, unknown
}

// Webhook API (docs/cli.md "Webhooks"; scopes: admin to add, remove and
// test, read to list webhooks and deliveries).

func (s *Server) addWebhook(w http.ResponseWriter, r *http.Request) error {
	var in api.WebhookRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	u, err := url.Parse(in.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || len(in.URL) > 2048 {
		return errf(http.StatusBadRequest, "invalid_url", "url %q: want an http:// or https:// URL without credentials, at most 2048 bytes", in.URL)
	}
	events, unknown := validEvents(in.Events)
	if len(unknown) > 0 {
		return errf(http.StatusBadRequest, "invalid_events", "unknown events: %s (want actions like bundle.uploaded, a group like rollout.*, or *; see docs/cli.md)",
			strings.Join(unknown, ", "))
	}
	if len(events) == 0 {
		return errf(http.StatusBadRequest, "invalid_events", "events: name at least one, e.g. bundle.uploaded,rollout.*")
	}
	switch in.Format {
	case "":
		in.Format = store.WebhookJSON
	case store.WebhookJSON, store.WebhookSlack:
	default:
		return errf(http.StatusBadRequest, "invalid_format", "format %q: want json or slack", in.Format)
	}
	if len(in.Secret) > 256 {
		return errf(http.StatusBadRequest, "invalid_secret", "secret: at most 256 bytes")
	}
	if in.Secret == "" {
		b := make([]byte, 32)
		rand.Read(b)
		in.Secret = hex.EncodeToString(b)
	}
	actor := ActorFrom(r.Context())
	if actor.App != "" && in.App != actor.App {
		return errf(http.StatusForbidden, "forbidden_app", "this key is limited to app %s: give app_id %s", actor.App, actor.App)
	}
	if in.App != "" {
		if !snapshot.ValidAppID(in.App) {
			return errf(http.StatusBadRequest, "invalid_app_id", "app id %q: want a reverse-domain id like com.example.app", in.App)
		}
		if _, err := s.store.GetApp(r.Context(), in.App); errors.Is(err, store.ErrNotFound) {
			return notFoundApp(in.App)
		} else if err != nil {
			return err
		}
	}
	hook, err := s.store.AddWebhook(r.Context(), store.Webhook{App: in.App, URL: in.URL, Events: events, Secret: in.Secret,
		Format: in.Format, CreatedBy: actor.Key}, store.AuditRecord{Actor: actor.Key, Addr: actor.Addr})
	if err != nil {
		return err
	}
	s.log.Info("origin: webhook added", "id", hook.ID, "url", redactURL(u), "events", strings.Join(events, ","), "app", in.App, "format", in.Format)
	writeJSON(w, http.StatusCreated, api.WebhookCreated{Webhook: hook, Secret: in.Secret})
	return nil
}

// redactURL is a URL for the log: its path and query may hold a token
// (Slack's incoming webhooks do), so only scheme and host.
func redactURL(u *url.URL) string { return u.Scheme + "://" + u.Host + "/…" }

// visibleWebhooks are the webhooks the request's key may see: all of them,
// or its app's only.
func (s *Server) visibleWebhooks(r *http.Request) ([]store.Webhook, error) {
	hooks, err := s.store.Webhooks(r.Context())
	if err != nil {
		return nil, err
	}
	if app := ActorFrom(r.Context()).App; app != "" {
		hooks = slices.DeleteFunc(hooks, func(w store.Webhook) bool { return w.App != app })
	}
	return hooks, nil
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request) error {
	hooks, err := s.visibleWebhooks(r)
	if err != nil {
		return err
	}
	if hooks == nil {
		hooks = []store.Webhook{}
	}
	writeJSON(w, http.StatusOK, hooks)
	return nil
}

// webhookParam is the webhook the path names, if the key may see it.
func (s *Server) webhookParam(r *http.Request) (store.Webhook, error) {
	notFound := errf(http.StatusNotFound, "webhook_not_found", "no webhook %q; list them with: updraft webhook list", r.PathValue("id"))
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return store.Webhook{}, notFound
	}
	hook, err := s.store.GetWebhook(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return hook, notFound
	}
	if err != nil {
		return hook, err
	}
	if app := ActorFrom(r.Context()).App; app != "" && hook.App != app {
		return hook, notFound
	}
	return hook, nil
}

func (s *Server) removeWebhook(w http.ResponseWriter, r *http.Request) error {
	hook, err := s.webhookParam(r)
	if err != nil {
		return err
	}
	actor := ActorFrom(r.Context())
	hook, err = s.store.RemoveWebhook(r.Context(), hook.ID, store.AuditRecord{Actor: actor.Key, Addr: actor.Addr})
	if errors.Is(err, store.ErrNotFound) {
		return errf(http.StatusNotFound, "webhook_not_found", "no webhook %d", hook.ID)
	}
	if err != nil {
		return err
	}
	s.log.Info("origin: webhook removed", "id", hook.ID)
	writeJSON(w, http.StatusOK, hook)
	return nil
}

func (s *Server) webhookDeliveries(w http.ResponseWriter, r *http.Request) error {
	hook, err := s.webhookParam(r)
	if err != nil {
		return err
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 1000 {
			return errf(http.StatusBadRequest, "invalid_limit", "limit %q: want 1 to 1000", v)
		}
	}
	ds, err := s.store.WebhookDeliveries(r.Context(), hook.ID, limit)
	if err != nil {
		return err
	}
	if ds == nil {
		ds = []store.WebhookDelivery{}
	}
	writeJSON(w, http.StatusOK, ds)
	return nil
}

// testWebhook sends a webhook.test ping to the webhook now, once (no
// retry, not in the delivery log), and answers how it went.
func (s *Server) testWebhook(w http.ResponseWriter, r *http.Request) error {
	hook, err := s.webhookParam(r)
	if err != nil {
		return err
	}
	actor := ActorFrom(r.Context())
	rec := store.AuditRecord{At: time.Now().UnixMilli(), App: hook.App, Actor: actor.Key, Addr: actor.Addr, Action: "webhook.test",
		Target: strconv.FormatInt(hook.ID, 10)}
	uid := newDeliveryID()
	body, err := renderWebhook(hook, rec, uid)
	if err != nil {
		return err
	}
	status, msg, took := s.webhooks.post(r.Context(), hook.URL, hook.Secret, rec.Action, uid, []byte(body))
	writeJSON(w, http.StatusOK, api.WebhookTestResult{ID: uid, OK: msg == "", Status: status, Error: msg, DurationMs: took.Milliseconds()})
	return nil
}
