// Package origin is the only writer of Updraft's state: it serves the
// operator API (apps, bundles, channels) behind an API key, stores bundles in
// the content-addressed blob store and metadata in the store, and publishes a
// new snapshot after every committed change. It also serves edges: blobs by
// hash, and (later) the replicated snapshot.
package origin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/blob"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// Server is the origin. Create it with Open, serve Handler, Close at the end.
type Server struct {
	cfg   config.Origin
	log   *slog.Logger
	store *store.Store
	blobs *blob.FS

	keyHashes [][]byte // SHA-256 of each accepted API key

	publishMu   sync.Mutex
	current     atomic.Pointer[snapshot.Snapshot]
	subscribers []func(*snapshot.Snapshot)
}

// Open opens the data folder (creating it on first start), the store and the
// blob store, and makes sure an operator API key exists: on first start one
// is generated and written to DATA/api-key (mode 0600); only its hash is
// stored.
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
	st, err := store.Open(ctx, filepath.Join(cfg.DataDir, "meta.db"))
	if err != nil {
		return nil, err
	}
	blobs, err := blob.Open(filepath.Join(cfg.DataDir, "blobs"))
	if err != nil {
		st.Close()
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, store: st, blobs: blobs}
	if err := s.ensureAPIKey(ctx); err != nil {
		st.Close()
		return nil, err
	}
	if err := s.publish(ctx); err != nil {
		st.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the store.
func (s *Server) Close() error { return s.store.Close() }

// Blobs returns the blob store (for an edge sharing the process).
func (s *Server) Blobs() *blob.FS { return s.blobs }

// HashKey returns the stored form of an API key.
func HashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

func (s *Server) ensureAPIKey(ctx context.Context) error {
	path := config.APIKeyFile(s.cfg.DataDir)
	n, err := s.store.CountAPIKeys(ctx)
	if err != nil {
		return fmt.Errorf("origin: api keys: %w", err)
	}
	if n == 0 {
		key, err := os.ReadFile(path)
		switch {
		case err == nil && len(strings.TrimSpace(string(key))) >= 16:
			// A key file without a database (data folder restored in part): adopt it.
			s.log.Warn("origin: adopting existing API key file", "path", path)
		case err == nil || errors.Is(err, os.ErrNotExist):
			key = []byte(newKey())
			if err := writeFileAtomic(path, append(key, '\n'), 0o600); err != nil {
				return fmt.Errorf("origin: write api key: %w", err)
			}
			s.log.Info("origin: generated operator API key", "path", path)
		default:
			return fmt.Errorf("origin: read api key: %w", err)
		}
		if err := s.store.AddAPIKey(ctx, HashKey(strings.TrimSpace(string(key))), "default"); err != nil {
			return fmt.Errorf("origin: api keys: %w", err)
		}
	}
	hashes, err := s.store.APIKeyHashes(ctx)
	if err != nil {
		return fmt.Errorf("origin: api keys: %w", err)
	}
	for _, h := range hashes {
		b, err := hex.DecodeString(h)
		if err != nil {
			return fmt.Errorf("origin: api key hash %q: %w", h, err)
		}
		s.keyHashes = append(s.keyHashes, b)
	}
	return nil
}

func newKey() string {
	b := make([]byte, 32)
	rand.Read(b)
	return "upd_" + base64.RawURLEncoding.EncodeToString(b)
}

// authorized checks the request's API key (Authorization: Bearer KEY or
// X-API-Key: KEY) against the stored hashes in constant time.
func (s *Server) authorized(r *http.Request) bool {
	key := r.Header.Get("X-API-Key")
	if key == "" {
		if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
			key = a[7:]
		}
	}
	if key == "" {
		return false
	}
	h := sha256.Sum256([]byte(key))
	ok := 0
	for _, want := range s.keyHashes {
		ok |= subtle.ConstantTimeCompare(h[:], want)
	}
	return ok == 1
}

// Subscribe registers fn to receive every snapshot published from now on,
// starting with the current one. fn must not block for long.
func (s *Server) Subscribe(fn func(*snapshot.Snapshot)) {
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	s.subscribers = append(s.subscribers, fn)
	if cur := s.current.Load(); cur != nil {
		fn(cur)
	}
}

// Current returns the latest published snapshot.
func (s *Server) Current() *snapshot.Snapshot { return s.current.Load() }

// publish builds a snapshot from the store and hands it to subscribers if it
// is newer than the last one published.
func (s *Server) publish(ctx context.Context) error {
	snap, err := s.store.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("origin: publish: %w", err)
	}
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	if cur := s.current.Load(); cur != nil && cur.Rev >= snap.Rev {
		return nil
	}
	s.current.Store(snap)
	for _, fn := range s.subscribers {
		fn(snap)
	}
	s.log.Debug("origin: published snapshot", "rev", snap.Rev)
	return nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
