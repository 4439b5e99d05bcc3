// Package snapshot owns the replicated snapshot: the immutable value an edge
// holds in memory to answer update checks without asking anyone, and the
// resolver, a pure function from (snapshot, device request) to a decision.
//
// The origin builds snapshots from its store; edges receive them. A Snapshot is
// never modified after Index is called: a new revision is a new value, swapped
// in atomically by its holder. snapshot imports only the standard library.
package snapshot
