package origin

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/blob"
	blobfs "github.com/updraft-cdn/updraft/origin/blob/fs"
	"github.com/updraft-cdn/updraft/origin/blob/s3"
)

// openBlobs opens the blob store --blobs names: "" for files in DATA/blobs,
// s3://BUCKET?endpoint=HOST:PORT&region=R[&insecure=1][&create=1] for an
// S3-compatible bucket (writes in progress in DATA/blob-uploads, checked
// at start: bucket, credentials, endpoint). The chooser lives here, not in
// package blob, because the back ends import blob.
func openBlobs(ctx context.Context, cfg config.Origin) (blob.Store, error) {
	raw := strings.TrimSpace(cfg.Blobs)
	switch {
	case raw == "":
		return blobfs.Open(filepath.Join(cfg.DataDir, "blobs"))
	case strings.HasPrefix(raw, "s3://"):
		c, err := s3.ParseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("origin: --blobs %s: %v", raw, err)
		}
		c.TempDir = filepath.Join(cfg.DataDir, "blob-uploads")
		st, err := s3.Open(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("origin: --blobs %s: %v", raw, err)
		}
		return st, nil
	default:
		return nil, fmt.Errorf("origin: --blobs %q: want empty (files in the data folder) or s3://BUCKET?endpoint=HOST:PORT", raw)
	}
}
