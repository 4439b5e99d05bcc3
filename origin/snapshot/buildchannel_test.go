package snapshot

import (
	"strings"
	"testing"
)

// A channel named in the app's build (Expo's expo-channel-name: BuildChannel)
// is honoured even when it is private and allows no self-assignment, as an
// EAS channel is; the same name sent as a run-time defaultChannel by the
// Capacitor plugin is not (no_channel without a default, as before).
func TestBuildChannelPrivate(t *testing.T) {
	s := testSnapshot(t, func(a *App) {
		a.Bundles = append(a.Bundles, &Bundle{Version: "1.4.0", SHA256: strings.Repeat("e", 64), Size: 5})
		a.Channels = append(a.Channels, &Channel{Name: "internal", Bundle: "1.4.0", IOS: true, Android: true,
			AllowEmulator: true, AllowDev: true, AllowProd: true, AllowDevice: true, DisableAutoUpdate: DisableNone})
	})
	r := baseReq()
	r.DefaultChannel = "internal"
	d := Resolve(s, &r)
	if d.OK() && d.Bundle.Version == "1.4.0" {
		t.Fatalf("a run-time defaultChannel reached a private channel: %+v", d)
	}
	r = baseReq()
	r.DefaultChannel, r.BuildChannel = "internal", true
	if d := Resolve(s, &r); !d.OK() || d.Bundle.Version != "1.4.0" || d.Rule != RuleSelfAssigned {
		t.Fatalf("the build's channel: %+v", d)
	}
}
