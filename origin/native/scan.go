package native

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// corePackages are Capacitor's own runtime packages: recorded whenever the
// app depends on them (the native bridge changes with them).
var corePackages = map[string]bool{"@capacitor/core": true, "@capacitor/android": true, "@capacitor/ios": true}

// ErrNoNodeModules: the app's dependencies are not installed, so which of
// them are native cannot be told.
var ErrNoNodeModules = errors.New("node_modules not found")

type packageJSON struct {
	Name            string                     `json:"name"`
	Version         string                     `json:"version"`
	Dependencies    map[string]json.RawMessage `json:"dependencies"`
	DevDependencies map[string]json.RawMessage `json:"devDependencies"`
	Capacitor       map[string]json.RawMessage `json:"capacitor"`
	Cordova         json.RawMessage            `json:"cordova"`
}

// Scan lists the native packages of the app whose package.json is at
// path: Capacitor's core packages, and every dependency (dependencies and
// devDependencies, as Capacitor's own plugin discovery reads them) whose
// installed copy is a native plugin (IsNativePlugin). Versions are the
// installed ones, from node_modules/NAME/package.json, else the declared
// range. node_modules is looked for next to package.json and in its parent
// folders (workspaces hoist it). A dependency missing from node_modules is
// an error: it cannot be told native or not.
func Scan(path string) ([]Package, error) {
	pj, err := readPackageJSON(path)
	if err != nil {
		return nil, err
	}
	deps := map[string]string{}
	for _, m := range []map[string]json.RawMessage{pj.DevDependencies, pj.Dependencies} {
		for name, raw := range m {
			var v string
			if err := json.Unmarshal(raw, &v); err != nil {
				return nil, fmt.Errorf("%s: dependency %s: version is not a string", path, name)
			}
			deps[name] = v
		}
	}
	names := make([]string, 0, len(deps))
	for n := range deps {
		names = append(names, n)
	}
	sort.Strings(names)
	var roots []string
	for dir := filepath.Dir(absOr(path)); ; dir = filepath.Dir(dir) {
		if fi, err := os.Stat(filepath.Join(dir, "node_modules")); err == nil && fi.IsDir() {
			roots = append(roots, filepath.Join(dir, "node_modules"))
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	if len(roots) == 0 && len(names) > 0 {
		return nil, fmt.Errorf("%w next to %s or above it: install the dependencies (npm install) so their native parts can be read", ErrNoNodeModules, path)
	}
	out := []Package{}
	var missing []string
	for _, name := range names {
		dir := ""
		for _, r := range roots {
			if fi, err := os.Stat(filepath.Join(r, filepath.FromSlash(name))); err == nil && fi.IsDir() {
				dir = filepath.Join(r, filepath.FromSlash(name))
				break
			}
		}
		if dir == "" {
			if corePackages[name] {
				out = append(out, Package{Name: name, Version: deps[name]})
			} else {
				missing = append(missing, name)
			}
			continue
		}
		version := deps[name]
		isNative := corePackages[name]
		if dpj, err := readPackageJSON(filepath.Join(dir, "package.json")); err == nil {
			if dpj.Version != "" {
				version = dpj.Version
			}
			isNative = isNative || dpj.nativeMarker()
		}
		if isNative || hasNativeFolders(dir) {
			out = append(out, Package{Name: name, Version: version})
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("dependencies of %s not installed in node_modules: %s (npm install)", path, strings.Join(missing, ", "))
	}
	return out, nil
}

// IsNativePlugin reports whether the package installed in dir ships native
// code: its package.json declares a "capacitor" section for android or ios
// (how Capacitor finds plugins) or a "cordova" section (Cordova plugins run
// under Capacitor too), or it has android/ or ios/ folders, a podspec, a
// Package.swift or a Cordova plugin.xml.
func IsNativePlugin(dir string) bool {
	if pj, err := readPackageJSON(filepath.Join(dir, "package.json")); err == nil && pj.nativeMarker() {
		return true
	}
	return hasNativeFolders(dir)
}

func (pj *packageJSON) nativeMarker() bool {
	if pj.Capacitor["android"] != nil || pj.Capacitor["ios"] != nil {
		return true
	}
	c := strings.TrimSpace(string(pj.Cordova))
	return c != "" && c != "null"
}

func hasNativeFolders(dir string) bool {
	for _, sub := range []string{"android", "ios"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err == nil && fi.IsDir() {
			return true
		}
	}
	for _, f := range []string{"Package.swift", "plugin.xml"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	pods, _ := filepath.Glob(filepath.Join(dir, "*.podspec"))
	return len(pods) > 0
}

func readPackageJSON(path string) (*packageJSON, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) > 4<<20 {
		return nil, fmt.Errorf("%s: larger than 4 MiB", path)
	}
	var pj packageJSON
	if err := json.Unmarshal(b, &pj); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return &pj, nil
}

func absOr(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// FindPackageJSON returns the package.json the CLI reads by default: in
// dir (the current directory), else in the parent of the bundle folder
// (dist/ or www/ next to package.json); "" when neither has one.
func FindPackageJSON(dir, bundlePath string) string {
	cands := []string{filepath.Join(dir, "package.json")}
	if bundlePath != "" {
		cands = append(cands, filepath.Join(filepath.Dir(absOr(bundlePath)), "package.json"))
	}
	for _, c := range cands {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			return c
		}
	}
	return ""
}
