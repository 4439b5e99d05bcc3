// Command bundlegen writes the bundle zips of bench/upload-limits.sh: zip
// bombs (declared, lying about their sizes, or with a huge directory) and
// large legitimate bundles whose releases share most of their files.
//
//	bundlegen bomb    -o FILE [-size 1000]        one entry of SIZE MiB of zeros, deflated
//	bundlegen lying   -o FILE [-size 1000]        the same, its headers declaring 1 KiB
//	bundlegen flat    -o FILE [-size 1000]        SIZE entries of 1 MiB of zeros each
//	bundlegen entries -o FILE [-n 200000]         N empty entries (plus index.html)
//	bundlegen bundle  -o FILE [-size 256] [-release 1] [-change 5]
//	        about SIZE MiB of files (hundreds: an eighth text-like and
//	        compressible, the rest random, incompressible, a few files
//	        over 8 MiB), the same for every
//	        release except CHANGE% of the files
package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/flate"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bundlegen bomb|lying|flat|entries|bundle -o FILE [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	out := fs.String("o", "", "output zip")
	size := fs.Int("size", 0, "MiB (bomb, lying: default 1000; bundle: default 256)")
	n := fs.Int("n", 200000, "entries")
	release := fs.Int("release", 1, "bundle release number")
	change := fs.Int("change", 5, "percent of the files that differ from release to release")
	fs.Parse(os.Args[2:])
	if *out == "" {
		fs.Usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "bomb", "lying":
		if *size == 0 {
			*size = 1000
		}
		err = bomb(*out, *size, os.Args[1] == "lying")
	case "flat":
		if *size == 0 {
			*size = 1000
		}
		err = flat(*out, *size)
	case "entries":
		err = entries(*out, *n)
	case "bundle":
		if *size == 0 {
			*size = 256
		}
		err = bundle(*out, *size, *release, *change)
	default:
		err = fmt.Errorf("unknown kind %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bundlegen:", err)
		os.Exit(1)
	}
}

func create(path string, fill func(zw *zip.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	zw := zip.NewWriter(bw)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) { return flate.NewWriter(w, flate.BestCompression) })
	if err := fill(zw); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// bomb: index.html of mib MiB of zeros (≈ 1 MB deflated). lying: its
// local and central headers then declare 1 KiB.
func bomb(path string, mib int, lying bool) error {
	err := create(path, func(zw *zip.Writer) error {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: "index.html", Method: zip.Deflate})
		if err != nil {
			return err
		}
		chunk := make([]byte, 1<<20)
		for i := 0; i < mib; i++ {
			if _, err := w.Write(chunk); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || !lying {
		return err
	}
	z, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// The writer used a data descriptor: the local header's sizes are 0
	// and the descriptor and central directory carry them (zip64 for
	// sizes over 4 GiB; not here). Declare 1024 everywhere.
	patched := 0
	for _, h := range []struct {
		sig string
		off int
	}{{"PK\x07\x08", 12}, {"PK\x01\x02", 24}} {
		i := bytes.LastIndex(z, []byte(h.sig))
		if i < 0 {
			continue
		}
		z[i+h.off], z[i+h.off+1], z[i+h.off+2], z[i+h.off+3] = 0, 4, 0, 0
		patched++
	}
	if patched != 2 {
		return fmt.Errorf("lying: patched %d headers, want 2", patched)
	}
	return os.WriteFile(path, z, 0o644)
}

// flat: mib entries of 1 MiB of zeros, each under the per-entry ratio
// threshold, together far over the whole zip's ratio.
func flat(path string, mib int) error {
	return create(path, func(zw *zip.Writer) error {
		chunk := make([]byte, 1<<20)
		for i := 0; i < mib; i++ {
			name := fmt.Sprintf("blank-%04d.bin", i)
			if i == 0 {
				name = "index.html"
			}
			w, err := zw.Create(name)
			if err != nil {
				return err
			}
			w.Write(chunk)
		}
		return nil
	})
}

func entries(path string, n int) error {
	return create(path, func(zw *zip.Writer) error {
		w, err := zw.Create("index.html")
		if err != nil {
			return err
		}
		w.Write([]byte("<html></html>"))
		for i := 0; i < n; i++ {
			if _, err := zw.CreateHeader(&zip.FileHeader{Name: fmt.Sprintf("e/%d", i), Method: zip.Store}); err != nil {
				return err
			}
		}
		return nil
	})
}

var words = []string{"function ", "return ", "const ", "let ", "=> ", "{\n", "}\n", "(", ")", ";\n", "this.", "value", "index",
	"item", "props", "state", "export ", "import ", "from ", "async ", "await ", "if (", "else ", "null", "undefined", "true"}

// text writes n bytes of JavaScript-like text (compresses about 4:1).
func text(w io.Writer, r *rand.Rand, n int) {
	bw := bufio.NewWriter(w)
	for written := 0; written < n; {
		var s string
		if r.IntN(4) == 0 {
			s = fmt.Sprintf("v%x", r.IntN(2000))
		} else {
			s = words[r.IntN(len(words))]
		}
		if written+len(s) > n {
			s = s[:n-written]
		}
		bw.WriteString(s)
		written += len(s)
	}
	bw.Flush()
}

// binary writes n random bytes (incompressible: images, fonts, media).
func binary(w io.Writer, r *rand.Rand, n int) {
	buf := make([]byte, 64<<10)
	for n > 0 {
		k := min(n, len(buf))
		for i := 0; i < k; i += 8 {
			v := r.Uint64()
			for j := 0; j < 8 && i+j < k; j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		w.Write(buf[:k])
		n -= k
	}
}

// bundle: about mib MiB of files. File i's content is drawn from seed i,
// or seed i + 1000·release for the change% of files this release changes.
func bundle(path string, mib, release, change int) error {
	type file struct {
		name string
		size int
		bin  bool
	}
	layout := rand.New(rand.NewPCG(1, 2))
	var files []file
	files = append(files, file{name: "index.html", size: 4 << 10})
	total := 4 << 10
	for i := 0; total < mib<<20; i++ {
		var f file
		switch {
		case i%40 == 39: // a few large media files, streamed by the builder
			f = file{name: fmt.Sprintf("media/clip-%03d.mp4", i), size: 9<<20 + layout.IntN(3<<20), bin: true}
		case i%4 != 1:
			f = file{name: fmt.Sprintf("assets/img-%03d.webp", i), size: 64<<10 + layout.IntN(1<<20), bin: true}
		default: // about an eighth of the bytes
			f = file{name: fmt.Sprintf("assets/chunk-%03d.js", i), size: 16<<10 + layout.IntN(768<<10)}
		}
		f.size = min(f.size, mib<<20-total)
		files = append(files, f)
		total += f.size
	}
	changed := rand.New(rand.NewPCG(uint64(release), 7))
	return create(path, func(zw *zip.Writer) error {
		for i, f := range files {
			seed := uint64(i)
			if release > 1 && changed.IntN(100) < change {
				seed += 1000 * uint64(release)
			}
			r := rand.New(rand.NewPCG(seed, 3))
			method := zip.Deflate
			if f.bin {
				method = zip.Store
			}
			w, err := zw.CreateHeader(&zip.FileHeader{Name: f.name, Method: method})
			if err != nil {
				return err
			}
			if f.bin {
				binary(w, r, f.size)
			} else {
				text(w, r, f.size)
			}
		}
		return nil
	})
}
