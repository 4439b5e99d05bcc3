package proxy

import "net"

// LimitSendBuffer returns ln with each accepted TCP connection's kernel
// send buffer set to size bytes (size ≤ 0: ln unchanged, the kernel
// autotunes). A small buffer keeps one connection from queueing a whole
// bundle in the kernel at once, which evens out service between many
// connections on short paths (on loopback, 5 MB memory-tier hits at 32
// connections: p99 0.5–0.7 s → 134–210 ms, bench/RESULTS.md); but it also
// caps each connection near 2·size per round trip, so leave it off for
// devices on long paths.
func LimitSendBuffer(ln net.Listener, size int) net.Listener {
	if size <= 0 {
		return ln
	}
	return sendBufferListener{ln, size}
}

type sendBufferListener struct {
	net.Listener
	size int
}

func (l sendBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(l.size)
	}
	return c, err
}
