package origin

import (
	"testing"

	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// FuzzDecodeCursor: a device list cursor comes back from the client.
// Decoding never panics, accepts only a device id this origin's key
// bound to the same filters, and a cursor made for other filters is
// refused.
func FuzzDecodeCursor(f *testing.F) {
	key := []byte("0123456789abcdef0123456789abcdef")
	q := store.DeviceQuery{AppID: "com.example.app", Channel: "production"}
	f.Add(encodeCursor(key, q, "00000000-0000-4000-8000-000000000001"))
	f.Add(encodeCursor(key, store.DeviceQuery{AppID: "com.example.app"}, "00000000-0000-4000-8000-000000000001"))
	f.Add("")
	f.Add(".")
	f.Add("YQ.YQ")
	f.Fuzz(func(t *testing.T, c string) {
		after, err := decodeCursor(key, q, c)
		if err != nil {
			return
		}
		if !snapshot.ValidDeviceID(after) {
			t.Fatalf("cursor %q accepted with device id %q", c, after)
		}
		other := q
		other.Channel = "beta"
		if _, err := decodeCursor(key, other, c); err == nil {
			t.Fatalf("cursor %q accepted for other filters", c)
		}
	})
}
