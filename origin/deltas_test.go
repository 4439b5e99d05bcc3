package origin

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/delta"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// TestDeltasBuiltAfterUpload uploads two real releases and checks the
// background build: canonical archives, dcz and dcb deltas that decode
// against the base to the new canonical archive, listed in the snapshot.
func TestDeltasBuiltAfterUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds brotli q11 deltas of 5 MB")
	}
	o := startOrigin(t)
	o.srv.cfg.MaxBundleSize = 64 << 20
	ctx := context.Background()
	o.client.CreateApp(ctx, "com.example.app", "")
	for _, f := range []struct{ v, file string }{{"1.0.0", "swagger-ui-5.34.0.zip"}, {"1.0.1", "swagger-ui-5.34.1.zip"}} {
		z, err := os.ReadFile("../testdata/" + f.file)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := o.client.UploadBundle(ctx, "com.example.app", f.v, bytes.NewReader(z), client.UploadOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitDeltas(t, o.client, "com.example.app", "1.0.0")
	bs := waitDeltas(t, o.client, "com.example.app", "1.0.1")
	newest, base := bs[0], bs[1]
	if newest.Version != "1.0.1" || len(newest.Deltas) != 2 || len(base.Deltas) != 0 {
		t.Fatalf("bundles: %+v", bs)
	}
	baseData, _ := o.srv.deltas.readBlob(base.Canonical)
	for _, d := range newest.Deltas {
		if d.From != "1.0.0" || d.Base != base.Canonical || d.Size >= newest.Size/2 {
			t.Fatalf("delta %+v", d)
		}
		// Its decode was measured (the builder thread's CPU time) for
		// edges to weigh against its size.
		if d.DecodeNs <= 0 {
			t.Fatalf("%s: decode cost not measured: %+v", d.Encoding, d)
		}
		raw, err := o.srv.deltas.readBlob(d.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		out, err := delta.Apply(baseData, raw, delta.MaxCanonical)
		if err != nil || hexSum(out) != newest.Canonical {
			t.Fatalf("%s does not rebuild 1.0.1: %v", d.Encoding, err)
		}
		t.Logf("%s: %d bytes (zip %d, canonical %d), decoded in %s of CPU", d.Encoding, d.Size, newest.Size, newest.CanonicalSize, time.Duration(d.DecodeNs))
	}
	// The snapshot carries them for edges.
	o.srv.awaitPublished(ctx)
	b := o.srv.Current().Snap.App("com.example.app").Bundle("1.0.1")
	if b.Canonical != newest.Canonical || len(b.Deltas) != 2 || b.DeltaFrom(base.Canonical, true, true, snapshot.DeltaCost{}) == nil {
		t.Fatalf("snapshot bundle %+v", b)
	}
	for _, d := range b.Deltas {
		if d.DecodeNs <= 0 {
			t.Fatalf("snapshot delta without its decode cost: %+v", d)
		}
	}
	if o.srv.Current().Snap.ByCanonical(newest.Canonical) != b {
		t.Fatal("canonical index missing")
	}
}
