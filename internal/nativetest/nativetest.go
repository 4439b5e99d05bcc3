// Package nativetest lays out real Capacitor apps for tests: a package.json
// from origin/native/testdata/apps and a node_modules stub, one minimal
// package.json per dependency with the markers a real install has (a
// "capacitor" section, android/ and ios/ folders, a podspec) for native
// plugins and nothing for JavaScript-only packages.
package nativetest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Apps are the stored package.json files (folders of testdata/apps).
const (
	AndroidCamera = "app-android-camera" // Ionic Angular, Capacitor 7.2
	Kapture       = "kapture"            // the same template plus filesystem, geolocation, preferences
	CapgoDemo     = "capgo-demo-app"     // Capgo's demo app, Capacitor 5
)

// PackageJSON returns the path of a stored app's package.json.
func PackageJSON(t testing.TB, app string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "origin", "native", "testdata", "apps", app, "package.json")
}

// IsNativeName tells the stub which packages are native plugins: the ones
// that are in reality (Capacitor's plugins and Capgo's updater; @capacitor/cli
// and @capacitor/core are JavaScript).
func IsNativeName(name string) bool {
	switch name {
	case "@capacitor/cli", "@capacitor/core":
		return false
	}
	return strings.HasPrefix(name, "@capacitor/") || name == "@capgo/capacitor-updater"
}

// Install copies app's package.json into dir and installs the stub:
// every dependency at the version its range names (the range's operator
// dropped), or at installed[name] when given.
func Install(t testing.TB, dir, app string, installed map[string]string) string {
	t.Helper()
	src, err := os.ReadFile(PackageJSON(t, app))
	if err != nil {
		t.Fatal(err)
	}
	var pj struct {
		Dependencies    map[string]string `json:"dependencies"`
		DevDependencies map[string]string `json:"devDependencies"`
	}
	if err := json.Unmarshal(src, &pj); err != nil {
		t.Fatal(err)
	}
	write := func(p string, b []byte) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "package.json"), src)
	i := 0
	for _, deps := range []map[string]string{pj.Dependencies, pj.DevDependencies} {
		for name, rng := range deps {
			v := strings.TrimLeft(rng, "^~=>< ")
			if iv, ok := installed[name]; ok {
				v = iv
			}
			mod := filepath.Join(dir, "node_modules", filepath.FromSlash(name))
			doc := map[string]any{"name": name, "version": v}
			if IsNativeName(name) {
				// Real plugins carry all of these; the stub varies which
				// one is present so each marker is exercised.
				switch i % 3 {
				case 0:
					doc["capacitor"] = map[string]any{"ios": map[string]string{"src": "ios"}, "android": map[string]string{"src": "android"}}
				case 1:
					write(filepath.Join(mod, "android", "build.gradle"), []byte("// stub\n"))
				case 2:
					write(filepath.Join(mod, "Plugin.podspec"), []byte("# stub\n"))
				}
				i++
			}
			b, _ := json.Marshal(doc)
			write(filepath.Join(mod, "package.json"), b)
		}
	}
	return filepath.Join(dir, "package.json")
}
