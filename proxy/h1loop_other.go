//go:build !linux

package proxy

import (
	"errors"
	"io"
	"net"
)

// The device front's event loops are Linux only (h1loop_linux.go):
// elsewhere Go's poller serves every connection.

type frontLoops struct{}

type loopConn struct{}

func newFrontLoops(*HTTP1, int) (*frontLoops, error) { return nil, errors.ErrUnsupported }

func (*frontLoops) adopt(*fastConn, *net.TCPConn) bool { return false }

func (*frontLoops) stop() {}

func (*fastConn) inLoop() bool   { return false }
func (*fastConn) shutLoop() bool { return false }

func (*fastConn) writeLoop(w, body, tail []byte, owned bool) error { return errors.ErrUnsupported }
func (*fastConn) sendFileLoop([]byte, *answerFile) error           { return errors.ErrUnsupported }
func (*fastConn) copyLater([]byte, io.ReadCloser, int64) error     { return errors.ErrUnsupported }
