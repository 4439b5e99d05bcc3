package store

import (
	"context"
)

// SetAppProtocol sets an app's device-protocol options; nil leaves one as
// it is. exposeMetadata (Capgo's apps.expose_metadata, off by default) sends
// bundles' link and comment to plugins that read them; allowDeviceCustomID
// (apps.allow_device_custom_id, on by default) set to false makes segment
// rules and analytics ignore the custom_id devices send. ErrNotFound when
// the app does not exist.
func (s *Store) SetAppProtocol(ctx context.Context, appID string, exposeMetadata, allowDeviceCustomID *bool) error {
	return s.write(ctx, true, func(tx *Tx) error {
		if err := appExists(ctx, tx, appID); err != nil {
			return err
		}
		if exposeMetadata != nil {
			if _, err := tx.ExecContext(ctx, `UPDATE apps SET expose_metadata = ? WHERE id = ?`, *exposeMetadata, appID); err != nil {
				return err
			}
		}
		if allowDeviceCustomID != nil {
			if _, err := tx.ExecContext(ctx, `UPDATE apps SET allow_device_custom_id = ? WHERE id = ?`, *allowDeviceCustomID, appID); err != nil {
				return err
			}
		}
		return nil
	})
}
