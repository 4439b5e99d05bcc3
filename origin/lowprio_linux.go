package origin

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// lowPriority pins the calling goroutine to its OS thread and gives that
// thread the scheduling priority nice (Linux priorities are per thread), so
// the kernel runs the bundle builder only on CPU that the edge, the API and
// everything else on the machine leave idle. The goroutine must not unlock
// the thread: when it returns, the Go runtime ends the thread instead of
// reusing it at this priority. nice <= 0 leaves the thread as it is.
//
// A running goroutine holds one of the runtime's GOMAXPROCS processors
// even while the kernel leaves its thread waiting, so a niced builder would
// take one of the edge's processors and give its CPU to nobody. Each call
// therefore adds a processor: the edge keeps as many as there are cores.
func lowPriority(nice int) error {
	if nice <= 0 {
		return nil
	}
	runtime.LockOSThread()
	if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), min(nice, 19)); err != nil {
		return err
	}
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	return nil
}
