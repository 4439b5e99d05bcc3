package main

// Upload limits and bundle builds: the origin's limit flags and
// `updraft bundle rebuild`.

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/client"
)

// uploadLimitFlags registers the origin's bundle zip limits and the delta
// size limit (docs/design-notes.md, "Upload limits, streaming builds and
// durable jobs").
func uploadLimitFlags(fs *flag.FlagSet, oc *config.Origin) {
	fs.Var(&oc.MaxUncompressed, "max-bundle-uncompressed", "largest total size a bundle zip may unpack to (counted while decompressing; at most 1GiB)")
	fs.IntVar(&oc.MaxZipEntries, "max-bundle-entries", oc.MaxZipEntries, "most entries (files and folders) a bundle zip may hold")
	fs.IntVar(&oc.MaxZipRatio, "max-bundle-ratio", oc.MaxZipRatio, "largest ratio of a bundle's unpacked size to its zip's size (0: unchecked)")
	fs.IntVar(&oc.MaxEntryRatio, "max-entry-ratio", oc.MaxEntryRatio, "largest compression ratio of a zip entry over 1MiB (0: unchecked)")
	fs.IntVar(&oc.BuildNice, "build-nice", oc.BuildNice, "scheduling priority of bundle builds (nice 1-19: they get only CPU the edge and the API leave idle; 0: normal priority; Linux); env UPDRAFT_BUILD_NICE")
	fs.Var(&oc.MaxDeltaBundle, "max-delta-bundle", "build deltas only between bundles whose files unpacked (canonical archive) are at most this large; needs about 3x this of memory; 0: no deltas")
}

// bundleRebuild is `updraft bundle rebuild V --app ID [--force] [--wait]` (cmdBundle
// parsed the flags).
func bundleRebuild(ctx context.Context, c *client.Client, app string, pos []string, force, wait, asJSON bool, stdout, stderr io.Writer) error {
	if err := want(1, pos, "one bundle VERSION"); err != nil {
		return err
	}
	b, err := c.RebuildBundle(ctx, app, pos[0], force)
	if err != nil {
		return err
	}
	if wait {
		var progress io.Writer
		if !asJSON {
			progress = progressTo(stderr, false)
		}
		bi, err := followBuild(ctx, c, b.AppID, b.Version, progress)
		if asJSON {
			if perr := printJSON(stdout, bi); err == nil {
				err = perr
			}
			return err
		}
		if err != nil {
			return err
		}
		printBuilt(stdout, bi)
		return nil
	}
	if asJSON {
		return printJSON(stdout, b)
	}
	what := "queued its build again (missing manifest, canonical archive and deltas are built)"
	if force {
		what = "cleared its manifest, canonical archive and deltas and queued its build again"
	}
	fmt.Fprintf(stdout, "bundle %s of %s: %s; follow it with: updraft bundle list --app %s\n", b.Version, b.AppID, what, b.AppID)
	return nil
}
