// Package expotest writes folders shaped like the output of
// `npx expo export` (SDK 50 and later), for tests: metadata.json (version
// 0, bundler metro), one launch bundle per platform under
// _expo/static/js/PLATFORM/ (Hermes bytecode on iOS, plain JavaScript on
// Android, both large and compressible enough to be stored brotli), assets
// named by the MD5 of their content under assets/ with their extension
// in metadata.json (PNG and TTF shaped, incompressible), one shared by both
// platforms, and the app config in expoConfig.json as the reference
// server's exportClientExpoConfig script writes it.
package expotest

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Options shape the export.
type Options struct {
	// Seed varies the content (two seeds: two different updates).
	Seed string
	// Platforms exported; default ios and android.
	Platforms []string
	// RuntimeVersion is expoConfig.json's runtimeVersion: a string, an
	// object like map[string]string{"policy": "appVersion"}, or nil to
	// leave it out.
	RuntimeVersion any
	// NoConfig leaves expoConfig.json out.
	NoConfig bool
	// LaunchBytes sizes each launch bundle (default 40,000 bytes of
	// text). A launch bundle given a size ends with a third of bytes that
	// do not compress, as identifiers, strings and bytecode in a real one:
	// brotli takes it to about 40%.
	LaunchBytes int
	// ExtraAssets adds assets shared by both platforms, named and listed
	// as the others: images (PNG-shaped, 2 to 40 KB) and every eighth a
	// font (TTF-shaped, 60 to 250 KB), incompressible.
	ExtraAssets int
}

// Asset is an asset as metadata.json lists it.
type Asset struct {
	Path string `json:"path"`
	Ext  string `json:"ext"`
}

// Export is what Write wrote.
type Export struct {
	Dir    string
	Launch map[string]string  // platform → launch bundle path
	Assets map[string][]Asset // platform → assets
	Config json.RawMessage    // expoConfig.json's content (nil without it)
}

// Files lists every path of the export metadata.json names.
func (e Export) Files() []string {
	seen := map[string]bool{}
	var out []string
	for p, l := range e.Launch {
		for _, path := range append([]string{l}, assetPaths(e.Assets[p])...) {
			if !seen[path] {
				seen[path] = true
				out = append(out, path)
			}
		}
	}
	return out
}

func assetPaths(as []Asset) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Path
	}
	return out
}

// Write writes an export into dir (created if missing).
func Write(dir string, o Options) (Export, error) {
	if o.Platforms == nil {
		o.Platforms = []string{"ios", "android"}
	}
	e := Export{Dir: dir, Launch: map[string]string{}, Assets: map[string][]Asset{}}
	put := func(rel string, data []byte) error {
		full := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		return os.WriteFile(full, data, 0o644)
	}
	asset := func(ext string, data []byte) (Asset, error) {
		sum := md5.Sum(data)
		a := Asset{Path: "assets/" + hex.EncodeToString(sum[:]), Ext: ext}
		return a, put(a.Path, data)
	}
	// Shared by both platforms: an icon and a font.
	icon, err := asset("png", pngLike(o.Seed+"icon", 3000))
	if err != nil {
		return e, err
	}
	font, err := asset("ttf", ttfLike(o.Seed+"font", 12000))
	if err != nil {
		return e, err
	}
	var extra []Asset
	for i := 0; i < o.ExtraAssets; i++ {
		var a Asset
		if i%8 == 7 {
			a, err = asset("ttf", ttfLike(fmt.Sprintf("%sfont%d", o.Seed, i), 60_000+(i*37_813)%190_000))
		} else {
			a, err = asset("png", pngLike(fmt.Sprintf("%simage%d", o.Seed, i), 2_000+(i*7_919)%38_000))
		}
		if err != nil {
			return e, err
		}
		extra = append(extra, a)
	}
	launchBytes := 40000
	if o.LaunchBytes > 0 {
		launchBytes = o.LaunchBytes
	}
	type platformMeta struct {
		Bundle string  `json:"bundle"`
		Assets []Asset `json:"assets"`
	}
	files := map[string]platformMeta{}
	for _, p := range o.Platforms {
		var code []byte
		ext := "js"
		if p == "ios" {
			code, ext = hermesLike(o.Seed+p, launchBytes), "hbc"
		} else {
			code = jsLike(o.Seed+p, launchBytes)
		}
		if o.LaunchBytes > 0 {
			text := o.LaunchBytes * 2 / 3
			code = append(code[:text], stream(o.Seed+p+"entropy", o.LaunchBytes-text)...)
		}
		sum := md5.Sum(code)
		launch := fmt.Sprintf("_expo/static/js/%s/index-%s.%s", p, hex.EncodeToString(sum[:]), ext)
		if err := put(launch, code); err != nil {
			return e, err
		}
		own, err := asset("png", pngLike(o.Seed+p+"splash", 5000))
		if err != nil {
			return e, err
		}
		e.Launch[p] = launch
		e.Assets[p] = append([]Asset{icon, font, own}, extra...)
		files[p] = platformMeta{Bundle: launch, Assets: e.Assets[p]}
	}
	meta, err := json.Marshal(map[string]any{"version": 0, "bundler": "metro", "fileMetadata": files})
	if err != nil {
		return e, err
	}
	if err := put("metadata.json", meta); err != nil {
		return e, err
	}
	if o.NoConfig {
		return e, nil
	}
	config := map[string]any{
		"name": "Example", "slug": "example", "version": "1.0.0", "orientation": "portrait",
		"sdkVersion": "52.0.0", "platforms": o.Platforms,
		"ios":     map[string]any{"bundleIdentifier": "com.example.rn"},
		"android": map[string]any{"package": "com.example.rn"},
		"updates": map[string]any{"url": "https://updates.example.com/expo/com.example.rn/manifest"},
	}
	if o.RuntimeVersion != nil {
		config["runtimeVersion"] = o.RuntimeVersion
	}
	if e.Config, err = json.Marshal(config); err != nil {
		return e, err
	}
	return e, put("expoConfig.json", e.Config)
}

// stream is n deterministic pseudo-random bytes for seed.
func stream(seed string, n int) []byte {
	out := make([]byte, 0, n+32)
	var ctr [8]byte
	for i := uint64(0); len(out) < n; i++ {
		binary.BigEndian.PutUint64(ctr[:], i)
		sum := sha256.Sum256(append([]byte(seed), ctr[:]...))
		out = append(out, sum[:]...)
	}
	return out[:n]
}

func pngLike(seed string, n int) []byte {
	return append([]byte("\x89PNG\r\n\x1a\n"), stream(seed, n)...)
}

func ttfLike(seed string, n int) []byte {
	return append([]byte{0, 1, 0, 0}, stream(seed, n)...)
}

// hermesLike is Hermes bytecode's magic, then compressible content.
func hermesLike(seed string, n int) []byte {
	return append([]byte{0xc6, 0x1f, 0xbc, 0x03, 0xc1, 0x03, 0x19, 0x1f}, jsLike(seed, n)...)
}

func jsLike(seed string, n int) []byte {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "__d(function(g,r,i,a,m,e,d){var s%d=%q;m.exports=s%d},%d,[]);\n", i, hex.EncodeToString(stream(seed, 4)), i, i)
	}
	return []byte(b.String())
}
