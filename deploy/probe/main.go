// Command updraft-probe is the health check of the container image: the
// distroless runtime has no shell, curl or wget, and `updraft` has no probe
// subcommand. It GETs each URL and exits 0 only if every one answers 200
// within the timeout, else 1 with the reason on stderr.
//
//	updraft-probe http://127.0.0.1:8090/healthz           # origin
//	updraft-probe http://127.0.0.1:8080/readyz            # edge with a snapshot
//	updraft-probe -timeout 5s URL [URL...]
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	timeout := flag.Duration("timeout", 3*time.Second, "per-request timeout")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: updraft-probe [-timeout 3s] URL [URL...]: exit 0 when every URL answers 200")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	c := &http.Client{Timeout: *timeout}
	for _, u := range flag.Args() {
		if err := probe(c, u); err != nil {
			fmt.Fprintln(os.Stderr, "updraft-probe:", err)
			os.Exit(1)
		}
	}
}

func probe(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s %s", url, resp.Status, body)
	}
	return nil
}
