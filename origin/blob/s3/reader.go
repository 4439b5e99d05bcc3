package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/minio/minio-go/v7"
)

// Ranged reads. A read at an offset where no response is open asks for a
// window of the object (a GET with a Range), at least what the read wants
// and at least minWindow; reading on sequentially doubles the next window
// up to maxWindow. So a whole download takes a few large requests, a
// Range request or a zip reader's jump fetches about what it reads (not
// the rest of the object), and small sequential reads (a zip's entries,
// read by archive/zip in 4 KiB pieces) share one response. A short jump
// forward within the open window reads through instead of asking anew.
//
// minio-go's own *minio.Object would do, but it sends a request per ReadAt
// call, which is one per 4 KiB for a zip reader.
const (
	minWindow = 1 << 20
	maxWindow = 32 << 20
	maxSkip   = 256 << 10
)

// reader is an open blob: blob.Reader over ranged GETs. Safe for
// concurrent use (calls are serialized).
type reader struct {
	s      *Store
	sha    string
	key    string
	size   int64
	ctx    context.Context // canceled by Close: ends a response in flight
	cancel context.CancelFunc

	mu      sync.Mutex
	off     int64         // Read and Seek position
	body    io.ReadCloser // open window, or nil
	bodyAt  int64         // offset of body's next byte
	bodyEnd int64         // offset past the window's last byte
	window  int64         // size of the next window
	closed  bool
}

func (r *reader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, err := r.readAt(p, r.off, false)
	r.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil // the next Read says EOF
	}
	return n, err
}

func (r *reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("blob: negative offset")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.readAt(p, off, true)
}

func (r *reader) Seek(offset int64, whence int) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, errors.New("blob: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("blob: seek before the start")
	}
	r.off = offset // nothing is fetched until a read
	return offset, nil
}

func (r *reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.closeBody()
	r.cancel()
	return nil
}

func (r *reader) closeBody() {
	if r.body != nil {
		r.body.Close()
		r.body = nil
	}
}

// readAt reads from off: len(p) bytes (or up to the end) when full, else
// at least one.
func (r *reader) readAt(p []byte, off int64, full bool) (int, error) {
	if r.closed {
		return 0, errors.New("blob: read after close")
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := p
	if int64(len(want)) > r.size-off {
		want = want[:r.size-off]
	}
	n := 0
	for n < len(want) {
		at := off + int64(n)
		if err := r.position(at, int64(len(want)-n)); err != nil {
			return n, err
		}
		chunk := want[n:min(int64(len(want)), int64(n)+r.bodyEnd-r.bodyAt)]
		m, err := r.body.Read(chunk)
		n += m
		r.bodyAt += int64(m)
		if r.bodyAt == r.bodyEnd {
			// Window read to its end (the connection goes back to the
			// pool); the next one, if reading on, is larger.
			r.closeBody()
			r.window = min(2*r.window, maxWindow)
		} else if err != nil {
			r.closeBody()
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, fmt.Errorf("blob: read %s at %d: %w", r.sha, r.bodyAt, err)
		}
		if !full && n > 0 {
			break
		}
	}
	if len(want) < len(p) && n == len(want) {
		return n, io.EOF
	}
	return n, nil
}

// position makes body the response that continues at offset at, opening
// a window of at least need bytes when there is none.
func (r *reader) position(at, need int64) error {
	if r.body != nil && r.bodyAt != at {
		if skip := at - r.bodyAt; skip > 0 && skip <= maxSkip && at < r.bodyEnd {
			if _, err := io.CopyN(io.Discard, r.body, skip); err == nil {
				r.bodyAt = at
				return nil
			}
		}
		r.closeBody()
		r.window = minWindow // a jump: start small again
	}
	if r.body != nil {
		return nil
	}
	if at != r.bodyEnd {
		r.window = minWindow
	}
	end := min(r.size, at+max(need, r.window))
	var opts minio.GetObjectOptions
	if err := opts.SetRange(at, end-1); err != nil {
		return err
	}
	core := minio.Core{Client: r.s.client}
	body, _, _, err := core.GetObject(r.ctx, r.s.bucket, r.key, opts)
	if err != nil {
		if notFound(err) {
			return fmt.Errorf("blob: read %s: the object is gone (deleted while open?): %w", r.sha, err)
		}
		return fmt.Errorf("blob: read %s at %d: %w", r.sha, at, err)
	}
	r.body, r.bodyAt, r.bodyEnd = body, at, end
	return nil
}
