package main

import (
	"sync"
	"testing"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/internal/testenv"
)

// testBackends remembers each test data folder's store and blob URLs, so
// that a serve restarted on the folder finds its state again.
var testBackends sync.Map

// testOriginConfig is the origin configuration of an in-process serve for
// a test: SQLite and files on the first run of the package's tests,
// PostgreSQL and S3 on the second (testenv.MainWithStores).
func testOriginConfig(t testing.TB, data string) config.Origin {
	t.Helper()
	oc := config.NewOrigin(data)
	b, ok := testBackends.Load(data)
	if !ok {
		b = [2]string{testenv.StoreURL(t), testenv.BlobsURL(t)}
		testBackends.Store(data, b)
	}
	oc.Store, oc.Blobs = b.([2]string)[0], b.([2]string)[1]
	return oc
}
