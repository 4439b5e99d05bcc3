package origin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/updraft-cdn/updraft/origin/blob"
	"github.com/updraft-cdn/updraft/origin/delta"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// Bundle builds run in the background after an upload: the bundle's
// per-file manifest and canonical archive (one streaming read of its zip),
// then verified dcz and dcb deltas from each of the app's previous
// deltaBases bundles. Each build is a durable job (store/jobs.go), queued
// in the transaction that records the bundle: a worker claims it, a
// failure is retried with capped exponential backoff up to buildAttempts
// claims, then the job is failed with its error (bundle list shows it);
// jobs a crash left running are queued again at start-up. One worker
// (brotli at quality 11 is CPU-heavy); progress is visible per bundle.
//
// Memory is bounded whatever the bundle's size: files stream from the zip
// into the canonical archive and the manifest blobs; the target streams
// from its canonical archive into the encoder and the delta to its blob;
// only the base is held (as the dictionary) with the encoder's window.
// Deltas are built only between bundles whose canonical archives are at
// most MaxDeltaBundle, dcb only up to dcbMaxCanonical (brotli's compound
// dictionary costs about five times its size).
const (
	deltaBases      = 3
	deltaWorkers    = 1
	dcbMaxCanonical = 32 << 20
	// bigBuild: above this (base plus target), memory is handed back to
	// the OS after each delta instead of waiting for the GC's pacing.
	bigBuild = 64 << 20
)

// Retries of failed builds (variables: tests shorten them).
var (
	buildAttempts   = 5
	buildBackoff    = 5 * time.Second
	buildMaxBackoff = 10 * time.Minute
)

type deltaJob struct{ app, version string }

type buildProgress struct{ done, total int }

// BuildHook, when set before Open, runs at the start of every bundle build
// with the build's context; an error fails that attempt. For tests (a
// build held until the test lets it go, or killed mid-build).
var BuildHook func(ctx context.Context, app, version string) error

type deltaBuilder struct {
	s        *Server
	wake     chan struct{}
	mu       sync.Mutex
	progress map[string]*buildProgress // app\x00version, since start-up
	wg       sync.WaitGroup
	hook     atomic.Pointer[func(ctx context.Context, app, version string) error]
}

func newDeltaBuilder(s *Server) *deltaBuilder {
	b := &deltaBuilder{s: s, wake: make(chan struct{}, 1), progress: map[string]*buildProgress{}}
	if BuildHook != nil {
		h := BuildHook
		b.hook.Store(&h)
	}
	return b
}

// start resumes the jobs a stop or crash left (before any worker claims
// one), then starts the workers.
func (b *deltaBuilder) start(ctx context.Context) {
	runningBefore := time.Now()
	if b.s.store.Shared() { // other origins' running jobs are alive; a dead one's go stale
		runningBefore = runningBefore.Add(-store.JobStaleAfter)
	}
	requeued, failed, added, err := b.s.store.ResumeJobs(ctx, buildAttempts, "interrupted: the origin stopped during the build", runningBefore)
	switch {
	case err != nil:
		b.s.log.Error("origin: resume bundle builds", "err", err)
	case requeued+failed+added > 0:
		b.s.log.Info("origin: bundle builds resumed", "requeued", requeued, "given_up", failed, "added", added)
	}
	for i := 0; i < deltaWorkers; i++ {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			niced, err := lowPriority(b.s.cfg.BuildNice)
			if err != nil {
				b.s.log.Warn("origin: bundle builds at normal priority", "nice", b.s.cfg.BuildNice, "err", err)
			}
			b.work(ctx, niced)
		}()
	}
}

// enqueue wakes the workers: the job was queued with the bundle's row.
func (b *deltaBuilder) enqueue(app, version string) { b.notify() }

