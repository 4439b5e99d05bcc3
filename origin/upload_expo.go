package origin

import (
	"errors"
	"io"
	"mime/multipart"
	"net/http"

	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// An Expo update (`updraft bundle upload DIR --expo`) arrives as
// multipart/form-data, in order:
//
//	expo    JSON snapshot.ExpoUpdate: per platform the runtime version,
//	        the launch asset and the assets, as paths of the zip; the extra
//	bundle  the zip of the folder `npx expo export` wrote
//
// Multipart rather than a query field: the document lists every asset and
// carries the app config (extra.expoClient), easily more than a request
// line should hold; sent first, a bad one is refused before the zip
// streams. The origin trusts none of it: the document is parsed strictly
// and bounded (api.ParseExpoUpdate), the zip gets the checks of every
// upload except the index.html rule (an Expo export has none), and every
// path the document names must be a non-empty regular file of that zip
// (api.CheckExpoFiles). The zip is then an ordinary bundle: the build job
// stores its files one by one in its manifest, where the edge finds the
// Expo assets. An Expo update is never encrypted end to end: the client
// checks each asset by the SHA-256 of its plaintext.

// checkExpoMeta parses and validates the "expo" part (400
// invalid_expo_metadata).
func checkExpoMeta(raw []byte) (*snapshot.ExpoUpdate, error) { return api.ParseExpoUpdate(raw) }

// uploadExpo stores an Expo update whose "expo" part, read from mr, is p.
// b carries the validated query fields.
func (s *Server) uploadExpo(w http.ResponseWriter, r *http.Request, b store.Bundle, channel string, mr *multipart.Reader, p *multipart.Part) error {
	ctx := r.Context()
	limit := s.cfg.MaxBundleSize.String()
	raw, err := io.ReadAll(io.LimitReader(p, api.MaxExpoJSON+1))
	if err != nil {
		return uploadErr(err, limit)
	}
	expo, err := checkExpoMeta(raw)
	if err != nil {
		return err
	}
	p, err = mr.NextPart()
	switch {
	case err == io.EOF:
		return errf(http.StatusBadRequest, "invalid_upload", "multipart upload ends before its \"bundle\" part (an Expo update: expo, bundle)")
	case err != nil:
		return uploadErr(err, limit)
	case p.FormName() == "meta":
		return errExpoEncrypted()
	case p.FormName() != "bundle":
		return errf(http.StatusBadRequest, "invalid_upload", "multipart part %q: want \"bundle\" (an Expo update: expo, bundle)", p.FormName())
	}
	bw, err := s.blobs.Create(int64(s.cfg.MaxBundleSize))
	if err != nil {
		return err
	}
	defer bw.Abort() // no-op after Commit
	if _, err := io.Copy(bw, p); err != nil {
		return uploadErr(err, limit)
	}
	switch extra, err := mr.NextPart(); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return uploadErr(err, limit)
	case extra.FormName() == "meta" || extra.FormName() == "file":
		return errExpoEncrypted()
	default:
		return errf(http.StatusBadRequest, "invalid_upload", "multipart part %q after the bundle: an Expo update is the parts expo and bundle", extra.FormName())
	}
	entries, err := api.CheckZipFiles(ctx, bw.TempPath(), zipLimits(s.cfg))
	if err == nil {
		files := make(map[string]int64, len(entries))
		for _, e := range entries {
			files[e.Path] = e.Size
		}
		err = api.CheckExpoFiles(expo, files)
	}
	if err != nil {
		if ae := (*apiError)(nil); errors.As(err, &ae) && ae.Code == "invalid_bundle" {
			s.log.Warn("origin: Expo upload refused", "app", b.AppID, "version", b.Version, "bytes", bw.Size(), "reason", ae.Message)
		}
		return err
	}
	info, err := bw.Commit("")
	if err != nil {
		return err
	}
	b.SHA256, b.Size, b.Expo = info.SHA256, info.Size, expo
	return s.saveBundle(w, r, b, nil, channel)
}
