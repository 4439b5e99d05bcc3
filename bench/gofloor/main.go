// Command gofloor is the floor of a Go HTTP/1.1 server answering update
// checks with a fixed answer: no JSON, no resolution, no check-in, no
// framework; the request's headers and body are read and skipped, and the
// answer written as bench/answers-vs-nginx.sh (FLOOR=1) compares it with nginx:
//
//	gofloor -mode writev   -body FILE -listen ADDR [-encoding gzip]   headers and body in one writev
//	gofloor -mode sendfile -body FILE -listen ADDR [-encoding gzip] [-raw]   headers, then sendfile from a memfd (TCP_CORK), as nginx does (-raw: a raw system call)
//	gofloor -mode epoll    -body FILE -listen ADDR [-encoding gzip]   as writev, from epoll loops instead of a goroutine per connection (Linux)
//
// It is a measuring tool, not a server for devices: it answers every
// request on every path with the same bytes.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	mode := flag.String("mode", "writev", "writev, sendfile, epoll or epoll-sendfile")
	flag.BoolVar(&rawSendfile, "raw", false, "sendfile mode: a raw system call (the runtime keeps the processor)")
	fromFile := flag.Bool("file", false, "sendfile mode: from the body's own file (page cache) instead of a memfd (shmem)")
	bodyPath := flag.String("body", "", "file whose bytes are every answer's body")
	listen := flag.String("listen", "127.0.0.1:18483", "address")
	encoding := flag.String("encoding", "", "Content-Encoding to declare (e.g. gzip)")
	flag.Parse()
	body, err := os.ReadFile(*bodyPath)
	if err != nil {
		log.Fatal(err)
	}
	hdr := "HTTP/1.1 200 OK\r\nServer: gofloor\r\nContent-Type: application/json\r\n"
	if *encoding != "" {
		hdr += "Content-Encoding: " + *encoding + "\r\n"
	}
	hdr += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	a := &answer{hdr: []byte(hdr), body: body}
	switch *mode {
	case "writev", "epoll":
	case "sendfile", "epoll-sendfile":
		switch {
		case *fromFile:
			if a.memfd, err = unix.Open(*bodyPath, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
				log.Fatal(err)
			}
		default:
			if a.memfd, err = unix.MemfdCreate("answer", 0); err != nil {
				log.Fatal(err)
			}
			if _, err := unix.Write(a.memfd, body); err != nil {
				log.Fatal(err)
			}
		}
		a.sendfile = true
	default:
		log.Fatalf("mode %q: want writev, sendfile, epoll or epoll-sendfile", *mode)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if *mode == "epoll" || *mode == "epoll-sendfile" {
		a.serveEpoll(ln)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go a.serve(c.(*net.TCPConn))
	}
}

type answer struct {
	hdr, body []byte
	memfd     int
	sendfile  bool
}

var contentLength = []byte("content-length:")

func (a *answer) serve(c *net.TCPConn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 8192)
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	bufs := make(net.Buffers, 0, 2)
	for {
		n := 0
		for { // request line and headers
			line, err := r.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
			if len(line) > len(contentLength) && bytes.EqualFold(line[:len(contentLength)], contentLength) {
				n, _ = strconv.Atoi(string(bytes.TrimSpace(line[len(contentLength):])))
			}
		}
		if _, err := r.Discard(n); err != nil {
			return
		}
		if !a.sendfile {
			bufs = append(bufs[:0], a.hdr, a.body)
			if _, err := bufs.WriteTo(c); err != nil {
				return
			}
			continue
		}
		if err := a.send(rc); err != nil {
			return
		}
	}
}

// rawSendfile: sendfile without telling the runtime of the system call
// (-raw), so the processor is not handed to another thread while it runs.
var rawSendfile bool

func sendfileRaw(out, in int, off *int64, count int) error {
	_, _, e := unix.RawSyscall6(unix.SYS_SENDFILE, uintptr(out), uintptr(in), uintptr(unsafe.Pointer(off)), uintptr(count), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// send writes the headers, then the body with sendfile from the memfd at
// an explicit offset (the connections share the file), corked into full
// segments; EAGAIN waits for the socket through the netpoller.
func (a *answer) send(rc syscall.RawConn) error {
	var hdrDone int
	var off int64
	var werr error
	err := rc.Write(func(fd uintptr) bool {
		s := int(fd)
		if hdrDone == 0 && off == 0 {
			unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_CORK, 1)
		}
		for hdrDone < len(a.hdr) {
			n, err := unix.Write(s, a.hdr[hdrDone:])
			if errors.Is(err, unix.EAGAIN) {
				return false
			}
			if err != nil {
				werr = err
				return true
			}
			hdrDone += n
		}
		for off < int64(len(a.body)) {
			var err error
			if rawSendfile {
				err = sendfileRaw(s, a.memfd, &off, len(a.body)-int(off))
			} else {
				_, err = unix.Sendfile(s, a.memfd, &off, len(a.body)-int(off))
			}
			if errors.Is(err, unix.EAGAIN) {
				return false
			}
			if err != nil {
				werr = err
				return true
			}
		}
		unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_CORK, 0)
		return true
	})
	if err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("sendfile: %w", werr)
	}
	return nil
}
