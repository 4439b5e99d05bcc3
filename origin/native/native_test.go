package native_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/updraft-cdn/updraft/internal/nativetest"
	"github.com/updraft-cdn/updraft/origin/native"
)

func names(pkgs []native.Package) []string {
	out := []string{}
	for _, p := range pkgs {
		out = append(out, p.Name+"@"+p.Version)
	}
	return out
}

// TestScanRealApps scans the stored package.json files of real Capacitor
// apps over a node_modules stub: only Capacitor's core packages and native
// plugins are recorded, at their installed versions.
func TestScanRealApps(t *testing.T) {
	for _, tc := range []struct {
		app  string
		want []string
	}{
		{nativetest.AndroidCamera, []string{"@capacitor/android@7.2.0", "@capacitor/app@7.0.1", "@capacitor/camera@7.0.1",
			"@capacitor/core@7.2.0", "@capacitor/haptics@7.0.1", "@capacitor/keyboard@7.0.1", "@capacitor/status-bar@7.0.1"}},
		{nativetest.Kapture, []string{"@capacitor/android@7.2.0", "@capacitor/app@7.0.1", "@capacitor/camera@7.0.1",
			"@capacitor/core@7.2.0", "@capacitor/filesystem@7.0.1", "@capacitor/geolocation@7.1.1", "@capacitor/haptics@7.0.1",
			"@capacitor/keyboard@7.0.1", "@capacitor/preferences@7.0.1", "@capacitor/status-bar@7.0.1"}},
		{nativetest.CapgoDemo, []string{"@capacitor/android@5.0.3", "@capacitor/app@5.0.3", "@capacitor/core@5.0.3",
			"@capacitor/haptics@5.0.6", "@capacitor/ios@5.0.3", "@capacitor/keyboard@5.0.6", "@capacitor/splash-screen@5.0.6",
			"@capacitor/status-bar@5.0.6", "@capgo/capacitor-updater@5.2.14"}},
	} {
		t.Run(tc.app, func(t *testing.T) {
			pj := nativetest.Install(t, t.TempDir(), tc.app, nil)
			got, err := native.Scan(pj)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(names(got), tc.want) {
				t.Fatalf("Scan:\n got %v\nwant %v", names(got), tc.want)
			}
		})
	}
}

// TestScanInstalledVersionWins: the version recorded is the installed one,
// not the range; a package without any native marker is left out even
// under a Capacitor-looking name; a missing dependency is an error.
func TestScanInstalledVersionWins(t *testing.T) {
	dir := t.TempDir()
	pj := nativetest.Install(t, dir, nativetest.AndroidCamera, map[string]string{"@capacitor/camera": "7.0.2"})
	got, err := native.Scan(pj)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range got {
		if p.Name == "@capacitor/camera" {
			found = p.Version == "7.0.2"
		}
		if p.Name == "rxjs" || p.Name == "@capacitor/cli" {
			t.Fatalf("JavaScript package %s recorded as native", p.Name)
		}
	}
	if !found {
		t.Fatalf("camera not at its installed 7.0.2: %v", names(got))
	}
	if err := os.RemoveAll(filepath.Join(dir, "node_modules", "@capacitor", "camera")); err != nil {
		t.Fatal(err)
	}
	if _, err := native.Scan(pj); err == nil {
		t.Fatal("a dependency missing from node_modules was not reported")
	}
	if err := os.RemoveAll(filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	if _, err := native.Scan(pj); err == nil {
		t.Fatal("no node_modules was not reported")
	}
}

// TestCompareRealApps compares the real apps' native packages: Kapture's
// bundle on a channel of app_android_camera's binary adds three plugins
// (incompatible); the reverse only removes them (compatible); a patch
// upgrade of one plugin is incompatible with its bump named.
func TestCompareRealApps(t *testing.T) {
	scan := func(app string, inst map[string]string) []native.Package {
		p, err := native.Scan(nativetest.Install(t, t.TempDir(), app, inst))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	camera, kapture := scan(nativetest.AndroidCamera, nil), scan(nativetest.Kapture, nil)
	r := native.Compare(kapture, camera)
	if r.Verdict != native.Incompatible {
		t.Fatalf("kapture over camera: %s", r.Verdict)
	}
	var added []string
	for _, d := range r.Blocking() {
		if d.Change != native.Added {
			t.Fatalf("unexpected blocking diff %+v", d)
		}
		added = append(added, d.Name)
	}
	if want := []string{"@capacitor/filesystem", "@capacitor/geolocation", "@capacitor/preferences"}; !reflect.DeepEqual(added, want) {
		t.Fatalf("added %v, want %v", added, want)
	}
	if r := native.Compare(camera, kapture); r.Verdict != native.Compatible || len(r.Diffs) != 10 {
		t.Fatalf("camera over kapture: %s, %d diffs", r.Verdict, len(r.Diffs))
	}
	if r := native.Compare(camera, camera); r.Verdict != native.Compatible {
		t.Fatalf("same packages: %s", r.Verdict)
	}
	patched := scan(nativetest.AndroidCamera, map[string]string{"@capacitor/camera": "7.0.2", "@capacitor/core": "8.0.0"})
	r = native.Compare(patched, camera)
	if r.Verdict != native.Incompatible || len(r.Blocking()) != 2 {
		t.Fatalf("patched: %s %+v", r.Verdict, r.Blocking())
	}
	for _, d := range r.Blocking() {
		want := map[string]string{"@capacitor/camera": "patch", "@capacitor/core": "major"}[d.Name]
		if d.Change != native.Changed || d.Bump != want {
			t.Fatalf("%s: %s %s, want changed %s", d.Name, d.Change, d.Bump, want)
		}
	}
	if r := native.Compare(nil, camera); r.Verdict != native.Unknown || !r.Compatible() {
		t.Fatalf("unknown new: %+v", r)
	}
	if r := native.Compare(camera, nil); r.Verdict != native.Unknown {
		t.Fatalf("unknown current: %+v", r)
	}
}

func TestBump(t *testing.T) {
	for _, c := range [][3]string{{"7.0.1", "7.0.2", "patch"}, {"^7.0.1", "7.1.0", "minor"}, {"5.0.3", "7.0.0", "major"},
		{"7.0.2", "7.0.1", "downgrade"}, {"1.0.0-beta.1", "1.0.0-beta.2", "prerelease"}, {"latest", "7.0.0", "other"}} {
		if got := native.Bump(c[0], c[1]); got != c[2] {
			t.Errorf("Bump(%s, %s) = %s, want %s", c[0], c[1], got, c[2])
		}
	}
}
