package origin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/native"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

func wantAPIErr(t *testing.T, err error, status int, code string) *client.APIError {
	t.Helper()
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != status || ae.Code != code {
		t.Fatalf("want %d %s, got %v", status, code, err)
	}
	return ae
}

// TestNativeAPI: the operator API's native compatibility rules on a real
// origin: what an upload's native_packages may be, the compatibility
// report's errors, and the check on A/B arms and rollouts.
func TestNativeAPI(t *testing.T) {
	ctx := context.Background()
	o := startOrigin(t)
	c := o.client
	const app = "com.example.app"
	if _, err := c.CreateApp(ctx, app, ""); err != nil {
		t.Fatal(err)
	}
	zip := makeZip(t, map[string]string{"index.html": "<html>"})
	v1 := []native.Package{{Name: "@capacitor/core", Version: "7.2.0"}}
	v2 := append([]native.Package{{Name: "@capacitor/camera", Version: "7.0.1"}}, v1...)
	upload := func(version string, pkgs []native.Package, opt client.UploadOptions) error {
		opt.NativePackages = pkgs
		_, err := c.UploadBundle(ctx, app, version, bytes.NewReader(zip), opt)
		return err
	}
	if err := upload("1.0.0", v1, client.UploadOptions{Channel: "production"}); err != nil {
		t.Fatal(err)
	}
	pub, under := true, false // native builds above the bundles' versions: no under-native guard
	if _, err := c.SetChannel(ctx, app, "production", store.ChannelPatch{Public: &pub, DisableAutoUpdateUnderNative: &under}); err != nil {
		t.Fatal(err)
	}
	if err := upload("1.1.0", v2, client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}

	// Malformed lists are refused before anything is stored.
	for _, raw := range []string{`{"name":"x"}`, `[{"name":"x","version":"1"},{"name":"x","version":"2"}]`, `[{"name":"","version":"1"}]`, `[{"name":"x","version":"1","extra":1}]`} {
		q := url.Values{"version": {"9.9.9"}, "native_packages": {raw}}
		err := c.Do(ctx, http.MethodPost, "/api/v1/apps/"+app+"/bundles?"+q.Encode(), bytes.NewReader(zip), "application/zip", nil)
		wantAPIErr(t, err, 400, "invalid_native_packages")
	}

	// The report and its errors.
	rep, err := c.Compatibility(ctx, app, "1.1.0", "production", "")
	if err != nil || rep.Verdict != native.Incompatible || rep.ChannelBundle != "1.0.0" || rep.Summary() != "@capacitor/camera 7.0.1 added" {
		t.Fatalf("report: %v %+v", err, rep)
	}
	_, err = c.Compatibility(ctx, app, "7.7.7", "production", "")
	wantAPIErr(t, err, 404, store.CodeBundleNotFound)
	_, err = c.Compatibility(ctx, app, "1.1.0", "nope", "")
	wantAPIErr(t, err, 404, store.CodeUnknownChannel)
	var out api.Compatibility
	err = c.DoJSON(ctx, http.MethodGet, "/api/v1/apps/"+app+"/bundles/1.1.0/compatibility", nil, &out)
	wantAPIErr(t, err, 400, "invalid_channel_name")

	// A/B arms: refused, then accepted with an arm's min native build
	// (the edge then skips the arm for older devices), or with force.
	arms := []snapshot.Arm{{Name: "new", Bundle: "1.1.0", BPS: 5000}}
	_, err = c.SetAB(ctx, app, "production", arms)
	wantAPIErr(t, err, 409, CodeIncompatibleNative)
	arms[0].MinNativeBuild = "2.0.0"
	ch, err := c.SetAB(ctx, app, "production", arms)
	if err != nil || ch.AB.Arms[0].MinNativeBuild != "2.0.0" {
		t.Fatalf("arm with min native build: %v %+v", err, ch.AB)
	}
	arms[0].MinNativeBuild = ""
	if _, err := c.SetABForce(ctx, app, "production", arms, true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetAB(ctx, app, "production", nil); err != nil {
		t.Fatal(err)
	}

	// Rollouts: a gated rollout is re-weighted without flags; force and
	// min_native_build belong to set only.
	min := "2.0.0"
	bps := 1000
	if _, err := c.Rollout(ctx, app, "production", api.RolloutRequest{Bundle: "1.1.0", BPS: &bps, MinNativeBuild: &min}); err != nil {
		t.Fatal(err)
	}
	bps = 5000
	ch, err = c.Rollout(ctx, app, "production", api.RolloutRequest{Bundle: "1.1.0", BPS: &bps})
	if err != nil || ch.Rollout.BPS != 5000 || ch.Rollout.MinNativeBuild != "2.0.0" {
		t.Fatalf("re-weight: %v %+v", err, ch.Rollout)
	}
	_, err = c.Rollout(ctx, app, "production", api.RolloutRequest{Action: store.RolloutPause, Force: true})
	wantAPIErr(t, err, 400, "invalid_rollout")
	bad := "soon"
	_, err = c.Rollout(ctx, app, "production", api.RolloutRequest{Bundle: "1.1.0", BPS: &bps, MinNativeBuild: &bad})
	wantAPIErr(t, err, 400, store.CodeInvalidMinNativeBuild)

	// resolve explains a device in the rollout's share but below its min
	// native build: it gets the channel's bundle.
	dev := ""
	for i := 0; dev == ""; i++ {
		if d := fmt.Sprintf("00000000-0000-4000-8000-%012x", i); snapshot.Bucket(ch.Rollout.ID, d) < bps {
			dev = d
		}
	}
	for build, want := range map[string]string{"1.0.0": "1.0.0", "2.0.0": "1.1.0"} {
		res, err := c.Resolve(ctx, app, api.DeviceRequest{DeviceID: dev, VersionName: "0.9.0",
			VersionBuild: build, Platform: "android", PluginVersion: "7.1.0", IsProd: true})
		if err != nil || res.Version != want {
			t.Fatalf("native build %s in the rollout: %v %+v, want %s", build, err, res, want)
		}
		if build == "1.0.0" && (res.Variant != snapshot.VariantBelowNative || res.MinNativeBuild != "2.0.0" || !strings.Contains(res.Message, "below the min native build 2.0.0")) {
			t.Fatalf("resolve below native: %+v", res)
		}
	}
}
