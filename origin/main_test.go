package origin

import (
	"sync"
	"testing"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/internal/testenv"
)

// The origin's tests run on SQLite, then again on PostgreSQL
// (testenv.MainWithStores): one behaviour on both store engines.
func TestMain(m *testing.M) { testenv.MainWithStores(m) }

// testStores remembers the store of each test data folder, so an origin
// restarted on the same folder finds its store again.
var testStores sync.Map

// testConfig is an origin configuration for a test's data folder, on the
// store engine under test.
func testConfig(t testing.TB, dir string) config.Origin {
	t.Helper()
	cfg := config.NewOrigin(dir)
	if u, ok := testStores.Load(dir); ok {
		cfg.Store = u.(string)
	} else {
		cfg.Store = testenv.StoreURL(t)
		testStores.Store(dir, cfg.Store)
	}
	return cfg
}
