package origin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/delta"
)

// maxZipEntries bounds an encrypted upload's manifest (the CLI checked the
// plaintext zip under delta.DefaultLimits).
var maxZipEntries = delta.DefaultLimits.MaxEntries

// zipLimits are the configured upload limits, which the builder applies
// too (what the upload accepted, the builder builds).
func zipLimits(cfg config.Origin) delta.Limits {
	return delta.Limits{MaxEntries: cfg.MaxZipEntries, MaxUncompressed: int64(cfg.MaxUncompressed),
		MaxRatio: cfg.MaxZipRatio, MaxEntryRatio: cfg.MaxEntryRatio}
}

// limitFlags names, for each limit, the setting that raises it.
var limitFlags = map[string]string{
	delta.LimitEntries:      "--max-bundle-entries",
	delta.LimitUncompressed: "--max-bundle-uncompressed",
	delta.LimitRatio:        "--max-bundle-ratio",
	delta.LimitEntryRatio:   "--max-entry-ratio",
}

// checkZip verifies the upload is a zip a device can install, under the
// default limits (what the CLI checks before encrypting).
func checkZip(file string) error {
	return checkZipLimits(context.Background(), file, delta.DefaultLimits)
}

// checkZipLimits verifies a zip with the builder's own rules (delta.OpenZip:
// safe and unique paths, regular files and folders only, store or deflate)
// and limits, decompressing every entry to check its real size, ratio and
// CRC-32 (streaming: memory does not grow with the zip), and requires an
// index.html at its root or in its single top-level folder (what the
// Capacitor plugin looks for). Refusals are 400 invalid_bundle.
func checkZipLimits(ctx context.Context, file string, lim delta.Limits) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	z, err := delta.OpenZip(f, fi.Size(), lim)
	if err == nil {
		err = z.Verify(ctx)
	}
	if err != nil {
		return zipErr(err)
	}
	return checkIndex(z.Files)
}

// zipErr maps a refusal of delta.OpenZip or Zip.Verify onto invalid_bundle,
// naming the limit and the flag that sets it.
func zipErr(err error) error {
	bad := func(format string, args ...any) error {
		return errf(http.StatusBadRequest, "invalid_bundle", format, args...)
	}
	var le *delta.LimitError
	var be *delta.BundleError
	switch {
	case errors.As(err, &le):
		flag := limitFlags[le.Limit]
		switch le.Limit {
		case delta.LimitEntries:
			return bad("the zip has more than %d entries (limit: max bundle entries, %s)", le.Max, flag)
		case delta.LimitUncompressed:
			return bad("the zip unpacks to more than %s (limit: max bundle uncompressed size, %s)", config.Size(le.Max), flag)
		case delta.LimitRatio:
			return bad("the zip unpacks to %d times its size (limit: max bundle compression ratio %d:1, %s)", le.Got, le.Max, flag)
		default:
			return bad("%s is compressed more than %d:1 (limit: max entry compression ratio %d:1 for entries over 1MiB, %s)", le.Path, le.Max, le.Max, flag)
		}
	case errors.As(err, &be):
		msg := strings.TrimPrefix(be.Error(), "delta: ")
		if be.Path == "" && be.Msg != "" && strings.HasPrefix(be.Msg, "not a readable zip") {
			msg += "; upload the zip of your web build, or a folder"
		}
		return bad("%s", msg)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return errf(http.StatusServiceUnavailable, "upload_interrupted", "the check of the zip was interrupted: %v", err)
	}
	return fmt.Errorf("check zip: %w", err)
}

// checkIndex requires an index.html at the root of the bundle or in its
// single top-level folder (resource forks aside).
func checkIndex(files []delta.Entry) error {
	tops := map[string]bool{}
	has := map[string]bool{}
	for _, e := range files {
		has[e.Path] = true
		top, _, nested := strings.Cut(e.Path, "/")
		if !nested {
			top = ""
		}
		tops[top] = true
	}
	if has["index.html"] {
		return nil
	}
	if len(tops) == 1 {
		for top := range tops {
			if top != "" && has[top+"/index.html"] {
				return nil
			}
		}
	}
	return errf(http.StatusBadRequest, "invalid_bundle", "no index.html at the root of the zip (or in its single top-level folder)")
}
