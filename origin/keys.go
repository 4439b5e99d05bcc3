package origin

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/blob"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// Key rotation (POST /api/v1/keys/rotate, `updraft keys rotate`).
//
// The admin key of DATA/api-key and the edge key: a new key of the same
// name is stored (its hash) and written to DATA/api-key or DATA/edge-key; the keys it replaces stay valid for the
// overlap (default 24h), then authorized refuses them (api_keys.expires_at).
//
// Snapshot signing key: `--prepare` writes the next key to
// DATA/origin-key.next and returns its public key, to be added to the edges'
// --origin-pubkey list; the rotation itself makes the origin sign with it
// from then on (the previous key is kept in DATA/origin-key.old for
// reference) and re-signs the current revision, so edges trusting both keys
// move over without a change being published. Then the old public key is
// removed from the edges.

// DefaultKeyOverlap is how long a replaced admin or edge key stays valid.
const DefaultKeyOverlap = 24 * time.Hour

// Key kinds a rotation takes.
const (
	KeyAPI     = "api"
	KeyEdge    = "edge"
	KeySigning = "signing"
)

// apiKeys returns the accepted key hashes (expired ones included: callers
// check valid).
func (s *Server) apiKeys() []keyHash {
	if p := s.keys.Load(); p != nil {
		return *p
	}
	return nil
}

// signingKey returns the key snapshots are signed with now.
func (s *Server) signingKey() ed25519.PrivateKey { return *s.signKey.Load() }

// nextIssued is the issued time of the next signed snapshot: now, but
// always after the previous one (a clock step back must not make a newer
// snapshot look older to edges). Called under publishMu.
func (s *Server) nextIssued() int64 {
	t := max(time.Now().UnixMilli(), s.lastIssued+1)
	s.lastIssued = t
	return t
}

// StopLongPolls makes held GET /v1/snapshot long-polls answer at once (503
// shutting_down) and new ones answer without waiting, so that an HTTP
// server's Shutdown does not wait for them (http.Server.RegisterOnShutdown).
func (s *Server) StopLongPolls() { s.closingOnce.Do(func() { close(s.closing) }) }

// PreviousSigningKeyFile and NextSigningKeyFile sit beside DATA/origin-key.
func PreviousSigningKeyFile(dataDir string) string { return config.SigningKeyFile(dataDir) + ".old" }
func NextSigningKeyFile(dataDir string) string     { return config.SigningKeyFile(dataDir) + ".next" }

func writeSigningKey(path string, priv ed25519.PrivateKey) error {
	return blob.WriteFileAtomic(path, []byte(base64.StdEncoding.EncodeToString(priv.Seed())+"\n"), 0o600)
}

// LoadSigningKeyFile reads a signing key file (DATA/origin-key and its
// .old and .next siblings).
func LoadSigningKeyFile(path string) (ed25519.PrivateKey, error) { return readSigningKey(path) }

func readSigningKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("origin: signing key %s: want base64 of a 32-byte Ed25519 seed", path)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// postRotateKey serves POST /api/v1/keys/rotate.
func (s *Server) postRotateKey(w http.ResponseWriter, r *http.Request) error {
	var req RotateKeyRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		return errf(http.StatusBadRequest, "invalid_json", "body: %v", err)
	}
	var res *RotateKeyResult
	var err error
	switch req.Key {
	case KeyAPI, KeyEdge:
		overlap := DefaultKeyOverlap
		if req.OverlapSeconds != nil {
			if *req.OverlapSeconds < 0 || *req.OverlapSeconds > 366*86400 {
				return errf(http.StatusBadRequest, "invalid_overlap", "overlap_seconds %d: want 0 to one year", *req.OverlapSeconds)
			}
			overlap = time.Duration(*req.OverlapSeconds) * time.Second
		}
		if req.Prepare {
			return errf(http.StatusBadRequest, "invalid_request", "prepare is for the signing key only")
		}
		res, err = s.RotateAPIKey(r.Context(), req.Key, overlap)
	case KeySigning:
		if req.Prepare {
			res, err = s.PrepareSigningKey()
		} else if res, err = s.RotateSigningKey(); err == nil {
			a := ActorFrom(r.Context())
			after, _ := json.Marshal(map[string]string{"name": KeySigning, "public_key": res.PublicKey, "previous_public_key": res.PreviousPublicKey})
			if _, err := s.store.AppendAudit(r.Context(), store.AuditRecord{Actor: a.Key, Addr: a.Addr, Action: "key.rotated", Target: KeySigning, After: after}); err != nil {
				s.log.Error("origin: audit of the signing key rotation", "err", err)
			}
		}
	default:
		return errf(http.StatusBadRequest, "invalid_key_kind", "key %q: want api, edge or signing", req.Key)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// RotateAPIKey replaces the admin key of DATA/api-key (kind api) or the
// edge key (kind edge): the new key, of the same name (admin or edge), is
// stored and written to its file; the keys it replaces are accepted for
// overlap more. Keys created by name are left alone. The audit trail gets
// key.rotated (by ActorFrom(ctx)) in the same transaction.
func (s *Server) RotateAPIKey(ctx context.Context, kind string, overlap time.Duration) (*RotateKeyResult, error) {
	name, scope, path := store.FileAdminKey, store.ScopeAdmin, config.APIKeyFile(s.cfg.DataDir)
	if kind == KeyEdge {
		name, scope, path = store.FileEdgeKey, store.ScopeEdge, config.EdgeKeyFile(s.cfg.DataDir)
	}
	key := newKey()
	// The file is written aside first and renamed once the store has the
	// key: a failure leaves the old key file, still valid, in place.
	tmp := path + ".new"
	if err := blob.WriteFileAtomic(tmp, []byte(key+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("origin: rotate %s key: %w", name, err)
	}
	expires := time.Now().Add(overlap).Truncate(time.Second)
	a := ActorFrom(ctx)
	rec := store.AuditRecord{Actor: a.Key, Addr: a.Addr, Action: "key.rotated", Target: name,
		After: keyAuditJSON(store.APIKey{Label: name, Scope: scope}, expires.Unix())}
	if err := s.store.RotateAPIKey(ctx, HashKey(key), name, scope, expires.Unix(), rec); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("origin: rotate %s key: %w", name, err)
	}
	if err := s.loadKeys(ctx); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		// The new key is valid; hand it out even though its file is not
		// where the CLI looks.
		s.log.Error("origin: rotated key stored but its file not renamed", "key", name, "path", tmp, "err", err)
		path = tmp
	}
	s.log.Info("origin: key rotated", "key", name, "file", path, "old_keys_expire", expires.UTC())
	return &RotateKeyResult{Key: kind, Secret: key, File: path, OldExpiresAt: &expires}, nil
}

