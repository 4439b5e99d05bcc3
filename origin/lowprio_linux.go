package origin

import (
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/updraft-cdn/updraft/internal/procs"
)

// lowPriority pins the calling goroutine to its OS thread and gives that
// thread the scheduling priority nice (Linux priorities are per thread), so
// the kernel runs the bundle builder only on CPU that the edge, the API and
// everything else on the machine leave idle; it reports whether it did. The
// goroutine must not unlock the thread: when it returns, the Go runtime
// ends the thread instead of reusing it at this priority. nice <= 0 leaves
// the thread as it is.
func lowPriority(nice int) (bool, error) {
	if nice <= 0 {
		return false, nil
	}
	runtime.LockOSThread()
	if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), min(nice, 19)); err != nil {
		return false, err
	}
	return true, nil
}

// lendProc adds one of the runtime's GOMAXPROCS processors while a niced
// builder runs a job, and returns the function that takes it back.
//
// A running goroutine holds a processor even while the kernel leaves its
// niced thread waiting, so without one more the builder would take one of
// the edge's processors and give its CPU to nobody. The processor is lent
// only for the job: an idle origin leaves the edge exactly one processor
// per core (docs/design-notes.md, "The device front").
func lendProc() (giveBack func()) { return procs.Lend(1) }
