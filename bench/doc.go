// Package bench is Updraft's load tester: it simulates a fleet of devices
// running the Capacitor plugin (or the stock expo-updates client: expo.go)
// against an edge (or any server speaking the same protocol), with open-loop arrivals (latency counted from when a
// request was due, so a slow server cannot hide queueing: no coordinated
// omission) or closed-loop connections, verifies every downloaded bundle by
// SHA-256, and reports latency percentiles (HDR histograms), throughput,
// errors by code and time-to-update per device. A user-space link emulator
// (TCP relay with delay and bandwidth) stands in for real networks.
//
// bench imports only the published formats and clients; it never reaches
// into the server's internals.
package bench
