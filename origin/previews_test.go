package origin

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// TestPreviewAPI: a preview channel is created with a token the origin's
// signing key signed, an audit record in its transaction, listed with its
// token, refused as public or self-assignable, deleted on request, and
// deleted by the sweeper once expired (the published snapshot loses it).
func TestPreviewAPI(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	const app = "com.example.app"
	if _, err := o.client.CreateApp(ctx, app, ""); err != nil {
		t.Fatal(err)
	}
	z := makeZip(t, map[string]string{"dist/index.html": "x"})
	if _, err := o.client.UploadBundle(ctx, app, "1.0.0", bytes.NewReader(z), client.UploadOptions{Channel: "production"}); err != nil {
		t.Fatal(err)
	}

	// The actor is the name of the (admin) key the request presented.
	keyName := ""
	for _, k := range o.srv.apiKeys() {
		if k.scope == store.ScopeAdmin {
			keyName = k.name
		}
	}
	before := time.Now()
	p, err := o.client.CreatePreview(ctx, app, PreviewRequest{Bundle: "1.0.0", TTLSeconds: 3600, Name: "pr-42"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Channel != "pr-42" || p.Bundle != "1.0.0" || p.AppID != app || p.ExpiresAt.Before(before.Add(time.Hour-time.Second)) || p.ExpiresAt.After(before.Add(time.Hour+2*time.Second)) {
		t.Fatalf("preview: %+v", p)
	}
	tok, err := snapshot.ParsePreviewToken(p.Token, app, time.Now().Unix(), o.srv.PublicKey())
	if err != nil || tok.Channel != "pr-42" || tok.Expires != p.ExpiresAt.Unix() {
		t.Fatalf("token %s: %+v %v", p.Token, tok, err)
	}
	// Published: the snapshot has it as a preview channel, never a default.
	ch := o.srv.Current().Snap.App(app).Channel("pr-42")
	if ch == nil || !ch.Preview() || ch.Public || ch.AllowDeviceSelfSet || ch.Bundle != "1.0.0" {
		t.Fatalf("snapshot channel: %+v", ch)
	}
	recs, err := o.srv.store.Audit(ctx, store.AuditQuery{App: app, Actions: []string{"channel.preview_created"}})
	if err != nil || len(recs) != 1 || recs[0].Actor != keyName || recs[0].Target != "pr-42" || len(recs[0].After) == 0 {
		t.Fatalf("audit: %+v %v", recs, err)
	}

	// Generated names, conflicts, bad requests.
	p2, err := o.client.CreatePreview(ctx, app, PreviewRequest{Bundle: "1.0.0"})
	if err != nil || len(p2.Channel) != 11 || p2.Channel[:3] != "pv-" || time.Until(p2.ExpiresAt) < 23*time.Hour {
		t.Fatalf("default preview: %+v %v", p2, err)
	}
	for _, c := range []struct {
		req  PreviewRequest
		want string
	}{
		{PreviewRequest{Bundle: "1.0.0", Name: "pr-42"}, "409 channel_exists"},
		{PreviewRequest{Bundle: "1.0.0", Name: "production"}, "409 channel_exists"},
		{PreviewRequest{Bundle: "9.9.9"}, "400 unknown_bundle"},
		{PreviewRequest{}, "400 invalid_preview"},
		{PreviewRequest{Bundle: "1.0.0", TTLSeconds: 31 * 86400}, "400 invalid_ttl"},
		{PreviewRequest{Bundle: "1.0.0", Name: "a-name-longer-than-24-chars"}, "400 invalid_channel_name"},
	} {
		if _, err := o.client.CreatePreview(ctx, app, c.req); apiCode(err) != c.want {
			t.Errorf("create %+v: %v, want %s", c.req, err, c.want)
		}
	}
	if _, err := o.client.CreatePreview(ctx, "com.example.none", PreviewRequest{Bundle: "1.0.0"}); apiCode(err) != "404 app_not_found" {
		t.Errorf("preview of a missing app: %v", err)
	}
	tr := true
	if _, err := o.client.SetChannel(ctx, app, "pr-42", store.ChannelPatch{Public: &tr}); apiCode(err) != "400 preview_channel" {
		t.Errorf("making a preview public: %v", err)
	}
	if _, err := o.client.SetChannel(ctx, app, "pr-42", store.ChannelPatch{AllowDeviceSelfSet: &tr}); apiCode(err) != "400 preview_channel" {
		t.Errorf("making a preview self-assignable: %v", err)
	}

	// Moving it to another build keeps it a preview with its expiry.
	if _, err := o.client.UploadBundle(ctx, app, "1.0.1", bytes.NewReader(makeZip(t, map[string]string{"dist/index.html": "y"})), client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	b101 := "1.0.1"
	if moved, err := o.client.SetChannel(ctx, app, "pr-42", store.ChannelPatch{Bundle: &b101}); err != nil || moved.Bundle != "1.0.1" || moved.PreviewExpires != p.ExpiresAt.Unix() || moved.Public {
		t.Fatalf("moving the preview: %+v %v", moved, err)
	}
	if _, err := o.client.SetChannel(ctx, app, "pr-42", store.ChannelPatch{Bundle: &p.Bundle}); err != nil {
		t.Fatal(err)
	}
	list, err := o.client.ListPreviews(ctx, app)
	if err != nil || len(list) != 2 || list[1].Token == "" || list[0].Channel != "pr-42" || list[0].Token != p.Token {
		t.Fatalf("list: %+v %v", list, err)
	}
	chs, _ := o.client.ListChannels(ctx, app)
	previews := 0
	for _, c := range chs {
		if c.Preview() {
			previews++
		}
	}
	if len(chs) != 3 || previews != 2 {
		t.Fatalf("channel list: %+v", chs)
	}

	if err := o.client.DeletePreview(ctx, app, "production"); apiCode(err) != "409 not_preview" {
		t.Errorf("delete production as a preview: %v", err)
	}
	if err := o.client.DeletePreview(ctx, app, "nope"); apiCode(err) != "404 channel_not_found" {
		t.Errorf("delete a missing preview: %v", err)
	}
	if err := o.client.DeletePreview(ctx, app, p2.Channel); err != nil {
		t.Fatal(err)
	}
	if o.srv.Current().Snap.App(app).Channel(p2.Channel) != nil {
		t.Fatal("deleted preview still published")
	}

	// Expiry: a three-second preview with a device pinned to it and a segment
	// routing to it is swept with both, and the snapshot loses it.
	short, err := o.client.CreatePreview(ctx, app, PreviewRequest{Bundle: "1.0.0", TTLSeconds: 3, Name: "short"})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.client.SetOverrides(ctx, app, "short", []string{"00009a6b-eefe-490a-9c60-8e965132ae51"}); err != nil {
		t.Fatal(err)
	}
	if _, err := o.client.AddSegment(ctx, app, snapshot.Rule{Name: "qa", Channel: "short", CustomIDPrefix: "qa-"}, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for o.srv.Current().Snap.App(app).Channel("short") != nil {
		if time.Now().After(deadline) {
			t.Fatalf("expired preview %s still published", short.Channel)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if time.Now().Before(short.ExpiresAt) {
		t.Fatalf("swept before its expiry %v", short.ExpiresAt)
	}
	snap := o.srv.Current().Snap.App(app)
	if len(snap.Rules) != 0 || snap.OverrideCount() != 0 {
		t.Fatalf("after the sweep: rules %+v, %d overrides", snap.Rules, snap.OverrideCount())
	}
	recs, err = o.srv.store.Audit(ctx, store.AuditQuery{App: app, Actions: []string{"channel.deleted"}})
	if err != nil || len(recs) != 2 || recs[0].Actor != keyName || recs[0].Target != p2.Channel || recs[1].Actor != "expiry" || recs[1].Target != "short" {
		t.Fatalf("deletion audit: %+v %v", recs, err)
	}
	// The long preview is untouched.
	if o.srv.Current().Snap.App(app).Channel("pr-42") == nil {
		t.Fatal("the sweep deleted an unexpired preview")
	}
}

// TestPreviewTokenFormat: tokens round-trip, name no channel (longer than
// 64), fit a defaultChannel (at most 128), and are refused when forged,
// tampered with, made for another app or expired.
func TestPreviewTokenFormat(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	pub := key.Public().(ed25519.PublicKey)
	now := time.Now().Unix()
	for _, name := range []string{"a", "pv-abcdefgh", "abcdefghijklmnopqrstuvwx"} {
		tok, err := snapshot.SignPreviewToken(key, "com.example.app", name, now+60)
		if err != nil {
			t.Fatal(err)
		}
		if len(tok) <= 64 || len(tok) > 128 || !snapshot.LooksLikePreviewToken(tok) {
			t.Fatalf("token for %q: %d characters", name, len(tok))
		}
		got, err := snapshot.ParsePreviewToken(tok, "com.example.app", now, pub)
		if err != nil || got.Channel != name || got.Expires != now+60 {
			t.Fatalf("parse %q: %+v %v", name, got, err)
		}
		if _, err := snapshot.ParsePreviewToken(tok, "com.example.other", now, pub); err != snapshot.ErrPreviewSignature {
			t.Fatalf("another app: %v", err)
		}
		if _, err := snapshot.ParsePreviewToken(tok, "com.example.app", now+60, pub); err != snapshot.ErrPreviewExpired {
			t.Fatalf("expired: %v", err)
		}
		// Rotation: any trusted key.
		if _, err := snapshot.ParsePreviewToken(tok, "com.example.app", now, other.Public().(ed25519.PublicKey), pub); err != nil {
			t.Fatalf("second trusted key: %v", err)
		}
		b := []byte(tok)
		b[len(b)/2] ^= 1
		if _, err := snapshot.ParsePreviewToken(string(b), "com.example.app", now, pub); err == nil {
			t.Fatal("tampered token accepted")
		}
	}
	forged, _ := snapshot.SignPreviewToken(other, "com.example.app", "pv-abcdefgh", now+60)
	if _, err := snapshot.ParsePreviewToken(forged, "com.example.app", now, pub); err != snapshot.ErrPreviewSignature {
		t.Fatalf("forged: %v", err)
	}
	if _, err := snapshot.SignPreviewToken(key, "com.example.app", "abcdefghijklmnopqrstuvwxy", now); err == nil {
		t.Fatal("25-character name signed")
	}
	if _, err := snapshot.ParsePreviewToken("production", "com.example.app", now, pub); err != snapshot.ErrPreviewMalformed {
		t.Fatalf("a channel name: %v", err)
	}
}
