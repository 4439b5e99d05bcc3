package origin

import (
	"context"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/api"
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

// checkZip and checkZipLimits are the zip checks of package api (shared
// with the client, which checks a bundle before encrypting it).
func checkZip(file string) error { return api.CheckZip(file) }

func checkZipLimits(ctx context.Context, file string, lim delta.Limits) error {
	return api.CheckZipLimits(ctx, file, lim)
}
