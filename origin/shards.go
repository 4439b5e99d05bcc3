package origin

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// overrideShards keeps each app's override shards (which also carry the
// app's cohort membership bits, see snapshot.CohortRef) between publications and
// rebuilds only the shards that changes touched, so that a change to one
// device override costs one shard (≈1/256 of the overrides), not a scan of
// all of them. Encoded shards are stored as blobs, which edges fetch by hash.
type overrideShards struct {
	s *Server

	mu      sync.Mutex
	apps    map[string]*appShards
	dirty   map[string]map[int]bool // app → shards to rebuild
	byHash  snapshot.MapShards      // shards referenced by the apps above
	retired []retiredShard          // replaced shards, deleted after shardGrace
}

type appShards struct {
	hashes [snapshot.ShardCount]string
	shards [snapshot.ShardCount]*snapshot.OverrideShard
}

func newOverrideShards(s *Server) *overrideShards {
	return &overrideShards{s: s, apps: map[string]*appShards{}, dirty: map[string]map[int]bool{}, byHash: snapshot.MapShards{}}
}

// write runs a change of devices' overrides while holding the shard lock,
// marking their shards dirty: a publication rebuilds a shard either before
// the change (and the shard stays dirty) or after it is committed, never in
// between.
func (o *overrideShards) write(appID string, devices [][16]byte, change func() error) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	d := o.dirty[appID]
	if d == nil {
		d = map[int]bool{}
		o.dirty[appID] = d
	}
	for _, dev := range devices {
		d[snapshot.ShardOf(dev)] = true
	}
	return change()
}

// writeApps runs a change that may remove any override of apps (a preview
// channel's deletion), marking all their shards dirty.
func (o *overrideShards) writeApps(apps []string, change func() error) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, appID := range apps {
		d := o.dirty[appID]
		if d == nil {
			d = map[int]bool{}
			o.dirty[appID] = d
		}
		for i := range snapshot.ShardCount {
			d[i] = true
		}
	}
	return change()
}

// attach lists the current override shards of every app of snap (building
// the ones that are missing or dirty) and indexes snap.
func (o *overrideShards) attach(ctx context.Context, snap *snapshot.Snapshot) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, a := range snap.Apps {
		as, err := o.appShards(ctx, a.ID)
		if err != nil {
			return fmt.Errorf("override shards of %s: %w", a.ID, err)
		}
		for _, h := range as.hashes {
			if h != "" {
				// A copy: as.hashes changes with the next publication, a
				// published snapshot never does.
				a.OverrideShards = append([]string(nil), as.hashes[:]...)
				break
			}
		}
	}
	o.collect()
	return snap.Index(o.byHash)
}

// shardGrace is how long a replaced shard stays in the blob store: edges
// that are still fetching an older revision's shards find them.
var shardGrace = 10 * time.Minute

type retiredShard struct {
	hash string
	at   time.Time
}

// collect deletes replaced shards once their grace period is over, unless a
// current shard has the same content.
func (o *overrideShards) collect() {
	keep := o.retired[:0]
	for _, r := range o.retired {
		switch {
		case o.byHash[r.hash] != nil:
			// In use again (same content): nothing to delete.
		case time.Since(r.at) < shardGrace:
			keep = append(keep, r)
		default:
			if err := o.s.blobs.Remove(r.hash); err != nil {
				o.s.log.Warn("origin: remove old override shard", "sha256", r.hash, "err", err)
			}
		}
	}
	o.retired = keep
}

func (o *overrideShards) appShards(ctx context.Context, appID string) (*appShards, error) {
	as := o.apps[appID]
	if as == nil {
		// First publication of this app since start: one scan of all its overrides.
		all, err := o.s.store.OverridesInShard(ctx, appID, -1)
		if err != nil {
			return nil, err
		}
		cohorts, err := o.s.store.CohortBitsInShard(ctx, appID, -1)
		if err != nil {
			return nil, err
		}
		as = &appShards{}
		hashes, shards, encoded := snapshot.ShardEntries(all, cohorts)
		for i, h := range hashes {
			if h == "" {
				continue
			}
			if err := o.storeShard(h, encoded[h]); err != nil {
				return nil, err
			}
			as.hashes[i], as.shards[i] = h, shards[h]
			o.byHash[h] = shards[h]
		}
		o.apps[appID] = as
		delete(o.dirty, appID)
		return as, nil
	}
	for i := range o.dirty[appID] {
		entries, err := o.s.store.OverridesInShard(ctx, appID, i)
		if err != nil {
			return nil, err
		}
		cohorts, err := o.s.store.CohortBitsInShard(ctx, appID, i)
		if err != nil {
			return nil, err
		}
		if old := as.hashes[i]; old != "" {
			delete(o.byHash, old)
			o.retired = append(o.retired, retiredShard{hash: old, at: time.Now()})
		}
		as.hashes[i], as.shards[i] = "", nil
		if len(entries) == 0 && len(cohorts) == 0 {
			continue
		}
		sh := snapshot.NewShard(entries, cohorts)
		b := sh.Encode()
		info, err := o.s.blobs.Put(bytes.NewReader(b), 0)
		if err != nil {
			return nil, err
		}
		as.hashes[i], as.shards[i] = info.SHA256, sh
		o.byHash[info.SHA256] = sh
	}
	delete(o.dirty, appID)
	return as, nil
}

func (o *overrideShards) storeShard(h string, b []byte) error {
	info, err := o.s.blobs.Put(bytes.NewReader(b), 0)
	if err != nil {
		return err
	}
	if info.SHA256 != h {
		return fmt.Errorf("shard hash %s stored as %s", h, info.SHA256)
	}
	return nil
}
