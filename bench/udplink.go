package bench

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// UDPLink relays UDP datagrams (QUIC) between clients and an upstream with
// a LinkProfile applied in each direction: half the RTT of delay,
// serialization at the bandwidth, and real packet loss (each datagram is
// dropped with probability Loss; QUIC recovers by itself).
type UDPLink struct {
	conn     *net.UDPConn
	upstream *net.UDPAddr
	profile  LinkProfile
	mu       sync.Mutex
	sessions map[string]*udpSession
	closed   chan struct{}
	wg       sync.WaitGroup
	lost     atomic.Int64 // datagrams dropped by the emulated loss
	seen     atomic.Int64 // datagrams the link received, both directions
}

// Seen is the number of datagrams the link received (both directions).
func (l *UDPLink) Seen() int64 { return l.seen.Load() }

// Lost is the number of datagrams the emulated loss dropped.
func (l *UDPLink) Lost() int64 { return l.lost.Load() }

type udpSession struct {
	client *net.UDPAddr
	up     *net.UDPConn
	toUp   *pacer
}

// pacer delays datagrams of one direction in FIFO order.
type pacer struct {
	q         chan chunk
	busyUntil time.Time
	rng       *rand.Rand
	p         LinkProfile
	lost      *atomic.Int64
	seen      *atomic.Int64
}

func newPacer(p LinkProfile, lost, seen *atomic.Int64, send func([]byte), done <-chan struct{}) *pacer {
	pc := &pacer{q: make(chan chunk, 4096), p: p, lost: lost, seen: seen, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))}
	go func() {
		for {
			select {
			case <-done:
				return
			case c := <-pc.q:
				if wait := time.Until(c.deliver); wait > 0 {
					time.Sleep(wait)
				}
				send(c.data)
			}
		}
	}()
	return pc
}

// push schedules a datagram (called from one goroutine per direction).
func (pc *pacer) push(b []byte) {
	pc.seen.Add(1)
	if pc.p.Loss > 0 && pc.rng.Float64() < pc.p.Loss {
		pc.lost.Add(1)
		return
	}
	depart := time.Now()
	if pc.busyUntil.After(depart) {
		depart = pc.busyUntil
	}
	if pc.p.Bandwidth > 0 {
		depart = depart.Add(time.Duration(float64(len(b)) / pc.p.Bandwidth * float64(time.Second)))
	}
	pc.busyUntil = depart
	select {
	case pc.q <- chunk{append([]byte(nil), b...), depart.Add(pc.p.RTT / 2)}:
	default: // queue full: the link drops, as a router would
	}
}

// StartUDPLink listens on listen and relays to upstream (host:port).
func StartUDPLink(listen, upstream string, p LinkProfile) (*UDPLink, error) {
	la, err := net.ResolveUDPAddr("udp", listen)
	if err != nil {
		return nil, err
	}
	ua, err := net.ResolveUDPAddr("udp", upstream)
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenUDP("udp", la)
	if err != nil {
		return nil, err
	}
	conn.SetReadBuffer(8 << 20)
	conn.SetWriteBuffer(8 << 20)
	l := &UDPLink{conn: conn, upstream: ua, profile: p, sessions: map[string]*udpSession{}, closed: make(chan struct{})}
	l.wg.Add(1)
	go l.serve()
	return l, nil
}

// Addr is the relay's address.
func (l *UDPLink) Addr() string { return l.conn.LocalAddr().String() }

// Close stops the relay.
func (l *UDPLink) Close() error {
	close(l.closed)
	err := l.conn.Close()
	l.mu.Lock()
	for _, s := range l.sessions {
		s.up.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	return err
}

func (l *UDPLink) serve() {
	defer l.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := l.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		s, err := l.session(from)
		if err != nil {
			continue
		}
		s.toUp.push(buf[:n])
	}
}

func (l *UDPLink) session(client *net.UDPAddr) (*udpSession, error) {
	key := client.String()
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.sessions[key]; s != nil {
		return s, nil
	}
	up, err := net.DialUDP("udp", nil, l.upstream)
	if err != nil {
		return nil, err
	}
	up.SetReadBuffer(8 << 20)
	up.SetWriteBuffer(8 << 20)
	s := &udpSession{client: client, up: up}
	s.toUp = newPacer(l.profile, &l.lost, &l.seen, func(b []byte) { up.Write(b) }, l.closed)
	toClient := newPacer(l.profile, &l.lost, &l.seen, func(b []byte) { l.conn.WriteToUDP(b, client) }, l.closed)
	l.sessions[key] = s
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		buf := make([]byte, 65535)
		for {
			n, err := up.Read(buf)
			if err != nil {
				return
			}
			toClient.push(buf[:n])
		}
	}()
	return s, nil
}
