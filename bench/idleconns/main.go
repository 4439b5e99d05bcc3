// Command idleconns opens connections to an edge, sends one update check on
// each and reads its answer, then keeps them all open and idle (as devices
// between two checks keep theirs) until its standard input closes; it
// prints "held N" once they are. bench/idle-conns.sh reads the edge's
// memory around it.
//
//	idleconns -addr 127.0.0.1:18380 -n 10000 -body BODY_FILE [-tls]
//
// With -tls it connects over TLS (the edge's HTTPS listener, whose
// self-signed certificate it does not verify: loopback only).
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18380", "the edge's HTTP/1.1 address")
	n := flag.Int("n", 10000, "connections")
	bodyPath := flag.String("body", "", "file holding the update check's JSON body")
	overTLS := flag.Bool("tls", false, "connect over TLS (certificate not verified)")
	flag.Parse()
	body, err := os.ReadFile(*bodyPath)
	if err != nil {
		log.Fatal(err)
	}
	req := fmt.Appendf(nil, "POST /updates HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s",
		*addr, len(body), body)
	conns := make([]net.Conn, 0, *n)
	for i := 0; i < *n; i++ {
		var c net.Conn
		var err error
		if *overTLS {
			d := &net.Dialer{Timeout: 10 * time.Second}
			c, err = tls.DialWithDialer(d, "tcp", *addr, &tls.Config{InsecureSkipVerify: true})
		} else {
			c, err = net.DialTimeout("tcp", *addr, 10*time.Second)
		}
		if err != nil {
			log.Fatalf("connection %d: %v", i, err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(req); err != nil {
			log.Fatalf("connection %d: %v", i, err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			log.Fatalf("connection %d: %v", i, err)
		}
		_, err = io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			log.Fatalf("connection %d: HTTP %d, %v", i, resp.StatusCode, err)
		}
		c.SetDeadline(time.Time{})
		conns = append(conns, c)
	}
	fmt.Printf("held %d\n", len(conns))
	io.Copy(io.Discard, os.Stdin) // until the script is done measuring
	for _, c := range conns {
		c.Close()
	}
}
