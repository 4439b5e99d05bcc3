// Package bench is Updraft's load tester: it simulates a fleet of devices
// running the Capacitor plugin (or the stock expo-updates client: expo.go)
// against an edge (or any server speaking the same protocol), with open-loop arrivals (latency counted from when a
// request was due, so a slow server cannot hide queueing: no coordinated
// omission) or closed-loop connections, verifies every downloaded bundle by
// SHA-256, and reports latency percentiles (HDR histograms), throughput,
// errors by code and time-to-update per device. A user-space link emulator
// (TCP relay with delay and bandwidth) stands in for real networks.
//
// The cohort-fleet scenario (cohortfleet.go) also drives the origin's
// operator API (origin/client): behaviour cohorts computed from the fleet's
// check-ins and events must hold exactly the devices its pattern defines.
//
// bench imports only the published formats and clients; it never reaches
// into the server's internals.
package bench
