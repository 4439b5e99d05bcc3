package origin

import (
	"testing"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/internal/testenv"
)

// The origin's tests run on SQLite and files, then again on PostgreSQL and
// S3 (testenv.MainWithStores): one behaviour on both pairs of back ends.
func TestMain(m *testing.M) { testenv.MainWithStores(m) }

// testConfig is an origin configuration for a test's data folder, on the
// back ends under test (testenv.Backends).
func testConfig(t testing.TB, dir string) config.Origin {
	t.Helper()
	cfg := config.NewOrigin(dir)
	cfg.Store, cfg.Blobs = testenv.Backends(t, dir)
	cfg.BuildNice = 0 // tests wait for builds on a machine busy with other test binaries
	return cfg
}
