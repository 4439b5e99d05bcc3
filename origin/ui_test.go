package origin

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
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
