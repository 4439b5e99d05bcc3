package api

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

// Error is the operator API's error body: a stable code and a message.
// The origin answers with it; CheckZip refuses with it.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"error"`
	Message string `json:"message"`
	// Details, for some codes, is structured data about the refusal (e.g.
	// incompatible_native: the compatibility report).
	Details any `json:"details,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an Error with the message formatted.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// limitFlags names, for each limit, the setting that raises it.
var limitFlags = map[string]string{
	delta.LimitEntries:      "--max-bundle-entries",
	delta.LimitUncompressed: "--max-bundle-uncompressed",
	delta.LimitRatio:        "--max-bundle-ratio",
	delta.LimitEntryRatio:   "--max-entry-ratio",
}

// CheckZip verifies the upload is a zip a device can install, under the
// default limits (what the CLI checks before encrypting).
func CheckZip(file string) error {
	return CheckZipLimits(context.Background(), file, delta.DefaultLimits)
}

// CheckZipLimits verifies a zip with the builder's own rules (delta.OpenZip:
// safe and unique paths, regular files and folders only, store or deflate)
// and limits, decompressing every entry to check its real size, ratio and
// CRC-32 (streaming: memory does not grow with the zip), and requires an
// index.html at its root or in its single top-level folder (what the
// Capacitor plugin looks for). Refusals are 400 invalid_bundle.
func CheckZipLimits(ctx context.Context, file string, lim delta.Limits) error {
	files, err := CheckZipFiles(ctx, file, lim)
	if err != nil {
		return err
	}
	return checkIndex(files)
}

// CheckZipFiles is CheckZipLimits without the index.html rule (an Expo
// update has none): it returns the zip's regular files, sorted by path.
func CheckZipFiles(ctx context.Context, file string, lim delta.Limits) ([]delta.Entry, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	z, err := delta.OpenZip(f, fi.Size(), lim)
	if err == nil {
		err = z.Verify(ctx)
	}
	if err != nil {
		return nil, zipErr(err)
	}
	return z.Files, nil
}

// zipErr maps a refusal of delta.OpenZip or Zip.Verify onto invalid_bundle,
// naming the limit and the flag that sets it.
func zipErr(err error) error {
	bad := func(format string, args ...any) error {
		return Errorf(http.StatusBadRequest, "invalid_bundle", format, args...)
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
		return Errorf(http.StatusServiceUnavailable, "upload_interrupted", "the check of the zip was interrupted: %v", err)
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
	return Errorf(http.StatusBadRequest, "invalid_bundle", "no index.html at the root of the zip (or in its single top-level folder)")
}
