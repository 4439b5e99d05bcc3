package main

// Progress of a bundle upload: one line on stderr, rewritten in place,
// when stderr is a terminal (and the output is not --json); nothing
// otherwise, so scripts and logs see only the result.

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/store"
)

// progressMin: smaller files upload without a progress line.
const progressMin = 1 << 20

// progressEvery is how often the line is rewritten.
const progressEvery = 200 * time.Millisecond

// progressTo is where an upload's progress goes: stderr when it is a
// terminal and stdout is not JSON; nil (no progress) otherwise.
func progressTo(stderr io.Writer, asJSON bool) io.Writer {
	f, ok := stderr.(*os.File)
	if asJSON || !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return stderr
}

// uploadPath is client.UploadPath with a progress line on w (nil: none)
// for files of at least progressMin and for folders (zipped on the fly,
// their size unknown until the end).
func uploadPath(ctx context.Context, c *client.Client, app, version, path string, opt client.UploadOptions, w io.Writer) (store.Bundle, error) {
	if w == nil {
		return c.UploadPath(ctx, app, version, path, opt)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return store.Bundle{}, err
	}
	var body io.Reader
	var total int64
	if fi.IsDir() {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(client.ZipDir(path, pw)) }()
		defer pr.Close()
		body = pr
	} else {
		if fi.Size() < progressMin {
			return c.UploadPath(ctx, app, version, path, opt)
		}
		f, err := os.Open(path)
		if err != nil {
			return store.Bundle{}, err
		}
		defer f.Close()
		body, total = f, fi.Size()
	}
	p := &progress{w: w, r: body, total: total, start: time.Now()}
	b, err := c.UploadBundle(ctx, app, version, p, opt)
	p.finish()
	return b, err
}

// progress counts the bytes read through it and prints the line.
type progress struct {
	w     io.Writer
	r     io.Reader
	total int64 // 0: unknown
	start time.Time

	mu      sync.Mutex
	sent    int64
	printed time.Time
	shown   bool
}

func (p *progress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent += int64(n)
	now := time.Now()
	if err == io.EOF || now.Sub(p.printed) >= progressEvery {
		p.printed = now
		line := formatProgress(p.sent, p.total, now.Sub(p.start))
		if err == io.EOF {
			line += "; the origin stores and checks it"
		}
		fmt.Fprintf(p.w, "\r\x1b[K%s", line)
		p.shown = true
	}
	return n, err
}

// finish clears the line (the command prints its result).
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}

// formatProgress is the progress line: bytes sent, of the total when
// known, and the rate so far.
func formatProgress(sent, total int64, elapsed time.Duration) string {
	s := "uploading " + byteSize(sent)
	if total > 0 {
		s += fmt.Sprintf(" of %s (%d%%)", byteSize(total), sent*100/total)
	}
	if elapsed >= 100*time.Millisecond {
		s += fmt.Sprintf(", %s/s", byteSize(int64(float64(sent)/elapsed.Seconds())))
	}
	return s
}

// byteSize writes n bytes for people: 512 B, 1.5 KiB, 12.3 MiB, 1.20 GiB.
func byteSize(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
}