// PrepareSigningKey creates DATA/origin-key.next (or returns the one
// already prepared).
func (s *Server) PrepareSigningKey() (*RotateKeyResult, error) {
	next, err := s.nextSigningKey(true)
	if err != nil {
		return nil, err
	}
	return &RotateKeyResult{Key: KeySigning, Prepared: true, File: NextSigningKeyFile(s.cfg.DataDir),
		PublicKey: EncodePublicKey(next.Public().(ed25519.PublicKey)), PreviousPublicKey: EncodePublicKey(s.PublicKey())}, nil
}

// nextSigningKey reads DATA/origin-key.next, or creates it when create.
func (s *Server) nextSigningKey(create bool) (ed25519.PrivateKey, error) {
	path := NextSigningKeyFile(s.cfg.DataDir)
	next, err := readSigningKey(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) || !create {
		return next, err
	}
	if _, next, err = ed25519.GenerateKey(rand.Reader); err != nil {
		return nil, err
	}
	if err := writeSigningKey(path, next); err != nil {
		return nil, fmt.Errorf("origin: write next signing key: %w", err)
	}
	s.log.Info("origin: next snapshot signing key prepared", "file", path, "public_key", EncodePublicKey(next.Public().(ed25519.PublicKey)))
	return next, nil
}

// RotateSigningKey makes the prepared key (or a new one) the signing key:
// DATA/origin-key becomes DATA/origin-key.old, the next key DATA/origin-key,
// and the current revision is re-signed with it.
func (s *Server) RotateSigningKey() (*RotateKeyResult, error) {
	next, err := s.nextSigningKey(true)
	if err != nil {
		return nil, err
	}
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	prev := s.signingKey()
	if prev.Equal(next) {
		return nil, errf(http.StatusConflict, "key_in_use", "the prepared key is already the signing key")
	}
	cur := s.current.Load()
	republished := *cur.Snap // same revision, new issued time, new signature
	republished.Issued = s.nextIssued()
	wire, err := snapshot.Encode(&republished, next)
	if err != nil {
		return nil, err
	}
	dir := s.cfg.DataDir
	if s.store.Shared() { // the other origins adopt it (cluster.go)
		if err := s.store.SetSecret(context.Background(), signingKeySecret, base64.StdEncoding.EncodeToString(next.Seed())); err != nil {
			return nil, fmt.Errorf("origin: share the rotated signing key: %w", err)
		}
	}
	if err := writeSigningKey(PreviousSigningKeyFile(dir), prev); err != nil {
		return nil, fmt.Errorf("origin: keep previous signing key: %w", err)
	}
	if err := writeSigningKey(config.SigningKeyFile(dir), next); err != nil {
		return nil, fmt.Errorf("origin: write signing key: %w", err)
	}
	if err := os.Remove(NextSigningKeyFile(dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("origin: remove prepared signing key file", "err", err)
	}
	s.signKey.Store(&next)
	s.current.Store(&Published{Snap: &republished, Wire: wire})
	s.heartbeat.Store(nil)
	pub, old := EncodePublicKey(next.Public().(ed25519.PublicKey)), EncodePublicKey(prev.Public().(ed25519.PublicKey))
	s.log.Info("origin: snapshot signing key rotated", "public_key", pub, "previous_public_key", old, "rev", republished.Rev)
	return &RotateKeyResult{Key: KeySigning, File: config.SigningKeyFile(dir), PublicKey: pub, PreviousPublicKey: old}, nil
}
