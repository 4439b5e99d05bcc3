// Package origin is the only writer of Updraft's state: it serves the
// operator API (apps, bundles, channels) behind an API key, stores bundles in
// the content-addressed blob store and metadata in the store, and publishes a
// signed snapshot after every committed change. Edges replicate from it:
// GET /v1/snapshot (long-poll) and GET /v1/blobs/{sha256}, with an edge key.
package origin

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/blob"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// publishInterval bounds how often snapshots are rebuilt: changes arriving
// closer together are coalesced into one revision, published at most this
// long after the first of them.
const publishInterval = 50 * time.Millisecond

// Server is the origin. Create it with Open, serve Handler, Close at the end.
type Server struct {
	cfg   config.Origin
	log   *slog.Logger
	store *store.Store
	blobs blob.Store // files in DATA/blobs, or a bucket (--blobs, blobstore.go)
	// signKey is the snapshot signing key; swapped by a rotation (keys.go).
	signKey atomic.Pointer[ed25519.PrivateKey]
	// routes are the patterns Handler registered behind the API key, and
	// the OpenAPI document's own (openapi_test.go checks them against it).
	routes []string
	// routeAccess is the access each route needs (scopes.go), by pattern.
	routeAccess map[string]access

	keys atomic.Pointer[[]keyHash] // accepted API keys; replaced by a rotation (keys.go)
	// keysMu orders loadKeys: a reload that read the store before a key was
	// created (one on another origin's change notification) must not store
	// its list after the one the creation made.
	keysMu sync.Mutex
	shards *overrideShards
	deltas *deltaBuilder
	gc     *blobGC // bundle deletions and blob garbage collection
	// devicePub bounds and coalesces devices' own channel changes (devicechannel.go).
	devicePub *devicePublisher
	// previewKick wakes the preview sweeper (previews.go).
	previewKick chan struct{}

	events *store.EventStore // device events and aggregates (DATA/events.db)
	// devCursorKey signs device list cursors (devices.go).
	devCursorKey atomic.Pointer[[]byte]
	guard        *rolloutGuard
	webhooks     *webhookSender // webhooks.go
	metrics      *originMetrics
	bgDone       sync.WaitGroup // guard and pruning

	publishMu   sync.Mutex
	current     atomic.Pointer[Published]
	changed     chan struct{} // closed and replaced at every publish
	subscribers []func(*snapshot.Snapshot)
	trigger     chan struct{}
	stop        context.CancelFunc
	done        chan struct{}

	// closing is closed by StopLongPolls (at shutdown): held snapshot
	// long-polls answer at once.
	closing     chan struct{}
	closingOnce sync.Once
	lastIssued  int64                     // Unix ms of the last signed snapshot (under publishMu)
	heartbeat   atomic.Pointer[heartbeat] // latest signed heartbeat (replicate.go)
	// adoptionCache keeps slow adoption results (adoption.go).
	adoptionCache adoptionCaches
}

// Published is a snapshot as edges receive it.
type Published struct {
	Snap *snapshot.Snapshot
	Wire []byte // signed encoding
}

