package testenv

import (
	"os"
	"strconv"
	"time"
)

// Patience is how long a test waits for the origin's background work (a
// bundle's build, mostly brotli at quality 11) before it gives up: d on a
// quiet machine, four times d under the race detector (which slows that
// work five to ten times), times UPDRAFT_TEST_PATIENCE when set (a factor,
// for machines loaded on purpose). Tests still stop waiting as soon as the
// condition holds; this only moves the point where they call it a failure.
func Patience(d time.Duration) time.Duration {
	if raceEnabled {
		d *= 4
	}
	if f, err := strconv.ParseFloat(os.Getenv("UPDRAFT_TEST_PATIENCE"), 64); err == nil && f >= 1 {
		d = time.Duration(float64(d) * f)
	}
	return d
}

// Race reports whether the tests run under the race detector, where
// sync.Pool drops items on purpose: allocation counts of pooled paths are
// not meaningful there.
const Race = raceEnabled
