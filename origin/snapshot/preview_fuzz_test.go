package snapshot

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"testing"
)

// FuzzParsePreviewToken: a preview token is what any device may send as
// its channel (setChannel, defaultChannel). Parsing never panics, and a
// token it accepts is, byte for byte, the one the origin's key signs for
// that channel and expiry: nothing else verifies.
func FuzzParsePreviewToken(f *testing.F) {
	seed := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	pub := seed.Public().(ed25519.PublicKey)
	const app = "com.example.app"
	for _, c := range []struct {
		name string
		exp  int64
	}{{"pr-42", 4102444800}, {"pv-7kq2m9xa", 2000000000}, {"a", 1}, {"abcdefghijklmnopqrstuvwx", 1<<32 - 1}} {
		tok, err := SignPreviewToken(seed, app, c.name, c.exp)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
		f.Add(tok[:len(tok)-1] + "A")
	}
	f.Add("")
	f.Add("production")
	f.Fuzz(func(t *testing.T, tok string) {
		got, err := ParsePreviewToken(tok, app, 0, pub)
		if err != nil {
			return
		}
		want, err := SignPreviewToken(seed, app, got.Channel, got.Expires)
		if err != nil {
			t.Fatalf("accepted %q for channel %q expiring %d, which the origin cannot sign: %v", tok, got.Channel, got.Expires, err)
		}
		a, _ := base64.RawURLEncoding.DecodeString(tok)
		b, _ := base64.RawURLEncoding.DecodeString(want)
		if !bytes.Equal(a, b) {
			t.Fatalf("accepted %q, not the token the origin signs for %+v (%q)", tok, got, want)
		}
	})
}
