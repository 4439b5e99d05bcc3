package bench

import (
	"fmt"

	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// LinkProfile describes an emulated network path.
type LinkProfile struct {
	RTT       time.Duration // round-trip propagation delay
	Bandwidth float64       // bytes per second in each direction; 0: unlimited
	Loss      float64       // probability that a 1448-byte segment is lost (0..1)
}

func (p LinkProfile) String() string {
	s := p.RTT.String()
	if p.Bandwidth > 0 {
		s += "/" + strconv.FormatFloat(p.Bandwidth*8/1e6, 'f', -1, 64) + "mbit"
	}
	if p.Loss > 0 {
		s += "/" + strconv.FormatFloat(p.Loss*100, 'f', -1, 64) + "%"
	}
	return s
}

// ParseLink reads "RTT[/BANDWIDTH][/LOSS%]", e.g. "40ms/100mbit",
// "150ms/10mbit/1%". Bandwidth units: kbit, mbit, gbit.
func ParseLink(s string) (LinkProfile, error) {
	var p LinkProfile
	parts := strings.Split(s, "/")
	bad := func(why string) (LinkProfile, error) {
		return LinkProfile{}, fmt.Errorf("link %q: %s; want RTT[/BANDWIDTH][/LOSS%%] like 40ms/100mbit or 150ms/10mbit/1%%", s, why)
	}
	if len(parts) == 0 || len(parts) > 3 {
		return bad("wrong number of parts")
	}
	rtt, err := time.ParseDuration(parts[0])
	if err != nil || rtt < 0 || rtt > time.Minute {
		return bad("RTT is not a duration up to 1m")
	}
	p.RTT = rtt
	for _, part := range parts[1:] {
		switch {
		case strings.HasSuffix(part, "%"):
			v, err := strconv.ParseFloat(strings.TrimSuffix(part, "%"), 64)
			if err != nil || v < 0 || v >= 100 {
				return bad("loss must be a percentage below 100")
			}
			p.Loss = v / 100
		default:
			mult := 0.0
			for _, u := range []struct {
				suffix string
				bits   float64
			}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}} {
				if strings.HasSuffix(part, u.suffix) {
					mult = u.bits
					part = strings.TrimSuffix(part, u.suffix)
					break
				}
			}
			v, err := strconv.ParseFloat(part, 64)
			if mult == 0 || err != nil || v <= 0 {
				return bad("bandwidth must be a positive number of kbit, mbit or gbit")
			}
			p.Bandwidth = v * mult / 8
		}
	}
	return p, nil
}

// Link is a TCP relay that applies a LinkProfile in each direction: half the
// RTT of propagation delay, serialization at the bandwidth (a FIFO queue),
// and for each lost segment one extra RTT before the data and everything
// behind it arrives (TCP's fast retransmit, head-of-line blocked). It
// emulates in user space what netem would do in the kernel. The TCP
// handshake, which the relay's local accept does not delay, is accounted
// for on each new connection: the client's first bytes depart one RTT after
// the connection was accepted (SYN and SYN-ACK), so a request on a new
// connection costs 1.5 RTT to arrive, as on a real path (handshakes above
// TCP, such as TLS, are data and pay their round trips anyway). TCP's slow
// start is not modelled: transfers run at the profile's bandwidth from their
// first byte.
type Link struct {
	ln       net.Listener
	upstream string
	profile  LinkProfile
	shared   bool // connections from one client address share the bandwidth
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	queues   map[string]*linkQueues // shared: by client address
	closed   bool
}

// linkQueue is one direction's bottleneck: when its last byte will have
// been sent.
type linkQueue struct {
	mu        sync.Mutex
	busyUntil time.Time
}

// linkQueues are the two directions of one bottleneck and how many
// connections use it.
type linkQueues struct {
	up, down linkQueue
	users    int
}

