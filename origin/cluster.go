package origin

// Several origins on one shared store (PostgreSQL) and bucket: each accepts
// operator writes and edge traffic; they learn of each other's changes
// through the store (LISTEN/NOTIFY), sign with one shared key, and run the
// work that must happen once (rollout guard, retention, blob collection)
// under cluster-wide leases. With the embedded SQLite store there is one
// origin, and each of these reduces to what it always did.

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/updraft-cdn/updraft/config"
)

// leaseRetry is how often an origin without a lease tries to take it, and
// how often a holder checks that its lease's connection is alive: a dead
// holder's work resumes elsewhere within about this long.
var leaseRetry = time.Second

// signingKeySecret names the shared snapshot signing key in the store.
const signingKeySecret = "snapshot_signing_key"

// loadSigningKey returns the snapshot signing key. With one origin it is
// DATA/origin-key. With a shared store, every origin must sign with the
// same key (edges trust one): the first origin to start stores its key in
// the store, every other adopts it and writes it to its own DATA/origin-key
// (so `updraft keys show` prints it there too).
func (s *Server) loadSigningKey(ctx context.Context) (ed25519.PrivateKey, error) {
	local, err := LoadOrCreateSigningKey(s.cfg.DataDir)
	if err != nil || !s.store.Shared() {
		return local, err
	}
	enc, err := s.store.InitSecret(ctx, signingKeySecret, base64.StdEncoding.EncodeToString(local.Seed()))
	if err != nil {
		return nil, fmt.Errorf("origin: shared signing key: %w", err)
	}
	shared, err := decodeSeed(enc)
	if err != nil {
		return nil, fmt.Errorf("origin: shared signing key in the store: %w", err)
	}
	if !shared.Equal(local) {
		s.log.Info("origin: adopting the signing key the other origins use", "public_key", EncodePublicKey(shared.Public().(ed25519.PublicKey)))
		if err := writeSigningKey(config.SigningKeyFile(s.cfg.DataDir), shared); err != nil {
			return nil, err
		}
	}
	return shared, nil
}

func decodeSeed(enc string) (ed25519.PrivateKey, error) {
	seed, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("want base64 of a 32-byte Ed25519 seed")
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// followStore keeps this origin in step with the others sharing its store:
// on each change any of them commits, it publishes the new revision, wakes
// its bundle builders, and reloads the API keys and the signing key.
func (s *Server) followStore(ctx context.Context) {
	s.store.Listen(ctx, func() {
		s.changedStore()
		s.deltas.notify()
		s.webhooks.wake() // another origin's audit records
		if err := s.loadKeys(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("origin: reload API keys", "err", err)
		}
		s.reloadSigningKey(ctx)
	}, func(err error) {
		if ctx.Err() == nil {
			s.log.Warn("origin: lost the store's change notifications; reconnecting", "err", err)
		}
	})
}

// reloadSigningKey adopts a signing key another origin rotated to.
func (s *Server) reloadSigningKey(ctx context.Context) {
	enc, ok, err := s.store.Secret(ctx, signingKeySecret)
	if err != nil || !ok {
		return
	}
	key, err := decodeSeed(enc)
	if err != nil || key.Equal(s.signingKey()) {
		return
	}
	// Compared again under publishMu: this origin's own rotation
	// (RotateSigningKey, under publishMu) announces the key before it
	// swaps it in; seen here in between, it is no other origin's key and
	// must not replace origin-key.old with the new key.
	s.publishMu.Lock()
	prev := s.signingKey()
	if key.Equal(prev) {
		s.publishMu.Unlock()
		return
	}
	s.signKey.Store(&key)
	s.heartbeat.Store(nil)
	s.publishMu.Unlock()
	if err := writeSigningKey(PreviousSigningKeyFile(s.cfg.DataDir), prev); err != nil {
		s.log.Warn("origin: keep previous signing key", "err", err)
	}
	if err := writeSigningKey(config.SigningKeyFile(s.cfg.DataDir), key); err != nil {
		s.log.Warn("origin: write signing key", "err", err)
	}
	s.log.Info("origin: signing key rotated by another origin", "public_key", EncodePublicKey(key.Public().(ed25519.PublicKey)))
}

// leaseHeld is 1 for the cluster-wide leases this origin holds (the work
// that runs on one origin at a time), 0 for those it waits for.
var leaseHeldDesc = prometheus.GaugeOpts{
	Name: "updraft_origin_lease_held",
	Help: "Cluster-wide leases (guard, retention, blob-gc, preview-expiry): 1 while this origin holds it and runs its work, 0 while another does.",
}

// exclusive runs fn while this origin holds the cluster-wide lease name
// (with one origin: at once, until ctx ends). When the lease is lost, fn's
// context is cancelled, and the origin waits to take the lease again.
func (s *Server) exclusive(ctx context.Context, name string, fn func(context.Context)) {
	held := s.metrics.leaseHeld.WithLabelValues(name)
	defer held.Set(0)
	for ctx.Err() == nil {
		held.Set(0)
		lease, err := s.store.AcquireLease(ctx, name, leaseRetry)
		if err != nil {
			return // ctx ended
		}
		held.Set(1)
		if lease == nil {
			fn(ctx)
			return
		}
		s.log.Info("origin: took the lease", "lease", name)
		lctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-lease.Lost():
				cancel()
			case <-lctx.Done():
			}
		}()
		fn(lctx)
		cancel()
		lease.Release()
		if ctx.Err() == nil {
			s.log.Warn("origin: lost the lease; another origin takes over", "lease", name)
		}
	}
}
