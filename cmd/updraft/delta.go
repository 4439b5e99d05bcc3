package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/delta"
)

// canonicalOf reads a zip or a folder as its canonical archive.
func canonicalOf(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	var zipData []byte
	if fi.IsDir() {
		var buf bytes.Buffer
		if err := client.ZipDir(path, &buf); err != nil {
			return nil, err
		}
		zipData = buf.Bytes()
	} else if zipData, err = os.ReadFile(path); err != nil {
		return nil, err
	}
	return delta.CanonicalZip(zipData)
}

func cmdDelta(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("delta "+sub, flag.ContinueOnError)
	from, to, encoding, base, in := new(string), new(string), new(string), new(string), new(string)
	switch sub {
	case "build":
		fs.StringVar(from, "from", "", "the bundle devices have (zip or folder)")
		fs.StringVar(to, "to", "", "the new bundle (zip or folder)")
		fs.StringVar(encoding, "encoding", "dcb", "dcb (brotli) or dcz (zstd)")
	case "canonical":
		fs.StringVar(from, "from", "", "the bundle (zip or folder)")
	case "apply":
		fs.StringVar(base, "base", "", "the bundle the delta was built from (zip or folder)")
		fs.StringVar(in, "delta", "", "the delta file")
	}
	out := fs.String("o", "", "output file")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := want(0, pos, "flags only"); err != nil {
		return err
	}
	switch sub {
	case "canonical":
		if *from == "" || *out == "" {
			return usagef("", "delta canonical: want --from BUNDLE -o OUT.tar")
		}
		c, err := canonicalOf(*from)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*out, c, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "canonical archive %d bytes, sha256 %s\n", len(c), hexSHA256(c))
		return nil
	case "build":
		if *from == "" || *to == "" || *out == "" {
			return usagef("", "delta build: want --from OLD --to NEW -o OUT [--encoding dcb|dcz]")
		}
		oldC, err := canonicalOf(*from)
		if err != nil {
			return fmt.Errorf("--from: %w", err)
		}
		newC, err := canonicalOf(*to)
		if err != nil {
			return fmt.Errorf("--to: %w", err)
		}
		start := time.Now()
		d, err := delta.BuildVerified(oldC, newC, *encoding)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*out, d, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s delta %d bytes (canonical archive %d bytes, %.2f%%), built and verified in %v\n",
			*encoding, len(d), len(newC), 100*float64(len(d))/float64(len(newC)), time.Since(start).Round(time.Millisecond))
		fmt.Fprintf(stdout, "base sha256   %s\nresult sha256 %s\n", hexSHA256(oldC), hexSHA256(newC))
		return nil
	case "apply":
		if *base == "" || *in == "" || *out == "" {
			return usagef("", "delta apply: want --base OLD --delta IN -o OUT")
		}
		baseC, err := canonicalOf(*base)
		if err != nil {
			return fmt.Errorf("--base: %w", err)
		}
		d, err := os.ReadFile(*in)
		if err != nil {
			return err
		}
		start := time.Now()
		res, err := delta.Apply(baseC, d, delta.MaxCanonical)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*out, res, 0o644); err != nil {
			return err
		}
		enc, _, _ := delta.Encoding(d)
		fmt.Fprintf(stdout, "applied %s delta (%d bytes) in %v: %d bytes, sha256 %s (canonical archive)\n",
			enc, len(d), time.Since(start).Round(time.Millisecond), len(res), hexSHA256(res))
		return nil
	}
	return unknownSub("delta", sub, subcommands("delta"))
}

func hexSHA256(b []byte) string {
	s := delta.Sum(b)
	return fmt.Sprintf("%x", s[:])
}
