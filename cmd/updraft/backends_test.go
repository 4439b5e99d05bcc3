package main

import (
	"testing"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/internal/testenv"
)

// testOriginConfig is the origin configuration of an in-process serve for
// a test: SQLite and files on the first run of the package's tests,
// PostgreSQL and S3 on the second (testenv.MainWithStores).
func testOriginConfig(t testing.TB, data string) config.Origin {
	t.Helper()
	oc := config.NewOrigin(data)
	oc.Store, oc.Blobs = testenv.Backends(t, data)
	oc.BuildNice = 0 // see TestMain
	return oc
}
