package procs

import (
	"runtime"
	"sync"
	"testing"
)

// Loans add and take back exactly their processors, also when many are
// made and given back at once (a lost read-and-set would leave
// GOMAXPROCS off by one or more).
func TestLend(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	a := Lend(2)
	if got := runtime.GOMAXPROCS(0); got != procs+2 {
		t.Fatalf("GOMAXPROCS %d with a loan of 2, want %d", got, procs+2)
	}
	if got := Own(); got != procs {
		t.Fatalf("Own %d with a loan of 2, want %d (the loan is not the program's own)", got, procs)
	}
	a()
	a() // once only
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Fatalf("GOMAXPROCS %d after the loan, want %d", got, procs)
	}
	Lend(0)()
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			back := Lend(1)
			back()
		})
	}
	wg.Wait()
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Fatalf("GOMAXPROCS %d after 32 concurrent loans, want %d", got, procs)
	}
}