func (b *deltaBuilder) notify() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// work claims and runs jobs until ctx is done, sleeping until the next
// job is due (or a minute, or a wake-up) when none is runnable.
func (b *deltaBuilder) work(ctx context.Context, niced bool) {
	for ctx.Err() == nil {
		j, ok, err := b.s.store.ClaimJob(ctx, store.JobBuild, time.Now())
		if err != nil {
			if ctx.Err() == nil {
				b.s.log.Error("origin: claim a bundle build", "err", err)
			}
			b.sleep(ctx, 5*time.Second)
			continue
		}
		if ok {
			giveBack := func() {}
			if niced {
				giveBack = lendProc() // while the job runs (lowprio_linux.go)
			}
			b.runJob(ctx, j)
			giveBack()
			continue
		}
		wait := time.Minute
		if at, ok, err := b.s.store.NextJobAt(ctx, store.JobBuild); err == nil && ok {
			wait = min(wait, max(time.Until(at), 10*time.Millisecond))
		}
		b.sleep(ctx, wait)
	}
}

func (b *deltaBuilder) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-b.wake:
	case <-t.C:
	}
}

// runJob runs a claimed job and records its outcome.
func (b *deltaBuilder) runJob(ctx context.Context, j store.Job) {
	b.setProgress(j.AppID, j.Version, func(p *buildProgress) { *p = buildProgress{} })
	// While it builds, the job is touched: other origins sharing the store
	// see it alive and leave it alone (a job untouched for JobStaleAfter
	// is claimed again).
	built := make(chan struct{})
	go func() {
		t := time.NewTicker(store.JobStaleAfter / 6)
		defer t.Stop()
		for {
			select {
			case <-built:
				return
			case <-t.C:
				if err := b.s.store.TouchJob(context.WithoutCancel(ctx), j); err != nil {
					b.s.log.Warn("origin: touch a running build", "app", j.AppID, "version", j.Version, "err", err)
				}
			}
		}
	}()
	err := b.run(ctx, deltaJob{j.AppID, j.Version})
	close(built)
	bg := context.WithoutCancel(ctx)
	var serr error
	switch {
	case err == nil:
		serr = b.s.store.FinishJob(bg, j)
	case ctx.Err() != nil:
		// Stopping: back to the queue, this attempt not counted.
		serr = b.s.store.ReleaseJob(bg, j)
		b.s.log.Info("origin: bundle build interrupted; queued again", "app", j.AppID, "version", j.Version)
	case errors.Is(err, errBundleGone):
		serr = b.s.store.DropJob(bg, j.ID)
	case delta.IsBundleError(err) || j.Attempts >= buildAttempts:
		serr = b.s.store.FailJob(bg, j, err.Error())
		b.s.log.Error("origin: bundle build failed", "app", j.AppID, "version", j.Version, "attempts", j.Attempts, "err", err)
	default:
		at := time.Now().Add(backoff(j.Attempts))
		serr = b.s.store.RetryJob(bg, j, err.Error(), at)
		b.s.log.Warn("origin: bundle build failed; retrying", "app", j.AppID, "version", j.Version, "attempt", j.Attempts,
			"of", buildAttempts, "retry_at", at.Format(time.RFC3339), "err", err)
	}
	if serr != nil {
		b.s.log.Error("origin: record a bundle build's outcome", "app", j.AppID, "version", j.Version, "err", serr)
	}
}

// backoff is the wait after the attempts-th failed attempt: buildBackoff,
// doubling, at most buildMaxBackoff.
func backoff(attempts int) time.Duration {
	d := buildBackoff
	for i := 1; i < attempts && d < buildMaxBackoff; i++ {
		d *= 2
	}
	return min(d, buildMaxBackoff)
}

func (b *deltaBuilder) setProgress(app, version string, fn func(*buildProgress)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.progress[app+"\x00"+version]
	if p == nil {
		p = &buildProgress{}
		b.progress[app+"\x00"+version] = p
	}
	fn(p)
}

