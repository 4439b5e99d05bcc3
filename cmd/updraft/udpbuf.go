package main

import (
	"log/slog"
	"net"
	"syscall"
)

// quicBuffer is what quic-go asks the kernel for (it raises the buffers
// itself, forcibly when it runs as root).
const quicBuffer = 7 << 20

// reportUDPBuffers raises the socket buffers of the HTTP/3 listener and logs
// one line with what the kernel granted; below quic-go's wish it says which
// sysctl to raise, since small buffers drop packets at high rates.
func reportUDPBuffers(pc net.PacketConn, log *slog.Logger) {
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return
	}
	uc.SetReadBuffer(quicBuffer)
	uc.SetWriteBuffer(quicBuffer)
	raw, err := uc.SyscallConn()
	if err != nil {
		return
	}
	var rcv, snd int
	raw.Control(func(fd uintptr) {
		// Privileged processes may exceed net.core.[rw]mem_max, as quic-go does.
		syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, quicBuffer)
		syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUFFORCE, quicBuffer)
		rcv, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		snd, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
	})
	// Linux reports twice the requested size (bookkeeping overhead).
	if rcv/2 < quicBuffer || snd/2 < quicBuffer {
		log.Warn("http3: UDP buffers below what QUIC needs at high rates; raise them with sysctl -w net.core.rmem_max=7500000 net.core.wmem_max=7500000",
			"receive_bytes", rcv/2, "send_bytes", snd/2, "wanted_bytes", quicBuffer)
		return
	}
	log.Info("http3: UDP buffers", "receive_bytes", rcv/2, "send_bytes", snd/2)
}
