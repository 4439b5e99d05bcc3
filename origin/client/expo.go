package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// Files of an `npx expo export` output folder.
const (
	// ExpoMetadataFile lists, per platform, the launch bundle and the
	// assets of the export (metadata.json, version 0).
	ExpoMetadataFile = "metadata.json"
	// ExpoConfigFile is the app config, optional: what
	// `npx expo config --type public --json` prints (the reference
	// server's exportClientExpoConfig script writes it there). It becomes
	// the manifest's extra.expoClient, and gives the runtime version when
	// its runtimeVersion is a plain string.
	ExpoConfigFile = "expoConfig.json"
)

// maxExpoFile bounds metadata.json and expoConfig.json.
const maxExpoFile = api.MaxExpoJSON

// expoMetadata is metadata.json as `npx expo export` writes it.
type expoMetadata struct {
	Version      *int                          `json:"version"`
	Bundler      string                        `json:"bundler"`
	FileMetadata map[string]expoPlatformExport `json:"fileMetadata"`
}

type expoPlatformExport struct {
	Bundle string           `json:"bundle"`
	Assets []expoExportFile `json:"assets"`
}

type expoExportFile struct {
	Path string `json:"path"`
	Ext  string `json:"ext"`
}

// ExpoFromExport reads the folder `npx expo export` wrote (dir) and
// returns the Expo update to upload with its zip: per platform of
// metadata.json the runtime version, the launch bundle and the assets;
// extra is {"expoClient": expoConfig.json} when that file is there. The
// runtime version is runtimeVersion when given, else the app config's
// (platform's own, else top-level) runtimeVersion when it is a plain
// string; a policy ({"policy": "appVersion"}) is refused, as updraft
// does not compute it. Every file metadata.json names must be a non-empty
// regular file inside dir (what ZipDir zips). Errors name the file at fault.
func ExpoFromExport(dir, runtimeVersion string) (*snapshot.ExpoUpdate, error) {
	if fi, err := os.Stat(dir); err != nil {
		return nil, err
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a folder: --expo uploads the folder `npx expo export` wrote (with %s)", dir, ExpoMetadataFile)
	}
	metaPath := filepath.Join(dir, ExpoMetadataFile)
	raw, err := readSmall(metaPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s not found: --expo uploads the folder `npx expo export` wrote", metaPath)
	}
	if err != nil {
		return nil, err
	}
	var md expoMetadata
	if err := json.Unmarshal(raw, &md); err != nil {
		return nil, fmt.Errorf("%s: not the metadata `npx expo export` writes: %v", metaPath, err)
	}
	if md.Version == nil || *md.Version != 0 {
		v := "none"
		if md.Version != nil {
			v = fmt.Sprint(*md.Version)
		}
		return nil, fmt.Errorf("%s: version %s: this updraft reads version 0", metaPath, v)
	}
	if len(md.FileMetadata) == 0 {
		return nil, fmt.Errorf("%s: fileMetadata lists no platform", metaPath)
	}
	config, err := readExpoConfig(dir)
	if err != nil {
		return nil, err
	}
	files, err := dirFiles(dir)
	if err != nil {
		return nil, err
	}
	have := make(map[string]bool, len(files))
	for _, p := range files {
		if rel, err := filepath.Rel(dir, p); err == nil {
			have[filepath.ToSlash(rel)] = true
		}
	}
	platforms := make([]string, 0, len(md.FileMetadata))
	for name := range md.FileMetadata {
		platforms = append(platforms, name)
	}
	sort.Strings(platforms)
	e := &snapshot.ExpoUpdate{Platforms: map[string]snapshot.ExpoPlatform{}}
	for _, name := range platforms {
		pm := md.FileMetadata[name]
		if name != snapshot.PlatformIOS && name != snapshot.PlatformAndroid {
			return nil, fmt.Errorf("%s: platform %q: Expo updates are for ios and android", metaPath, name)
		}
		check := func(what, path string) error {
			if path == "" {
				return fmt.Errorf("%s: %s %s: no path", metaPath, name, what)
			}
			full := filepath.Join(dir, filepath.FromSlash(path))
			if !have[path] {
				if fi, err := os.Lstat(full); err != nil {
					return fmt.Errorf("%s: %s %s %s: no such file in %s", metaPath, name, what, path, dir)
				} else if !fi.Mode().IsRegular() || strings.Contains(path, "..") {
					return fmt.Errorf("%s: %s %s %s: not a regular file inside %s (the upload zips regular files only, links are not followed)", metaPath, name, what, path, dir)
				}
				return fmt.Errorf("%s: %s %s %s: not a file the upload would zip", metaPath, name, what, path)
			}
			if fi, err := os.Stat(full); err != nil {
				return err
			} else if fi.Size() == 0 {
				return fmt.Errorf("%s: %s %s %s is empty", metaPath, name, what, full)
			}
			return nil
		}
		if err := check("launch bundle", pm.Bundle); err != nil {
			return nil, err
		}
		p := snapshot.ExpoPlatform{Launch: pm.Bundle, Assets: make([]snapshot.ExpoAsset, 0, len(pm.Assets))}
		for _, a := range pm.Assets {
			if err := check("asset", a.Path); err != nil {
				return nil, err
			}
			p.Assets = append(p.Assets, snapshot.ExpoAsset{Path: a.Path, Ext: a.Ext})
		}
		if p.RuntimeVersion = runtimeVersion; p.RuntimeVersion == "" {
			if p.RuntimeVersion, err = configRuntimeVersion(dir, config, name); err != nil {
				return nil, err
			}
		}
		e.Platforms[name] = p
	}
	if config != nil {
		if e.Extra, err = json.Marshal(map[string]json.RawMessage{"expoClient": config.raw}); err != nil {
			return nil, err
		}
	}
	if err := api.CheckExpoUpdate(e); err != nil {
		var ae *api.Error
		if errors.As(err, &ae) {
			return nil, fmt.Errorf("%s: %s", dir, ae.Message)
		}
		return nil, err
	}
	return e, nil
}

