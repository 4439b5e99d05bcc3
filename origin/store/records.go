package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/origin/native"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// App is an application record.
type App struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// Device-protocol options (Capgo's apps.expose_metadata and
	// apps.allow_device_custom_id), set with SetAppProtocol.
	ExposeMetadata      bool `json:"expose_metadata"`
	AllowDeviceCustomID bool `json:"allow_device_custom_id"`
}

// Bundle is a bundle record.
type Bundle struct {
	AppID            string           `json:"app_id"`
	Version          string           `json:"version"`
	SHA256           string           `json:"sha256"`
	Size             int64            `json:"size"`
	MinUpdateVersion string           `json:"min_update_version,omitempty"`
	Comment          string           `json:"comment,omitempty"`
	Link             string           `json:"link,omitempty"`
	CreatedAt        time.Time        `json:"created_at"`
	Canonical        string           `json:"canonical_sha256,omitempty"`
	CanonicalSize    int64            `json:"canonical_size,omitempty"`
	Deltas           []snapshot.Delta `json:"deltas,omitempty"`
	ManifestFiles    int              `json:"manifest_files"`
	// End-to-end encryption, as the CLI produced it (see snapshot.Bundle).
	SessionKey string `json:"session_key,omitempty"`
	Checksum   string `json:"checksum,omitempty"`
	KeyID      string `json:"key_id,omitempty"`
	// Expo: the bundle is an Expo update (see snapshot.ExpoUpdate), stored
	// as JSON in bundles.expo (NULL for every other bundle).
	Expo *snapshot.ExpoUpdate `json:"expo,omitempty"`
	// NativePackages are the native Capacitor packages the bundle was
	// built against, as the CLI recorded them at upload (origin/native);
	// nil (JSON null): not recorded, so its compatibility is unknown.
	NativePackages []native.Package `json:"native_packages"`
}

// Channel is a channel record: the snapshot's channel plus bookkeeping.
type Channel struct {
	snapshot.Channel
	AppID     string    `json:"app_id"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ChannelPatch lists the channel fields to set; nil fields keep their value
// (or take Capgo's default when the channel is created).
type ChannelPatch struct {
	Bundle                       *string `json:"bundle"` // "" detaches the bundle; "builtin" sends devices back to the store build
	Public                       *bool   `json:"public"`
	IOS                          *bool   `json:"ios"`
	Android                      *bool   `json:"android"`
	Electron                     *bool   `json:"electron"`
	AllowDeviceSelfSet           *bool   `json:"allow_device_self_set"`
	AllowEmulator                *bool   `json:"allow_emulator"`
	AllowDev                     *bool   `json:"allow_dev"`
	AllowProd                    *bool   `json:"allow_prod"`
	AllowDevice                  *bool   `json:"allow_device"`
	DisableAutoUpdate            *string `json:"disable_auto_update"`
	DisableAutoUpdateUnderNative *bool   `json:"disable_auto_update_under_native"`
	// MinNativeBuild restricts a new Bundle to devices whose native build
	// is at least this; the others keep the channel's previous bundle
	// (snapshot.NativeGate). "" removes the channel's gate. nil: a new
	// bundle keeps the channel's gate (it was found compatible with the
	// bundle it replaces, so it needs the same native build).
	MinNativeBuild *string `json:"min_native_build,omitempty"`
	// Windows replaces the channel's maintenance schedule (weekly windows
	// and blackout dates, snapshot.Windows); an empty one removes it. nil:
	// unchanged.
	Windows *snapshot.Windows `json:"windows,omitempty"`
}

// NewChannel returns a channel with Capgo's defaults for a new channel.
func NewChannel(name string) snapshot.Channel {
	return snapshot.Channel{
		Name: name, IOS: true, Android: true, Electron: true,
		AllowEmulator: true, AllowDev: true, AllowProd: true, AllowDevice: true,
		DisableAutoUpdate:            snapshot.DisableMajor,
		DisableAutoUpdateUnderNative: true,
	}
}

func (p ChannelPatch) apply(c *snapshot.Channel) {
	set := func(dst *bool, v *bool) {
		if v != nil {
			*dst = *v
		}
	}
	if p.Bundle != nil {
		c.Bundle = *p.Bundle
	}
	set(&c.Public, p.Public)
	set(&c.IOS, p.IOS)
	set(&c.Android, p.Android)
	set(&c.Electron, p.Electron)
	set(&c.AllowDeviceSelfSet, p.AllowDeviceSelfSet)
	set(&c.AllowEmulator, p.AllowEmulator)
	set(&c.AllowDev, p.AllowDev)
	set(&c.AllowProd, p.AllowProd)
	set(&c.AllowDevice, p.AllowDevice)
	if p.DisableAutoUpdate != nil {
		c.DisableAutoUpdate = *p.DisableAutoUpdate
	}
	set(&c.DisableAutoUpdateUnderNative, p.DisableAutoUpdateUnderNative)
	if p.Windows != nil {
		c.Windows = p.Windows
		if p.Windows.Empty() {
			c.Windows = nil
		}
	}
}

// CreateApp stores a new app; ErrExists when the id is taken.
func (s *Store) CreateApp(ctx context.Context, id, name string) (App, error) {
	a := App{ID: id, Name: name, CreatedAt: time.Now().UTC().Truncate(time.Second), AllowDeviceCustomID: true}
	err := s.write(ctx, true, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO apps (id, name, created_at) VALUES (?, ?, ?)`, a.ID, a.Name, a.CreatedAt.Unix())
		if s.isUniqueViolation(err) {
			return ErrExists
		}
		if err != nil {
			return err
		}
		return audit(ctx, tx, a.ID, "app.created", a.ID, nil, obj{{"id", a.ID}, {"name", a.Name}})
	})
	return a, err
}

