package main

import (
	"context"
	"flag"
	"fmt"
	"io"
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
	api := fs.Bool("api", false, "rotate the operator API key (DATA/api-key)")
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
		what := "operator API key"
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
