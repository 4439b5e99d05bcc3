package origin

import (
	"sync"
	"testing"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/internal/testenv"
)

// The origin's tests run on SQLite and files, then again on PostgreSQL and
// S3 (testenv.MainWithStores): one behaviour on both pairs of back ends.
func TestMain(m *testing.M) { testenv.MainWithStores(m) }

// testStores remembers the store and blob URLs of each test data folder,
// so an origin restarted on the same folder finds its state again.
var testStores sync.Map

type testBackends struct{ store, blobs string }

// testConfig is an origin configuration for a test's data folder, on the
// store engine under test.
func testConfig(t testing.TB, dir string) config.Origin {
	t.Helper()
	cfg := config.NewOrigin(dir)
	b, ok := testStores.Load(dir)
	if !ok {
		b = testBackends{testenv.StoreURL(t), testenv.BlobsURL(t)}
		testStores.Store(dir, b)
	}
	cfg.Store, cfg.Blobs = b.(testBackends).store, b.(testBackends).blobs
	return cfg
}

// testConfigFiles is testConfig with blobs on files whatever the run: for
// the tests that look at the blob files themselves (mtimes, temp files).
func testConfigFiles(t testing.TB, dir string) config.Origin {
	t.Helper()
	b, ok := testStores.Load(dir)
	if !ok {
		b = testBackends{store: testenv.StoreURL(t)}
		testStores.Store(dir, b)
	}
	cfg := config.NewOrigin(dir)
	cfg.Store = b.(testBackends).store
	return cfg
}
