package origin

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// The /ui login: a wrong key is refused; the right key (POSTed by the form)
// gives a session cookie that does not contain the key and opens the page;
// a tampered cookie does not.
func TestUILogin(t *testing.T) {
	o := startOrigin(t)
	key, _ := os.ReadFile(filepath.Join(o.dir, "api-key"))
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(cookie string) (int, string) {
		req, _ := http.NewRequest("GET", o.http.URL+"/ui", nil)
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: uiCookie, Value: cookie})
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(""); code != 401 || !strings.Contains(body, `method="post"`) {
		t.Fatalf("no session: %d %s", code, body)
	}
	resp, err := noRedirect.PostForm(o.http.URL+"/ui", url.Values{"key": {"upd_wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("wrong key: HTTP %d", resp.StatusCode)
	}
	resp, err = noRedirect.PostForm(o.http.URL+"/ui", url.Values{"key": {strings.TrimSpace(string(key))}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session string
	for _, c := range resp.Cookies() {
		if c.Name == uiCookie {
			session = c.Value
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/ui" {
				t.Fatalf("cookie attributes: %+v", c)
			}
		}
	}
	if resp.StatusCode != http.StatusSeeOther || session == "" || strings.Contains(session, strings.TrimSpace(string(key))) {
		t.Fatalf("login: HTTP %d, session %q", resp.StatusCode, session)
	}
	if code, body := get(session); code != 200 || !strings.Contains(body, "Updraft analytics") {
		t.Fatalf("with the session: %d %.200s", code, body)
	}
	tampered := []byte(session)
	tampered[0] ^= 1
	if code, _ := get(string(tampered)); code != 401 {
		t.Fatalf("tampered session: HTTP %d", code)
	}
}

// /ui sessions expire: the cookie carries its expiry under the MAC (12h);
// an expired one, one whose expiry was moved, and one in the format before
// expiry (valid forever) are refused.
func TestUISessionExpires(t *testing.T) {
	o := startOrigin(t)
	key, _ := os.ReadFile(filepath.Join(o.dir, "api-key"))
	sum := sha256.Sum256([]byte(strings.TrimSpace(string(key))))
	get := func(cookie string) int {
		req, _ := http.NewRequest("GET", o.http.URL+"/ui", nil)
		req.AddCookie(&http.Cookie{Name: uiCookie, Value: cookie})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.PostForm(o.http.URL+"/ui", url.Values{"key": {strings.TrimSpace(string(key))}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var login *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == uiCookie {
			login = c
		}
	}
	if login == nil || login.MaxAge != int(uiSessionTTL/time.Second) || get(login.Value) != 200 {
		t.Fatalf("login cookie %+v", login)
	}
	exp, mac, _ := strings.Cut(login.Value, ".")
	if n, _ := strconv.ParseInt(exp, 10, 64); time.Until(time.Unix(n, 0)) > uiSessionTTL || time.Until(time.Unix(n, 0)) < uiSessionTTL-time.Minute {
		t.Fatalf("cookie expiry %s, want in %v", exp, uiSessionTTL)
	}
	expired := o.srv.uiSession(sum[:], time.Now().Add(-time.Second))
	if code := get(expired); code != 401 {
		t.Fatalf("expired session: HTTP %d", code)
	}
	extended := strconv.FormatInt(time.Now().Add(uiSessionTTL/2).Unix(), 10) + "." + mac
	if code := get(extended); code != 401 {
		t.Fatalf("session with a moved expiry: HTTP %d", code)
	}
	m := hmac.New(sha256.New, o.srv.signingKey().Seed())
	m.Write([]byte("updraft ui session\x00"))
	m.Write(sum[:])
	if code := get(hex.EncodeToString(m.Sum(nil))); code != 401 {
		t.Fatalf("session cookie without expiry (previous format): HTTP %d", code)
	}
	if code := get(o.srv.uiSession(sum[:], time.Now().Add(time.Minute))); code != 200 {
		t.Fatalf("valid session: HTTP %d", code)
	}
}

// uiLogin posts key to the /ui login form and returns the status (303 when
// the login is accepted).
func uiLogin(t *testing.T, o *testOrigin, key string) int {
	t.Helper()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.PostForm(o.http.URL+"/ui", url.Values{"key": {key}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestUICohortsAndWindows: the app page shows each cohort's kind, members,
// churn (the page's window and 7 days) and last change, and each channel's
// maintenance windows and blackout dates (and a segment's own), held or
// open now and when it next opens (a segment with its channel's).
func TestUICohortsAndWindows(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	c := o.client
	const app = "com.example.ui"
	if _, err := c.CreateApp(ctx, app, ""); err != nil {
		t.Fatal(err)
	}
	// Dates in UTC from today: a change of day while the test runs moves
	// none of the figures below (the blackouts cover today and tomorrow,
	// the window is 3 days ahead).
	now := time.Now().UTC()
	day := func(n int) time.Time { return time.Date(now.Year(), now.Month(), now.Day()+n, 0, 0, 0, 0, time.UTC) }
	date := func(n int) string { return day(n).Format(time.DateOnly) }
	weekday := strings.ToLower(day(3).Weekday().String()[:3])
	schedules := map[string]*snapshot.Windows{
		"production": {Blackouts: []snapshot.Blackout{{Date: date(0), TZ: "UTC"}, {Date: date(1), TZ: "UTC"}}},
		"beta":       {Weekly: []snapshot.Window{{Day: weekday, Start: "00:00", End: "24:00", TZ: "UTC"}}},
		"dev":        nil,
	}
	for _, ch := range []string{"production", "beta", "dev"} {
		if _, err := c.SetChannel(ctx, app, ch, store.ChannelPatch{Windows: schedules[ch]}); err != nil {
			t.Fatal(err)
		}
	}
	var csv strings.Builder
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&csv, "%s\n", devUUID(i))
	}
	if _, err := c.ImportCohort(ctx, app, "vip", strings.NewReader(csv.String()), "text/csv"); err != nil {
		t.Fatal(err)
	}
	csv.Reset()
	for i := 5; i < 15; i++ {
		fmt.Fprintf(&csv, "%s\n", devUUID(i))
	}
	if _, err := c.ImportCohort(ctx, app, "vip", strings.NewReader(csv.String()), "text/csv"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddCohort(ctx, app, "new", "new:7d"); err != nil {
		t.Fatal(err)
	}
	// The segment's own blackout is the day beta's window opens: the two
	// together open a week later.
	if _, err := c.AddSegment(ctx, app, snapshot.Rule{Name: "vips", Channel: "beta", Cohort: "vip",
		Windows: &snapshot.Windows{Blackouts: []snapshot.Blackout{{Date: date(3), TZ: "UTC"}}}}, nil); err != nil {
		t.Fatal(err)
	}
	recs, err := o.srv.store.Audit(ctx, store.AuditQuery{App: app, Target: "vip", Actions: []string{"cohort.imported"}, Newest: true, Limit: 1})
	if err != nil || len(recs) != 1 {
		t.Fatalf("audit %+v %v", recs, err)
	}
	vipChanged := time.UnixMilli(recs[0].At).UTC().Format("2006-01-02 15:04:05")
	recs, _ = o.srv.store.Audit(ctx, store.AuditQuery{App: app, Target: "new", Newest: true, Limit: 1})
	newChanged := time.UnixMilli(recs[0].At).UTC().Format("2006-01-02 15:04:05")

	get := func(query string) string {
		t.Helper()
		resp, err := apiGet(t, o, "/ui/apps/"+app+query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("/ui: HTTP %d %s", resp.StatusCode, b)
		}
		return string(b)
	}
	page := get("")
	for _, want := range []string{
		`<th>churn 24h</th><th>churn 7 d</th>`,
		`<tr><td>new</td><td>computed: new:7d</td><td>0</td><td>+0 -0 (1)</td><td>+0 -0 (1)</td><td>` + newChanged + `</td><td></td></tr>`,
		`<tr><td>vip</td><td>imported</td><td>10</td><td>+15 -5 (2)</td><td>+15 -5 (2)</td><td>` + vipChanged + `</td><td>vips</td></tr>`,
		`<tr><td>beta</td><td></td><td>` + day(3).Format("Mon") + ` 00:00-24:00 UTC</td><td>none</td><td title="outside_maintenance_window">held: outside the maintenance windows</td><td>` +
			day(3).Format("2006-01-02 15:04") + `</td></tr>`,
		`<tr><td>beta</td><td>vips</td><td>any time</td><td>` + date(3) + ` UTC</td><td title="outside_maintenance_window">held: outside the maintenance windows</td><td>` +
			day(10).Format("2006-01-02 15:04") + `</td></tr>`,
		`<tr><td>dev</td><td></td><td>any time</td><td>none</td><td>open</td><td></td></tr>`,
		`<tr><td>production</td><td></td><td>any time</td><td>` + date(0) + ` UTC, ` + date(1) + ` UTC</td><td title="maintenance_blackout">held: a blackout date</td><td>` +
			day(2).Format("2006-01-02 15:04") + `</td></tr>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("/ui lacks %s", want)
		}
	}
	if t.Failed() {
		_, tail, _ := strings.Cut(page, `<h2 id="cohorts">`)
		t.Fatalf("page from the cohorts on:\n%.4000s", tail)
	}
	// The page's window names the churn's; a channel shows its own schedule.
	page = get("?since=1h&channel=dev")
	if !strings.Contains(page, `<th>churn 1h</th>`) || !strings.Contains(page, `<td>+15 -5 (2)</td>`) ||
		!strings.Contains(page, `<tr><td>dev</td>`) || strings.Contains(page, `<tr><td>production</td><td></td><td>any time`) {
		_, tail, _ := strings.Cut(page, `<h2 id="cohorts">`)
		t.Fatalf("since=1h, channel dev:\n%.4000s", tail)
	}
}