// statusOf is a job's status as the API shows it, with the progress of
// the last run since start-up.
func (b *deltaBuilder) statusOf(j store.Job) *DeltaStatus {
	st := &DeltaStatus{Attempts: j.Attempts}
	switch j.State {
	case store.JobQueued:
		st.State = "queued"
		return st
	case store.JobRetry:
		st.State = "queued"
		st.Error = fmt.Sprintf("attempt %d of %d failed, next at %s: %s", j.Attempts, buildAttempts, j.RunAfter.UTC().Format(time.RFC3339), j.LastError)
		return st
	case store.JobRunning:
		st.State = "building"
	case store.JobDone:
		st.State = "ready"
	default:
		st.State, st.Error = "failed", j.LastError
	}
	b.mu.Lock()
	if p := b.progress[j.AppID+"\x00"+j.Version]; p != nil {
		st.Done, st.Total = p.done, p.total
	}
	b.mu.Unlock()
	return st
}

// Status returns a bundle's build status (nil: it has no build job, e.g.
// encrypted bundles).
func (b *deltaBuilder) Status(app, version string) *DeltaStatus {
	j, err := b.s.store.GetJob(context.Background(), store.JobBuild, app, version)
	if err != nil {
		return nil
	}
	return b.statusOf(j)
}

// statuses returns the build status of an app's bundles by version.
func (b *deltaBuilder) statuses(ctx context.Context, app string) (map[string]*DeltaStatus, error) {
	jobs, err := b.s.store.ListJobs(ctx, store.JobBuild, app)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*DeltaStatus, len(jobs))
	for v, j := range jobs {
		out[v] = b.statusOf(j)
	}
	return out, nil
}

// errBundleGone: the job's bundle was deleted; the job is dropped.
var errBundleGone = errors.New("bundle deleted")

// failed is a build's error, unless its bundle was deleted meanwhile.
func (b *deltaBuilder) failed(ctx context.Context, j deltaJob, err error) error {
	if b.targetDeleted(ctx, j, err) { // lifecycle.go: deleted mid-build is no failure
		return errBundleGone
	}
	return err
}

