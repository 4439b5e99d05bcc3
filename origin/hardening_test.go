package origin

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/store"
)

// Issue 15, finding 1 ("forged-looking bursts counted in metrics"): events
// from devices never seen checking for updates at any edge are counted in
// updraft_origin_events_without_checkin_total; events from devices that
// checked in are not.
func TestEventsWithoutCheckInMetric(t *testing.T) {
	o := guardOrigin(t, store.GuardNotify) // devices 0..1999 checked in
	if got := metricValue(t, o, "updraft_origin_checkins_total"); got != 2000 {
		t.Fatalf("updraft_origin_checkins_total = %v, want 2000", got)
	}
	base := metricValue(t, o, "updraft_origin_events_without_checkin_total")
	now := time.Now().UnixMilli()
	honest := outcomes(0, 10, func(int) bool { return false }, now)
	forged := outcomes(5000, 5030, func(int) bool { return true }, now)
	ingest(t, o, 1, append(honest, forged...))
	if got := metricValue(t, o, "updraft_origin_events_without_checkin_total") - base; got != 30 {
		t.Fatalf("updraft_origin_events_without_checkin_total grew by %v, want 30 (the forged devices' events only)", got)
	}
}

// Issue 15, finding 9 (/ui sessions): a session ends when its operator key
// expires after a rotation's overlap, and when the signing key is rotated,
// well before its own 12 h expiry.
func TestUISessionEndsWithKeyRotation(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	login := func(key string) string {
		t.Helper()
		resp, err := noRedirect.PostForm(o.http.URL+"/ui", url.Values{"key": {key}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			if c.Name == uiCookie {
				return c.Value
			}
		}
		t.Fatalf("login: HTTP %d without a session cookie", resp.StatusCode)
		return ""
	}
	get := func(cookie string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", o.http.URL+"/ui", nil)
		req.AddCookie(&http.Cookie{Name: uiCookie, Value: cookie})
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	oldKey := o.client.APIKey
	session := login(oldKey)
	if code := get(session); code != 200 {
		t.Fatalf("fresh session: HTTP %d", code)
	}
	res, err := o.client.RotateKey(ctx, RotateKeyRequest{Key: KeyAPI, OverlapSeconds: overlap(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if code := get(session); code != 200 {
		t.Fatalf("session of the old key during the overlap: HTTP %d", code)
	}
	res2, err := client.New(o.http.URL, res.Secret).RotateKey(ctx, RotateKeyRequest{Key: KeyAPI, OverlapSeconds: overlap(0)})
	if err != nil {
		t.Fatal(err)
	}
	if code := get(session); code != 401 {
		t.Fatalf("session of an expired key: HTTP %d, want 401", code)
	}
	newest := strings.TrimSpace(res2.Secret)
	session = login(newest)
	if code := get(session); code != 200 {
		t.Fatalf("session of the newest key: HTTP %d", code)
	}
	c := client.New(o.http.URL, newest)
	if _, err := c.RotateKey(ctx, RotateKeyRequest{Key: KeySigning, Prepare: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RotateKey(ctx, RotateKeyRequest{Key: KeySigning}); err != nil {
		t.Fatal(err)
	}
	if code := get(session); code != 401 {
		t.Fatalf("session after a signing key rotation: HTTP %d, want 401", code)
	}
}
