package store

// Bundle lifecycle: deleting a bundle (refused while devices can be routed
// to it), the per-app retention of the newest bundles, and the blobs the
// store references (what the origin's blob garbage collection keeps).

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// Codes of refused bundle deletions.
const (
	CodeBundleInUse    = "bundle_in_use"
	CodeBundleNotFound = "bundle_not_found"
)

// InUseError refuses to delete a bundle that a channel, a channel's rollout
// or an A/B arm points at. (Overrides and segment rules point at channels,
// so they are covered by the channel.)
type InUseError struct {
	AppID, Version string
	Referrers      []string // each a phrase like `channel "production"`
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("bundle %s of %s is in use by %s; point them at another bundle (or promote, roll back, clear the split) first",
		e.Version, e.AppID, strings.Join(e.Referrers, ", "))
}

// DeletedBundle is what deleting a bundle removed.
type DeletedBundle struct {
	AppID         string `json:"app_id"`
	Version       string `json:"version"`
	Deltas        int    `json:"deltas"`         // deltas to it and from it
	ManifestFiles int    `json:"manifest_files"` // its manifest rows
	// Blobs its rows referenced (zip, canonical archive, deltas, manifest
	// files); other bundles may still reference some of them.
	Blobs []string `json:"-"`
}

// referrers lists, per bundle version of the app, what routes devices to
// it: channels, rollouts and A/B arms, in channel name order.
func referrers(ctx context.Context, q querier, appID string) (map[string][]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT name, COALESCE(bundle_version, ''), rollout, ab, native_gate FROM channels WHERE app_id = ? ORDER BY name`, appID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var name, bundle string
		var rollout, ab, gate sql.NullString
		if err := rows.Scan(&name, &bundle, &rollout, &ab, &gate); err != nil {
			return nil, err
		}
		if gate.Valid {
			var g snapshot.NativeGate
			if err := json.Unmarshal([]byte(gate.String), &g); err != nil {
				return nil, fmt.Errorf("channel %s native gate: %w", name, err)
			}
			for _, st := range g.Below {
				out[st.Bundle] = append(out[st.Bundle], fmt.Sprintf("channel %q (for devices below native build %s)", name, g.MinBuild))
			}
		}
		if bundle != "" {
			out[bundle] = append(out[bundle], fmt.Sprintf("channel %q", name))
		}
		if rollout.Valid {
			var ro snapshot.Rollout
			if err := json.Unmarshal([]byte(rollout.String), &ro); err != nil {
				return nil, fmt.Errorf("channel %s rollout: %w", name, err)
			}
			if ro.Bundle != "" {
				out[ro.Bundle] = append(out[ro.Bundle], fmt.Sprintf("the rollout of channel %q", name))
			}
		}
		if ab.Valid {
			var split snapshot.ABSplit
			if err := json.Unmarshal([]byte(ab.String), &split); err != nil {
				return nil, fmt.Errorf("channel %s ab: %w", name, err)
			}
			for _, a := range split.Arms {
				out[a.Bundle] = append(out[a.Bundle], fmt.Sprintf("A/B arm %q of channel %q", a.Name, name))
			}
		}
	}
	return out, rows.Err()
}

// DeleteBundle deletes a bundle with its manifest and every delta to it or
// from it, in one transaction that bumps the revision. ErrNotFound when the
// app does not exist, an *InvalidError with CodeBundleNotFound when the
// bundle does not, an *InUseError while anything points at it. Blobs are
// left to garbage collection.
func (s *Store) DeleteBundle(ctx context.Context, appID, version string) (DeletedBundle, error) {
	var out DeletedBundle
	err := s.write(ctx, true, func(tx *Tx) error {
		if err := appExists(ctx, tx, appID); err != nil {
			return err
		}
		refs, err := referrers(ctx, tx, appID)
		if err != nil {
			return err
		}
		out, err = deleteBundle(ctx, tx, appID, version, refs)
		return err
	})
	return out, err
}

func deleteBundle(ctx context.Context, tx *Tx, appID, version string, refs map[string][]string) (DeletedBundle, error) {
	d := DeletedBundle{AppID: appID, Version: version}
	var zip, canonical string
	var size int64
	err := tx.QueryRowContext(ctx, `SELECT sha256, canonical_sha256, size FROM bundles WHERE app_id = ? AND version = ?`, appID, version).Scan(&zip, &canonical, &size)
	if errors.Is(err, sql.ErrNoRows) {
		return d, &InvalidError{Code: CodeBundleNotFound, Msg: fmt.Sprintf("app %s has no bundle %q", appID, version)}
	}
	if err != nil {
		return d, err
	}
	if r := refs[version]; len(r) > 0 {
		return d, &InUseError{AppID: appID, Version: version, Referrers: r}
	}
	d.Blobs = append(d.Blobs, zip)
	if canonical != "" {
		d.Blobs = append(d.Blobs, canonical)
	}
	rows, err := tx.QueryContext(ctx, `SELECT blob_sha256 FROM manifest_files WHERE app_id = ? AND version = ?
		UNION ALL SELECT sha256 FROM deltas WHERE app_id = ? AND (to_version = ? OR from_version = ?)`, appID, version, appID, version, version)
	if err != nil {
		return d, err
	}
	for rows.Next() {
		var sha string
		if err := rows.Scan(&sha); err != nil {
			rows.Close()
			return d, err
		}
		d.Blobs = append(d.Blobs, sha)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return d, err
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM manifest_files WHERE app_id = ? AND version = ?`, appID, version)
	if err != nil {
		return d, err
	}
	n, _ := res.RowsAffected()
	d.ManifestFiles = int(n)
	if res, err = tx.ExecContext(ctx, `DELETE FROM deltas WHERE app_id = ? AND (to_version = ? OR from_version = ?)`, appID, version, version); err != nil {
		return d, err
	}
	n, _ = res.RowsAffected()
	d.Deltas = int(n)
	if _, err := tx.ExecContext(ctx, `DELETE FROM bundles WHERE app_id = ? AND version = ?`, appID, version); err != nil {
		return d, err
	}
	// Its jobs go with it (a build running for it is dropped: origin/deltas.go).
	if _, err := tx.ExecContext(ctx, `DELETE FROM jobs WHERE app_id = ? AND version = ?`, appID, version); err != nil {
		return d, err
	}
	return d, audit(ctx, tx, appID, "bundle.deleted", version, bundleState(version, zip, size), nil)
}