// run builds one bundle's manifest, canonical archive and deltas.
func (b *deltaBuilder) run(ctx context.Context, j deltaJob) error {
	start := time.Now()
	if h := b.hook.Load(); h != nil {
		if err := (*h)(ctx, j.app, j.version); err != nil {
			return b.failed(ctx, j, err)
		}
	}
	bundles, err := b.s.store.ListBundles(ctx, j.app) // newest first
	if err != nil {
		return b.failed(ctx, j, err)
	}
	idx := -1
	for i, bd := range bundles {
		if bd.Version == j.version {
			idx = i
		}
	}
	if idx < 0 {
		return b.failed(ctx, j, fmt.Errorf("bundle %s not found", j.version))
	}
	target := bundles[idx]
	if target.SessionKey != "" {
		// Encrypted end to end: the origin holds ciphertext only; the CLI
		// sent the manifest, and no delta can be built without the key.
		b.s.log.Info("origin: encrypted bundle, no deltas", "app", j.app, "version", j.version)
		return nil
	}
	if target.Canonical, target.CanonicalSize, err = b.prepare(ctx, target, target.ManifestFiles == 0); err != nil {
		return b.failed(ctx, j, err)
	}
	b.s.changedStore()
	var bases []store.Bundle
	for _, bd := range bundles[idx+1:] {
		if bd.SessionKey == "" && len(bases) < deltaBases {
			bases = append(bases, bd)
		}
	}
	b.setProgress(j.app, j.version, func(p *buildProgress) { p.total = 2 * len(bases) })
	skip := func(n int) { b.setProgress(j.app, j.version, func(p *buildProgress) { p.done += n }) }
	maxDelta := int64(b.s.cfg.MaxDeltaBundle)
	built := 0
	for _, base := range bases {
		if target.CanonicalSize > maxDelta {
			b.s.log.Info("origin: bundle larger than --max-delta-bundle; no deltas", "app", j.app, "version", j.version,
				"canonical_bytes", target.CanonicalSize, "max_delta_bundle", b.s.cfg.MaxDeltaBundle.String())
			skip(2 * len(bases))
			break
		}
		baseSHA, baseSize, err := b.prepare(ctx, base, false)
		if b.baseDeleted(ctx, j, base.Version, err) {
			skip(2)
			continue
		}
		if err != nil && delta.IsBundleError(err) {
			// A base that cannot be built (uploaded before the upload
			// check refused what the builder refuses) is skipped: it
			// must not fail the builds of every later bundle.
			b.s.log.Warn("origin: delta base cannot be built; skipped", "app", j.app, "version", j.version, "base", base.Version, "err", err)
			skip(2)
			continue
		}
		if err != nil {
			return b.failed(ctx, j, err)
		}
		if baseSize > maxDelta {
			skip(2)
			continue
		}
		n, err := b.deltasFrom(ctx, j, target, base.Version, baseSHA, baseSize)
		built += n
		if b.baseDeleted(ctx, j, base.Version, err) {
			continue
		}
		if err != nil {
			return b.failed(ctx, j, err)
		}
	}
	b.s.log.Info("origin: deltas built", "app", j.app, "version", j.version, "deltas", built, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// deltasFrom builds, verifies and records the dcz and dcb deltas from one
// base to target. It reports how many it recorded.
func (b *deltaBuilder) deltasFrom(ctx context.Context, j deltaJob, target store.Bundle, baseVersion, baseSHA string, baseSize int64) (int, error) {
	done := func() { b.setProgress(j.app, j.version, func(p *buildProgress) { p.done++ }) }
	big := baseSize+target.CanonicalSize > bigBuild
	if big {
		debug.FreeOSMemory() // the base and the encoder's window come next
	}
	baseData, err := b.readBlob(baseSHA)
	if err != nil {
		return 0, fmt.Errorf("base %s: %w", baseVersion, err)
	}
	var want [32]byte
	if _, err := hex.Decode(want[:], []byte(target.Canonical)); err != nil {
		return 0, fmt.Errorf("canonical archive of %s: %w", target.Version, err)
	}
	built := 0
	dczTooLarge := false
	for _, enc := range []string{delta.DCZ, delta.DCB} {
		if err := ctx.Err(); err != nil {
			return built, err
		}
		// dcz is built first and fast; when it is nowhere near useful
		// (unrelated or incompressible bundles), brotli at quality 11
		// would spend seconds to be dropped too. Brotli's dictionary
		// costs about five times its size: large bundles get dcz only.
		if enc == delta.DCB && (dczTooLarge || baseSize > dcbMaxCanonical || target.CanonicalSize > dcbMaxCanonical) {
			done()
			continue
		}
		// A delta must be worth it: under half of the full download. dcz
		// stops at three quarters (the rule above needs to know).
		limit := target.Size / 2
		if enc == delta.DCZ {
			limit = target.Size * 3 / 4
		}
		info, decode, ok, err := b.buildDelta(ctx, baseData, target, want, enc, limit, big)
		if err != nil {
			return built, err
		}
		if !ok {
			dczTooLarge = dczTooLarge || (enc == delta.DCZ && info.Size < 0)
			done()
			continue
		}
		if info.Size < target.Size/2 {
			// Checked: no delta row outlives a bundle deleted meanwhile.
			err = b.s.store.AddDeltaChecked(ctx, j.app, j.version, snapshot.Delta{From: baseVersion, Base: baseSHA,
				Encoding: enc, SHA256: info.SHA256, Size: info.Size, DecodeNs: max(decode.Nanoseconds(), 1)})
			if err != nil {
				return built, err
			}
			built++
			b.s.log.Info("origin: delta ready", "app", j.app, "from", baseVersion, "to", j.version, "encoding", enc,
				"bytes", info.Size, "full", target.Size, "decode_cpu", decode.Round(time.Microsecond))
			b.s.changedStore()
		}
		done()
	}
	return built, nil
}

// errDeltaTooLarge stops a delta that is not worth finishing.
var errDeltaTooLarge = errors.New("delta larger than worth keeping")

// buildDelta streams target's canonical archive through the encoder into
// a blob, gives up once the delta exceeds limit bytes (ok false, size -1),
// drops it if it is not under half of the zip (ok false), decodes
// the result against the base to check it rebuilds target byte for byte,
// and commits it. It returns the CPU time of that decode (threadCPU: the
// builder's thread may wait behind everything else at nice 19), which
// edges weigh against the delta's size (snapshot.Bundle.DeltaFrom).
//
// With big set, memory is handed back to the OS after encoding and after
// verifying: the encoder's window (up to twice the base) is garbage by
// then, and the GC, paced on a heap that held base and window, would let
// the decoder's window come on top of it.
func (b *deltaBuilder) buildDelta(ctx context.Context, base []byte, target store.Bundle, want [32]byte, enc string, limit int64, big bool) (blob.Info, time.Duration, bool, error) {
	if big {
		defer debug.FreeOSMemory()
	}
	tf, _, err := b.s.blobs.Open(target.Canonical)
	if err != nil {
		return blob.Info{}, 0, false, err
	}
	defer tf.Close()
	w, err := b.s.blobs.Create(0)
	if err != nil {
		return blob.Info{}, 0, false, err
	}
	defer w.Abort() // no-op after Commit
	lw := &limitWriter{w: w, n: limit}
	err = delta.BuildTo(lw, base, delta.ContextReader(ctx, bufio.NewReaderSize(tf, 256<<10)), target.CanonicalSize, enc)
	if big {
		debug.FreeOSMemory()
	}
	if errors.Is(err, errDeltaTooLarge) {
		return blob.Info{Size: -1}, 0, false, nil // over limit
	}
	if err != nil {
		return blob.Info{}, 0, false, fmt.Errorf("%s: %w", enc, err)
	}
	if w.Size() >= target.Size/2 {
		return blob.Info{Size: w.Size()}, 0, false, nil
	}
	df, err := os.Open(w.TempPath())
	if err != nil {
		return blob.Info{}, 0, false, err
	}
	decode, err := threadCPU(func() error {
		return delta.Verify(base, delta.ContextReader(ctx, bufio.NewReaderSize(df, 256<<10)), target.CanonicalSize, want)
	})
	df.Close()
	if err != nil {
		return blob.Info{}, 0, false, err
	}
	info, err := w.Commit("")
	return info, decode, err == nil, err
}

type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, errDeltaTooLarge
	}
	n, err := l.w.Write(p)
	l.n -= int64(n)
	return n, err
}

