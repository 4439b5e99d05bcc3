package origin

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// status sends GET path with key and returns the HTTP status.
func status(t *testing.T, o *testOrigin, path, key string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", o.http.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func readKey(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func overlap(d time.Duration) *int64 {
	s := int64(d / time.Second)
	return &s
}

// keys rotate --api: the new key works at once and is in DATA/api-key; the
// old one works until the overlap ends, then is refused (API and /ui).
func TestRotateAPIKey(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	oldKey := o.client.APIKey
	res, err := o.client.RotateKey(ctx, RotateKeyRequest{Key: KeyAPI, OverlapSeconds: overlap(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Secret == "" || res.Secret == oldKey || readKey(t, config.APIKeyFile(o.dir)) != res.Secret {
		t.Fatalf("rotation result %+v; DATA/api-key %q", res, readKey(t, config.APIKeyFile(o.dir)))
	}
	if fi, _ := os.Stat(config.APIKeyFile(o.dir)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("api-key mode %v", fi.Mode().Perm())
	}
	if res.OldExpiresAt == nil || res.OldExpiresAt.Before(time.Now().Add(59*time.Minute)) {
		t.Fatalf("old key expiry %v, want in an hour", res.OldExpiresAt)
	}
	for _, k := range []string{oldKey, res.Secret} {
		if code := status(t, o, "/api/v1/apps", k); code != 200 {
			t.Fatalf("key during the overlap: HTTP %d", code)
		}
	}
	// A second rotation with no overlap ends both previous keys now.
	res2, err := client.New(o.http.URL, res.Secret).RotateKey(ctx, RotateKeyRequest{Key: KeyAPI, OverlapSeconds: overlap(0)})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{oldKey, res.Secret} {
		if code := status(t, o, "/api/v1/apps", k); code != 401 {
			t.Fatalf("expired key: HTTP %d, want 401", code)
		}
	}
	if code := status(t, o, "/api/v1/apps", res2.Secret); code != 200 {
		t.Fatalf("newest key: HTTP %d", code)
	}
	// An expired key no longer opens /ui either.
	if code := uiLogin(t, o, oldKey); code != http.StatusUnauthorized {
		t.Fatalf("expired key at /ui login: HTTP %d, want 401", code)
	}
	// Expiry is persisted: a restarted origin refuses the old keys too.
	o.srv.Close()
	srv, err := Open(ctx, testConfig(t, o.dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	o2 := &testOrigin{srv: srv, http: hs, dir: o.dir}
	if status(t, o2, "/api/v1/apps", oldKey) != 401 || status(t, o2, "/api/v1/apps", res2.Secret) != 200 {
		t.Fatal("after restart: expired key accepted or new key refused")
	}
}

// An overlap ends on its own: the old key is accepted, then refused once
// its expiry passes, without a restart.
func TestRotatedKeyExpires(t *testing.T) {
	o := startOrigin(t)
	oldEdge := readKey(t, config.EdgeKeyFile(o.dir))
	res, err := o.client.RotateKey(context.Background(), RotateKeyRequest{Key: KeyEdge, OverlapSeconds: overlap(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if readKey(t, config.EdgeKeyFile(o.dir)) != res.Secret {
		t.Fatal("DATA/edge-key not rewritten")
	}
	if code := status(t, o, "/v1/snapshot?wait=0", res.Secret); code != 200 {
		t.Fatalf("new edge key: HTTP %d", code)
	}
	if code := status(t, o, "/api/v1/apps", res.Secret); code != 401 {
		t.Fatalf("edge key on the operator API: HTTP %d", code)
	}
	deadline := time.Now().Add(10 * time.Second)
	for status(t, o, "/v1/snapshot?wait=0", oldEdge) != 401 {
		if time.Now().After(deadline) {
			t.Fatal("old edge key still accepted 10s after its 1s overlap")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if time.Now().Before(*res.OldExpiresAt) {
		t.Fatalf("old edge key refused before its expiry %v", res.OldExpiresAt)
	}
}

func TestRotateKeyRefusals(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	for _, req := range []RotateKeyRequest{{Key: "root"}, {Key: KeyAPI, OverlapSeconds: overlap(-time.Second)}, {Key: KeyEdge, Prepare: true}} {
		if _, err := o.client.RotateKey(ctx, req); err == nil {
			t.Fatalf("%+v accepted", req)
		}
	}
	edge := readKey(t, config.EdgeKeyFile(o.dir))
	if _, err := client.New(o.http.URL, edge).RotateKey(ctx, RotateKeyRequest{Key: KeyAPI}); apiCode(err) != "401 unauthorized" {
		t.Fatalf("rotation with an edge key: %v", err)
	}
}

// pollSnapshot fetches GET /v1/snapshot and returns the wire and the
// verified heartbeat.
func pollSnapshot(t *testing.T, o *testOrigin, after string, keys ...ed25519.PublicKey) ([]byte, snapshot.Heartbeat, int) {
	t.Helper()
	req, _ := http.NewRequest("GET", o.http.URL+"/v1/snapshot?wait=0&after="+after, nil)
	req.Header.Set("Authorization", "Bearer "+readKey(t, config.EdgeKeyFile(o.dir)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	wire, _ := io.ReadAll(resp.Body)
	raw, err := base64.StdEncoding.DecodeString(resp.Header.Get(HeartbeatHeader))
	if err != nil {
		t.Fatal(err)
	}
	hb, err := snapshot.VerifyHeartbeat(raw, keys...)
	if err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	return wire, hb, resp.StatusCode
}

// Snapshot answers (200 and 304) carry a signed heartbeat vouching for the
// current snapshot; snapshots carry their signed issued time.
func TestSnapshotHeartbeat(t *testing.T) {
	o := startOrigin(t)
	pub := o.srv.PublicKey()
	wire, hb, code := pollSnapshot(t, o, "-1", pub)
	s, err := snapshot.DecodeDocument(wire, pub)
	if err != nil || code != 200 {
		t.Fatalf("HTTP %d: %v", code, err)
	}
	if s.Issued == 0 || !hb.Vouches(s) || hb.At < s.Issued || time.Since(time.UnixMilli(hb.At)) > time.Minute {
		t.Fatalf("snapshot issued %d, heartbeat %+v", s.Issued, hb)
	}
	_, hb2, code := pollSnapshot(t, o, "1000000", pub)
	if code != 304 || !hb2.Vouches(s) || hb2.At < hb.At {
		t.Fatalf("304: HTTP %d heartbeat %+v", code, hb2)
	}
}

// keys rotate --signing: prepare gives the next public key; the rotation
// re-signs the current revision with it (newer issued time), keeps the old
// key in DATA/origin-key.old, and later snapshots and heartbeats are signed
// with the new key only.
func TestRotateSigningKey(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	oldPub := o.srv.PublicKey()
	before, _, _ := pollSnapshot(t, o, "-1", oldPub)
	prep, err := o.client.RotateKey(ctx, RotateKeyRequest{Key: KeySigning, Prepare: true})
	if err != nil {
		t.Fatal(err)
	}
	again, err := o.client.RotateKey(ctx, RotateKeyRequest{Key: KeySigning, Prepare: true})
	if err != nil || again.PublicKey != prep.PublicKey || prep.PreviousPublicKey != EncodePublicKey(oldPub) {
		t.Fatalf("prepare: %+v then %+v (%v)", prep, again, err)
	}
	res, err := o.client.RotateKey(ctx, RotateKeyRequest{Key: KeySigning})
	if err != nil || res.PublicKey != prep.PublicKey {
		t.Fatalf("rotate: %+v %v", res, err)
	}
	newPub := o.srv.PublicKey()
	if EncodePublicKey(newPub) != prep.PublicKey {
		t.Fatal("origin does not sign with the prepared key")
	}
	if k, err := LoadSigningKeyFile(PreviousSigningKeyFile(o.dir)); err != nil || !k.Public().(ed25519.PublicKey).Equal(oldPub) {
		t.Fatalf("origin-key.old: %v", err)
	}
	if k, err := LoadOrCreateSigningKey(o.dir); err != nil || !k.Public().(ed25519.PublicKey).Equal(newPub) {
		t.Fatalf("origin-key: %v", err)
	}
	if _, err := os.Stat(NextSigningKeyFile(o.dir)); !os.IsNotExist(err) {
		t.Fatalf("origin-key.next left: %v", err)
	}
	after, hb, _ := pollSnapshot(t, o, "-1", newPub)
	s0, _ := snapshot.DecodeDocument(before, oldPub)
	s1, err := snapshot.DecodeDocument(after, newPub)
	// The same content re-signed; its revision may also have moved on: the
	// rotation is written to the store (other origins follow it), and this
	// origin's own follower can publish that before the poll.
	if err != nil || s1.Rev < s0.Rev || s1.Issued <= s0.Issued || !hb.Vouches(s1) {
		t.Fatalf("re-signed snapshot: %+v vs %+v, %v", s1, s0, err)
	}
	if _, err := snapshot.DecodeDocument(after, oldPub); err == nil {
		t.Fatal("new snapshot verifies with the old key")
	}
	// A change after the rotation is signed with the new key.
	if _, err := o.client.CreateApp(ctx, "com.example.rotated", ""); err != nil {
		t.Fatal(err)
	}
	later, _, _ := pollSnapshot(t, o, "-1", newPub)
	if s2, err := snapshot.DecodeDocument(later, newPub); err != nil || s2.Rev <= s1.Rev {
		t.Fatalf("later snapshot: %v", err)
	}
	// A restarted origin keeps the new key.
	o.srv.Close()
	srv, err := Open(ctx, testConfig(t, o.dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if !srv.PublicKey().Equal(newPub) {
		t.Fatal("restart lost the rotated key")
	}
}

// StopLongPolls (http.Server shutdown) answers held snapshot long-polls at
// once.
func TestStopLongPolls(t *testing.T) {
	o := startOrigin(t)
	req, _ := http.NewRequest("GET", o.http.URL+"/v1/snapshot?wait=60&after=1000000", nil)
	req.Header.Set("Authorization", "Bearer "+readKey(t, config.EdgeKeyFile(o.dir)))
	done := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- -1
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	// Whether the poll is already held or arrives after, it must answer at
	// once rather than after its 60 s wait.
	start := time.Now()
	o.srv.StopLongPolls()
	select {
	case code := <-done:
		if code != http.StatusServiceUnavailable {
			t.Fatalf("held long-poll answered HTTP %d, want 503", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("held long-poll still open 10s after StopLongPolls")
	}
	t.Logf("long-poll ended %v after StopLongPolls", time.Since(start))
}
