// Package proxy is the edge node: it answers devices (the Capgo protocol of
// @capgo/capacitor-updater: POST /updates, health checks) from an in-memory
// snapshot swapped atomically, and delivers blobs (/b/{sha256}) from the
// tiered cache with Range, strong ETags and immutable caching.
//
// Handlers are written once against small transport-neutral types (a parsed
// request in, a reply description out); h1.go adapts them to fasthttp.
// proxy never imports the origin server, only the published formats
// (origin/snapshot) and the cache.
package proxy