// ListApps returns every app, by id.
func (s *Store) ListApps(ctx context.Context) ([]App, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, name, created_at, expose_metadata, allow_device_custom_id FROM apps ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []App{}
	for rows.Next() {
		var a App
		var ts int64
		if err := rows.Scan(&a.ID, &a.Name, &ts, &a.ExposeMetadata, &a.AllowDeviceCustomID); err != nil {
			return nil, err
		}
		a.CreatedAt = time.Unix(ts, 0).UTC()
		out = append(out, a)
	}
	return out, rows.Err()
}

// GetApp returns one app or ErrNotFound.
func (s *Store) GetApp(ctx context.Context, id string) (App, error) {
	var a App
	var ts int64
	err := s.db.QueryRowContext(ctx, `SELECT id, name, created_at, expose_metadata, allow_device_custom_id FROM apps WHERE id = ?`, id).Scan(&a.ID, &a.Name, &ts, &a.ExposeMetadata, &a.AllowDeviceCustomID)
	if errors.Is(err, sql.ErrNoRows) {
		return a, ErrNotFound
	}
	a.CreatedAt = time.Unix(ts, 0).UTC()
	return a, err
}

// BundleExists reports whether the app already has this version.
func (s *Store) BundleExists(ctx context.Context, appID, version string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM bundles WHERE app_id = ? AND version = ?`, appID, version).Scan(&n)
	return n > 0, err
}

// CreateBundle records an uploaded bundle whose blob is already stored.
// ErrNotFound when the app does not exist, ErrExists when the version does.
func (s *Store) CreateBundle(ctx context.Context, b Bundle) (Bundle, error) {
	return s.CreateBundleWithManifest(ctx, b, nil)
}

// CreateBundleWithManifest records a bundle and, in the same transaction,
// its file manifest (blobs already stored): an encrypted bundle, whose
// manifest the CLI built, is never published without it.
func (s *Store) CreateBundleWithManifest(ctx context.Context, b Bundle, files []snapshot.ManifestEntry) (Bundle, error) {
	b.CreatedAt = time.Now().UTC().Truncate(time.Second)
	b.ManifestFiles = len(files)
	var expo sql.NullString
	if b.Expo != nil {
		j, err := json.Marshal(b.Expo)
		if err != nil {
			return b, fmt.Errorf("store: bundle %s: expo: %w", b.Version, err)
		}
		expo = sql.NullString{String: string(j), Valid: true}
	}
	var nat sql.NullString
	if b.NativePackages != nil {
		j, err := json.Marshal(b.NativePackages)
		if err != nil {
			return b, fmt.Errorf("store: bundle %s: native packages: %w", b.Version, err)
		}
		nat = sql.NullString{String: string(j), Valid: true}
	}
	err := s.write(ctx, true, func(tx *Tx) error {
		if err := appExists(ctx, tx, b.AppID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO bundles (app_id, version, sha256, size, min_update_version, comment, link, created_at, session_key, checksum, key_id, expo, native_packages) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			b.AppID, b.Version, b.SHA256, b.Size, b.MinUpdateVersion, b.Comment, b.Link, b.CreatedAt.Unix(), b.SessionKey, b.Checksum, b.KeyID, expo, nat)
		if s.isUniqueViolation(err) {
			return ErrExists
		}
		if err != nil {
			return err
		}
		if err := audit(ctx, tx, b.AppID, "bundle.uploaded", b.Version, nil, bundleState(b.Version, b.SHA256, b.Size)); err != nil {
			return err
		}
		if b.SessionKey == "" {
			// Its build (manifest, canonical archive, deltas) is a durable
			// job from the start (jobs.go); an encrypted bundle gets none.
			if err := enqueueJob(ctx, tx, JobBuild, b.AppID, b.Version, time.Now()); err != nil {
				return err
			}
		}
		return insertManifest(ctx, tx, b.AppID, b.Version, files)
	})
	return b, err
}

func appExists(ctx context.Context, tx *Tx, id string) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM apps WHERE id = ?`, id).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// ListBundles returns the app's bundles, newest first, with their deltas.
func (s *Store) ListBundles(ctx context.Context, appID string) ([]Bundle, error) {
	if _, err := s.GetApp(ctx, appID); err != nil {
		return nil, err
	}
	bs, err := listBundles(ctx, s.db, `WHERE app_id = ? ORDER BY created_at DESC, rowid DESC`, appID)
	if err != nil {
		return nil, err
	}
	deltas, err := listDeltas(ctx, s.db, appID)
	if err != nil {
		return nil, err
	}
	manifests, err := listManifests(ctx, s.db, appID)
	if err != nil {
		return nil, err
	}
	for i := range bs {
		bs[i].Deltas = deltas[appID+"\x00"+bs[i].Version]
		bs[i].ManifestFiles = len(manifests[appID+"\x00"+bs[i].Version])
	}
	return bs, nil
}

