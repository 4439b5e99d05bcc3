package delta

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"

	brrr "github.com/molecule-man/go-brrr"
)

func fixture(t testing.TB, name string) []byte {
	b, err := os.ReadFile("../../testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCanonicalDeterministic(t *testing.T) {
	z := fixture(t, "swagger-ui-5.34.0.zip")
	a, err := CanonicalZip(z)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := CanonicalZip(z)
	if !bytes.Equal(a, b) || len(a) < 4<<20 {
		t.Fatalf("canonical not deterministic or too small: %d", len(a))
	}
}

// TestFixtureDeltas builds both encodings for both fixture pairs, checks
// they decode to the target, and compares with the zstd CLI's sizes.
func TestFixtureDeltas(t *testing.T) {
	if testing.Short() {
		t.Skip("brotli q11 on 5 MB takes seconds")
	}
	pairs := [][2]string{{"swagger-ui-5.34.0.zip", "swagger-ui-5.34.1.zip"}, {"swagger-ui-5.34.1.zip", "swagger-ui-5.35.0.zip"}}
	// zstd -19 --long=27 --patch-from sizes from the fixtures' README.
	cli := []int{4970, 44382}
	for i, p := range pairs {
		base, _ := CanonicalZip(fixture(t, p[0]))
		target, _ := CanonicalZip(fixture(t, p[1]))
		best := 1 << 30
		for _, enc := range []string{DCZ, DCB} {
			d, err := BuildVerified(base, target, enc)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s → %s %s: %d bytes", p[0], p[1], enc, len(d))
			best = min(best, len(d))
		}
		if best > cli[i] {
			t.Errorf("%s → %s: best delta %d bytes, zstd CLI needs %d", p[0], p[1], best, cli[i])
		}
	}
}

func TestApplyRefusesWrongBase(t *testing.T) {
	base := bytes.Repeat([]byte("base content "), 1000)
	target := append(bytes.Repeat([]byte("base content "), 900), []byte("new tail")...)
	other := bytes.Repeat([]byte("other "), 1000)
	for _, enc := range []string{DCZ, DCB} {
		d, err := BuildVerified(base, target, enc)
		if err != nil {
			t.Fatal(err)
		}
		if got, _, _ := Encoding(d); got != enc {
			t.Fatalf("encoding %q, want %q", got, enc)
		}
		if _, err := Apply(other, d, 1<<20); !errors.Is(err, ErrWrongBase) {
			t.Fatalf("%s against the wrong base: %v", enc, err)
		}
		if _, err := Apply(base, d, 10); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%s over the output limit: %v", enc, err)
		}
		out, err := Apply(base, d, 1<<20)
		if err != nil || sha256.Sum256(out) != sha256.Sum256(target) {
			t.Fatalf("%s apply: %v", enc, err)
		}
	}
	if _, err := Apply(base, []byte("garbage"), 100); !errors.Is(err, ErrFormat) {
		t.Fatalf("garbage: %v", err)
	}
}

func TestValidPath(t *testing.T) {
	for p, want := range map[string]bool{
		"index.html": true, "assets/app.js": true, "a/b/c.css": true,
		"": false, "/etc/passwd": false, "../x": false, "a/../b": false, "a//b": false, "a\\b": false, "./a": false, "a/.": false, "a\x00b": false,
	} {
		if ValidPath(p) != want {
			t.Errorf("ValidPath(%q) != %v", p, want)
		}
	}
}

func FuzzApply(f *testing.F) {
	base := bytes.Repeat([]byte("0123456789abcdef"), 256)
	target := append(append([]byte{}, base[:3000]...), []byte("changed")...)
	for _, enc := range []string{DCZ, DCB} {
		d, _ := Build(base, target, enc)
		f.Add(d)
	}
	f.Add([]byte{0x5e, 0x2a, 0x4d, 0x18, 0x20, 0, 0, 0})
	f.Fuzz(func(t *testing.T, d []byte) {
		out, err := Apply(base, d, 1<<20)
		if err == nil && len(out) > 1<<20 {
			t.Fatalf("output %d bytes over the limit", len(out))
		}
	})
}

func FuzzValidPath(f *testing.F) {
	for _, s := range []string{"index.html", "../a", "a/./b", "a/b/../../c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if !ValidPath(p) {
			return
		}
		for _, seg := range strings.Split(p, "/") {
			if seg == ".." || seg == "." || seg == "" {
				t.Fatalf("accepted %q", p)
			}
		}
		if strings.HasPrefix(p, "/") || strings.Contains(p, "\\") {
			t.Fatalf("accepted %q", p)
		}
	})
}

func BenchmarkApply(b *testing.B) {
	base, _ := CanonicalZip(fixture(b, "swagger-ui-5.34.1.zip"))
	target, _ := CanonicalZip(fixture(b, "swagger-ui-5.35.0.zip"))
	for _, enc := range []string{DCZ, DCB} {
		d, err := Build(base, target, enc)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(enc, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(target)))
			for b.Loop() {
				if _, err := Apply(base, d, MaxCanonical); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestManifest(t *testing.T) {
	files, err := ReadZip(bytes.NewReader(fixture(t, "swagger-ui-5.34.0.zip")), int64(len(fixture(t, "swagger-ui-5.34.0.zip"))))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Manifest(append(files, File{Path: "empty.txt"}))
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string][]byte{}
	for _, f := range files {
		byPath[f.Path] = f.Data
	}
	compressed := 0
	for _, e := range m {
		name := strings.TrimSuffix(e.Name, ".br")
		orig, ok := byPath[name]
		if !ok || e.Name == "empty.txt" {
			t.Fatalf("unexpected entry %q", e.Name)
		}
		content := e.Data
		if strings.HasSuffix(e.Name, ".br") {
			compressed++
			if len(orig) < BrotliMin {
				t.Fatalf("%s compressed below the threshold", e.Name)
			}
			var err error
			if content, err = brrr.Decompress(e.Data); err != nil {
				t.Fatal(err)
			}
		}
		if sum := sha256.Sum256(content); hex.EncodeToString(sum[:]) != e.Hash || !bytes.Equal(content, orig) {
			t.Fatalf("%s: hash is not of the uncompressed content", e.Name)
		}
	}
	if len(m) != len(files) || compressed == 0 {
		t.Fatalf("%d entries for %d files, %d compressed", len(m), len(files), compressed)
	}
	if _, err := Manifest([]File{{Path: "../evil", Data: []byte("x")}}); !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("traversal: %v", err)
	}
}

func TestManifestSkipsIncompressible(t *testing.T) {
	random := make([]byte, 64<<10)
	rand.Read(random)
	text := bytes.Repeat([]byte("function update() { return 42 }\n"), 2000)
	m, err := Manifest([]File{{Path: "img.bin", Data: random}, {Path: "app.js", Data: text}})
	if err != nil {
		t.Fatal(err)
	}
	if m[0].Name != "img.bin" || !bytes.Equal(m[0].Data, random) || m[1].Name != "app.js.br" {
		t.Fatalf("names %q %q", m[0].Name, m[1].Name)
	}
}