// readBlob reads a stored blob (a delta base: the encoder needs it whole),
// checking its hash.
func (b *deltaBuilder) readBlob(sha string) ([]byte, error) {
	r, info, err := b.s.blobs.Open(sha)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data := make([]byte, info.Size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("blob %s: %w", sha, err)
	}
	if hexSum(data) != sha {
		return nil, fmt.Errorf("blob %s: content does not match its hash", sha)
	}
	return data, nil
}

func hexSum(b []byte) string {
	sum := delta.Sum(b)
	return hex.EncodeToString(sum[:])
}

// prepare makes sure a bundle has its canonical archive (rebuilt if its
// blob is missing) and, when manifest is set, its manifest, in one
// streaming read of its zip. It returns the canonical archive's SHA-256
// and size.
func (b *deltaBuilder) prepare(ctx context.Context, bd store.Bundle, manifest bool) (string, int64, error) {
	haveCanonical := false
	if bd.Canonical != "" {
		if info, err := b.s.blobs.Stat(bd.Canonical); err == nil && info.Size == bd.CanonicalSize {
			haveCanonical = true
		}
	}
	if haveCanonical && !manifest {
		return bd.Canonical, bd.CanonicalSize, nil
	}
	f, fi, err := b.s.blobs.Open(bd.SHA256)
	if err != nil {
		return "", 0, fmt.Errorf("read bundle %s: %w", bd.Version, err)
	}
	defer f.Close()
	z, err := delta.OpenZip(f, fi.Size, zipLimits(b.s.cfg))
	if err != nil {
		return "", 0, fmt.Errorf("bundle %s: %w", bd.Version, err)
	}
	var cw *blob.Writer
	var tw *delta.CanonicalWriter
	if !haveCanonical {
		if cw, err = b.s.blobs.Create(delta.MaxCanonical + 128<<20); err != nil {
			return "", 0, err
		}
		defer cw.Abort() // no-op after Commit
		tw = delta.NewCanonicalWriter(cw)
	}
	var entries []snapshot.ManifestEntry
	for _, e := range z.Files {
		if err := ctx.Err(); err != nil {
			return "", 0, err
		}
		var err error
		if e.Size <= delta.StreamMin {
			err = b.smallFile(z, e, tw, manifest, &entries)
		} else {
			err = b.largeFile(ctx, z, e, tw, manifest, &entries)
		}
		if err != nil {
			return "", 0, fmt.Errorf("bundle %s: %w", bd.Version, err)
		}
	}
	if manifest && len(entries) > 0 {
		if err := b.s.store.SetManifest(ctx, bd.AppID, bd.Version, entries); err != nil {
			return "", 0, err
		}
		b.s.changedStore()
	}
	if haveCanonical {
		return bd.Canonical, bd.CanonicalSize, nil
	}
	if err := tw.Close(); err != nil {
		return "", 0, err
	}
	info, err := cw.Commit("")
	if err != nil {
		return "", 0, err
	}
	if err := b.s.store.SetCanonical(ctx, bd.AppID, bd.Version, info.SHA256, info.Size); err != nil {
		return "", 0, err
	}
	return info.SHA256, info.Size, nil
}

