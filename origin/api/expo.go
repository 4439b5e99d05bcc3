package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/updraft-cdn/updraft/origin/delta"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// An Expo update (`bundle upload --expo`) is an ordinary bundle, the zip of
// the folder `npx expo export` wrote, plus the snapshot.ExpoUpdate that
// says which of its files are each platform's launch asset and assets. The
// CLI builds it from metadata.json; the origin trusts none of it: it parses
// it with ParseExpoUpdate and checks it against the files of the zip it
// received with CheckExpoFiles. Both refuse with 400 invalid_expo_metadata
// (the document) or invalid_bundle (the zip lacks a file it names).

// Limits of an Expo update's document.
const (
	// MaxExpoJSON bounds the document as sent (the "expo" part).
	MaxExpoJSON = 8 << 20
	// MaxExpoExtra bounds the manifest's extra (typically {"expoClient":
	// the app config}, a few KB).
	MaxExpoExtra = 1 << 20
	// MaxExpoRuntimeVersion bounds a runtime version, in bytes.
	MaxExpoRuntimeVersion = 255
	// MaxExpoAssets bounds one platform's assets (each must also be a
	// file of the zip, which the zip's entry limit bounds).
	MaxExpoAssets = 100000
	// MaxExpoExt bounds an asset's file extension.
	MaxExpoExt = 32
)

// ExpoPlatforms are the platforms an Expo update may target, as
// metadata.json and the client's expo-platform header name them.
var ExpoPlatforms = []string{snapshot.PlatformIOS, snapshot.PlatformAndroid}

func expoErr(format string, args ...any) error {
	return Errorf(http.StatusBadRequest, "invalid_expo_metadata", format, args...)
}

// ParseExpoUpdate decodes and validates an Expo update document: known
// fields only, one or both of the platforms ios and android, each with a
// runtime version (1 to 255 printable ASCII characters, no space at
// either end: the client sends it in a header), a launch asset and assets
// that are safe relative paths (not ending in ".br", the suffix of a
// brotli-stored manifest file), no path twice in a platform, extensions
// of at most 32 letters, digits, '_', '+', '-' or inner '.', and an extra
// that is a JSON object of at most 1 MiB (null or absent: none).
func ParseExpoUpdate(raw []byte) (*snapshot.ExpoUpdate, error) {
	if len(raw) > MaxExpoJSON {
		return nil, expoErr("the Expo metadata is %d bytes; the limit is %d", len(raw), MaxExpoJSON)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var e snapshot.ExpoUpdate
	if err := dec.Decode(&e); err != nil {
		return nil, expoErr("the Expo metadata is not the expected JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, expoErr("the Expo metadata has data after its JSON object")
	}
	if err := CheckExpoUpdate(&e); err != nil {
		return nil, err
	}
	return &e, nil
}

// CheckExpoUpdate validates a decoded Expo update (see ParseExpoUpdate);
// it normalizes a null extra to none.
func CheckExpoUpdate(e *snapshot.ExpoUpdate) error {
	if len(e.Platforms) == 0 {
		return expoErr("no platform: want ios, android or both")
	}
	for _, name := range sortedPlatforms(e) {
		p := e.Platforms[name]
		if name != snapshot.PlatformIOS && name != snapshot.PlatformAndroid {
			return expoErr("platform %q: an Expo update is for ios or android", truncate(name))
		}
		if err := CheckRuntimeVersion(p.RuntimeVersion); err != nil {
			return expoErr("%s: %v", name, err)
		}
		if err := checkExpoPath(p.Launch); err != nil {
			return expoErr("%s launch asset: %v", name, err)
		}
		if len(p.Assets) > MaxExpoAssets {
			return expoErr("%s: %d assets; the limit is %d", name, len(p.Assets), MaxExpoAssets)
		}
		seen := make(map[string]bool, len(p.Assets)+1)
		seen[p.Launch] = true
		for _, a := range p.Assets {
			if err := checkExpoPath(a.Path); err != nil {
				return expoErr("%s asset: %v", name, err)
			}
			if seen[a.Path] {
				return expoErr("%s asset %s is listed twice (or is the launch asset)", name, a.Path)
			}
			seen[a.Path] = true
			if !validExt(a.Ext) {
				return expoErr("%s asset %s: extension %q: want at most %d letters, digits, '_', '+', '-' or inner '.'", name, a.Path, truncate(a.Ext), MaxExpoExt)
			}
		}
	}
	if t := bytes.TrimSpace(e.Extra); len(t) == 0 || string(t) == "null" {
		e.Extra = nil
	} else {
		if len(t) > MaxExpoExtra {
			return expoErr("extra is %d bytes; the limit is %d", len(t), MaxExpoExtra)
		}
		if t[0] != '{' || !json.Valid(t) {
			return expoErr("extra must be a JSON object")
		}
	}
	return nil
}

// CheckRuntimeVersion validates an Expo runtime version: 1 to 255
// printable ASCII characters, without a space at either end.
func CheckRuntimeVersion(v string) error {
	switch {
	case v == "":
		return errors.New("runtime version is empty")
	case len(v) > MaxExpoRuntimeVersion:
		return fmt.Errorf("runtime version is %d characters; the limit is %d", len(v), MaxExpoRuntimeVersion)
	case v[0] == ' ' || v[len(v)-1] == ' ':
		return fmt.Errorf("runtime version %q starts or ends with a space", v)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return fmt.Errorf("runtime version %q: printable ASCII only (the client sends it in the expo-runtime-version header)", truncate(v))
		}
	}
	return nil
}

func checkExpoPath(p string) error {
	if !delta.ValidPath(p) {
		return fmt.Errorf("path %q: want a relative path inside the bundle (no '..', '.', empty or absolute parts)", truncate(p))
	}
	if strings.HasSuffix(p, ".br") {
		return fmt.Errorf("path %s: a name ending in .br is taken for a brotli-stored file", p)
	}
	return nil
}

func validExt(ext string) bool {
	if len(ext) > MaxExpoExt || strings.HasPrefix(ext, ".") || strings.HasSuffix(ext, ".") || strings.Contains(ext, "..") {
		return false
	}
	for _, c := range []byte(ext) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '+', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}

// CheckExpoFiles verifies that every path an Expo update names is a
// non-empty regular file of the bundle (files: path → size, as the zip
// check lists them): the builder stores each such file in the bundle's
// manifest, where the edge finds it (empty files are left out of it).
// Refusals are 400 invalid_bundle.
func CheckExpoFiles(e *snapshot.ExpoUpdate, files map[string]int64) error {
	for _, name := range sortedPlatforms(e) {
		p := e.Platforms[name]
		check := func(what, path string) error {
			size, ok := files[path]
			switch {
			case !ok:
				return Errorf(http.StatusBadRequest, "invalid_bundle", "the zip has no file %s, which the Expo metadata names as the %s %s", path, name, what)
			case size == 0:
				return Errorf(http.StatusBadRequest, "invalid_bundle", "%s (the %s %s) is empty", path, name, what)
			}
			return nil
		}
		if err := check("launch asset", p.Launch); err != nil {
			return err
		}
		for _, a := range p.Assets {
			if err := check("asset", a.Path); err != nil {
				return err
			}
		}
	}
	return nil
}

// sortedPlatforms lists e's platforms in order, for stable messages.
func sortedPlatforms(e *snapshot.ExpoUpdate) []string {
	names := make([]string, 0, len(e.Platforms))
	for n := range e.Platforms {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// truncate shortens a value quoted in an error message.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
