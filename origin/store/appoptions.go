package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// AppOptions are an app's settings to change; nil leaves one as it is.
type AppOptions struct {
	// KeepBundles: how many of the newest bundles retention keeps (0: all).
	KeepBundles *int
	// ExposeMetadata (Capgo's apps.expose_metadata, off by default) sends
	// bundles' link and comment to plugins that read them.
	ExposeMetadata *bool
	// AllowDeviceCustomID (apps.allow_device_custom_id, on by default) set
	// to false makes segment rules and analytics ignore the custom_id
	// devices send.
	AllowDeviceCustomID *bool
}

// SetAppOptions changes an app's settings in one transaction (one audit
// record, app.changed, with the settings that changed). The revision moves
// when a device-protocol option is given (they are in the snapshot; the
// retention is not: PruneBundles applies it). ErrNotFound when the app does
// not exist.
func (s *Store) SetAppOptions(ctx context.Context, appID string, o AppOptions) error {
	if o.KeepBundles != nil && *o.KeepBundles < 0 {
		return &InvalidError{Code: "invalid_keep", Msg: fmt.Sprintf("keep_bundles %d: want 0 (keep all) or more", *o.KeepBundles)}
	}
	bump := o.ExposeMetadata != nil || o.AllowDeviceCustomID != nil
	return s.write(ctx, bump, func(tx *Tx) error {
		var keep int
		var expose, allow bool
		err := tx.QueryRowContext(ctx, `SELECT keep_bundles, expose_metadata, allow_device_custom_id FROM apps WHERE id = ?`, appID).Scan(&keep, &expose, &allow)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		before := obj{{"keep_bundles", keep}, {"expose_metadata", expose}, {"allow_device_custom_id", allow}}
		if o.KeepBundles != nil {
			keep = *o.KeepBundles
		}
		if o.ExposeMetadata != nil {
			expose = *o.ExposeMetadata
		}
		if o.AllowDeviceCustomID != nil {
			allow = *o.AllowDeviceCustomID
		}
		if _, err := tx.ExecContext(ctx, `UPDATE apps SET keep_bundles = ?, expose_metadata = ?, allow_device_custom_id = ? WHERE id = ?`,
			keep, expose, allow, appID); err != nil {
			return err
		}
		b, a := diff(before, obj{{"keep_bundles", keep}, {"expose_metadata", expose}, {"allow_device_custom_id", allow}})
		return audit(ctx, tx, appID, "app.changed", appID, b, a)
	})
}

// SetAppProtocol sets an app's device-protocol options (see AppOptions);
// nil leaves one as it is. ErrNotFound when the app does not exist.
func (s *Store) SetAppProtocol(ctx context.Context, appID string, exposeMetadata, allowDeviceCustomID *bool) error {
	return s.SetAppOptions(ctx, appID, AppOptions{ExposeMetadata: exposeMetadata, AllowDeviceCustomID: allowDeviceCustomID})
}
