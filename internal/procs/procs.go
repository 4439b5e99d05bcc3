// Package procs lends the Go runtime processors (GOMAXPROCS) to threads
// that hold one without using the CPU all the time: a bundle builder
// whose thread is niced (the kernel leaves it waiting while anything else
// runs), an event loop of the device front blocked in epoll_wait. Without
// the loan, such a thread would take one of the processors the rest of the
// program counts on.
//
// Every change of GOMAXPROCS in the program goes through Lend, under one
// lock: a read-and-set of GOMAXPROCS beside another loses one of them.
package procs

import (
	"runtime"
	"sync"
)

var (
	mu   sync.Mutex
	lent int // processors lent and not yet given back
)

// Lend adds n processors to GOMAXPROCS and returns the function that takes
// them back (once; later calls do nothing). GOMAXPROCS never goes under 1.
func Lend(n int) (giveBack func()) {
	if n <= 0 {
		return func() {}
	}
	mu.Lock()
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + n)
	lent += n
	mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			mu.Lock()
			runtime.GOMAXPROCS(max(1, runtime.GOMAXPROCS(0)-n))
			lent -= n
			mu.Unlock()
		})
	}
}

// Own returns the processors the program has of its own: GOMAXPROCS less
// the loans (at least 1). What is sized "one per processor" is sized by it,
// so that a loan (a build job, another front's loops) does not grow it.
func Own() int {
	mu.Lock()
	defer mu.Unlock()
	return max(1, runtime.GOMAXPROCS(0)-lent)
}
