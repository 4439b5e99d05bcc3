package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/quic-go/quic-go/http3"
	"github.com/valyala/fasthttp"
)

// transport sends one request and returns status and body. The body is
// appended to buf (reused by the caller across requests).
type transport interface {
	do(ctx context.Context, method, url string, body []byte, buf []byte) (int, []byte, error)
	// check POSTs an update check asking for the offered delta inline, up
	// to inlineMax bytes (Updraft-Inline-Delta); deltaOffset is where the
	// delta starts in the body (Updraft-Delta-Offset), 0 when the answer
	// is JSON alone.
	check(ctx context.Context, url string, body []byte, inlineMax int64, buf []byte) (status int, out []byte, deltaOffset int, err error)
	close()
}

// Request and answer headers of an inline delta (docs/protocol.md, "Inline delta").
const (
	inlineDeltaHeader = "Updraft-Inline-Delta"
	deltaOffsetHeader = "Updraft-Delta-Offset"
)

// deltaOffset reads Updraft-Delta-Offset: 0 when absent or outside the body.
func deltaOffset(h string, bodyLen int) int {
	n, err := strconv.Atoi(h)
	if err != nil || n <= 0 || n > bodyLen {
		return 0
	}
	return n
}

// newTransport returns the client for a protocol: "h1" (fasthttp, plain
// or TLS, connections reused like an app's) or "h3" (quic-go; one QUIC
// connection per host, requests multiplexed).
func newTransport(proto string, conns int, insecure bool) (transport, error) {
	tlsConf := &tls.Config{InsecureSkipVerify: insecure}
	switch proto {
	case "", "h1":
		return fastTransport{&fasthttp.Client{
			Name: "updraft-bench", MaxConnsPerHost: conns, MaxConnWaitTimeout: 2 * time.Minute,
			ReadTimeout: 2 * time.Minute, WriteTimeout: time.Minute, MaxResponseBodySize: 1 << 30,
			MaxIdleConnDuration: time.Minute, TLSConfig: tlsConf,
		}}, nil
	case "h3":
		t := &http3.Transport{TLSClientConfig: tlsConf}
		return httpTransport{c: &http.Client{Transport: t, Timeout: 2 * time.Minute}, closeFn: func() { t.Close() }}, nil
	}
	return nil, fmt.Errorf("bench: proto %q: want h1 or h3", proto)
}

type fastTransport struct{ c *fasthttp.Client }

func (t fastTransport) do(ctx context.Context, method, url string, body []byte, buf []byte) (int, []byte, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.SetMethod(method)
	if body != nil {
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(body)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(2 * time.Minute)
	}
	if err := t.c.DoDeadline(req, resp, deadline); err != nil {
		return 0, buf, err
	}
	return resp.StatusCode(), append(buf[:0], resp.Body()...), nil
}

func (t fastTransport) check(ctx context.Context, url string, body []byte, inlineMax int64, buf []byte) (int, []byte, int, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.SetMethod("POST")
	req.Header.SetContentType("application/json")
	req.Header.Set(inlineDeltaHeader, strconv.FormatInt(inlineMax, 10))
	req.SetBodyRaw(body)
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(2 * time.Minute)
	}
	if err := t.c.DoDeadline(req, resp, deadline); err != nil {
		return 0, buf, 0, err
	}
	buf = append(buf[:0], resp.Body()...)
	return resp.StatusCode(), buf, deltaOffset(string(resp.Header.Peek(deltaOffsetHeader)), len(buf)), nil
}

func (t fastTransport) close() { t.c.CloseIdleConnections() }

type httpTransport struct {
	c       *http.Client
	closeFn func()
}

func (t httpTransport) do(ctx context.Context, method, url string, body []byte, buf []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, buf, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := t.c.Do(req)
	if err != nil {
		return 0, buf, err
	}
	defer resp.Body.Close()
	b := bytes.NewBuffer(buf[:0])
	_, err = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes(), err
}

func (t httpTransport) check(ctx context.Context, url string, body []byte, inlineMax int64, buf []byte) (int, []byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return 0, buf, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(inlineDeltaHeader, strconv.FormatInt(inlineMax, 10))
	resp, err := t.c.Do(req)
	if err != nil {
		return 0, buf, 0, err
	}
	defer resp.Body.Close()
	b := bytes.NewBuffer(buf[:0])
	_, err = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes(), deltaOffset(resp.Header.Get(deltaOffsetHeader), b.Len()), err
}

func (t httpTransport) close() { t.closeFn() }
