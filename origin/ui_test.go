package origin

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
