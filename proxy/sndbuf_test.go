package proxy

import (
	"net"
	"syscall"
	"testing"
)

func sendBuffer(t *testing.T, c net.Conn) int {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var serr error
	raw.Control(func(fd uintptr) { n, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF) })
	if serr != nil {
		t.Fatal(serr)
	}
	return n
}

// LimitSendBuffer sets SO_SNDBUF on accepted connections (Linux reports
// twice the value set); size 0 leaves the listener as it was.
func TestLimitSendBuffer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if LimitSendBuffer(ln, 0) != ln {
		t.Fatal("size 0 wrapped the listener")
	}
	lim := LimitSendBuffer(ln, 128<<10)
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sc, err := lim.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if got := sendBuffer(t, sc); got != 2*128<<10 {
		t.Fatalf("SO_SNDBUF %d, want %d", got, 2*128<<10)
	}
}
