package proxy

import (
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// TestPreviewTokenVerifiedOnce: an edge checks a preview token's signature
// once, at setChannel; the update checks that carry it as defaultChannel
// after that (and a refused token sent again) cost a map lookup, not a
// signature check. Without keys no token is accepted.
func TestPreviewTokenVerifiedOnce(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	te := startEdge(t, nil)
	s := testSnapshot(t, 1, fakeSHA("1.1.0"))
	exp := time.Now().Add(time.Hour).Unix()
	pv := &snapshot.Channel{Name: "pv-test", Bundle: "2.0.0", IOS: true, Android: true, AllowEmulator: true, AllowDev: true,
		AllowProd: true, AllowDevice: true, DisableAutoUpdate: snapshot.DisableNone, PreviewExpires: exp}
	app := s.Apps[0]
	app.Channels = append(app.Channels, pv)
	if err := s.Index(nil); err != nil {
		t.Fatal(err)
	}
	te.edge.SetSnapshot(s)
	tok, err := snapshot.SignPreviewToken(priv, testAppID, "pv-test", exp)
	if err != nil {
		t.Fatal(err)
	}
	set := func() string {
		a := te.do(t, http.MethodPost, "/channel_self", body(t, map[string]any{"channel": tok}))
		return string(a.body)
	}
	check := func(def string) string {
		a := te.do(t, http.MethodPost, "/updates", body(t, map[string]any{"defaultChannel": def}))
		var v struct{ Version string }
		json.Unmarshal(a.body, &v)
		return v.Version
	}
	if b := set(); b == `{"status":"ok","allowSet":true}` {
		t.Fatal("token accepted by an edge that trusts no key")
	}
	te.edge.previews.mu.Lock() // forget the refusal
	te.edge.previews.m = nil
	te.edge.previews.mu.Unlock()
	te.edge.previews.verifies.Store(0)
	te.edge.SetPreviewKeys(pub)
	if b := set(); b != `{"status":"ok","allowSet":true}` {
		t.Fatalf("setChannel with the token: %s", b)
	}
	if n := te.edge.previews.verifies.Load(); n != 1 {
		t.Fatalf("%d signature checks for one setChannel", n)
	}
	for range 5 {
		if v := check(tok); v != "2.0.0" {
			t.Fatalf("update check with the token: %q, want the preview's 2.0.0", v)
		}
	}
	if v := check("pv-test"); v != "1.1.0" {
		t.Fatalf("update check with the preview's name: %q, want production's 1.1.0", v)
	}
	_, other, _ := ed25519.GenerateKey(nil)
	forged, _ := snapshot.SignPreviewToken(other, testAppID, "pv-test", exp)
	for range 3 {
		if v := check(forged); v != "1.1.0" {
			t.Fatalf("forged token: %q", v)
		}
	}
	if n := te.edge.previews.verifies.Load(); n != 2 {
		t.Fatalf("%d signature checks, want 2 (one per token)", n)
	}
}
