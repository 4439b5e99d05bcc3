package main

// Bundle lifecycle commands: bundle delete, app set --keep, gc.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin"
	"github.com/updraft-cdn/updraft/origin/client"
)

// bundleDelete is `updraft bundle delete V --app ID` (cmdBundle parsed the flags).
func bundleDelete(ctx context.Context, c *client.Client, app string, pos []string, asJSON bool, stdout io.Writer) error {
	if err := want(1, pos, "one bundle VERSION"); err != nil {
		return err
	}
	d, err := c.DeleteBundle(ctx, app, pos[0])
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(stdout, d)
	}
	fmt.Fprintf(stdout, "deleted bundle %s of %s (with %d deltas and %d manifest files); its blobs go at the first blob GC past the grace period\n",
		d.Version, d.AppID, d.Deltas, d.ManifestFiles)
	return nil
}

// cmdAppSet is `updraft app set ID [--keep N] [--expose-metadata] [--allow-device-custom-id=false]`.
func cmdAppSet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("app set", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	keep := fs.Int("keep", 0, "keep the N newest bundles, 0 keeps all; older bundles that no channel, rollout or A/B arm points at are deleted now and after every upload")
	var expose, allowCustom optSwitch
	fs.Var(&expose, "expose-metadata", "send bundles' link and comment to plugins ≥ 5.35.0 / 6.35.0 / 7.35.0 / 8.35.0 (Capgo's expose_metadata; default false)")
	fs.Var(&allowCustom, "allow-device-custom-id", "false: segment rules and analytics ignore the custom_id devices send (Capgo's allow_device_custom_id; default true)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := want(1, pos, "one app ID"); err != nil {
		return err
	}
	var opt origin.AppOptions
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "keep" {
			opt.KeepBundles = keep
		}
	})
	opt.ExposeMetadata, opt.AllowDeviceCustomID = expose.v, allowCustom.v
	if opt.KeepBundles == nil && opt.ExposeMetadata == nil && opt.AllowDeviceCustomID == nil {
		return usagef("", "app set: nothing to set; give --keep N, --expose-metadata or --allow-device-custom-id")
	}
	if opt.KeepBundles != nil && *keep < 0 {
		return usagef("", "app set: --keep %d: want 0 (keep all) or more", *keep)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	res, err := c.SetAppOptions(ctx, pos[0], opt)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(stdout, res)
	}
	if res.KeepBundles == 0 {
		fmt.Fprintf(stdout, "app %s keeps all its bundles\n", res.ID)
	} else {
		fmt.Fprintf(stdout, "app %s keeps its %d newest bundles (and older ones in use)\n", res.ID, res.KeepBundles)
	}
	fmt.Fprintf(stdout, "app %s: expose_metadata=%v allow_device_custom_id=%v\n", res.ID, res.ExposeMetadata, res.AllowDeviceCustomID)
	if len(res.Deleted) > 0 {
		fmt.Fprintf(stdout, "deleted bundles: %s\n", strings.Join(res.Deleted, ", "))
	}
	return nil
}

// cmdGC is `updraft gc [--grace D]`.
func cmdGC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gc", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	grace := fs.Duration("grace", 0, "delete only blobs unreferenced and unchanged for this long (default: the origin's --gc-grace, 1h); 0s is safe only while nothing is uploaded")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := want(0, pos, "no arguments"); err != nil {
		return err
	}
	var g *time.Duration
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "grace" {
			g = grace
		}
	})
	c, err := cf.client()
	if err != nil {
		return err
	}
	res, err := c.GC(ctx, g)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "blob gc: deleted %d blobs (%d bytes), kept %d\n", res.Deleted, res.Bytes, res.Kept)
	return nil
}

// gcFlags registers the origin's blob garbage collection flags.
func gcFlags(fs *flag.FlagSet, oc *config.Origin) {
	fs.DurationVar(&oc.GCGrace, "gc-grace", oc.GCGrace, "blob GC deletes only unreferenced blobs unchanged for this long (uploads and edge fetches in flight keep theirs)")
	fs.DurationVar(&oc.GCInterval, "gc-interval", oc.GCInterval, "how often blob GC runs (0: only on demand, with updraft gc)")
}
