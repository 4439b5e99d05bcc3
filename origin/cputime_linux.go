package origin

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU runs fn locked to its OS thread and returns the CPU time that
// thread spent in it: what fn costs whatever else runs on the machine.
// The bundle builder's thread runs at nice 19 (lowprio_linux.go), so under
// contention its wall time would measure the waits the kernel imposes, not
// the work. fn must do its work on the calling goroutine (the delta
// decoders do: zstd with concurrency 1, brotli). LockOSThread nests: a
// thread locked before stays locked.
//
// The clock is the thread's CPU-time clock (CLOCK_THREAD_CPUTIME_ID, the
// scheduler's nanosecond runtime), falling back to getrusage(RUSAGE_THREAD)
// and then to the wall time. getrusage alone is not precise enough on
// every kernel: on a 6.18 kernel in a Firecracker VM it read the same
// ~9 ms decode as 8 or 12 ms (4 ms scheduler ticks) where the clock read
// 9.1 to 11.5 ms.
func threadCPU(fn func() error) (time.Duration, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := time.Now()
	read := threadClock
	before, ok := read()
	if !ok {
		read = threadRusage
		before, ok = read()
	}
	err := fn()
	if !ok {
		return time.Since(start), err
	}
	after, ok := read()
	if !ok || after < before {
		return time.Since(start), err
	}
	return after - before, err
}

func threadClock() (time.Duration, bool) {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}

func threadRusage() (time.Duration, bool) {
	var r unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &r) != nil {
		return 0, false
	}
	return time.Duration(r.Utime.Nano() + r.Stime.Nano()), true
}
