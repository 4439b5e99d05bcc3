//go:build linux

package proxy

import (
	"errors"
	"io"
	"net"
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// answerFile is a copy of a large cached answer in a file of the kernel's,
// which the device front sends by sendfile as nginx sends a static file:
// the kernel copies from its own pages, and the answer goes out in one call
// after its header (MSG_MORE), not through a user buffer. On a 64 KB answer
// a bare Go server does 0.96–1.02× nginx with sendfile against 0.86–0.87×
// with writev (bench/gofloor, bench/RESULTS.md).
//
// The file is an unnamed one (O_TMPFILE) in the edge's data directory,
// written with one call: in the page cache of a file system with large
// folios (ext4 and XFS on recent kernels) the answer then sits in a few
// large folios, which sendfile gathers at a fraction of the cost of 4 KiB
// pages. A memory file (memfd: shmem, 4 KiB pages unless the machine turns
// shmem huge pages on) is the fallback. On the 326 KB Ionic answer the
// bare Go server spent 63–66 µs of CPU per answer from a memfd against
// 56 µs from a file written so, nginx 55–58 µs (docs/design-notes.md,
// "Answer files"). The file is unnamed: nothing is left behind by a crash,
// and its pages are dropped, never written back, when it closes first.
// It closes when the answerFile becomes unreachable (the answer left the
// cache and no request is sending it).
type answerFile struct {
	fd      int
	src     []byte // the bytes copied (the variant it stands for)
	cleanup runtime.Cleanup
}

// answerFiles counts open answerFiles; beyond maxAnswerFiles answers are
// written from memory (each one holds a file descriptor). answerFilesMade
// counts those ever made, answerFilesTmp those of them in dir's file system.
var answerFiles, answerFilesMade, answerFilesTmp atomic.Int64

const maxAnswerFiles = 128

// newAnswerFile copies b into a new unnamed file in dir (a memory file
// when dir is empty or its file system has no unnamed files); nil when
// none can be made.
func newAnswerFile(dir string, b []byte) *answerFile {
	if answerFiles.Add(1) > maxAnswerFiles {
		answerFiles.Add(-1)
		return nil
	}
	fd, tmp := -1, false
	if dir != "" {
		if f, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600); err == nil {
			fd, tmp = f, true
		}
	}
	if fd < 0 {
		f, err := unix.MemfdCreate("updraft-answer", unix.MFD_CLOEXEC)
		if err != nil {
			answerFiles.Add(-1)
			return nil
		}
		fd = f
	}
	for off := 0; off < len(b); {
		n, err := unix.Write(fd, b[off:])
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			unix.Close(fd)
			answerFiles.Add(-1)
			return nil
		}
		off += n
	}
	m := &answerFile{fd: fd, src: b}
	answerFilesMade.Add(1)
	if tmp {
		answerFilesTmp.Add(1)
	}
	m.cleanup = runtime.AddCleanup(m, closeAnswerFile, fd)
	return m
}

func closeAnswerFile(fd int) {
	unix.Close(fd)
	answerFiles.Add(-1)
}

// close closes an answerFile nothing else has seen.
func (m *answerFile) close() {
	m.cleanup.Stop()
	closeAnswerFile(m.fd)
}

// sendFile writes hdr, then m's bytes from pos by sendfile, to c; handled
// is false (nothing written) when c is not a TCP connection.
func sendFile(c net.Conn, hdr []byte, m *answerFile, pos int64) (handled bool, err error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false, nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false, nil
	}
	var opErr error
	off := 0
	err = rc.Write(func(fd uintptr) bool {
		opErr = sendFileNow(int(fd), hdr, &off, m, &pos)
		return opErr != unix.EAGAIN // EAGAIN: wait until writable
	})
	runtime.KeepAlive(m)
	return true, errors.Join(err, opErr)
}

// sendFileNow writes what the socket fd takes now of hdr from *off (with
// MSG_MORE: it goes out with the file's first bytes), then of m from *pos
// by sendfile, advancing both; unix.EAGAIN when the socket is full.
func sendFileNow(fd int, hdr []byte, off *int, m *answerFile, pos *int64) error {
	for *off < len(hdr) {
		n, err := unix.SendmsgN(fd, hdr[*off:], nil, nil, unix.MSG_MORE)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return err
		}
		*off += n
	}
	for *pos < int64(len(m.src)) {
		n, err := unix.Sendfile(fd, m.fd, pos, len(m.src)-int(*pos))
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return err
		case n == 0:
			return io.ErrUnexpectedEOF
		}
	}
	return nil
}
