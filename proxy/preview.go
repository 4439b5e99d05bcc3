package proxy

import (
	"bytes"
	"crypto/ed25519"
	"html/template"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// Preview channels at the edge (issue 20; the token is snapshot/preview.go).
//
// A tester's device joins a preview channel by calling setChannel with the
// preview token as the channel: POST /channel_self verifies it (signature
// with the origin's snapshot signing keys, the request's app, expiry, and
// that the snapshot still holds that preview channel with that expiry) and
// answers like a self-assignable channel. Current plugins keep the token
// and send it as defaultChannel with every /updates; the edge maps it to
// the preview channel through previewCache, so the signature is checked
// once per token and edge, not per request. Plugins that keep their
// channel on the server (before 5.34.0 / 6.34.0 / 7.34.0) are refused with
// channel_self_set_not_allowed: previews need a current plugin.
//
// GET /preview/{token} is the page a tester opens on the phone: the app,
// bundle, expiry, the token, and a deep link into the app.

// SetPreviewKeys sets the keys preview tokens are verified with: the
// origin's snapshot signing keys (NewReplicaFrom sets its trusted keys; an
// edge in the origin's process sets the origin's key). Without keys no
// preview token is accepted.
func (e *Edge) SetPreviewKeys(keys ...ed25519.PublicKey) {
	ks := append([]ed25519.PublicKey(nil), keys...)
	e.previews.keys.Store(&ks)
}

// previewCache remembers verified (and refused) tokens per app. It is
// bounded: past previewCacheMax entries it starts over, so random tokens
// cost a signature check each but no memory.
type previewCache struct {
	keys atomic.Pointer[[]ed25519.PublicKey]
	mu   sync.Mutex
	m    map[previewKey]previewEntry
	// verifies counts signature checks (tests: verification is not per
	// request).
	verifies atomic.Int64
}

type previewKey struct{ app, token string }

type previewEntry struct {
	channel string
	expires int64
	err     error // nil: a valid signature
}

const previewCacheMax = 4096

// verify returns the token's preview channel for app, checking the
// signature at most once per (app, token).
func (c *previewCache) verify(app, token string, now int64) (snapshot.PreviewToken, error) {
	c.mu.Lock()
	ent, ok := c.m[previewKey{app, token}]
	c.mu.Unlock()
	if !ok {
		var keys []ed25519.PublicKey
		if p := c.keys.Load(); p != nil {
			keys = *p
		}
		c.verifies.Add(1)
		t, err := snapshot.ParsePreviewToken(token, app, 0, keys...)
		ent = previewEntry{channel: t.Channel, expires: t.Expires, err: err}
		c.mu.Lock()
		if c.m == nil || len(c.m) >= previewCacheMax {
			c.m = make(map[previewKey]previewEntry)
		}
		// The strings may alias pooled request buffers.
		c.m[previewKey{string([]byte(app)), string([]byte(token))}] = ent
		c.mu.Unlock()
	}
	if ent.err != nil {
		return snapshot.PreviewToken{}, ent.err
	}
	t := snapshot.PreviewToken{Channel: ent.channel, Expires: ent.expires}
	if now >= ent.expires {
		return t, snapshot.ErrPreviewExpired
	}
	return t, nil
}

// errPreviewGone: the token is genuine and unexpired, but the snapshot no
// longer holds that preview channel (deleted, or recreated: another expiry).
var errPreviewGone = &snapshot.RequestError{Code: "preview_gone", Message: "preview channel deleted"}

// previewChannel returns the preview channel of app that token grants now,
// or why not.
func (e *Edge) previewChannel(app *snapshot.App, token string, now time.Time) (*snapshot.Channel, error) {
	t, err := e.previews.verify(app.ID, token, now.Unix())
	if err != nil {
		return nil, err
	}
	ch := app.Channel(t.Channel)
	if ch == nil || ch.PreviewExpires != t.Expires {
		return nil, errPreviewGone
	}
	return ch, nil
}

// grantPreview rewrites an update check whose defaultChannel is a valid
// preview token into one for its preview channel. Anything else (a channel
// name, a refused token) is left as it is: a defaultChannel that names no
// usable channel falls through to the other rules (the default channel).
func (e *Edge) grantPreview(snap *snapshot.Snapshot, r *snapshot.Request) {
	if !snapshot.LooksLikePreviewToken(r.DefaultChannel) {
		return
	}
	app := snap.App(r.AppID)
	if app == nil || app.Channel(r.DefaultChannel) != nil {
		return
	}
	if ch, err := e.previewChannel(app, r.DefaultChannel, time.Now()); err == nil {
		r.DefaultChannel, r.PreviewGranted = ch.Name, true
	}
}

// errPreviewLegacy: a valid token from a plugin that keeps its channel on
// the server, which previews do not support.
var errPreviewLegacy = &snapshot.RequestError{Code: "preview_legacy_plugin", Message: "previews need a current plugin"}

// previewReason names a refusal for metrics and logs.
func previewReason(err error) string {
	switch err {
	case snapshot.ErrPreviewExpired:
		return "preview_expired"
	case snapshot.ErrPreviewSignature:
		return "preview_bad_signature"
	case errPreviewGone:
		return "preview_gone"
	case errPreviewLegacy:
		return "preview_legacy_plugin"
	}
	return "preview_malformed"
}

// previewPage answers GET /preview/{token}[?scheme=S]: an HTML page for a
// tester's phone. The token names no app (it is signed for one): the apps
// of the snapshot holding a preview channel of the token's name are tried.
func (e *Edge) previewPage(token, scheme string, out *reply) {
	snap := e.snap.Load()
	if snap == nil {
		out.jsonError(503, codeNotReady, "Edge has no snapshot yet")
		return
	}
	now := time.Now()
	var app *snapshot.App
	var ch *snapshot.Channel
	var lastErr error = snapshot.ErrPreviewMalformed
	if snapshot.LooksLikePreviewToken(token) {
		for _, a := range snap.Apps {
			c, err := e.previewChannel(a, token, now)
			if err == nil {
				app, ch = a, c
				break
			}
			if err != snapshot.ErrPreviewSignature {
				lastErr = err
			}
		}
	}
	if ch == nil {
		out.status, out.contentType = 404, "text/html; charset=utf-8"
		msg := "This preview link is not valid."
		if lastErr == snapshot.ErrPreviewExpired || lastErr == errPreviewGone {
			msg = "This preview has expired or was deleted."
		}
		var b bytes.Buffer
		previewTmpl.Execute(&b, previewView{Error: msg})
		out.body = append(out.body[:0], b.Bytes()...)
		return
	}
	if !validScheme(scheme) {
		scheme = app.ID
	}
	deep := scheme + "://updraft-preview?token=" + url.QueryEscape(token)
	v := previewView{App: app.ID, Channel: ch.Name, Bundle: ch.Bundle, Token: token,
		Expires: time.Unix(ch.PreviewExpires, 0).UTC().Format("2006-01-02 15:04 MST"),
		Left:    time.Until(time.Unix(ch.PreviewExpires, 0)).Round(time.Minute).String(),
		Deep:    template.URL(deep), DeepText: deep}
	var b bytes.Buffer
	if err := previewTmpl.Execute(&b, v); err != nil {
		out.jsonError(500, "internal_error", "preview page")
		return
	}
	out.status, out.contentType = 200, "text/html; charset=utf-8"
	out.body = append(out.body[:0], b.Bytes()...)
}

// validScheme: RFC 3986 scheme characters, starting with a letter, and
// none that a browser would run or read locally (the scheme comes from
// the link's query and the deep link is written as a trusted URL).
func validScheme(s string) bool {
	if s == "" || len(s) > 64 || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	switch strings.ToLower(s) {
	case "javascript", "data", "vbscript", "file", "blob", "about":
		return false
	}
	return true
}

type previewView struct {
	Error                                      string
	App, Channel, Bundle, Token, Expires, Left string
	Deep                                       template.URL
	DeepText                                   string
}

var previewTmpl = template.Must(template.New("preview").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{if .Error}}Preview unavailable{{else}}Preview of {{.App}} {{.Bundle}}{{end}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36em;margin:2em auto;padding:0 1em;line-height:1.5}
a.open{display:block;text-align:center;padding:1em;margin:1.5em 0;background:#1d4ed8;color:#fff;border-radius:.5em;text-decoration:none;font-size:1.2em}
code{word-break:break-all;background:#f3f4f6;padding:.1em .3em}dt{font-weight:bold}</style></head>
<body>
{{if .Error}}<h1>Preview unavailable</h1><p>{{.Error}}</p>{{else}}
<h1>Preview of {{.App}}</h1>
<dl>
<dt>App</dt><dd>{{.App}}</dd>
<dt>Bundle</dt><dd>{{.Bundle}}</dd>
<dt>Preview channel</dt><dd>{{.Channel}}</dd>
<dt>Expires</dt><dd>{{.Expires}} (in {{.Left}})</dd>
</dl>
<a class="open" id="open" href="{{.Deep}}">Open in the app</a>
<p>The app switches to this preview when it opens the link (it calls setChannel with the token). If the button does nothing, the app is not installed or does not handle <code>{{.DeepText}}</code>.</p>
<p>Token: <code id="token">{{.Token}}</code></p>
{{end}}
</body></html>
`))
