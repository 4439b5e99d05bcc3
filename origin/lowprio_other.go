//go:build !linux

package origin

// lowPriority: thread priorities are set on Linux only.
func lowPriority(nice int) error { return nil }
