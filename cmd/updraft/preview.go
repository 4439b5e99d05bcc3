package main

// `updraft channel preview`: a short-lived, unlisted preview channel and
// the link and QR code that move a tester's device to it (origin/previews.go,
// proxy/preview.go, docs/cli.md).
//
// The QR code is drawn by github.com/skip2/go-qrcode: a small, dependency-free,
// widely used encoder (Reed-Solomon, masking and version selection are
// easy to get subtly wrong, and a QR code that some phones misread is worse
// than none).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/api"
)

// defaultEdgeURL is where the preview link points without --edge-url or
// UPDRAFT_EDGE_URL: the edge of `updraft serve` on this machine.
const defaultEdgeURL = "http://" + config.DefaultEdgeListen

// qrPNGSize is the side of --qr-png's image, in pixels.
const qrPNGSize = 512

func cmdChannelPreview(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("channel preview", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	app := fs.String("app", "", "app id (required)")
	bundle := fs.String("bundle", "", "bundle version the preview serves (required to create one)")
	ttl := fs.String("ttl", "24h", "how long the preview and its link work: a Go duration or days (7d); at most 30d")
	name := fs.String("name", "", "preview channel name, at most 24 characters (default: pv- and 8 random characters)")
	edgeURL := fs.String("edge-url", config.Env("UPDRAFT_EDGE_URL", defaultEdgeURL), "public URL of an edge, for the link; env UPDRAFT_EDGE_URL")
	scheme := fs.String("app-scheme", os.Getenv("UPDRAFT_APP_SCHEME"), "URL scheme the app handles, for the deep link (default: the app id); env UPDRAFT_APP_SCHEME")
	qrPNG := fs.String("qr-png", "", "also write the QR code as a PNG to this file")
	invert := fs.Bool("qr-invert", false, "draw the terminal QR code for a light background")
	list := fs.Bool("list", false, "list the app's preview channels with their links")
	del := fs.String("delete", "", "delete this preview channel now")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := want(0, pos, "no arguments"); err != nil {
		return err
	}
	if *app == "" {
		return usagef("", "channel preview: --app is required")
	}
	if n := btoi(*list) + btoi(*del != "") + btoi(*bundle != ""); n != 1 {
		return usagef("", "channel preview: give --bundle V (create), --list or --delete NAME")
	}
	if *scheme != "" && !validURLScheme(*scheme) {
		return usagef("", "channel preview: --app-scheme %q: want a URL scheme (a letter, then letters, digits, '+', '-' or '.')", *scheme)
	}
	edge := strings.TrimRight(*edgeURL, "/")
	if u, err := url.Parse(edge); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("", "channel preview: --edge-url %q: want http(s)://host[:port]", *edgeURL)
	}
	var ttlDur time.Duration
	if *bundle != "" {
		if ttlDur, err = parseTTL(*ttl); err != nil {
			return usagef("", "channel preview: --ttl %q: %v", *ttl, err)
		}
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	switch {
	case *del != "":
		if err := c.DeletePreview(ctx, *app, *del); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "preview channel %s of %s deleted\n", *del, *app)
		return nil
	case *list:
		ps, err := c.ListPreviews(ctx, *app)
		if err != nil {
			return err
		}
		if cf.json {
			return printList(stdout, ps)
		}
		var rows [][]string
		for _, p := range ps {
			state := "in " + time.Until(p.ExpiresAt).Round(time.Minute).String()
			if p.Expired {
				state = "expired"
			}
			rows = append(rows, []string{p.Channel, p.Bundle, p.ExpiresAt.Format(time.RFC3339), state, previewLink(edge, p.Token, *scheme, *app)})
		}
		table(stdout, "NAME\tBUNDLE\tEXPIRES\tSTATE\tLINK", rows)
		return nil
	}
	p, err := c.CreatePreview(ctx, *app, api.PreviewRequest{Bundle: *bundle, TTLSeconds: int64(ttlDur / time.Second), Name: *name})
	if err != nil {
		return err
	}
	link := previewLink(edge, p.Token, *scheme, *app)
	q, err := qrcode.New(link, qrcode.Medium)
	if err != nil {
		return fmt.Errorf("QR code: %w", err)
	}
	if *qrPNG != "" {
		if err := q.WriteFile(qrPNGSize, *qrPNG); err != nil {
			return fmt.Errorf("QR code: %w", err)
		}
	}
	if cf.json {
		return printJSON(stdout, struct {
			api.Preview
			Link     string `json:"link"`
			DeepLink string `json:"deep_link"`
			QRPNG    string `json:"qr_png,omitempty"`
		}{p, link, deepLink(p.Token, *scheme, *app), *qrPNG})
	}
	fmt.Fprintf(stdout, "preview channel %s of %s serves %s until %s (%s)\n", p.Channel, *app, p.Bundle,
		p.ExpiresAt.Format(time.RFC3339), ttlDur)
	fmt.Fprintf(stdout, "link:      %s\n", link)
	fmt.Fprintf(stdout, "deep link: %s\n", deepLink(p.Token, *scheme, *app))
	fmt.Fprintf(stdout, "token:     %s\n\n", p.Token)
	fmt.Fprint(stdout, q.ToSmallString(*invert))
	if *qrPNG != "" {
		fmt.Fprintf(stdout, "\nQR code written to %s\n", *qrPNG)
	}
	return nil
}

// previewLink is the edge page a tester opens: EDGE/preview/TOKEN, with
// ?scheme= when the app's URL scheme is not its id.
func previewLink(edge, token, scheme, app string) string {
	link := edge + "/preview/" + token
	if scheme != "" && scheme != app {
		link += "?scheme=" + url.QueryEscape(scheme)
	}
	return link
}

// deepLink is the link the preview page opens in the app.
func deepLink(token, scheme, app string) string {
	if scheme == "" {
		scheme = app
	}
	return scheme + "://updraft-preview?token=" + url.QueryEscape(token)
}

func validURLScheme(s string) bool {
	if s == "" || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z') {
		return false
	}
	return strings.IndexFunc(s, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')
	}) < 0
}

// parseTTL reads a Go duration or a whole number of days ("7d").
func parseTTL(s string) (time.Duration, error) {
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil {
			return 0, errors.New("want a duration like 24h or a number of days like 7d")
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, errors.New("want a duration like 24h or a number of days like 7d")
		}
	}
	if d < time.Second || d > 30*24*time.Hour {
		return 0, errors.New("want 1s to 30d")
	}
	return d, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
