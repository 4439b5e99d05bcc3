package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/internal/testenv"
	"golang.org/x/sys/unix"
)

// parkedChannels is an origin for legacy channel changes that holds each
// change until the test lets it go, then refuses it.
type parkedChannels struct {
	in, out chan struct{}
}

func (p *parkedChannels) SetDeviceChannel(ctx context.Context, appID, deviceID, channel string) (int64, error) {
	p.in <- struct{}{}
	<-p.out
	return 0, &DeviceChannelRefusal{Code: "channel_self_set_not_allowed", Message: "no"}
}

// frontPending is how many bytes the front's one connection has waiting
// in its socket (-1: no such connection yet).
func frontPending(h *HTTP1) int {
	h.front.mu.Lock()
	defer h.front.mu.Unlock()
	n := -1
	for fc := range h.front.m {
		if fc.rc != nil {
			fc.rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		}
	}
	return n
}

// A request that arrives while the one before it is being answered, after
// the front's read of that one came back short, is answered. The front
// then parks without reading the socket again (nginx's one read per
// request); this holds only if the poller still knows of the bytes that
// came in the meantime, which it forgets when a RawConn.Read begins. A
// front that began a read per request (or trusted a short read across
// two of them) leaves the second request unanswered here.
func TestDeviceFrontRequestDuringAnswer(t *testing.T) {
	e := newCoreEdge(t, nil)
	e.SetSnapshot(capgoSeed(t, 1, nil, nil))
	p := &parkedChannels{in: make(chan struct{}), out: make(chan struct{})}
	e.SetDeviceChannels(p)
	addr, h := serveH1(t, e, false)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testenv.Patience(20 * time.Second)))
	legacy := post("/channel_self", string(base(t, map[string]any{"channel": "beta"})))
	check := post("/updates", string(base(t, nil)))
	br := bufio.NewReader(c)
	for round := range 3 {
		if _, err := io.WriteString(c, legacy); err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.in: // the front read the whole request and is answering it
		case <-time.After(testenv.Patience(20 * time.Second)):
			t.Fatalf("round %d: the channel change never reached the origin", round)
		}
		if _, err := io.WriteString(c, check); err != nil {
			t.Fatal(err)
		}
		waitFor(t, testenv.Patience(20*time.Second), "the check in the front's socket", func() bool {
			return frontPending(h) == len(check)
		})
		p.out <- struct{}{}
		got := readAnswers(t, br, 2)
		if len(got) != 2 || got[0].status != 200 || got[1].status != 200 {
			t.Fatalf("round %d: %s", round, brief(got))
		}
		if want := `{"error":"channel_self_set_not_allowed","message":"This channel does not allow devices to self associate"}`; got[0].body != want {
			t.Fatalf("round %d: channel change answered %s", round, got[0].body)
		}
	}
}
