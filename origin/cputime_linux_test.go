package origin

import (
	"crypto/sha256"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU counts the CPU the work used, not the time it waited: a sleep
// costs (almost) nothing, a busy loop costs at most its wall time. A
// thread locked before stays locked after (the builder's, at nice 19).
func TestThreadCPU(t *testing.T) {
	if _, ok := threadClock(); !ok {
		t.Error("CLOCK_THREAD_CPUTIME_ID unreadable")
	}
	if _, ok := threadRusage(); !ok {
		t.Error("getrusage(RUSAGE_THREAD) unreadable")
	}
	slept, err := threadCPU(func() error { time.Sleep(100 * time.Millisecond); return nil })
	if err != nil || slept < 0 || slept > 20*time.Millisecond {
		t.Fatalf("100 ms asleep measured as %s of CPU (%v)", slept, err)
	}
	start := time.Now()
	var busy time.Duration
	busy, err = threadCPU(func() error {
		buf := make([]byte, 64<<10)
		for time.Since(start) < 30*time.Millisecond {
			sum := sha256.Sum256(buf)
			buf[0] = sum[0]
		}
		return nil
	})
	wall := time.Since(start)
	if err != nil || busy <= 0 || busy > wall+5*time.Millisecond {
		t.Fatalf("busy for %s of wall time, measured as %s of CPU (%v)", wall, busy, err)
	}
	t.Logf("asleep: %s of CPU; busy: %s of CPU in %s", slept, busy, wall)

	done := make(chan int)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		tid := unix.Gettid()
		threadCPU(func() error { return nil })
		runtime.Gosched()
		time.Sleep(time.Millisecond)
		if unix.Gettid() != tid {
			tid = -1
		}
		done <- tid
	}()
	if <-done < 0 {
		t.Fatal("threadCPU unlocked a thread locked before it")
	}
}