// SetManifest records a bundle's file manifest (its blobs already stored).
func (s *Store) SetManifest(ctx context.Context, appID, version string, files []snapshot.ManifestEntry) error {
	return s.write(ctx, true, func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM manifest_files WHERE app_id = ? AND version = ?`, appID, version); err != nil {
			return err
		}
		return insertManifest(ctx, tx, appID, version, files)
	})
}

func insertManifest(ctx context.Context, tx *Tx, appID, version string, files []snapshot.ManifestEntry) error {
	if len(files) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO manifest_files (app_id, version, file_name, file_hash, blob_sha256, size) VALUES (?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, f := range files {
		if _, err := stmt.ExecContext(ctx, appID, version, f.Name, f.Hash, f.Blob, f.Size); err != nil {
			return err
		}
	}
	return nil
}

// listManifests groups manifest files by app and version (key app\x00version).
func listManifests(ctx context.Context, q querier, appID string) (map[string][]snapshot.ManifestEntry, error) {
	where, args := `ORDER BY app_id, version, file_name`, []any{}
	if appID != "" {
		where, args = `WHERE app_id = ? `+where, []any{appID}
	}
	rows, err := q.QueryContext(ctx, `SELECT app_id, version, file_name, file_hash, blob_sha256, size FROM manifest_files `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]snapshot.ManifestEntry{}
	for rows.Next() {
		var app, v string
		var f snapshot.ManifestEntry
		if err := rows.Scan(&app, &v, &f.Name, &f.Hash, &f.Blob, &f.Size); err != nil {
			return nil, err
		}
		out[app+"\x00"+v] = append(out[app+"\x00"+v], f)
	}
	return out, rows.Err()
}

// SetCanonical records a bundle's canonical archive.
func (s *Store) SetCanonical(ctx context.Context, appID, version, sha string, size int64) error {
	return s.write(ctx, true, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE bundles SET canonical_sha256 = ?, canonical_size = ? WHERE app_id = ? AND version = ?`, sha, size, appID, version)
		return err
	})
}

