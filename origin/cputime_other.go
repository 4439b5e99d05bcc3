//go:build !linux

package origin

import "time"

// threadCPU runs fn and returns its wall time: per-thread CPU time is read
// on Linux only (cputime_linux.go). On a busy machine, or with the builder
// at a low priority, this overstates the work.
func threadCPU(fn func() error) (time.Duration, error) {
	start := time.Now()
	err := fn()
	return time.Since(start), err
}