// StartLink listens on listen (e.g. 127.0.0.1:0) and relays to upstream.
// Each connection has the profile's bandwidth to itself.
func StartLink(listen, upstream string, p LinkProfile) (*Link, error) {
	return startLink(listen, upstream, p, false)
}

// StartLinkShared is StartLink where the connections from one client
// address share the profile's bandwidth in each direction (and a loss holds
// all of them), as the connections of one device share its access link:
// the capgo client gives each device its own loopback address.
func StartLinkShared(listen, upstream string, p LinkProfile) (*Link, error) {
	return startLink(listen, upstream, p, true)
}

func startLink(listen, upstream string, p LinkProfile, shared bool) (*Link, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	l := &Link{ln: ln, upstream: upstream, profile: p, shared: shared, conns: map[net.Conn]struct{}{}, queues: map[string]*linkQueues{}}
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// queuesFor returns the bottleneck of a client connection (its own, or its
// address's when shared) and its release.
func (l *Link) queuesFor(client net.Conn) (*linkQueues, func()) {
	if !l.shared {
		return &linkQueues{}, func() {}
	}
	key := client.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(key); err == nil {
		key = host
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	q := l.queues[key]
	if q == nil {
		q = &linkQueues{}
		l.queues[key] = q
	}
	q.users++
	return q, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if q.users--; q.users == 0 {
			delete(l.queues, key)
		}
	}
}

// Addr is the relay's listening address.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// Close stops the relay and its connections.
func (l *Link) Close() error {
	l.mu.Lock()
	l.closed = true
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	err := l.ln.Close()
	l.wg.Wait()
	return err
}

func (l *Link) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *Link) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	c.Close()
}

func (l *Link) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.relay(c)
		}()
	}
}

func (l *Link) relay(client net.Conn) {
	if !l.track(client) {
		return
	}
	defer l.untrack(client)
	server, err := net.Dial("tcp", l.upstream)
	if err != nil {
		return
	}
	if !l.track(server) {
		return
	}
	defer l.untrack(server)
	handshake := time.Now().Add(l.profile.RTT) // the client's SYN-ACK arrives
	q, release := l.queuesFor(client)
	defer release()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.pipe(server, client, &q.up, handshake); server.Close() }()
	go func() { defer wg.Done(); l.pipe(client, server, &q.down, time.Time{}); client.Close() }()
	wg.Wait()
}

type chunk struct {
	data    []byte
	deliver time.Time
}

const segment = 1448 // TCP payload per packet on a 1500-byte MTU

// pipe copies src to dst through the emulated path, its bytes sent through
// bottleneck; none departs before notBefore.
func (l *Link) pipe(dst, src net.Conn, bottleneck *linkQueue, notBefore time.Time) {
	q := make(chan chunk, 256)
	go func() {
		defer close(q)
		last := notBefore // this connection's latest departure: its bytes stay in order
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
		for {
			buf := make([]byte, 16<<10)
			n, err := src.Read(buf)
			if n > 0 {
				bottleneck.mu.Lock()
				depart := time.Now()
				if bottleneck.busyUntil.After(depart) {
					depart = bottleneck.busyUntil
				}
				if bw := l.profile.Bandwidth; bw > 0 {
					depart = depart.Add(time.Duration(float64(n) / bw * float64(time.Second)))
				}
				if p := l.profile.Loss; p > 0 {
					for s := 0; s < n; s += segment {
						if rng.Float64() < p {
							depart = depart.Add(max(l.profile.RTT, time.Millisecond))
						}
					}
				}
				bottleneck.busyUntil = depart
				bottleneck.mu.Unlock()
				if depart.Before(last) {
					depart = last
				}
				last = depart
				q <- chunk{buf[:n], depart.Add(l.profile.RTT / 2)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		if wait := time.Until(c.deliver); wait > 0 {
			time.Sleep(wait)
		}
		if _, err := dst.Write(c.data); err != nil {
			for range q { // drain so the reader can finish
			}
			return
		}
	}
}
