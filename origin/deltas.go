package origin

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/updraft-cdn/updraft/origin/delta"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// Delta building runs in the background after an upload: the bundle's
// canonical archive, then verified dcz and dcb deltas from each of the app's
// previous deltaBases bundles. One worker (brotli at quality 11 is CPU-heavy)
// and a bounded queue; progress is visible per bundle in the API. Bundles
// left without a canonical archive (a crash mid-build) are queued again at
// start-up.
const (
	deltaBases   = 3
	deltaQueue   = 64
	deltaWorkers = 1
)

// DeltaStatus is the progress of a bundle's delta build.
type DeltaStatus struct {
	State string `json:"state"` // queued, building, ready, failed
	Done  int    `json:"done"`  // deltas built or dropped so far
	Total int    `json:"total"` // deltas to try
	Error string `json:"error,omitempty"`
}

type deltaJob struct{ app, version string }

type deltaBuilder struct {
	s      *Server
	queue  chan deltaJob
	mu     sync.Mutex
	status map[string]*DeltaStatus // app\x00version
	wg     sync.WaitGroup
}

func newDeltaBuilder(s *Server) *deltaBuilder {
	return &deltaBuilder{s: s, queue: make(chan deltaJob, deltaQueue), status: map[string]*DeltaStatus{}}
}

func (b *deltaBuilder) start(ctx context.Context) {
	for i := 0; i < deltaWorkers; i++ {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-b.queue:
					b.run(ctx, j)
				}
			}
		}()
	}
}

// enqueue schedules a bundle; a full queue is reported, not silent.
func (b *deltaBuilder) enqueue(app, version string) {
	b.set(app, version, func(st *DeltaStatus) { *st = DeltaStatus{State: "queued"} })
	select {
	case b.queue <- deltaJob{app, version}:
	default:
		b.set(app, version, func(st *DeltaStatus) { st.State, st.Error = "failed", "delta queue full; re-upload later" })
		b.s.log.Error("origin: delta queue full", "app", app, "version", version)
	}
}

func (b *deltaBuilder) set(app, version string, fn func(*DeltaStatus)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.status[app+"\x00"+version]
	if st == nil {
		st = &DeltaStatus{}
		b.status[app+"\x00"+version] = st
	}
	fn(st)
}

// Status returns a copy of a bundle's delta progress, if any is known.
func (b *deltaBuilder) Status(app, version string) *DeltaStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	if st := b.status[app+"\x00"+version]; st != nil {
		c := *st
		return &c
	}
	return nil
}

// files reads a bundle's files from its stored zip.
func (b *deltaBuilder) files(bd store.Bundle) ([]delta.File, error) {
	zipData, err := os.ReadFile(b.s.blobs.Path(bd.SHA256))
	if err != nil {
		return nil, fmt.Errorf("read bundle %s: %w", bd.Version, err)
	}
	return delta.ReadZip(bytes.NewReader(zipData), int64(len(zipData)))
}

// canonical returns a bundle's canonical archive, building it from files
// (read from the zip when nil) and storing it when it is missing.
func (b *deltaBuilder) canonical(ctx context.Context, bd store.Bundle, files []delta.File) ([]byte, string, error) {
	if bd.Canonical != "" {
		if data, err := os.ReadFile(b.s.blobs.Path(bd.Canonical)); err == nil && hexSum(data) == bd.Canonical {
			return data, bd.Canonical, nil
		}
	}
	var err error
	if files == nil {
		if files, err = b.files(bd); err != nil {
			return nil, "", err
		}
	}
	data, err := delta.Canonical(files)
	if err != nil {
		return nil, "", fmt.Errorf("canonical %s: %w", bd.Version, err)
	}
	info, err := b.s.blobs.Put(bytes.NewReader(data), 0)
	if err != nil {
		return nil, "", err
	}
	if err := b.s.store.SetCanonical(ctx, bd.AppID, bd.Version, info.SHA256, info.Size); err != nil {
		return nil, "", err
	}
	return data, info.SHA256, nil
}

func hexSum(b []byte) string {
	sum := delta.Sum(b)
	return hex.EncodeToString(sum[:])
}

// manifest stores a bundle's files for the plugin's per-file download.
func (b *deltaBuilder) manifest(ctx context.Context, bd store.Bundle, files []delta.File) error {
	m, err := delta.Manifest(files)
	if err != nil {
		return err
	}
	entries := make([]snapshot.ManifestEntry, len(m))
	for i, f := range m {
		info, err := b.s.blobs.Put(bytes.NewReader(f.Data), 0)
		if err != nil {
			return err
		}
		entries[i] = snapshot.ManifestEntry{Name: f.Name, Hash: f.Hash, Blob: info.SHA256, Size: info.Size}
	}
	if err := b.s.store.SetManifest(ctx, bd.AppID, bd.Version, entries); err != nil {
		return err
	}
	b.s.changedStore()
	return nil
}