// AddDelta records a verified delta to a bundle (replacing one of the same
// base and encoding).
func (s *Store) AddDelta(ctx context.Context, appID, to string, d snapshot.Delta) error {
	return s.write(ctx, true, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO deltas (app_id, from_version, to_version, encoding, base_sha256, sha256, size, created_at, decode_ns)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (app_id, from_version, to_version, encoding) DO UPDATE SET
			base_sha256 = excluded.base_sha256, sha256 = excluded.sha256, size = excluded.size, created_at = excluded.created_at,
			decode_ns = excluded.decode_ns`, appID, d.From, to, d.Encoding, d.Base, d.SHA256, d.Size, time.Now().Unix(), d.DecodeNs)
		return err
	})
}

// listDeltas groups deltas by app and target version (key app\x00version).
func listDeltas(ctx context.Context, q querier, appID string) (map[string][]snapshot.Delta, error) {
	where, args := `ORDER BY app_id, to_version, from_version, encoding`, []any{}
	if appID != "" {
		where, args = `WHERE app_id = ? `+where, []any{appID}
	}
	rows, err := q.QueryContext(ctx, `SELECT app_id, to_version, from_version, encoding, base_sha256, sha256, size, decode_ns FROM deltas `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]snapshot.Delta{}
	for rows.Next() {
		var app, to string
		var d snapshot.Delta
		if err := rows.Scan(&app, &to, &d.From, &d.Encoding, &d.Base, &d.SHA256, &d.Size, &d.DecodeNs); err != nil {
			return nil, err
		}
		out[app+"\x00"+to] = append(out[app+"\x00"+to], d)
	}
	return out, rows.Err()
}

type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

func listBundles(ctx context.Context, q querier, where string, args ...any) ([]Bundle, error) {
	rows, err := q.QueryContext(ctx, `SELECT app_id, version, sha256, size, min_update_version, comment, link, created_at, canonical_sha256, canonical_size, session_key, checksum, key_id, expo, native_packages FROM bundles `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Bundle{}
	for rows.Next() {
		var b Bundle
		var ts int64
		var expo, nat sql.NullString
		if err := rows.Scan(&b.AppID, &b.Version, &b.SHA256, &b.Size, &b.MinUpdateVersion, &b.Comment, &b.Link, &ts, &b.Canonical, &b.CanonicalSize, &b.SessionKey, &b.Checksum, &b.KeyID, &expo, &nat); err != nil {
			return nil, err
		}
		if nat.Valid {
			b.NativePackages = []native.Package{}
			if err := json.Unmarshal([]byte(nat.String), &b.NativePackages); err != nil {
				return nil, fmt.Errorf("bundle %s of %s: native packages: %w", b.Version, b.AppID, err)
			}
		}
		if expo.Valid {
			b.Expo = new(snapshot.ExpoUpdate)
			if err := json.Unmarshal([]byte(expo.String), b.Expo); err != nil {
				return nil, fmt.Errorf("bundle %s of %s: expo: %w", b.Version, b.AppID, err)
			}
		}
		b.CreatedAt = time.Unix(ts, 0).UTC()
		out = append(out, b)
	}
	return out, rows.Err()
}

const channelCols = `app_id, name, bundle_version, public, ios, android, electron, allow_device_self_set, allow_emulator, allow_dev, allow_prod, allow_device, disable_auto_update, disable_auto_update_under_native, created_at, updated_at`

func scanChannel(rows *sql.Rows) (Channel, error) {
	var c Channel
	var bundle, rollout, ab, gate, windows sql.NullString
	var created, updated int64
	var builtin bool
	err := rows.Scan(&c.ID, &c.AppID, &c.Name, &bundle, &c.Public, &c.IOS, &c.Android, &c.Electron, &c.AllowDeviceSelfSet,
		&c.AllowEmulator, &c.AllowDev, &c.AllowProd, &c.AllowDevice, &c.DisableAutoUpdate, &c.DisableAutoUpdateUnderNative, &created, &updated,
		&rollout, &ab, &builtin, &c.PreviewExpires, &gate, &windows)
	if err != nil {
		return c, err
	}
	c.Bundle = bundle.String
	if builtin {
		// The store build: bundle_version is NULL (no bundle row), builtin = 1.
		c.Bundle = snapshot.BuiltinVersion
	}
	c.CreatedAt = time.Unix(created, 0).UTC()
	c.UpdatedAt = time.Unix(updated, 0).UTC()
	if rollout.Valid {
		c.Rollout = new(snapshot.Rollout)
		if err := json.Unmarshal([]byte(rollout.String), c.Rollout); err != nil {
			return c, fmt.Errorf("channel %s rollout: %w", c.Name, err)
		}
	}
	if ab.Valid {
		c.AB = new(snapshot.ABSplit)
		if err := json.Unmarshal([]byte(ab.String), c.AB); err != nil {
			return c, fmt.Errorf("channel %s ab: %w", c.Name, err)
		}
	}
	if gate.Valid {
		c.NativeGate = new(snapshot.NativeGate)
		if err := json.Unmarshal([]byte(gate.String), c.NativeGate); err != nil {
			return c, fmt.Errorf("channel %s native gate: %w", c.Name, err)
		}
	}
	if windows.Valid {
		c.Windows = new(snapshot.Windows)
		if err := json.Unmarshal([]byte(windows.String), c.Windows); err != nil {
			return c, fmt.Errorf("channel %s windows: %w", c.Name, err)
		}
	}
	return c, nil
}

func listChannels(ctx context.Context, q querier, where string, args ...any) ([]Channel, error) {
	rows, err := q.QueryContext(ctx, `SELECT rowid, `+channelCols+`, rollout, ab, builtin, preview_expires, native_gate, windows FROM channels `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Channel{}
	for rows.Next() {
		c, err := scanChannel(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// ListChannels returns the app's channels by name.
func (s *Store) ListChannels(ctx context.Context, appID string) ([]Channel, error) {
	if _, err := s.GetApp(ctx, appID); err != nil {
		return nil, err
	}
	return listChannels(ctx, s.db, `WHERE app_id = ? ORDER BY name`, appID)
}

// PutChannel creates the channel (with Capgo's defaults, then the patch) or
// updates the given fields of an existing one. With create set, an existing
// channel is ErrExists. Making a channel public takes the default role, for
// the platforms it enables, away from other public channels: those are
// returned in demoted.
func (s *Store) PutChannel(ctx context.Context, appID, name string, p ChannelPatch, create bool) (ch Channel, created bool, demoted []string, err error) {
	err = s.write(ctx, true, func(tx *Tx) error {
		if err := appExists(ctx, tx, appID); err != nil {
			return err
		}
		existing, err := listChannels(ctx, tx, `WHERE app_id = ? AND name = ?`, appID, name)
		if err != nil {
			return err
		}
		now := time.Now().UTC().Truncate(time.Second)
		var before *snapshot.Channel
		if len(existing) == 1 {
			if create {
				return ErrExists
			}
			ch = existing[0]
			prev := ch.Channel
			before = &prev
		} else {
			created = true
			ch = Channel{Channel: NewChannel(name), AppID: appID, CreatedAt: now}
		}
		prevBundle, prevGate := ch.Bundle, ch.NativeGate
		p.apply(&ch.Channel)
		gate, err := nextGate(prevBundle, prevGate, ch.Bundle, p.MinNativeBuild)
		if err != nil {
			return err
		}
		ch.UpdatedAt = now
		if ch.Preview() && (ch.Public || ch.AllowDeviceSelfSet) {
			return invalid(CodePreviewChannel, "channel %q is a preview channel: devices join it with its token only, so it cannot be public or self-assignable", name)
		}
		if ch.Windows != nil && p.Windows != nil {
			if err := ch.Windows.Normalize(); err != nil {
				return &InvalidError{Code: snapshot.CodeInvalidWindow, Msg: err.Error()}
			}
		}
		if !snapshot.ValidDisableAutoUpdate(ch.DisableAutoUpdate) {
			return &InvalidError{Code: "invalid_disable_auto_update", Msg: fmt.Sprintf("disable_auto_update %q: want major, minor, patch, metadata or none", ch.DisableAutoUpdate)}
		}
		var bundle any
		builtin := ch.Bundle == snapshot.BuiltinVersion
		if ch.Bundle != "" && !builtin {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM bundles WHERE app_id = ? AND version = ?`, appID, ch.Bundle).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return &InvalidError{Code: "unknown_bundle", Msg: fmt.Sprintf("app %s has no bundle %q", appID, ch.Bundle)}
			}
			bundle = ch.Bundle
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO channels (`+channelCols+`, builtin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (app_id, name) DO UPDATE SET bundle_version = excluded.bundle_version, builtin = excluded.builtin, public = excluded.public, ios = excluded.ios,
			android = excluded.android, electron = excluded.electron, allow_device_self_set = excluded.allow_device_self_set,
			allow_emulator = excluded.allow_emulator, allow_dev = excluded.allow_dev, allow_prod = excluded.allow_prod,
			allow_device = excluded.allow_device, disable_auto_update = excluded.disable_auto_update,
			disable_auto_update_under_native = excluded.disable_auto_update_under_native, updated_at = excluded.updated_at`,
			appID, name, bundle, ch.Public, ch.IOS, ch.Android, ch.Electron, ch.AllowDeviceSelfSet, ch.AllowEmulator, ch.AllowDev,
			ch.AllowProd, ch.AllowDevice, ch.DisableAutoUpdate, ch.DisableAutoUpdateUnderNative, ch.CreatedAt.Unix(), ch.UpdatedAt.Unix(), builtin)
		if err != nil {
			return err
		}
		if err := saveGate(ctx, tx, appID, name, gate); err != nil {
			return err
		}
		if p.Windows != nil {
			var windows any
			if ch.Windows != nil {
				j, err := json.Marshal(ch.Windows)
				if err != nil {
					return err
				}
				windows = string(j)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE channels SET windows = ? WHERE app_id = ? AND name = ?`, windows, appID, name); err != nil {
				return err
			}
		}
		saved, err := listChannels(ctx, tx, `WHERE app_id = ? AND name = ?`, appID, name)
		if err != nil || len(saved) != 1 {
			return fmt.Errorf("re-read channel %s: %v", name, err)
		}
		ch = saved[0]
		action := "channel.changed"
		if created {
			action = "channel.created"
		}
		if err := auditChannel(ctx, tx, appID, action, before, ch.Channel); err != nil {
			return err
		}
		if !ch.Public {
			return nil
		}
		var conds []string
		for _, pf := range []struct {
			on  bool
			col string
		}{{ch.IOS, "ios"}, {ch.Android, "android"}, {ch.Electron, "electron"}} {
			if pf.on {
				conds = append(conds, pf.col+" = 1")
			}
		}
		if len(conds) == 0 {
			return nil
		}
		others, err := listChannels(ctx, tx, `WHERE app_id = ? AND name <> ? AND public = 1 AND (`+strings.Join(conds, " OR ")+`) ORDER BY name`, appID, name)
		if err != nil {
			return err
		}
		for _, o := range others {
			if _, err := tx.ExecContext(ctx, `UPDATE channels SET public = 0, updated_at = ? WHERE app_id = ? AND name = ?`, now.Unix(), appID, o.Name); err != nil {
				return err
			}
			demotedCh := o.Channel
			demotedCh.Public = false
			if err := auditChannel(ctx, tx, appID, "channel.changed", &o.Channel, demotedCh); err != nil {
				return err
			}
			demoted = append(demoted, o.Name)
		}
		return nil
	})
	return ch, created, demoted, err
}

