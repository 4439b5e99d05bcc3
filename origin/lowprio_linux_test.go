package origin

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// threadNice reads a thread's nice value from /proc (field 19 of stat).
func threadNice(t *testing.T, tid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) may hold spaces: fields count from its ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	n, err := strconv.Atoi(f[16])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The builder's thread runs at the configured nice, only that thread, and
// the runtime gains a processor for it; 0 changes nothing.
func TestLowPriority(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(procs)
	type res struct {
		tid, nice int
		err       error
	}
	run := func(nice int) res {
		ch := make(chan res)
		go func() {
			err := lowPriority(nice)
			tid := unix.Gettid()
			ch <- res{tid, threadNice(t, tid), err}
			<-ch // stay on the thread until read
		}()
		r := <-ch
		close(ch)
		return r
	}
	// The test itself may run niced (a loaded machine, a CI runner):
	// threads inherit the process's value.
	base := threadNice(t, unix.Gettid())
	if r := run(0); r.err != nil || r.nice != base || runtime.GOMAXPROCS(0) != procs {
		t.Fatalf("nice 0: %+v, want the process's nice %d; GOMAXPROCS %d (was %d)", r, base, runtime.GOMAXPROCS(0), procs)
	}
	r := run(19)
	if r.err != nil || r.nice != 19 {
		t.Fatalf("nice 19: thread %d at nice %d, err %v", r.tid, r.nice, r.err)
	}
	if got := runtime.GOMAXPROCS(0); got != procs+1 {
		t.Fatalf("GOMAXPROCS %d, want %d", got, procs+1)
	}
	if me := threadNice(t, unix.Gettid()); me != base {
		t.Fatalf("the test's own thread at nice %d, was %d", me, base)
	}
}
