package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/origin"
)

// cmdKeysRotate runs `updraft keys rotate --api|--edge|--signing`, through
// the origin's operator API (the origin holds the keys in memory and
// rewrites their files in its data folder).
func cmdKeysRotate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keys rotate", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	api := fs.Bool("api", false, "rotate the admin key (DATA/api-key)")
	edge := fs.Bool("edge", false, "rotate the edge key (DATA/edge-key)")
	signing := fs.Bool("signing", false, "rotate the snapshot signing key (DATA/origin-key); run with --prepare first")
	prepare := fs.Bool("prepare", false, "--signing: only create the next signing key and print its public key, to add to the edges' --origin-pubkey")
	overlap := fs.Duration("overlap", origin.DefaultKeyOverlap, "--api, --edge: how long the replaced key stays valid (0: it stops at once)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	n := 0
	for _, b := range []bool{*api, *edge, *signing} {
		if b {
			n++
		}
	}
	if n != 1 || len(pos) != 0 {
		return usagef("", "keys rotate: want exactly one of --api, --edge or --signing [--prepare]")
	}
	if *prepare && !*signing {
		return usagef("", "keys rotate: --prepare is for --signing only")
	}
	if *overlap < 0 {
		return usagef("", "keys rotate: --overlap %s: want 0 or more", *overlap)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	req := origin.RotateKeyRequest{Key: origin.KeyAPI, Prepare: *prepare}
	switch {
	case *edge:
		req.Key = origin.KeyEdge
	case *signing:
		req.Key = origin.KeySigning
	}
	if !*signing {
		secs := int64(*overlap / time.Second)
		req.OverlapSeconds = &secs
	}
	res, err := c.RotateKey(ctx, req)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(stdout, res)
	}
	switch {
	case *signing && *prepare:
		fmt.Fprintf(stdout, "next snapshot signing key prepared (%s)\n  public key: %s\n\n", res.File, res.PublicKey)
		fmt.Fprintf(stdout, "1. restart every edge trusting both keys:\n     --origin-pubkey %s,%s\n", res.PreviousPublicKey, res.PublicKey)
		fmt.Fprintf(stdout, "2. updraft keys rotate --signing    (the origin then signs with the new key)\n")
		fmt.Fprintf(stdout, "3. remove the old key from the edges: --origin-pubkey %s\n", res.PublicKey)
	case *signing:
		fmt.Fprintf(stdout, "snapshot signing key rotated: the origin signs with %s\n", res.PublicKey)
		fmt.Fprintf(stdout, "previous key %s kept in %s.old for reference; edges trusting only it now refuse new snapshots.\n", res.PreviousPublicKey, res.File)
		fmt.Fprintf(stdout, "once every edge follows (/readyz \"following\":true), remove it: --origin-pubkey %s\n", res.PublicKey)
	default:
		what := "admin key"
		if *edge {
			what = "edge key"
		}
		fmt.Fprintf(stdout, "new %s: %s\n  written to %s (on the origin's host)\n", what, res.Secret, res.File)
		if res.OldExpiresAt != nil {
			fmt.Fprintf(stdout, "  the previous key stays valid until %s\n", res.OldExpiresAt.UTC().Format(time.RFC3339))
		}
		if *edge {
			fmt.Fprintf(stdout, "  give it to every edge (--edge-key-file); parent edges also take the old one meanwhile (--previous-edge-key-file)\n")
		}
	}
	return nil
}

// parseExpiry reads --expires: Go durations (12h, 90m) and whole days (90d).
func parseExpiry(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 || n > 3660 {
			return 0, fmt.Errorf("--expires %q: want a number of days from 1 to 3660 (90d) or a duration (12h)", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("--expires %q: want a number of days (90d) or a duration of at least 1s (12h)", s)
	}
	return d, nil
}

// cmdKeysCreate runs `updraft keys create --name N --scope S [--app ID]
// [--expires 90d]`: the secret is printed once, alone on stdout (for
// KEY=$(updraft keys create …)), the rest on stderr.
func cmdKeysCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keys create", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	name := fs.String("name", "", "the key's name, unique among live keys (audit records show it)")
	scope := fs.String("scope", "", "admin, deploy, upload or read")
	app := fs.String("app", "", "limit the key to this app (default: every app)")
	expires := fs.String("expires", "", "the key stops working after this long: 90d, 12h (default: never)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := want(0, pos, "no arguments"); err != nil {
		return err
	}
	if *name == "" || *scope == "" {
		return usagef("", "keys create: want --name and --scope (admin, deploy, upload or read)")
	}
	req := origin.CreateKeyRequest{Name: *name, Scope: *scope, App: *app}
	if *expires != "" {
		d, err := parseExpiry(*expires)
		if err != nil {
			return usagef("", "keys create: %v", err)
		}
		secs := int64(d / time.Second)
		req.ExpiresInSeconds = &secs
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	res, err := c.CreateKey(ctx, req)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(stdout, res)
	}
	fmt.Fprintln(stdout, res.Secret)
	fmt.Fprintf(stderr, "key %s created: scope %s, %s, %s.\nThe secret above is shown this once (the origin keeps only its hash): store it now, e.g. as a CI secret (UPDRAFT_API_KEY).\n",
		res.Name, res.Scope, keyAppText(res.App), keyExpiryText(res.ExpiresAt))
	return nil
}

func keyAppText(app string) string {
	if app == "" {
		return "every app"
	}
	return "app " + app
}

func keyExpiryText(t *time.Time) string {
	if t == nil {
		return "never expires"
	}
	return "expires " + t.UTC().Format(time.RFC3339)
}

// cmdKeysList runs `updraft keys list [--json]`: names, scopes, apps and
// dates, never a secret.
func cmdKeysList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keys list", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := want(0, pos, "no arguments"); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	keys, err := c.ListKeys(ctx)
	if err != nil {
		return err
	}
	if cf.json {
		return printList(stdout, keys)
	}
	day := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04")
	}
	var rows [][]string
	for _, k := range keys {
		app := k.App
		if app == "" {
			app = "*"
		}
		rows = append(rows, []string{k.Name, k.Scope, app, day(&k.CreatedAt), day(k.ExpiresAt), day(k.RevokedAt), k.State})
	}
	table(stdout, "NAME\tSCOPE\tAPP\tCREATED\tEXPIRES\tREVOKED\tSTATE", rows)
	return nil
}

// cmdKeysRevoke runs `updraft keys revoke NAME`.
func cmdKeysRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keys revoke", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := want(1, pos, "the key's NAME"); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	k, err := c.RevokeKey(ctx, pos[0])
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(stdout, k)
	}
	fmt.Fprintf(stdout, "key %s revoked (scope %s, %s): every origin refuses it from now on\n", k.Name, k.Scope, keyAppText(k.App))
	return nil
}
