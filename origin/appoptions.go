package origin

import (
	"context"
	"errors"

	"github.com/updraft-cdn/updraft/origin/store"
)

// applyProtocolOptions sets an app's device-protocol options (nil: keep):
// expose ("expose_metadata") sends bundles' link and comment to plugins from
// 5.35.0 / 6.35.0 / 7.35.0 / 8.35.0 on; allowCustom ("allow_device_custom_id")
// false makes segment rules and analytics ignore the custom_id devices send.
// It returns once edges can see the change (read-your-writes), or an API
// error (app_not_found).
func (s *Server) applyProtocolOptions(ctx context.Context, appID string, expose, allowCustom *bool) error {
	if expose == nil && allowCustom == nil {
		return nil
	}
	err := s.store.SetAppProtocol(ctx, appID, expose, allowCustom)
	if errors.Is(err, store.ErrNotFound) {
		return notFoundApp(appID)
	}
	if err != nil {
		return err
	}
	s.log.Info("origin: app protocol options", "app", appID, "expose_metadata", expose, "allow_device_custom_id", allowCustom)
	s.awaitPublished(ctx)
	return nil
}
