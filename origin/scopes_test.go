package origin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/store"
)

const scopeOtherApp = "com.example.other"

// scopeKeys are the kinds of key TestScopes presents to every route.
type scopeKey struct {
	kind   string // admin, deploy, upload, read, edge, other-app, revoked, expired, none
	secret string
	scope  string // the key's scope ("" for none, revoked and expired)
	app    string // the app it is limited to
}

// makeScopeKeys creates, on o (whose apps are openAPITestApp and
// scopeOtherApp), a key of each kind.
func makeScopeKeys(t *testing.T, o *testOrigin) []scopeKey {
	t.Helper()
	ctx := context.Background()
	keys := []scopeKey{{kind: "admin", secret: o.client.APIKey, scope: store.ScopeAdmin},
		{kind: "edge", secret: readKey(t, config.EdgeKeyFile(o.dir)), scope: store.ScopeEdge}, {kind: "none"}}
	create := func(name, scope, app string) string {
		res, err := o.client.CreateKey(ctx, CreateKeyRequest{Name: name, Scope: scope, App: app})
		if err != nil {
			t.Fatal(err)
		}
		return res.Secret
	}
	for _, sc := range []string{store.ScopeDeploy, store.ScopeUpload, store.ScopeRead} {
		keys = append(keys, scopeKey{kind: sc, secret: create(sc+"-key", sc, ""), scope: sc})
	}
	// An admin key of the other app: every route of openAPITestApp refuses
	// it for its app, never for its scope.
	keys = append(keys, scopeKey{kind: "other-app", secret: create("other-admin", store.ScopeAdmin, scopeOtherApp), scope: store.ScopeAdmin, app: scopeOtherApp})
	revoked := create("gone", store.ScopeAdmin, "")
	if _, err := o.client.RevokeKey(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	keys = append(keys, scopeKey{kind: "revoked", secret: revoked})
	// An admin key that expired a second ago (written to the store: the
	// API takes no expiry in the past).
	expired := newKey()
	if _, err := o.srv.store.CreateAPIKey(ctx, store.APIKey{Hash: HashKey(expired), Label: "old", Scope: store.ScopeAdmin,
		ExpiresAt: time.Now().Unix() - 1}); err != nil {
		t.Fatal(err)
	}
	if err := o.srv.loadKeys(ctx); err != nil {
		t.Fatal(err)
	}
	return append(keys, scopeKey{kind: "expired", secret: expired})
}

// expected is what the route table says route (needing need) answers key:
// 0 for "let through" (neither 401 nor 403), else the status and code.
func expected(route string, need access, k scopeKey) (int, string) {
	_, path, _ := strings.Cut(route, " ")
	switch {
	case need.name == "public":
		return 0, ""
	case k.scope == "", k.scope == store.ScopeEdge && !need.accepts(store.ScopeEdge):
		return http.StatusUnauthorized, "unauthorized"
	case !need.accepts(k.scope):
		return http.StatusForbidden, "forbidden_scope"
	case k.app != "" && (strings.Contains(path, "{app}") || !need.appKeys):
		return http.StatusForbidden, "forbidden_app"
	}
	return 0, ""
}

// TestScopes walks every route Handler registers with every kind of key (a
// key of each scope, the edge key, an admin key of another app, a revoked
// key, an expired key, none) over a real listener: each answers as the
// route table declares (401, 403 forbidden_scope or forbidden_app, or lets
// the request through to its handler). A route without a declared scope
// fails, and the OpenAPI document names each route's scope
// (x-updraft-scope) as the table does.
func TestScopes(t *testing.T) {
	o, _ := openAPIOrigin(t)
	ctx := context.Background()
	if _, err := o.client.CreateApp(ctx, scopeOtherApp, ""); err != nil {
		t.Fatal(err)
	}
	keys := makeScopeKeys(t, o)
	doc := loadOpenAPI(t)
	documented := map[string]string{}
	for _, d := range documentedOps(doc) {
		if sc, ok := d.op.Extensions["x-updraft-scope"].(string); ok {
			documented[d.method+" "+d.path] = sc
		}
	}
	if len(o.srv.routes) < 30 {
		t.Fatalf("only %d routes recorded by Handler", len(o.srv.routes))
	}
	seen := map[string]int{}
	for _, route := range o.srv.routes {
		need, ok := o.srv.routeAccess[route]
		if !ok || need.name == "" {
			t.Errorf("route %s declares no scope in the route table (api.go)", route)
			continue
		}
		method, path, _ := strings.Cut(route, " ")
		if strings.HasPrefix(path, "/api/v1/") && need.name != "public" && documented[route] != need.name {
			t.Errorf("route %s needs scope %s; origin/openapi.json says x-updraft-scope %q", route, need.name, documented[route])
		}
		target := concrete(path)
		if route == "GET /v1/snapshot" {
			target += "?wait=0"
		}
		for _, k := range keys {
			status, ae, _ := send(t, o, k.secret, method, target, "", nil)
			wantStatus, wantCode := expected(route, need, k)
			seen[wantCode]++
			switch {
			case wantStatus == 0 && (status == http.StatusUnauthorized || status == http.StatusForbidden):
				t.Errorf("%s with the %s key: %d %s, want it let through (declared scope %s)", route, k.kind, status, ae.Error(), need.name)
			case wantStatus != 0 && (status != wantStatus || ae.Code != wantCode):
				t.Errorf("%s with the %s key: %d %s, want %d %s (declared scope %s)", route, k.kind, status, ae.Error(), wantStatus, wantCode, need.name)
			case wantCode == "forbidden_scope" && !strings.Contains(ae.Message, "needs a key of scope "+need.needs()):
				t.Errorf("%s with the %s key: message %q does not name the scope needed", route, k.kind, ae.Message)
			}
		}
	}
	// The walk saw every kind of answer.
	for _, code := range []string{"", "unauthorized", "forbidden_scope", "forbidden_app"} {
		if seen[code] == 0 {
			t.Errorf("no route answered %q in the walk: %v", code, seen)
		}
	}
}

// A key limited to one app sees only that app: GET /api/v1/apps lists it
// alone, its routes work, the other app's refuse it (forbidden_app), and
// installation routes need a key for every app. An upload key lists the
// app's bundles (what bundle upload --wait follows) but may not point a
// channel at its upload; a deploy key may. Deleting the app revokes them.
func TestScopedKeysPerApp(t *testing.T) {
	o, _ := openAPIOrigin(t)
	ctx := context.Background()
	if _, err := o.client.CreateApp(ctx, scopeOtherApp, ""); err != nil {
		t.Fatal(err)
	}
	mk := func(name, scope, app string) *client.Client {
		res, err := o.client.CreateKey(ctx, CreateKeyRequest{Name: name, Scope: scope, App: app})
		if err != nil {
			t.Fatal(err)
		}
		if res.App != app || res.Scope != scope || res.State != "live" {
			t.Fatalf("created %+v", res)
		}
		return client.New(o.http.URL, res.Secret)
	}
	deploy := mk("app-deploy", store.ScopeDeploy, openAPITestApp)
	apps, err := deploy.ListApps(ctx)
	if err != nil || len(apps) != 1 || apps[0].ID != openAPITestApp {
		t.Fatalf("apps listed to a key of %s: %+v %v", openAPITestApp, apps, err)
	}
	if all, _ := o.client.ListApps(ctx); len(all) != 2 {
		t.Fatalf("apps listed to the admin key: %+v", all)
	}
	zip := makeZip(t, map[string]string{"index.html": "<p>1</p>"})
	if _, err := deploy.UploadBundle(ctx, openAPITestApp, "1.0.0", strings.NewReader(string(zip)), client.UploadOptions{Channel: "production"}); err != nil {
		t.Fatalf("deploy key, own app, upload with a channel: %v", err)
	}
	if _, err := deploy.UploadBundle(ctx, scopeOtherApp, "1.0.0", strings.NewReader(string(zip)), client.UploadOptions{}); apiCode(err) != "403 forbidden_app" {
		t.Fatalf("deploy key on the other app: %v, want 403 forbidden_app", err)
	}
	if _, err := deploy.CreateApp(ctx, "com.example.third", ""); apiCode(err) != "403 forbidden_scope" {
		t.Fatalf("deploy key creating an app: %v", err)
	}
	appAdmin := mk("app-admin", store.ScopeAdmin, openAPITestApp)
	if _, err := appAdmin.CreateApp(ctx, "com.example.third", ""); apiCode(err) != "403 forbidden_app" {
		t.Fatalf("admin key of one app creating an app: %v, want 403 forbidden_app", err)
	}
	if _, err := appAdmin.ListKeys(ctx); apiCode(err) != "403 forbidden_app" {
		t.Fatalf("admin key of one app listing keys: %v, want 403 forbidden_app", err)
	}
	upload := mk("ci", store.ScopeUpload, openAPITestApp)
	if _, err := upload.UploadBundle(ctx, openAPITestApp, "1.0.1", strings.NewReader(string(zip)), client.UploadOptions{}); err != nil {
		t.Fatalf("upload key: %v", err)
	}
	if bs, err := upload.ListBundles(ctx, openAPITestApp); err != nil || len(bs) != 2 {
		t.Fatalf("upload key listing bundles: %+v %v", bs, err)
	}
	var ae *client.APIError
	_, err = upload.UploadBundle(ctx, openAPITestApp, "1.0.2", strings.NewReader(string(zip)), client.UploadOptions{Channel: "production"})
	if apiCode(err) != "403 forbidden_scope" {
		t.Fatalf("upload key setting a channel: %v, want 403 forbidden_scope", err)
	}
	if errors.As(err, &ae); !strings.Contains(ae.Message, "needs a key of scope admin or deploy") {
		t.Fatalf("refusal does not name the scope needed: %q", ae.Message)
	}
	if _, err := upload.ListChannels(ctx, openAPITestApp); apiCode(err) != "403 forbidden_scope" {
		t.Fatalf("upload key listing channels: %v", err)
	}
	if _, err := upload.SetChannel(ctx, openAPITestApp, "production", store.ChannelPatch{}); apiCode(err) != "403 forbidden_scope" {
		t.Fatalf("upload key changing a channel: %v", err)
	}
	// Deleting the app revokes its keys: a new app of the same id does not
	// inherit them.
	otherKey := mk("other-read", store.ScopeRead, scopeOtherApp)
	if _, err := o.client.DeleteApp(ctx, openAPITestApp); err != nil {
		t.Fatal(err)
	}
	if _, err := o.client.CreateApp(ctx, openAPITestApp, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := deploy.ListChannels(ctx, openAPITestApp); apiCode(err) != "401 unauthorized" {
		t.Fatalf("a deleted app's key on the app re-created: %v, want 401", err)
	}
	if _, err := otherKey.ListChannels(ctx, scopeOtherApp); err != nil {
		t.Fatalf("another app's key after the deletion: %v", err)
	}
	list, _ := o.client.ListKeys(ctx)
	revoked := map[string]string{}
	for _, k := range list {
		revoked[k.Name] = k.State
	}
	if revoked["app-deploy"] != "revoked" || revoked["app-admin"] != "revoked" || revoked["ci"] != "revoked" || revoked["other-read"] != "live" {
		t.Fatalf("keys after the app's deletion: %v", revoked)
	}
	recs, _ := o.srv.store.Audit(ctx, store.AuditQuery{Actions: []string{"key.revoked"}})
	if len(recs) != 3 || recs[0].Actor != "admin" || recs[0].App != openAPITestApp {
		t.Fatalf("audit of the revocations with the app: %+v", recs)
	}
}

// The key API: the secret is answered once and never listed; names are
// unique among live keys; a revoked key is refused at once (and its name
// free again); the keys in files are rotated, not revoked; refusals have
// stable codes; every change is in the audit trail with its actor and
// address, and never the secret nor its hash.
func TestKeysAPI(t *testing.T) {
	o, _ := openAPIOrigin(t)
	ctx := context.Background()
	exp := int64(90 * 24 * 3600)
	res, err := o.client.CreateKey(ctx, CreateKeyRequest{Name: "ci", Scope: store.ScopeUpload, App: openAPITestApp, ExpiresInSeconds: &exp})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Secret, "upd_") || res.ExpiresAt == nil || time.Until(*res.ExpiresAt) < 89*24*time.Hour {
		t.Fatalf("created %+v", res)
	}
	ci := client.New(o.http.URL, res.Secret)
	if _, err := ci.ListBundles(ctx, openAPITestApp); err != nil {
		t.Fatalf("new key refused: %v", err)
	}
	list, err := o.client.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(list)
	if strings.Contains(string(raw), res.Secret) || strings.Contains(string(raw), HashKey(res.Secret)) {
		t.Fatalf("key list shows a secret or hash: %s", raw)
	}
	var names []string
	for _, k := range list {
		names = append(names, k.Name+"/"+k.Scope+"/"+k.State)
	}
	if !slices.Equal(names, []string{"admin/admin/live", "edge/edge/live", "ci/upload/live"}) {
		t.Fatalf("keys listed: %v", names)
	}
	for _, c := range []struct {
		req  CreateKeyRequest
		want string
	}{
		{CreateKeyRequest{Name: "ci", Scope: store.ScopeRead}, "409 key_exists"},
		{CreateKeyRequest{Name: "x", Scope: "operator"}, "400 invalid_scope"},
		{CreateKeyRequest{Name: "x", Scope: store.ScopeEdge}, "400 invalid_scope"},
		{CreateKeyRequest{Name: "x y", Scope: store.ScopeRead}, "400 invalid_key_name"},
		{CreateKeyRequest{Name: "admin", Scope: store.ScopeRead}, "400 invalid_key_name"},
		{CreateKeyRequest{Name: "x", Scope: store.ScopeRead, App: "com.example.none"}, "404 app_not_found"},
		{CreateKeyRequest{Name: "x", Scope: store.ScopeRead, ExpiresInSeconds: new(int64)}, "400 invalid_expiry"},
	} {
		if _, err := o.client.CreateKey(ctx, c.req); apiCode(err) != c.want {
			t.Errorf("create %+v: %v, want %s", c.req, err, c.want)
		}
	}
	if _, err := ci.CreateKey(ctx, CreateKeyRequest{Name: "mine", Scope: store.ScopeAdmin}); apiCode(err) != "403 forbidden_scope" {
		t.Fatalf("upload key creating a key: %v", err)
	}
	for name, want := range map[string]string{"nobody": "404 key_not_found", "admin": "409 key_in_file", "edge": "409 key_in_file"} {
		if _, err := o.client.RevokeKey(ctx, name); apiCode(err) != want {
			t.Errorf("revoke %s: %v, want %s", name, err, want)
		}
	}
	revoked, err := o.client.RevokeKey(ctx, "ci")
	if err != nil || revoked.State != "revoked" || revoked.RevokedAt == nil {
		t.Fatalf("revoke: %+v %v", revoked, err)
	}
	if _, err := ci.ListBundles(ctx, openAPITestApp); apiCode(err) != "401 unauthorized" {
		t.Fatalf("revoked key right after its revocation: %v, want 401", err)
	}
	if _, err := o.client.CreateKey(ctx, CreateKeyRequest{Name: "ci", Scope: store.ScopeRead}); err != nil {
		t.Fatalf("name of a revoked key: %v", err)
	}
	if _, err := o.client.RotateKey(ctx, RotateKeyRequest{Key: KeyEdge, OverlapSeconds: overlap(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	recs, err := o.srv.store.Audit(ctx, store.AuditQuery{Actions: []string{"key.created", "key.revoked", "key.rotated"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Action+" "+r.Target+" by "+r.Actor+" app="+r.App)
		var after map[string]any
		if err := json.Unmarshal(r.After, &after); err != nil || after["name"] != r.Target || after["scope"] == nil {
			t.Errorf("%s: after %s", r.Action, r.After)
		}
		if r.Addr != "127.0.0.1" || strings.Contains(string(r.After), "upd_") || strings.Contains(string(r.After), res.Secret[:12]) || strings.Contains(string(r.After), HashKey(res.Secret)) {
			t.Errorf("%s: addr %q, after %s", r.Action, r.Addr, r.After)
		}
	}
	want := []string{"key.created ci by admin app=" + openAPITestApp, "key.revoked ci by admin app=" + openAPITestApp,
		"key.created ci by admin app=", "key.rotated edge by admin app="}
	if !slices.Equal(got, want) {
		t.Fatalf("audit records:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// /ui opens to admin, deploy and read keys; an upload key is refused; a
// read key limited to one app sees only that app and is refused the
// other's page.
func TestUIScopes(t *testing.T) {
	o, _ := openAPIOrigin(t)
	ctx := context.Background()
	if _, err := o.client.CreateApp(ctx, scopeOtherApp, ""); err != nil {
		t.Fatal(err)
	}
	secret := func(name, scope, app string) string {
		res, err := o.client.CreateKey(ctx, CreateKeyRequest{Name: name, Scope: scope, App: app})
		if err != nil {
			t.Fatal(err)
		}
		return res.Secret
	}
	read, upload := secret("viewer", store.ScopeRead, openAPITestApp), secret("ci", store.ScopeUpload, "")
	if code := uiLogin(t, o, upload); code != http.StatusForbidden {
		t.Fatalf("upload key at the /ui login: HTTP %d, want 403", code)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.PostForm(o.http.URL+"/ui", url.Values{"key": {read}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == uiCookie {
			session = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || session == nil {
		t.Fatalf("read key at the /ui login: HTTP %d, cookie %v; want 303 and a session", resp.StatusCode, session)
	}
	get := func(path, key string) (int, string) {
		req, _ := http.NewRequest("GET", o.http.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/ui", read); code != 200 || !strings.Contains(body, openAPITestApp) || strings.Contains(body, scopeOtherApp) {
		t.Fatalf("/ui with a read key of one app: %d\n%s", code, body)
	}
	if code, body := get("/ui", o.client.APIKey); code != 200 || !strings.Contains(body, scopeOtherApp) {
		t.Fatalf("/ui with the admin key: %d\n%s", code, body)
	}
	if code, _ := get("/ui/apps/"+openAPITestApp, read); code != 200 {
		t.Fatalf("/ui of its app with a read key of one app: %d", code)
	}
	if code, _ := get("/ui/apps/"+scopeOtherApp, read); code != http.StatusForbidden {
		t.Fatalf("/ui of another app with a read key of one app: %d, want 403", code)
	}
	if code, _ := get("/ui", upload); code != http.StatusForbidden {
		t.Fatalf("/ui with an upload key: %d, want 403", code)
	}
	withSession := func(path string) int {
		req, _ := http.NewRequest("GET", o.http.URL+path, nil)
		req.AddCookie(session)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if withSession("/ui/apps/"+openAPITestApp) != 200 || withSession("/ui/apps/"+scopeOtherApp) != http.StatusForbidden {
		t.Fatal("a read key's /ui session of one app: its app refused or the other app shown")
	}
	// The session ends with the key.
	if _, err := o.client.RevokeKey(ctx, "viewer"); err != nil {
		t.Fatal(err)
	}
	if code := withSession("/ui/apps/" + openAPITestApp); code != http.StatusUnauthorized {
		t.Fatalf("the session of a revoked key: HTTP %d, want 401", code)
	}
}
