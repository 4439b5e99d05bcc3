package config

import (
	"strings"
	"testing"
)

func TestEdgeTCPSendBuffer(t *testing.T) {
	for _, c := range []struct {
		size Size
		ok   bool
	}{{0, true}, {16 * KiB, true}, {128 * KiB, true}, {64 * MiB, true}, {1 * KiB, false}, {65 * MiB, false}} {
		e := NewEdge(t.TempDir())
		e.TCPSendBuffer = c.size
		err := e.Validate()
		if (err == nil) != c.ok || err != nil && !strings.Contains(err.Error(), "tcp_send_buffer") {
			t.Errorf("tcp_send_buffer %s: %v", c.size, err)
		}
	}
}