// run builds one bundle's manifest, canonical archive and deltas.
func (b *deltaBuilder) run(ctx context.Context, j deltaJob) {
	start := time.Now()
	fail := func(err error) {
		if b.targetDeleted(ctx, j, err) { // lifecycle.go: deleted mid-build is no failure
			return
		}
		b.set(j.app, j.version, func(st *DeltaStatus) { st.State, st.Error = "failed", err.Error() })
		b.s.log.Error("origin: delta build failed", "app", j.app, "version", j.version, "err", err)
	}
	b.set(j.app, j.version, func(st *DeltaStatus) { st.State = "building" })
	bundles, err := b.s.store.ListBundles(ctx, j.app) // newest first
	if err != nil {
		fail(err)
		return
	}
	idx := -1
	for i, bd := range bundles {
		if bd.Version == j.version {
			idx = i
		}
	}
	if idx < 0 {
		fail(fmt.Errorf("bundle %s not found", j.version))
		return
	}
	target := bundles[idx]
	if target.SessionKey != "" {
		// Encrypted end to end: the origin holds ciphertext only; the CLI
		// sent the manifest, and no delta can be built without the key.
		b.set(j.app, j.version, func(st *DeltaStatus) { st.State = "ready" })
		b.s.log.Info("origin: encrypted bundle, no deltas", "app", j.app, "version", j.version)
		return
	}
	var files []delta.File // read once, for the manifest and the canonical archive
	if target.ManifestFiles == 0 || target.Canonical == "" {
		if files, err = b.files(target); err != nil {
			fail(err)
			return
		}
	}
	if target.ManifestFiles == 0 {
		if err := b.manifest(ctx, target, files); err != nil {
			fail(err)
			return
		}
	}
	targetData, _, err := b.canonical(ctx, target, files)
	if err != nil {
		fail(err)
		return
	}
	b.s.changedStore()
	var bases []store.Bundle
	for _, bd := range bundles[idx+1:] {
		if bd.SessionKey == "" && len(bases) < deltaBases {
			bases = append(bases, bd)
		}
	}
	b.set(j.app, j.version, func(st *DeltaStatus) { st.Total = 2 * len(bases) })
	built := 0
	for _, base := range bases {
		baseData, baseSHA, err := b.canonical(ctx, base, nil)
		if b.baseDeleted(ctx, j, base.Version, err) {
			continue
		}
		if err != nil {
			fail(err)
			return
		}
		dczSize := -1
		for _, enc := range []string{delta.DCZ, delta.DCB} {
			if ctx.Err() != nil {
				return
			}
			// dcz is built first and fast; when it is nowhere near useful
			// (unrelated or incompressible bundles), brotli at quality 11
			// would spend seconds to be dropped too.
			if enc == delta.DCB && dczSize >= 0 && int64(dczSize) >= target.Size*3/4 {
				b.set(j.app, j.version, func(st *DeltaStatus) { st.Done++ })
				continue
			}
			d, err := delta.BuildVerified(baseData, targetData, enc)
			if err != nil {
				fail(err)
				return
			}
			if enc == delta.DCZ {
				dczSize = len(d)
			}
			// A delta must be worth it: under half of the full download.
			if int64(len(d)) < target.Size/2 {
				info, err := b.s.blobs.Put(bytes.NewReader(d), 0)
				if err != nil {
					fail(err)
					return
				}
				// Checked: no delta row outlives a bundle deleted meanwhile.
				err = b.s.store.AddDeltaChecked(ctx, j.app, j.version, snapshot.Delta{From: base.Version, Base: baseSHA,
					Encoding: enc, SHA256: info.SHA256, Size: info.Size})
				if b.baseDeleted(ctx, j, base.Version, err) {
					break
				}
				if err != nil {
					fail(err)
					return
				}
				built++
				b.s.log.Info("origin: delta ready", "app", j.app, "from", base.Version, "to", j.version, "encoding", enc,
					"bytes", info.Size, "full", target.Size)
				b.s.changedStore()
			}
			b.set(j.app, j.version, func(st *DeltaStatus) { st.Done++ })
		}
	}
	b.set(j.app, j.version, func(st *DeltaStatus) { st.State = "ready" })
	b.s.log.Info("origin: deltas built", "app", j.app, "version", j.version, "deltas", built, "took", time.Since(start).Round(time.Millisecond))
}

// resume queues bundles whose canonical archive was never recorded.
func (b *deltaBuilder) resume(ctx context.Context) error {
	apps, err := b.s.store.ListApps(ctx)
	if err != nil {
		return err
	}
	for _, a := range apps {
		bs, err := b.s.store.ListBundles(ctx, a.ID)
		if err != nil {
			return err
		}
		for i := len(bs) - 1; i >= 0; i-- { // oldest first
			if bs[i].Canonical == "" && bs[i].SessionKey == "" {
				b.enqueue(a.ID, bs[i].Version)
			}
		}
	}
	return nil
}