// expoConfig is expoConfig.json: the raw object and its top-level fields.
type expoConfig struct {
	raw    json.RawMessage
	fields map[string]json.RawMessage
}

// readExpoConfig reads dir's expoConfig.json (nil when there is none).
func readExpoConfig(dir string) (*expoConfig, error) {
	path := filepath.Join(dir, ExpoConfigFile)
	raw, err := readSmall(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	c := &expoConfig{}
	if err := json.Unmarshal(raw, &c.fields); err != nil || c.fields == nil {
		return nil, fmt.Errorf("%s: want the app config as a JSON object (npx expo config --type public --json)", path)
	}
	// Compact: it travels in every manifest.
	if c.raw, err = json.Marshal(json.RawMessage(raw)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// configRuntimeVersion is the runtime version the app config gives
// platform: its own runtimeVersion (ios.runtimeVersion), else the
// top-level one, when it is a string.
func configRuntimeVersion(dir string, c *expoConfig, platform string) (string, error) {
	path := filepath.Join(dir, ExpoConfigFile)
	if c == nil {
		return "", fmt.Errorf("no runtime version for %s: pass --runtime-version (the runtime version the app's build embeds), or export %s with a runtimeVersion", platform, path)
	}
	value, where := c.fields["runtimeVersion"], "runtimeVersion"
	var own map[string]json.RawMessage
	if json.Unmarshal(c.fields[platform], &own) == nil && len(own["runtimeVersion"]) > 0 && string(own["runtimeVersion"]) != "null" {
		value, where = own["runtimeVersion"], platform+".runtimeVersion"
	}
	if len(value) == 0 || string(value) == "null" {
		return "", fmt.Errorf("%s has no runtimeVersion: pass --runtime-version (the runtime version the app's build embeds)", path)
	}
	var s string
	if json.Unmarshal(value, &s) == nil {
		return s, nil
	}
	var policy struct {
		Policy string `json:"policy"`
	}
	if json.Unmarshal(value, &policy) == nil && policy.Policy != "" {
		return "", fmt.Errorf("%s: %s is the policy %q, which updraft does not compute: pass --runtime-version with the runtime version the app's build embeds", path, where, policy.Policy)
	}
	return "", fmt.Errorf("%s: %s is %s: want a string, or pass --runtime-version", path, where, value)
}

// readSmall reads a file of at most maxExpoFile bytes.
func readSmall(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxExpoFile {
		return nil, fmt.Errorf("%s: %d bytes; the limit is %d", path, fi.Size(), maxExpoFile)
	}
	return os.ReadFile(path)
}
