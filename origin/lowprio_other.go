//go:build !linux

package origin

// lowPriority: thread priorities are set on Linux only.
func lowPriority(nice int) (bool, error) { return false, nil }

// lendProc: nothing to lend where builders are not niced.
func lendProc() (giveBack func()) { return func() {} }
