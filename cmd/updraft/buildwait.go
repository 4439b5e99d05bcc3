package main

// `bundle upload --wait` and `bundle rebuild --wait`: follow the origin's
// background build of a bundle (manifest, canonical archive, deltas) until it
// is ready or has failed, with a progress line on a terminal.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/client"
)

// errBuildFailed: the bundle's build ended in failure (exit status 1).
var errBuildFailed = errors.New("build failed")

// followBuild polls the bundle list until version's build is ready (or it has
// none: encrypted bundles are not built) or failed. Polls start at 100 ms and
// back off to 1 s. progress (nil: none) gets a line rewritten in place.
func followBuild(ctx context.Context, c *client.Client, app, version string, progress io.Writer) (api.BundleInfo, error) {
	start := time.Now()
	every := 100 * time.Millisecond
	shown := false
	defer func() {
		if shown {
			fmt.Fprintln(progress)
		}
	}()
	for {
		bs, err := c.ListBundles(ctx, app)
		if err != nil {
			return api.BundleInfo{}, err
		}
		var b *api.BundleInfo
		for i := range bs {
			if bs[i].Version == version {
				b = &bs[i]
				break
			}
		}
		if b == nil {
			return api.BundleInfo{}, fmt.Errorf("bundle %s of %s is gone (deleted while its build was followed)", version, app)
		}
		st := b.DeltaStatus
		switch {
		case st == nil || st.State == "ready":
			return *b, nil
		case st.State == "failed":
			return *b, fmt.Errorf("%w: bundle %s of %s after %d attempt(s): %s (retry with: updraft bundle rebuild %s --app %s)",
				errBuildFailed, version, app, st.Attempts, st.Error, version, app)
		}
		if progress != nil {
			line := fmt.Sprintf("building %s: %s", version, st.State)
			if st.Total > 0 {
				line += fmt.Sprintf(", deltas %d/%d", st.Done, st.Total)
			}
			if st.Error != "" {
				line += " (" + st.Error + ")"
			}
			fmt.Fprintf(progress, "\r%s, %s   ", line, time.Since(start).Round(time.Second))
			shown = true
		}
		select {
		case <-ctx.Done():
			return *b, ctx.Err()
		case <-time.After(every):
		}
		every = min(every*2, time.Second)
	}
}

// printBuilt prints a finished build's outcome (not with --json).
func printBuilt(w io.Writer, b api.BundleInfo) {
	if b.DeltaStatus == nil {
		fmt.Fprintf(w, "bundle %s: nothing to build (encrypted bundles get no manifest, archive or deltas at the origin)\n", b.Version)
		return
	}
	smallest := int64(-1)
	for _, d := range b.Deltas {
		if smallest < 0 || d.Size < smallest {
			smallest = d.Size
		}
	}
	msg := fmt.Sprintf("bundle %s built: manifest of %d files, %d deltas", b.Version, b.ManifestFiles, len(b.Deltas))
	if smallest >= 0 {
		msg += fmt.Sprintf(" (smallest %d bytes)", smallest)
	}
	fmt.Fprintln(w, msg)
}