// Snapshot reads the delivery configuration, at one consistent revision,
// except device overrides, which travel in shards (see OverrideShard). The
// caller lists the shards and indexes the snapshot.
func (s *Store) Snapshot(ctx context.Context) (*snapshot.Snapshot, error) {
	tx, err := s.db.beginRead(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: snapshot: %w", err)
	}
	defer tx.Rollback()
	snap := &snapshot.Snapshot{Format: snapshot.FormatVersion}
	// Issued: when the revision moved, so that every origin sharing the
	// store issues a revision at the same time (Server.publish).
	if err := tx.QueryRowContext(ctx, `SELECT rev, changed_at FROM revision WHERE id = 1`).Scan(&snap.Rev, &snap.Issued); err != nil {
		return nil, fmt.Errorf("store: snapshot: %w", err)
	}
	apps := map[string]*snapshot.App{}
	rows, err := tx.QueryContext(ctx, `SELECT id, expose_metadata, allow_device_custom_id FROM apps ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: snapshot: %w", err)
	}
	for rows.Next() {
		a := &snapshot.App{}
		var allowCustomID bool
		if err := rows.Scan(&a.ID, &a.ExposeMetadata, &allowCustomID); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: snapshot: %w", err)
		}
		a.IgnoreCustomID = !allowCustomID
		apps[a.ID] = a
		snap.Apps = append(snap.Apps, a)
	}
	rows.Close()
	bundles, err := listBundles(ctx, tx, `ORDER BY app_id, created_at, rowid`)
	if err != nil {
		return nil, fmt.Errorf("store: snapshot: %w", err)
	}
	deltas, err := listDeltas(ctx, tx, "")
	if err != nil {
		return nil, fmt.Errorf("store: snapshot: %w", err)
	}
	manifests, err := listManifests(ctx, tx, "")
	if err != nil {
		return nil, fmt.Errorf("store: snapshot: %w", err)
	}
	for _, b := range bundles {
		apps[b.AppID].Bundles = append(apps[b.AppID].Bundles, &snapshot.Bundle{
			Version: b.Version, SHA256: b.SHA256, Size: b.Size,
			MinUpdateVersion: b.MinUpdateVersion, Comment: b.Comment, Link: b.Link,
			Canonical: b.Canonical, CanonicalSize: b.CanonicalSize, Deltas: deltas[b.AppID+"\x00"+b.Version],
			Manifest:   manifests[b.AppID+"\x00"+b.Version],
			SessionKey: b.SessionKey, Checksum: b.Checksum, KeyID: b.KeyID,
			Expo:    b.Expo,
			Created: b.CreatedAt.Unix(),
		})
	}
	channels, err := listChannels(ctx, tx, `ORDER BY app_id, name`)
	if err != nil {
		return nil, fmt.Errorf("store: snapshot: %w", err)
	}
	for _, c := range channels {
		ch := c.Channel
		apps[c.AppID].Channels = append(apps[c.AppID].Channels, &ch)
	}
	rules, err := listSegments(ctx, tx, "")
	if err != nil {
		return nil, fmt.Errorf("store: snapshot: %w", err)
	}
	for _, r := range rules {
		apps[r.AppID].Rules = append(apps[r.AppID].Rules, &r.Rule)
	}
	cohorts, err := listCohortRefs(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("store: snapshot: %w", err)
	}
	for app, refs := range cohorts {
		if a := apps[app]; a != nil {
			a.Cohorts = refs
		}
	}
	return snap, nil
}