// errNoChange rolls back a write that turned out to change nothing (no
// revision bump).
var errNoChange = errors.New("store: no change")

// KeepBundles returns the app's retention: how many of its newest bundles
// are kept (0: all). ErrNotFound for an unknown app.
func (s *Store) KeepBundles(ctx context.Context, appID string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT keep_bundles FROM apps WHERE id = ?`, appID).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	return n, err
}

// SetKeepBundles sets the app's retention (0: keep all). The setting is not
// part of the snapshot, so the revision does not move; PruneBundles applies it.
func (s *Store) SetKeepBundles(ctx context.Context, appID string, keep int) error {
	if keep < 0 {
		return &InvalidError{Code: "invalid_keep", Msg: fmt.Sprintf("keep_bundles %d: want 0 (keep all) or more", keep)}
	}
	return s.SetAppOptions(ctx, appID, AppOptions{KeepBundles: &keep})
}

// PruneBundles applies the app's retention: of its bundles in upload order,
// the keep_bundles newest are kept; older ones are deleted (as DeleteBundle
// does) unless something points at them, in which case they are kept too
// (in use, they do not make a newer bundle go). One transaction, one
// revision; nothing deleted, no revision. Returns what was deleted, oldest
// first.
func (s *Store) PruneBundles(ctx context.Context, appID string) ([]DeletedBundle, error) {
	var out []DeletedBundle
	err := s.write(ctx, true, func(tx *Tx) error {
		out = nil
		var keep int
		err := tx.QueryRowContext(ctx, `SELECT keep_bundles FROM apps WHERE id = ?`, appID).Scan(&keep)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if keep <= 0 {
			return errNoChange
		}
		// Newest first, as bundle lists are (the upload order).
		rows, err := tx.QueryContext(ctx, `SELECT version FROM bundles WHERE app_id = ? ORDER BY created_at DESC, rowid DESC`, appID)
		if err != nil {
			return err
		}
		var versions []string
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return err
			}
			versions = append(versions, v)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(versions) <= keep {
			return errNoChange
		}
		refs, err := referrers(ctx, tx, appID)
		if err != nil {
			return err
		}
		for i := len(versions) - 1; i >= keep; i-- { // oldest first
			if len(refs[versions[i]]) > 0 {
				continue
			}
			d, err := deleteBundle(ctx, tx, appID, versions[i], refs)
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		if len(out) == 0 {
			return errNoChange
		}
		return nil
	})
	if errors.Is(err, errNoChange) {
		return nil, nil
	}
	return out, err
}

// ReferencedBlobs returns every blob a row of the store points at: bundle
// zips, canonical archives, deltas and manifest files, read at one
// revision. (Override shards are held by the origin, not the store.)
func (s *Store) ReferencedBlobs(ctx context.Context) (map[string]bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT sha256 FROM bundles
		UNION SELECT canonical_sha256 FROM bundles WHERE canonical_sha256 <> ''
		UNION SELECT sha256 FROM deltas
		UNION SELECT blob_sha256 FROM manifest_files`)
	if err != nil {
		return nil, fmt.Errorf("store: referenced blobs: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var sha string
		if err := rows.Scan(&sha); err != nil {
			return nil, fmt.Errorf("store: referenced blobs: %w", err)
		}
		out[sha] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: referenced blobs: %w", err)
	}
	return out, nil
}

// AddDeltaChecked records a verified delta to bundle `to` from d.From (as
// AddDelta does) only while both bundles exist, in one transaction; when
// either was deleted meanwhile it returns ErrNotFound and records nothing,
// so no delta outlives the bundles it joins.
func (s *Store) AddDeltaChecked(ctx context.Context, appID, to string, d snapshot.Delta) error {
	return s.write(ctx, true, func(tx *Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM bundles WHERE app_id = ? AND version IN (?, ?)`, appID, to, d.From).Scan(&n); err != nil {
			return err
		}
		if n != 2 {
			return ErrNotFound
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO deltas (app_id, from_version, to_version, encoding, base_sha256, sha256, size, created_at, decode_ns)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (app_id, from_version, to_version, encoding) DO UPDATE SET
			base_sha256 = excluded.base_sha256, sha256 = excluded.sha256, size = excluded.size, created_at = excluded.created_at,
			decode_ns = excluded.decode_ns`, appID, d.From, to, d.Encoding, d.Base, d.SHA256, d.Size, time.Now().Unix(), d.DecodeNs)
		return err
	})
}
