package main

import (
	"flag"

	"github.com/updraft-cdn/updraft/config"
)

// backendFlags registers where the origin keeps its state: the metadata and
// event store (--store) and the blob store (--blobs). Empty means the
// embedded defaults in the data folder (SQLite and files).
func backendFlags(fs *flag.FlagSet, oc *config.Origin) {
	fs.StringVar(&oc.Store, "store", "", "metadata and event store: empty for SQLite in the data folder, or postgres://USER:PASS@HOST:PORT/DB for several origins; env UPDRAFT_STORE")
	fs.DurationVar(&oc.JobStaleAfter, "job-stale-after", 0, "with several origins: a bundle build untouched this long belongs to an origin that died, and another takes it over (0: 2m)")
	fs.StringVar(&oc.Blobs, "blobs", "", "blob store: empty for files in the data folder, or s3://BUCKET[/PREFIX]?endpoint=HOST:PORT[&region=R][&insecure=1: plain HTTP][&create=1: create the bucket] (credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); env UPDRAFT_BLOBS")
}
