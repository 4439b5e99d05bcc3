package origin

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/client"
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

// The builder's thread runs at the configured nice, only that thread; 0
// changes nothing. Neither changes the runtime's processors.
func TestLowPriority(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	type res struct {
		tid, nice int
		niced     bool
		err       error
	}
	run := func(nice int) res {
		ch := make(chan res)
		go func() {
			niced, err := lowPriority(nice)
			tid := unix.Gettid()
			ch <- res{tid, threadNice(t, tid), niced, err}
			<-ch // stay on the thread until read
		}()
		r := <-ch
		close(ch)
		return r
	}
	// The test itself may run niced (a loaded machine, a CI runner):
	// threads inherit the process's value.
	base := threadNice(t, unix.Gettid())
	if r := run(0); r.err != nil || r.niced || r.nice != base {
		t.Fatalf("nice 0: %+v, want the process's nice %d, not niced", r, base)
	}
	r := run(19)
	if r.err != nil || !r.niced || r.nice != 19 {
		t.Fatalf("nice 19: thread %d at nice %d (niced %v), err %v", r.tid, r.nice, r.niced, r.err)
	}
	if me := threadNice(t, unix.Gettid()); me != base {
		t.Fatalf("the test's own thread at nice %d, was %d", me, base)
	}
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Fatalf("GOMAXPROCS %d after lowPriority, want %d: a processor is lent per job only", got, procs)
	}
}

// A processor is lent per running job, and each given back once, however
// often giveBack is called.
func TestLendProc(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(procs)
	a := lendProc()
	b := lendProc()
	if got := runtime.GOMAXPROCS(0); got != procs+2 {
		t.Fatalf("two jobs running: GOMAXPROCS %d, want %d", got, procs+2)
	}
	a()
	a()
	if got := runtime.GOMAXPROCS(0); got != procs+1 {
		t.Fatalf("one job running: GOMAXPROCS %d, want %d", got, procs+1)
	}
	b()
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Fatalf("no job running: GOMAXPROCS %d, want %d", got, procs)
	}
}

// A niced builder runs its job with a processor more, and gives it back
// when the job is done: the edge keeps exactly its processors while the
// origin is idle.
func TestNicedBuildLendsProc(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	o, logs := startOriginCfg(t, func(c *config.Origin) { c.BuildNice = 19; c.MaxDeltaBundle = 0 })
	during := make(chan int, 1)
	setBuildHook(o, func(ctx context.Context, app, v string) error {
		select {
		case during <- runtime.GOMAXPROCS(0):
		default:
		}
		return nil
	})
	ctx := context.Background()
	o.client.CreateApp(ctx, lcApp, "")
	if _, err := o.client.UploadBundle(ctx, lcApp, "1.0.0", bytes.NewReader(makeZip(t, map[string]string{"index.html": "x"})), client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := <-during; got != procs+1 {
		t.Fatalf("GOMAXPROCS %d during the niced build, want %d", got, procs+1)
	}
	waitStatus(t, o.client, lcApp, "ready", "1.0.0")
	// The processor is given back right after the job's outcome is recorded.
	waitUntil(t, fmt.Sprintf("GOMAXPROCS back to %d after the build", procs),
		func() bool { return runtime.GOMAXPROCS(0) == procs },
		func() string { return fmt.Sprintf("GOMAXPROCS %d", runtime.GOMAXPROCS(0)) })
	logs.assertNoErrors(t)
}
