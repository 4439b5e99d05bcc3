package proxy

import (
	"bytes"
	"strings"
	"testing"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// nativeGatedSnapshot: production serves 2.0.0 to native builds 2.0.0 and
// later; devices below get 1.1.0.
func nativeGatedSnapshot(t testing.TB) *snapshot.Snapshot {
	s := testSnapshot(t, 1, fakeSHA("bundle"))
	ch := s.App(testAppID).Channel("production")
	ch.Bundle = "2.0.0"
	ch.NativeGate = &snapshot.NativeGate{MinBuild: "2.0.0", Below: []snapshot.NativeStep{{Bundle: "1.1.0"}}}
	if err := s.Index(nil); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestUpdatesNativeGate: the edge answers a device by its native build
// under the channel's native gate.
func TestUpdatesNativeGate(t *testing.T) {
	e := newCoreEdge(t, nativeGatedSnapshot(t))
	base := []byte("https://edge.example.com")
	for build, want := range map[string]string{"1.0.0": `{"version":"1.1.0"`, "2.0.0": `{"version":"2.0.0"`, "2.1.0": `{"version":"2.0.0"`} {
		out := &reply{body: make([]byte, 0, 512)}
		e.updates([]byte(strings.Replace(pluginBody, `"version_build":"1.0.0"`, `"version_build":"`+build+`"`, 1)), base, "", out)
		if out.status != 200 || !bytes.HasPrefix(answerBody(out), []byte(want)) {
			t.Fatalf("native build %s: HTTP %d %s, want %s", build, out.status, answerBody(out), want)
		}
	}
}

// BenchmarkUpdatesNativeGate: a device below the gate, answered with the
// channel's earlier bundle, allocates nothing either.
func BenchmarkUpdatesNativeGate(b *testing.B) {
	e := newCoreEdge(b, nativeGatedSnapshot(b))
	body, base := []byte(pluginBody), []byte("https://edge.example.com")
	out := &reply{body: make([]byte, 0, 512)}
	e.updates(body, base, "", out)
	if out.status != 200 || !bytes.HasPrefix(answerBody(out), []byte(`{"version":"1.1.0"`)) {
		b.Fatalf("HTTP %d %s, want 1.1.0", out.status, answerBody(out))
	}
	b.ReportAllocs()
	for b.Loop() {
		out.reset()
		e.updates(body, base, "", out)
	}
}