// Open opens the data folder (creating it on first start), the store and the
// blob store, makes sure the keys exist (first start: the admin API key in
// DATA/api-key and an edge key in DATA/edge-key, mode 0600, only their hashes
// stored; an Ed25519 snapshot signing key in DATA/origin-key), and publishes
// the first snapshot.
func Open(ctx context.Context, cfg config.Origin, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("origin: data folder: %w", err)
	}
	if cfg.JobStaleAfter > 0 {
		store.JobStaleAfter = cfg.JobStaleAfter
	}
	st, err := store.OpenURL(ctx, cfg.Store, filepath.Join(cfg.DataDir, "meta.db"))
	if err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	s := &Server{cfg: cfg, log: log, store: st, changed: make(chan struct{}), trigger: make(chan struct{}, 1), done: make(chan struct{}),
		closing: make(chan struct{}), metrics: newOriginMetrics(), previewKick: make(chan struct{}, 1)}
	s.shards = newOverrideShards(s)
	s.deltas = newDeltaBuilder(s)
	s.devicePub = newDevicePublisher(s)
	s.guard = newRolloutGuard(s)
	s.gc = newBlobGC(s)
	s.webhooks = newWebhookSender(s)
	fail := func(err error) (*Server, error) {
		st.Close()
		if s.events != nil {
			s.events.Close()
		}
		return nil, err
	}
	if s.events, err = store.OpenEventsURL(ctx, cfg.Store, filepath.Join(cfg.DataDir, "events.db")); err == nil {
		s.events.SetDeviceLog(!cfg.NoDeviceLog)
	} else {
		return fail(fmt.Errorf("origin: %w", err))
	}
	if s.blobs, err = openBlobs(ctx, cfg); err != nil {
		return fail(err)
	}
	signKey, err := s.loadSigningKey(ctx) // cluster.go: shared through the store by several origins
	if err != nil {
		return fail(err)
	}
	s.signKey.Store(&signKey)
	if err := s.ensureKey(ctx, config.APIKeyFile(cfg.DataDir), store.FileAdminKey, store.ScopeAdmin); err != nil {
		return fail(err)
	}
	if err := s.ensureKey(ctx, config.EdgeKeyFile(cfg.DataDir), store.FileEdgeKey, store.ScopeEdge); err != nil {
		return fail(err)
	}
	if err := s.loadKeys(ctx); err != nil {
		return fail(err)
	}
	if err := s.publish(ctx); err != nil {
		return fail(err)
	}
	pctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	go s.publisher(pctx)
	// The guard and retention run on one origin at a time (cluster.go);
	// every origin builds bundles, claiming jobs from the store.
	s.bgDone.Add(6)
	go func() { defer s.bgDone.Done(); s.exclusive(pctx, "guard", s.guard.run) }()
	go func() { defer s.bgDone.Done(); s.exclusive(pctx, "preview-expiry", s.sweepPreviews) }()
	// Every origin sends webhooks: each delivery is claimed by one (webhooks.go).
	s.store.OnAudit(s.webhooks.wake)
	go func() { defer s.bgDone.Done(); s.webhooks.run(pctx) }()
	go func() { defer s.bgDone.Done(); s.exclusive(pctx, "retention", s.pruneEvents) }()
	go func() { defer s.bgDone.Done(); s.exclusive(pctx, "cohorts", s.recomputeCohorts) }() // cohorts_api.go
	go func() { defer s.bgDone.Done(); s.followStore(pctx) }()
	s.deltas.start(pctx) // deltas.go: resumes the builds a stop or crash left, then builds
	s.gc.start(pctx)
	return s, nil
}

// Close stops publishing and delta building and closes the store.
func (s *Server) Close() error {
	s.StopLongPolls()
	s.stop()
	<-s.done
	s.deltas.wg.Wait()
	s.bgDone.Wait()
	return errors.Join(s.events.Close(), s.store.Close())
}

// Blobs returns the blob store (for an edge sharing the process).
func (s *Server) Blobs() blob.Store { return s.blobs }

// PublicKey is the key edges verify snapshots with.
func (s *Server) PublicKey() ed25519.PublicKey { return s.signingKey().Public().(ed25519.PublicKey) }

// HashKey returns the stored form of an API key.
func HashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// ensureKey makes sure the key named name (admin or edge) exists; on first
// start it is generated and written to path (0600). A key file found
// without any stored key of its name (a data folder restored in part) is
// adopted.
func (s *Server) ensureKey(ctx context.Context, path, name, scope string) error {
	n, err := s.store.CountAPIKeys(ctx, name, scope)
	if err != nil {
		return fmt.Errorf("origin: %s key: %w", scope, err)
	}
	if n > 0 {
		return nil
	}
	key, err := os.ReadFile(path)
	switch {
	case err == nil && len(strings.TrimSpace(string(key))) >= 16:
		s.log.Warn("origin: adopting existing key file", "path", path, "scope", scope)
	case err == nil || errors.Is(err, os.ErrNotExist):
		key = []byte(newKey())
		if err := blob.WriteFileAtomic(path, append(key, '\n'), 0o600); err != nil {
			return fmt.Errorf("origin: write %s key: %w", scope, err)
		}
		s.log.Info("origin: generated key", "scope", scope, "path", path)
	default:
		return fmt.Errorf("origin: read %s key: %w", scope, err)
	}
	if err := s.store.AddAPIKey(ctx, HashKey(strings.TrimSpace(string(key))), name, scope); err != nil {
		return fmt.Errorf("origin: %s key: %w", scope, err)
	}
	return nil
}

func (s *Server) loadKeys(ctx context.Context) error {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	keys, err := s.store.APIKeys(ctx)
	if err != nil {
		return fmt.Errorf("origin: api keys: %w", err)
	}
	var list []keyHash
	for _, k := range keys {
		b, err := hex.DecodeString(k.Hash)
		if err != nil {
			return fmt.Errorf("origin: api key hash %q: %w", k.Hash, err)
		}
		scope := k.Scope
		if scope == store.ScopeOperator { // a row written before scopes (the migration renames them)
			scope = store.ScopeAdmin
		}
		list = append(list, keyHash{sum: b, name: k.Label, scope: scope, app: k.App, expires: k.ExpiresAt, revoked: k.RevokedAt != 0})
	}
	s.keys.Store(&list)
	return nil
}

