package origin

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"hash/crc32"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/client"
)

// zipWith builds a zip from headers and bodies, in order.
func zipWith(t *testing.T, entries ...func(zw *zip.Writer)) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		e(zw)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func entry(name string, mode fs.FileMode, body []byte) func(zw *zip.Writer) {
	return func(zw *zip.Writer) {
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		if mode != 0 {
			h.SetMode(mode)
		}
		w, _ := zw.CreateHeader(h)
		w.Write(body)
	}
}

func uploadRefusal(t *testing.T, o *testOrigin, version string, z []byte) (string, string) {
	t.Helper()
	_, err := o.client.UploadBundle(context.Background(), "com.example.app", version, bytes.NewReader(z), client.UploadOptions{})
	var ae *client.APIError
	if errors.As(err, &ae) {
		return apiCode(err), ae.Message
	}
	return apiCode(err), ""
}

// Finding 4: what the builder refuses is refused at upload, with
// invalid_bundle; symlinks and special files too. Folder entries stay
// fine, and an accepted zip builds.
func TestUploadRefusesWhatBuilderRefuses(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	o.client.CreateApp(ctx, "com.example.app", "")
	html := []byte("<html></html>")
	for i, tc := range []struct {
		name string
		zip  []byte
		msg  string
	}{
		{"dot segment", zipWith(t, entry("./index.html", 0, html)), `unsafe path "./index.html"`},
		{"empty segment", zipWith(t, entry("index.html", 0, html), entry("a//b.js", 0, html)), `unsafe path "a//b.js"`},
		{"dot in a folder", zipWith(t, entry("index.html", 0, html), entry("assets/./app.js", 0, html)), `unsafe path`},
		{"symlink", zipWith(t, entry("index.html", 0, html), entry("config.js", fs.ModeSymlink|0o777, []byte("/etc/passwd"))), "symbolic link"},
		{"named pipe", zipWith(t, entry("index.html", 0, html), entry("fifo", fs.ModeNamedPipe|0o644, nil)), "special file"},
		{"file and folder", zipWith(t, entry("index.html", 0, html), entry("a", 0, html), entry("a/b.js", 0, html)), "is a file and also the folder"},
	} {
		code, msg := uploadRefusal(t, o, "0.0."+string(rune('1'+i)), tc.zip)
		if code != "400 invalid_bundle" || !strings.Contains(msg, tc.msg) {
			t.Errorf("%s: got %s %q, want 400 invalid_bundle mentioning %q", tc.name, code, msg, tc.msg)
		}
	}
	// Folder entries (as most zip tools write them) are fine, and the
	// builder builds what the upload accepted.
	z := zipWith(t, entry("dist/", fs.ModeDir|0o755, nil), entry("dist/index.html", 0, html), entry("dist/assets/", 0, nil), entry("dist/assets/app.js", 0, html))
	if _, err := o.client.UploadBundle(ctx, "com.example.app", "1.0.0", bytes.NewReader(z), client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	bs := waitDeltas(t, o.client, "com.example.app", "1.0.0")
	if bs[0].ManifestFiles != 2 || bs[0].Canonical == "" {
		t.Fatalf("built %+v", bs[0])
	}
}

// bombZip is one deflated entry of n zero bytes.
func bombZip(t *testing.T, name string, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) { return flate.NewWriter(w, flate.BestCompression) })
	w, _ := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate})
	chunk := make([]byte, 1<<20)
	for i := 0; i < n>>20; i++ {
		w.Write(chunk)
	}
	zw.Close()
	return buf.Bytes()
}

// Finding 3: zip bombs are refused at upload with invalid_bundle naming the
// limit and its flag, on declared sizes and on the bytes actually
// decompressed (a zip lying about its sizes).
func TestUploadRefusesZipBombs(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	o.client.CreateApp(ctx, "com.example.app", "")
	html := []byte("<html></html>")
	bomb := bombZip(t, "index.html", 256<<20) // 256 MiB of zeros, about 250 KB
	if len(bomb) > 1<<20 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	// The same entry with its directory declaring 1 KiB unpacked.
	lying := append([]byte{}, bomb...)
	if n := patchDeclaredSize(lying, 1024); n != 2 {
		t.Fatalf("patched %d headers", n)
	}
	var many []func(*zip.Writer)
	for i := 0; i < 30; i++ {
		many = append(many, entry(strings.Repeat("f", i+1)+".js", 0, html))
	}
	for i, tc := range []struct {
		name string
		zip  []byte
		set  func(*config.Origin)
		msg  string
	}{
		{"entry ratio", bomb, nil, "--max-entry-ratio"},
		{"lying sizes", lying, nil, "more data than the zip declares"},
		{"uncompressed", bomb, func(c *config.Origin) { c.MaxEntryRatio, c.MaxUncompressed = 0, 64<<20 }, "--max-bundle-uncompressed"},
		{"total ratio", bomb, func(c *config.Origin) { c.MaxEntryRatio = 0 }, "--max-bundle-ratio"},
		{"entries", zipWith(t, append(many, entry("index.html", 0, html))...), func(c *config.Origin) { c.MaxZipEntries = 20 }, "--max-bundle-entries"},
	} {
		oc := o
		if tc.set != nil {
			oc, _ = startOriginCfg(t, tc.set)
			oc.client.CreateApp(ctx, "com.example.app", "")
		}
		code, msg := uploadRefusal(t, oc, "0.1."+string(rune('0'+i)), tc.zip)
		if code != "400 invalid_bundle" || !strings.Contains(msg, tc.msg) {
			t.Errorf("%s: got %s %q, want 400 invalid_bundle mentioning %q", tc.name, code, msg, tc.msg)
		}
		assertBlobs(t, oc, 0)
	}
}

// patchDeclaredSize sets the uncompressed size of the zip's only entry,
// in its local header and in the central directory, and returns how many
// headers it changed.
func patchDeclaredSize(z []byte, size uint32) int {
	n := 0
	for _, sig := range []struct {
		magic string
		off   int
	}{{"PK\x03\x04", 22}, {"PK\x01\x02", 24}} {
		if i := bytes.Index(z, []byte(sig.magic)); i >= 0 {
			z[i+sig.off], z[i+sig.off+1], z[i+sig.off+2], z[i+sig.off+3] = byte(size), byte(size>>8), byte(size>>16), byte(size>>24)
			n++
		}
	}
	return n
}

// A zip whose entries' CRC-32 does not match their content is refused at
// upload (it would fail on every device).
func TestUploadRefusesCorruptEntries(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	o.client.CreateApp(ctx, "com.example.app", "")
	z := makeZip(t, map[string]string{"index.html": "<html>hello</html>"})
	i := bytes.Index(z, []byte("PK\x01\x02"))
	crc := crc32.ChecksumIEEE([]byte("other"))
	z[i+16], z[i+17], z[i+18], z[i+19] = byte(crc), byte(crc>>8), byte(crc>>16), byte(crc>>24)
	if code, msg := uploadRefusal(t, o, "1.0.0", z); code != "400 invalid_bundle" || !strings.Contains(msg, "checksum") {
		t.Fatalf("corrupt entry: %s %q", code, msg)
	}
}