// smallFile adds a file of at most delta.StreamMin bytes, read into memory
// once, to the canonical archive (tw, unless nil) and the manifest.
func (b *deltaBuilder) smallFile(z *delta.Zip, e delta.Entry, tw *delta.CanonicalWriter, manifest bool, entries *[]snapshot.ManifestEntry) error {
	data, err := z.ReadAll(e)
	if err != nil {
		return err
	}
	if tw != nil {
		if err := tw.Add(e.Path, int64(len(data)), bytes.NewReader(data)); err != nil {
			return err
		}
	}
	if !manifest || len(data) == 0 {
		return nil
	}
	m, err := delta.ManifestOf(delta.File{Path: e.Path, Data: data})
	if err != nil {
		return err
	}
	info, err := b.s.blobs.Put(bytes.NewReader(m.Data), 0)
	if err != nil {
		return err
	}
	*entries = append(*entries, snapshot.ManifestEntry{Name: m.Name, Hash: m.Hash, Blob: info.SHA256, Size: info.Size})
	return nil
}

// largeFile streams a larger file from the zip into the canonical archive
// (tw, unless nil) and, with manifest, into its manifest blobs (raw and,
// when it pays, brotli at delta.StreamQuality), never holding it.
func (b *deltaBuilder) largeFile(ctx context.Context, z *delta.Zip, e delta.Entry, tw *delta.CanonicalWriter, manifest bool, entries *[]snapshot.ManifestEntry) error {
	rc, err := z.Open(e)
	if err != nil {
		return err
	}
	defer rc.Close()
	src := delta.ContextReader(ctx, rc)
	var tarW io.Writer = io.Discard
	if tw != nil {
		if tarW, err = tw.Begin(e.Path, e.Size); err != nil {
			return err
		}
	}
	if !manifest {
		n, err := io.Copy(tarW, src)
		if err == nil && n != e.Size {
			err = fmt.Errorf("%s: %d bytes, want %d", e.Path, n, e.Size)
		}
		return err
	}
	raw, err := b.s.blobs.Create(0)
	if err != nil {
		return err
	}
	defer raw.Abort()
	comp, err := b.s.blobs.Create(0)
	if err != nil {
		return err
	}
	defer comp.Abort()
	hash, useComp, err := delta.ManifestStream(io.TeeReader(src, tarW), raw, comp)
	if err != nil {
		return err
	}
	if raw.Size() != e.Size {
		return fmt.Errorf("%s: %d bytes, want %d", e.Path, raw.Size(), e.Size)
	}
	name, w := e.Path, raw
	if useComp {
		name, w = e.Path+".br", comp
	}
	info, err := w.Commit("")
	if err != nil {
		return err
	}
	*entries = append(*entries, snapshot.ManifestEntry{Name: name, Hash: hash, Blob: info.SHA256, Size: info.Size})
	return nil
}