func newKey() string {
	b := make([]byte, 32)
	rand.Read(b)
	return "upd_" + base64.RawURLEncoding.EncodeToString(b)
}

// LoadOrCreateSigningKey reads the origin's Ed25519 key from DATA/origin-key
// (base64 of the 32-byte seed), creating it on first start.
func LoadOrCreateSigningKey(dataDir string) (ed25519.PrivateKey, error) {
	path := config.SigningKeyFile(dataDir)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		enc := base64.StdEncoding.EncodeToString(priv.Seed())
		if err := blob.WriteFileAtomic(path, []byte(enc+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("origin: write signing key: %w", err)
		}
		return priv, nil
	}
	if err != nil {
		return nil, fmt.Errorf("origin: read signing key: %w", err)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("origin: signing key %s: want base64 of a 32-byte Ed25519 seed", path)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// EncodePublicKey is the text form of a public key that edges are given.
func EncodePublicKey(pub ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(pub) }

// Subscribe registers fn to receive every snapshot published from now on,
// starting with the current one. fn must not block for long.
func (s *Server) Subscribe(fn func(*snapshot.Snapshot)) {
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	s.subscribers = append(s.subscribers, fn)
	if cur := s.current.Load(); cur != nil {
		fn(cur.Snap)
	}
}

// Current returns the latest published snapshot.
func (s *Server) Current() *Published { return s.current.Load() }

// currentAndChanged returns the latest publication and a channel closed at
// the next one.
func (s *Server) currentAndChanged() (*Published, <-chan struct{}) {
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	return s.current.Load(), s.changed
}

// publish builds, signs and hands out a snapshot if the store moved on.
func (s *Server) publish(ctx context.Context) error {
	start := time.Now()
	snap, err := s.store.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("origin: publish: %w", err)
	}
	if cur := s.current.Load(); cur != nil && cur.Snap.Rev >= snap.Rev {
		return nil
	}
	if err := s.shards.attach(ctx, snap); err != nil {
		return fmt.Errorf("origin: publish rev %d: %w", snap.Rev, err)
	}
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	if cur := s.current.Load(); cur != nil && cur.Snap.Rev >= snap.Rev {
		return nil
	}
	// Signed under publishMu: issued times only grow, and a signing key
	// rotation (keys.go) never races a publication. The issued time is
	// the store's time of the revision (store.Snapshot), so every origin
	// sharing the store issues a revision identically and their heartbeats
	// vouch for each other's copies; a store from before that time was
	// recorded, or one behind a re-issue of this origin, gets the clock.
	if snap.Issued > s.lastIssued {
		s.lastIssued = snap.Issued
	} else {
		snap.Issued = s.nextIssued()
	}
	wire, err := snapshot.Encode(snap, s.signingKey())
	if err != nil {
		return fmt.Errorf("origin: publish: %w", err)
	}
	s.current.Store(&Published{Snap: snap, Wire: wire})
	close(s.changed)
	s.changed = make(chan struct{})
	for _, fn := range s.subscribers {
		fn(snap)
	}
	s.log.Debug("origin: published snapshot", "rev", snap.Rev, "bytes", len(wire), "took", time.Since(start))
	return nil
}

// publisher rebuilds the snapshot when triggered, at most once per
// publishInterval, so a burst of changes yields one revision.
func (s *Server) publisher(ctx context.Context) {
	defer close(s.done)
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.trigger:
		}
		if wait := publishInterval - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		select { // changes that arrived while waiting are in this build
		case <-s.trigger:
		default:
		}
		last = time.Now()
		if err := s.publish(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("origin: publish failed; retrying", "err", err)
			time.Sleep(time.Second)
			s.changedStore()
		}
	}
}

// changedStore asks the publisher for a new snapshot.
func (s *Server) changedStore() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// awaitPublished triggers a publish and waits (bounded) until the snapshot
// includes the store's current revision, so an operator's next read (or an
// in-process edge) sees the change.
func (s *Server) awaitPublished(ctx context.Context) {
	rev, err := s.store.Rev(ctx)
	if err != nil {
		return
	}
	s.changedStore()
	if !s.awaitRev(ctx, rev) && ctx.Err() == nil {
		s.log.Warn("origin: change committed but not yet published", "rev", rev)
	}
}
