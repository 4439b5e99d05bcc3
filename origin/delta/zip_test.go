package delta

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"io"
	"io/fs"
	"strings"
	"testing"

	brrr "github.com/molecule-man/go-brrr"
)

// zipEntry describes one entry of a test zip.
type zipEntry struct {
	name   string
	body   []byte
	mode   fs.FileMode // 0: a regular file (or a folder for names ending in /)
	method uint16
	flags  uint16
	raw    bool   // written as is with method and flags
	attrs  uint32 // Unix mode bits, set raw in the external attributes
}

func buildZip(t testing.TB, entries ...zipEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		if e.method != 0 {
			h.Method = e.method
		}
		if e.mode != 0 {
			h.SetMode(e.mode)
		}
		if e.attrs != 0 {
			h.CreatorVersion = 3 << 8 // Unix
			h.ExternalAttrs = e.attrs << 16
		}
		if e.raw {
			// Unknown methods: write the bytes raw.
			h.CRC32 = crc32.ChecksumIEEE(e.body)
			h.CompressedSize64, h.UncompressedSize64 = uint64(len(e.body)), uint64(len(e.body))
			h.Flags = e.flags
			w, err := zw.CreateRaw(h)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(e.body)
			continue
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(e.body)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func openZip(b []byte, lim Limits) (*Zip, error) {
	z, err := OpenZip(bytes.NewReader(b), int64(len(b)), lim)
	if err == nil {
		err = z.Verify(context.Background())
	}
	return z, err
}

// TestOpenZipRules: the path and type rules upload and builder share.
func TestOpenZipRules(t *testing.T) {
	ok := []byte("<html></html>")
	for _, tc := range []struct {
		name    string
		entries []zipEntry
		want    error // nil: accepted
	}{
		{"plain", []zipEntry{{name: "index.html", body: ok}, {name: "assets/app.js", body: ok}}, nil},
		{"folders", []zipEntry{{name: "dist/"}, {name: "dist/index.html", body: ok}, {name: "dist/assets/", mode: fs.ModeDir | 0o755}}, nil},
		{"resource forks", []zipEntry{{name: "index.html", body: ok}, {name: "__MACOSX/._index.html", body: ok}}, nil},
		{"dot segment", []zipEntry{{name: "./index.html", body: ok}}, ErrUnsafePath},
		{"empty segment", []zipEntry{{name: "index.html", body: ok}, {name: "a//b.js", body: ok}}, ErrUnsafePath},
		{"traversal", []zipEntry{{name: "index.html", body: ok}, {name: "../evil.js", body: ok}}, ErrUnsafePath},
		{"nested traversal", []zipEntry{{name: "a/../../evil.js", body: ok}}, ErrUnsafePath},
		{"absolute", []zipEntry{{name: "/etc/passwd", body: ok}}, ErrUnsafePath},
		{"backslash", []zipEntry{{name: "a\\b.js", body: ok}}, ErrUnsafePath},
		{"unsafe folder", []zipEntry{{name: "../"}, {name: "index.html", body: ok}}, ErrUnsafePath},
		{"unsafe resource fork", []zipEntry{{name: "__MACOSX/../../x", body: ok}}, ErrUnsafePath},
		{"symlink", []zipEntry{{name: "index.html", body: ok}, {name: "link", body: []byte("/etc/passwd"), mode: fs.ModeSymlink | 0o777}}, ErrSpecialFile},
		{"symlink folder", []zipEntry{{name: "index.html", body: ok}, {name: "d/", attrs: 0o120777}}, ErrSpecialFile},
		{"fifo", []zipEntry{{name: "index.html", body: ok}, {name: "pipe", mode: fs.ModeNamedPipe | 0o644}}, ErrSpecialFile},
		{"device", []zipEntry{{name: "index.html", body: ok}, {name: "dev", mode: fs.ModeDevice | 0o644}}, ErrSpecialFile},
		{"duplicate", []zipEntry{{name: "index.html", body: ok}, {name: "index.html", body: ok}}, ErrDuplicate},
		{"file and folder", []zipEntry{{name: "index.html", body: ok}, {name: "index.html/"}}, ErrDuplicate},
		{"file as a parent", []zipEntry{{name: "a", body: ok}, {name: "a/b.js", body: ok}}, ErrDuplicate},
		{"bzip2", []zipEntry{{name: "index.html", body: ok, method: 12, raw: true}}, zip.ErrAlgorithm},
		{"encrypted", []zipEntry{{name: "index.html", body: ok, method: zip.Store, flags: 1, raw: true}}, zip.ErrAlgorithm},
		{"socket bits", []zipEntry{{name: "index.html", body: ok}, {name: "s", attrs: 0o140644}}, ErrSpecialFile},
	} {
		z, err := openZip(buildZip(t, tc.entries...), DefaultLimits)
		if tc.want == nil {
			if err != nil {
				t.Errorf("%s: refused: %v", tc.name, err)
			}
			for _, f := range z.Files {
				if strings.HasPrefix(f.Path, "__MACOSX/") {
					t.Errorf("%s: resource fork %s listed", tc.name, f.Path)
				}
			}
			continue
		}
		var be *BundleError
		if !errors.Is(err, tc.want) || !errors.As(err, &be) || !IsBundleError(err) {
			t.Errorf("%s: got %v, want a BundleError wrapping %v", tc.name, err, tc.want)
		}
	}
}

func zeros(n int) []byte { return make([]byte, n) }

// TestOpenZipLimits: each limit, on the declared sizes.
func TestOpenZipLimits(t *testing.T) {
	lim := Limits{MaxEntries: 10, MaxUncompressed: 8 << 20, MaxRatio: 100, MaxEntryRatio: 100}
	var many []zipEntry
	for i := 0; i < 11; i++ {
		many = append(many, zipEntry{name: strings.Repeat("x", i+1), body: []byte("x")})
	}
	var flat []zipEntry // 6 × 1 MiB of zeros: each at the ratio threshold, the whole far above
	for i := 0; i < 6; i++ {
		flat = append(flat, zipEntry{name: string(rune('a' + i)), body: zeros(1 << 20)})
	}
	for _, tc := range []struct {
		name    string
		entries []zipEntry
		limit   string
	}{
		{"entries", many, LimitEntries},
		{"uncompressed", []zipEntry{{name: "a", body: randomish(5 << 20)}, {name: "b", body: randomish(5 << 20)}}, LimitUncompressed},
		{"entry ratio", []zipEntry{{name: "big", body: zeros(4 << 20)}}, LimitEntryRatio},
		{"total ratio", flat, LimitRatio},
	} {
		_, err := openZip(buildZip(t, tc.entries...), lim)
		var le *LimitError
		if !errors.As(err, &le) || le.Limit != tc.limit || !IsBundleError(err) {
			t.Errorf("%s: got %v, want the %s limit", tc.name, err, tc.limit)
		}
	}
	// Under the thresholds: a small file compressing 1000:1 is fine.
	if _, err := openZip(buildZip(t, zipEntry{name: "blank.txt", body: zeros(1 << 20)}), lim); err != nil {
		t.Fatalf("1 MiB of zeros refused: %v", err)
	}
	// Zero disables a limit.
	if _, err := openZip(buildZip(t, flat...), Limits{}); err != nil {
		t.Fatalf("no limits: %v", err)
	}
}

func randomish(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// lyingZip is one deflated entry whose headers declare decl bytes
// unpacked while its data inflates to len(body).
func lyingZip(t *testing.T, body []byte, decl uint64) []byte {
	var comp bytes.Buffer
	fw, _ := flate.NewWriter(&comp, flate.BestCompression)
	fw.Write(body)
	fw.Close()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "index.html", Method: zip.Deflate, CRC32: crc32.ChecksumIEEE(body),
		CompressedSize64: uint64(comp.Len()), UncompressedSize64: decl}
	w, err := zw.CreateRaw(h)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(comp.Bytes())
	zw.Close()
	return buf.Bytes()
}

// TestDeclaredSizesNotTrusted: a zip that declares less than it inflates
// to is refused on the bytes actually decompressed, without reading past
// the declared size, whatever its directory says.
func TestDeclaredSizesNotTrusted(t *testing.T) {
	lim := Limits{MaxEntries: 10, MaxUncompressed: 64 << 20, MaxRatio: 100, MaxEntryRatio: 100}
	z, err := OpenZip(bytes.NewReader(lyingZip(t, zeros(32<<20), 1000)), int64(len(lyingZip(t, zeros(32<<20), 1000))), lim)
	if err != nil {
		t.Fatalf("the declared sizes pass: %v", err)
	}
	err = z.Verify(context.Background())
	if !IsBundleError(err) {
		t.Fatalf("a lying entry: %v", err)
	}
	if z.read > 1000+64<<10 {
		t.Fatalf("read %d bytes of an entry declaring 1000", z.read)
	}
	// An entry that declares its full size but inflates to more than the
	// limit allows in total is stopped at the limit.
	big := lyingZip(t, zeros(8<<20), 8<<20)
	z, err = OpenZip(bytes.NewReader(big), int64(len(big)), Limits{MaxUncompressed: 1 << 20})
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != LimitUncompressed {
		t.Fatalf("declared over the limit: %v", err)
	}
	z, err = OpenZip(bytes.NewReader(big), int64(len(big)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	z.lim.MaxUncompressed = 1 << 20 // as if the directory had lied
	if err := z.Verify(context.Background()); !errors.As(err, &le) || le.Limit != LimitUncompressed || z.read > 1<<20+64<<10 {
		t.Fatalf("actual bytes over the limit: %v after %d bytes", err, z.read)
	}
}

// TestCentralDirectoryBounded: entries declared or present beyond the
// limit are refused before archive/zip parses the directory.
func TestCentralDirectoryBounded(t *testing.T) {
	var entries []zipEntry
	for i := 0; i < 300; i++ {
		entries = append(entries, zipEntry{name: strings.Repeat("d", 1+i%7) + "/" + string(rune('a'+i%26)) + string(rune('a'+i/26)), method: zip.Store})
	}
	raw := buildZip(t, entries...)
	var le *LimitError
	if _, err := OpenZip(bytes.NewReader(raw), int64(len(raw)), Limits{MaxEntries: 100}); !errors.As(err, &le) || le.Limit != LimitEntries {
		t.Fatalf("300 entries under a limit of 100: %v", err)
	}
	// The end record declares 65535 entries (the directory holds 300):
	// refused on the declaration, which archive/zip would preallocate.
	lied := append([]byte{}, raw...)
	end := bytes.LastIndex(lied, []byte("PK\x05\x06"))
	binary.LittleEndian.PutUint16(lied[end+8:], 0xfffe)
	binary.LittleEndian.PutUint16(lied[end+10:], 0xfffe)
	if err := checkDirectory(bytes.NewReader(lied), int64(len(lied)), 1000); !errors.As(err, &le) || le.Got != 0xfffe {
		t.Fatalf("declared 65534 entries: %v", err)
	}
	if _, err := OpenZip(bytes.NewReader(raw), int64(len(raw)), Limits{MaxEntries: 300}); err != nil {
		t.Fatalf("300 entries under a limit of 300: %v", err)
	}
}

// TestStreamingMatchesInMemory: the canonical archive written entry by
// entry and the streamed manifest agree with the in-memory forms.
func TestStreamingMatchesInMemory(t *testing.T) {
	raw := fixture(t, "swagger-ui-5.34.0.zip")
	files, err := ReadZip(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Canonical(files)
	z, err := OpenZip(bytes.NewReader(raw), int64(len(raw)), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := z.WriteCanonical(context.Background(), &got); err != nil || !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("streamed canonical archive differs (%v)", err)
	}
	// ManifestStream: compressible content is compressed, incompressible
	// is not, and the hash is of the content.
	text := bytes.Repeat([]byte("export function update(v) { return v + 1 }\n"), 300000)
	for _, tc := range []struct {
		data []byte
		comp bool
	}{{text, true}, {randomish(9 << 20), false}} {
		var rawOut, compOut bytes.Buffer
		hash, useComp, err := ManifestStream(bytes.NewReader(tc.data), &rawOut, &compOut)
		sum := sha256.Sum256(tc.data)
		if err != nil || hash != hex.EncodeToString(sum[:]) || useComp != tc.comp || !bytes.Equal(rawOut.Bytes(), tc.data) {
			t.Fatalf("ManifestStream: %v, compressed %v", err, useComp)
		}
		if useComp {
			out, err := brrr.Decompress(compOut.Bytes())
			if err != nil || !bytes.Equal(out, tc.data) || compOut.Len() >= len(tc.data)/10 {
				t.Fatalf("compressed form: %v, %d bytes", err, compOut.Len())
			}
		}
	}
}

// TestBuildToVerify: streaming builds equal Build's, Verify accepts them
// and refuses a wrong target, a wrong base and a cut delta.
func TestBuildToVerify(t *testing.T) {
	base := bytes.Repeat([]byte("base content 0123456789 "), 40000)
	target := append(append([]byte{}, base[:600000]...), randomish(300000)...)
	want := sha256.Sum256(target)
	for _, enc := range []string{DCZ, DCB} {
		d, err := Build(base, target, enc)
		if err != nil {
			t.Fatal(err)
		}
		if err := Verify(base, bytes.NewReader(d), int64(len(target)), want); err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		if out, err := Apply(base, d, 1<<30); err != nil || sha256.Sum256(out) != want {
			t.Fatalf("%s: Apply: %v", enc, err)
		}
		if err := Verify(base, bytes.NewReader(d), int64(len(target)), sha256.Sum256(base)); err == nil {
			t.Fatalf("%s: wrong target accepted", enc)
		}
		if err := Verify(target, bytes.NewReader(d), int64(len(target)), want); !errors.Is(err, ErrWrongBase) {
			t.Fatalf("%s: wrong base: %v", enc, err)
		}
		if err := Verify(base, bytes.NewReader(d[:len(d)/2]), int64(len(target)), want); err == nil {
			t.Fatalf("%s: cut delta accepted", enc)
		}
		if enc == DCZ && d[40+4]&(1<<5) == 0 {
			t.Fatal("dcz frame is not single-segment")
		}
	}
}

// FuzzOpenZip: any input is refused with a bundle error or accepted with
// safe, unique, sorted paths, and never unpacks past the limits.
func FuzzOpenZip(f *testing.F) {
	f.Add(buildZip(f, zipEntry{name: "index.html", body: []byte("x")}, zipEntry{name: "a/"}, zipEntry{name: "a/b.js", body: []byte("y")}))
	f.Add(buildZip(f, zipEntry{name: "./index.html", body: []byte("x")}))
	f.Add(buildZip(f, zipEntry{name: "l", mode: fs.ModeSymlink | 0o777, body: []byte("/")}))
	f.Add(buildZip(f, zipEntry{name: "z", body: zeros(2 << 20)}))
	f.Add([]byte("PK\x05\x06"))
	lim := Limits{MaxEntries: 50, MaxUncompressed: 4 << 20, MaxRatio: 100, MaxEntryRatio: 100}
	f.Fuzz(func(t *testing.T, data []byte) {
		z, err := OpenZip(bytes.NewReader(data), int64(len(data)), lim)
		if err == nil {
			err = z.Verify(context.Background())
		}
		if err != nil {
			if !IsBundleError(err) {
				t.Fatalf("not a bundle error: %v", err)
			}
			if z != nil && z.read > lim.MaxUncompressed+64<<10 {
				t.Fatalf("read %d bytes", z.read)
			}
			return
		}
		seen := map[string]bool{}
		for i, e := range z.Files {
			if !ValidPath(e.Path) || seen[e.Path] || (i > 0 && z.Files[i-1].Path >= e.Path) {
				t.Fatalf("accepted path %q", e.Path)
			}
			seen[e.Path] = true
		}
		if z.read > lim.MaxUncompressed {
			t.Fatalf("unpacked %d bytes", z.read)
		}
		var buf bytes.Buffer
		if err := z.WriteCanonical(context.Background(), io.Writer(&buf)); err != nil {
			t.Fatalf("accepted zip has no canonical archive: %v", err)
		}
	})
}
