// Package client is the operator API's client: what the CLI (cmd/updraft)
// and tests use to call an origin. The wire types are in origin/api.
package client

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/native"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// Client calls the operator API. The CLI and tests use it.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:8090
	APIKey  string
	HTTP    *http.Client
}

// New returns a client for the origin at baseURL.
func New(baseURL, apiKey string) *Client {
	return &Client{BaseURL: config.TrimURL(baseURL), APIKey: apiKey, HTTP: &http.Client{Timeout: 10 * time.Minute}}
}

// APIError is an error answer of the operator API.
type APIError struct {
	Status  int
	Code    string `json:"error"`
	Message string `json:"message"`
	// Details is the answer's structured details, when it has them (e.g.
	// incompatible_native's compatibility report).
	Details json.RawMessage `json:"details,omitempty"`
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s: %s (HTTP %d)", e.Code, e.Message, e.Status)
}

// Do sends a request with body (of contentType) to path and decodes a
// JSON answer into out (nil: ignored); an error answer is an *APIError.
func (c *Client) Do(ctx context.Context, method, path string, body io.Reader, contentType string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.APIKey)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("origin %s: %w (is `updraft serve` running?)", c.BaseURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		e := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Code == "" {
			e.Code, e.Message = "http_error", strings.TrimSpace(string(data))
		}
		return e
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// DoJSON is Do with in (nil: no body) sent as JSON.
func (c *Client) DoJSON(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	return c.Do(ctx, method, path, body, "application/json", out)
}

// CreateApp creates an app.
func (c *Client) CreateApp(ctx context.Context, id, name string) (store.App, error) {
	var a store.App
	err := c.DoJSON(ctx, http.MethodPost, "/api/v1/apps", map[string]string{"id": id, "name": name}, &a)
	return a, err
}

// ListApps lists apps.
func (c *Client) ListApps(ctx context.Context) ([]store.App, error) {
	var out []store.App
	err := c.DoJSON(ctx, http.MethodGet, "/api/v1/apps", nil, &out)
	return out, err
}

// UploadOptions are the optional parts of a bundle upload.
type UploadOptions struct {
	Channel          string
	MinUpdateVersion string
	Comment          string
	Link             string
	// Expo makes the bundle an Expo update (ExpoFromExport builds it from
	// the folder `npx expo export` wrote): sent with the zip as the
	// multipart parts expo and bundle.
	Expo *snapshot.ExpoUpdate
	// NativePackages are recorded with the bundle (origin/native; the CLI
	// scans the app's package.json); nil: not sent, compatibility unknown.
	NativePackages []native.Package
	// With Channel: MinNativeBuild restricts the bundle to devices whose
	// native build is at least this; Force skips the native compatibility
	// check.
	MinNativeBuild string
	Force          bool
}

// uploadQuery is the query of an upload.
func uploadQuery(version string, opt UploadOptions) (url.Values, error) {
	q := url.Values{"version": {version}}
	for k, v := range map[string]string{"channel": opt.Channel, "min_update_version": opt.MinUpdateVersion, "comment": opt.Comment, "link": opt.Link, "min_native_build": opt.MinNativeBuild} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if opt.NativePackages != nil {
		b, err := json.Marshal(opt.NativePackages)
		if err != nil {
			return nil, err
		}
		q.Set("native_packages", string(b))
	}
	if opt.Force {
		q.Set("force", "true")
	}
	return q, nil
}

// UploadBundle uploads a zip stream as version of app.
func (c *Client) UploadBundle(ctx context.Context, app, version string, zipData io.Reader, opt UploadOptions) (store.Bundle, error) {
	q, err := uploadQuery(version, opt)
	if err != nil {
		return store.Bundle{}, err
	}
	body, contentType := zipData, "application/zip"
	if opt.Expo != nil {
		meta, err := json.Marshal(opt.Expo)
		if err != nil {
			return store.Bundle{}, err
		}
		pr, pw := io.Pipe()
		mw := multipart.NewWriter(pw)
		go func() {
			pw.CloseWithError(func() error {
				w, err := mw.CreateFormField("expo")
				if err != nil {
					return err
				}
				if _, err := w.Write(meta); err != nil {
					return err
				}
				if w, err = mw.CreateFormFile("bundle", "bundle.zip"); err != nil {
					return err
				}
				if _, err := io.Copy(w, zipData); err != nil {
					return err
				}
				return mw.Close()
			}())
		}()
		defer pr.Close()
		body, contentType = pr, mw.FormDataContentType()
	}
	var b store.Bundle
	err = c.Do(ctx, http.MethodPost, "/api/v1/apps/"+url.PathEscape(app)+"/bundles?"+q.Encode(), body, contentType, &b)
	return b, err
}

// UploadPath uploads a zip file, or a folder zipped on the fly.
func (c *Client) UploadPath(ctx context.Context, app, version, path string, opt UploadOptions) (store.Bundle, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return store.Bundle{}, err
	}
	if !fi.IsDir() {
		f, err := os.Open(path)
		if err != nil {
			return store.Bundle{}, err
		}
		defer f.Close()
		return c.UploadBundle(ctx, app, version, f, opt)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(ZipDir(path, pw)) }()
	defer pr.Close()
	return c.UploadBundle(ctx, app, version, pr, opt)
}

// ListBundles lists an app's bundles, newest first.
func (c *Client) ListBundles(ctx context.Context, app string) ([]api.BundleInfo, error) {
	var out []api.BundleInfo
	err := c.DoJSON(ctx, http.MethodGet, "/api/v1/apps/"+url.PathEscape(app)+"/bundles", nil, &out)
	return out, err
}

// SetChannel creates or updates a channel with the given fields.
func (c *Client) SetChannel(ctx context.Context, app, name string, p store.ChannelPatch) (api.ChannelResult, error) {
	return c.SetChannelForce(ctx, app, name, p, false)
}

// SetChannelForce is SetChannel, with force skipping the native
// compatibility check of a new bundle.
func (c *Client) SetChannelForce(ctx context.Context, app, name string, p store.ChannelPatch, force bool) (api.ChannelResult, error) {
	var out api.ChannelResult
	body := struct {
		store.ChannelPatch
		Force bool `json:"force,omitempty"`
	}{p, force}
	err := c.DoJSON(ctx, http.MethodPut, "/api/v1/apps/"+url.PathEscape(app)+"/channels/"+url.PathEscape(name), body, &out)
	return out, err
}

// Compatibility compares a bundle's native packages with those of the
// bundle channel serves, and counts the native builds the channel's
// devices run that a bundle gated at minNativeBuild ("": the channel's
// gate) would reach.
func (c *Client) Compatibility(ctx context.Context, app, version, channel, minNativeBuild string) (api.Compatibility, error) {
	var out api.Compatibility
	q := url.Values{"channel": {channel}}
	if minNativeBuild != "" {
		q.Set("min_native_build", minNativeBuild)
	}
	err := c.DoJSON(ctx, http.MethodGet, "/api/v1/apps/"+url.PathEscape(app)+"/bundles/"+url.PathEscape(version)+"/compatibility?"+q.Encode(), nil, &out)
	return out, err
}

// ListChannels lists an app's channels.
func (c *Client) ListChannels(ctx context.Context, app string) ([]store.Channel, error) {
	var out []store.Channel
	err := c.DoJSON(ctx, http.MethodGet, "/api/v1/apps/"+url.PathEscape(app)+"/channels", nil, &out)
	return out, err
}

// ZipDir writes the folder dir as a zip to w: regular files only, in path
// order, with fixed timestamps, so the same folder always gives the same zip
// (and the same SHA-256).
func ZipDir(dir string, w io.Writer) error {
	files, err := dirFiles(dir)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return errors.New("zip: folder has no files")
	}
	zw := zip.NewWriter(w)
	for _, p := range files {
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		hdr := &zip.FileHeader{Name: filepath.ToSlash(rel), Method: zip.Deflate, Modified: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)}
		fw, err := zw.CreateHeader(hdr)
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(fw, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return zw.Close()
}

// dirFiles lists the files ZipDir puts in the zip of dir: its regular
// files (symbolic links are not followed), sorted.
func dirFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

// Rollout applies a rollout action to a channel.
func (c *Client) Rollout(ctx context.Context, app, channel string, req api.RolloutRequest) (store.Channel, error) {
	var out store.Channel
	err := c.DoJSON(ctx, http.MethodPost, "/api/v1/apps/"+url.PathEscape(app)+"/channels/"+url.PathEscape(channel)+"/rollout", req, &out)
	return out, err
}

// SetAB sets a channel's A/B split; no arms clears it.
func (c *Client) SetAB(ctx context.Context, app, channel string, arms []snapshot.Arm) (store.Channel, error) {
	return c.SetABForce(ctx, app, channel, arms, false)
}

// SetABForce is SetAB, with force skipping the native compatibility check
// of the arms.
func (c *Client) SetABForce(ctx context.Context, app, channel string, arms []snapshot.Arm, force bool) (store.Channel, error) {
	var out store.Channel
	path := "/api/v1/apps/" + url.PathEscape(app) + "/channels/" + url.PathEscape(channel) + "/ab"
	if len(arms) == 0 {
		return out, c.DoJSON(ctx, http.MethodDelete, path, nil, &out)
	}
	body := map[string]any{"arms": arms}
	if force {
		body["force"] = true
	}
	return out, c.DoJSON(ctx, http.MethodPut, path, body, &out)
}

// AddSegment adds an attribute rule at position (nil: last).
func (c *Client) AddSegment(ctx context.Context, app string, rule snapshot.Rule, position *int) (store.Segment, error) {
	var out store.Segment
	body := struct {
		snapshot.Rule
		Position *int `json:"position,omitempty"`
	}{rule, position}
	err := c.DoJSON(ctx, http.MethodPost, "/api/v1/apps/"+url.PathEscape(app)+"/segments", body, &out)
	return out, err
}

// ListSegments lists an app's rules in evaluation order.
func (c *Client) ListSegments(ctx context.Context, app string) ([]store.Segment, error) {
	var out []store.Segment
	err := c.DoJSON(ctx, http.MethodGet, "/api/v1/apps/"+url.PathEscape(app)+"/segments", nil, &out)
	return out, err
}

// RemoveSegment deletes a rule.
func (c *Client) RemoveSegment(ctx context.Context, app, name string) error {
	return c.DoJSON(ctx, http.MethodDelete, "/api/v1/apps/"+url.PathEscape(app)+"/segments/"+url.PathEscape(name), nil, nil)
}

// SetOverrides pins devices to channel ("" clears their overrides).
func (c *Client) SetOverrides(ctx context.Context, app, channel string, devices []string) error {
	return c.DoJSON(ctx, http.MethodPut, "/api/v1/apps/"+url.PathEscape(app)+"/overrides", map[string]any{"channel": channel, "devices": devices}, nil)
}

// ListOverrides pages through an app's overrides.
func (c *Client) ListOverrides(ctx context.Context, app, after string, limit int) ([]store.Override, error) {
	var out []store.Override
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if after != "" {
		q.Set("after", after)
	}
	err := c.DoJSON(ctx, http.MethodGet, "/api/v1/apps/"+url.PathEscape(app)+"/overrides?"+q.Encode(), nil, &out)
	return out, err
}

// Resolve asks the origin what an edge would answer this device now.
func (c *Client) Resolve(ctx context.Context, app string, dev api.DeviceRequest) (api.Resolution, error) {
	var out api.Resolution
	err := c.DoJSON(ctx, http.MethodPost, "/api/v1/apps/"+url.PathEscape(app)+"/resolve", dev, &out)
	return out, err
}

// Stats returns an app's analytics; query holds channel, from, to, step.
func (c *Client) Stats(ctx context.Context, app string, query url.Values) (api.StatsReport, error) {
	var out api.StatsReport
	err := c.DoJSON(ctx, http.MethodGet, "/api/v1/apps/"+url.PathEscape(app)+"/stats?"+query.Encode(), nil, &out)
	return out, err
}

// Adoption returns the adoption report of an app (query: channel,
// segment, version).
func (c *Client) Adoption(ctx context.Context, app string, query url.Values) (api.AdoptionReport, error) {
	var out api.AdoptionReport
	err := c.DoJSON(ctx, http.MethodGet, "/api/v1/apps/"+url.PathEscape(app)+"/adoption?"+query.Encode(), nil, &out)
	return out, err
}

// Guard returns a channel's rollout guard with its status and actions.
func (c *Client) Guard(ctx context.Context, app, channel string) (api.GuardInfo, error) {
	var out api.GuardInfo
	err := c.DoJSON(ctx, http.MethodGet, "/api/v1/apps/"+url.PathEscape(app)+"/channels/"+url.PathEscape(channel)+"/guard", nil, &out)
	return out, err
}

// SetGuard sets a channel's rollout guard (zero fields take defaults).
func (c *Client) SetGuard(ctx context.Context, app, channel string, g store.Guard) (api.GuardInfo, error) {
	var out api.GuardInfo
	err := c.DoJSON(ctx, http.MethodPut, "/api/v1/apps/"+url.PathEscape(app)+"/channels/"+url.PathEscape(channel)+"/guard", g, &out)
	return out, err
}

// RemoveGuard removes a channel's rollout guard.
func (c *Client) RemoveGuard(ctx context.Context, app, channel string) error {
	return c.DoJSON(ctx, http.MethodDelete, "/api/v1/apps/"+url.PathEscape(app)+"/channels/"+url.PathEscape(channel)+"/guard", nil, nil)
}

// CreatePreview makes a preview channel serving req.Bundle and returns it
// with its token.
func (c *Client) CreatePreview(ctx context.Context, app string, req api.PreviewRequest) (api.Preview, error) {
	var out api.Preview
	err := c.DoJSON(ctx, http.MethodPost, "/api/v1/apps/"+url.PathEscape(app)+"/previews", req, &out)
	return out, err
}

// ListPreviews lists the app's preview channels with their tokens.
func (c *Client) ListPreviews(ctx context.Context, app string) ([]api.Preview, error) {
	var out []api.Preview
	err := c.DoJSON(ctx, http.MethodGet, "/api/v1/apps/"+url.PathEscape(app)+"/previews", nil, &out)
	return out, err
}

// DeletePreview deletes a preview channel before it expires.
func (c *Client) DeletePreview(ctx context.Context, app, name string) error {
	return c.DoJSON(ctx, http.MethodDelete, "/api/v1/apps/"+url.PathEscape(app)+"/previews/"+url.PathEscape(name), nil, nil)
}

// DeviceQuery selects devices for ListDevices (empty fields: no filter).
type DeviceQuery struct {
	Channel, Version, Platform string
	Limit                      int    // 0: the origin's default (100)
	Cursor                     string // a previous page's NextCursor
}

// ListDevices returns one page of an app's device inventory.
func (c *Client) ListDevices(ctx context.Context, app string, q DeviceQuery) (api.DeviceList, error) {
	var out api.DeviceList
	v := url.Values{}
	for k, s := range map[string]string{"channel": q.Channel, "version": q.Version, "platform": q.Platform, "cursor": q.Cursor} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	err := c.DoJSON(ctx, http.MethodGet, "/api/v1/apps/"+url.PathEscape(app)+"/devices?"+v.Encode(), nil, &out)
	return out, err
}

// CountDevices counts an app's devices matching q's filters (Limit and
// Cursor unused) whose last check-in is at or after since (zero: any).
func (c *Client) CountDevices(ctx context.Context, app string, q DeviceQuery, since time.Time) (int64, error) {
	var out api.DeviceCount
	v := url.Values{}
	for k, s := range map[string]string{"channel": q.Channel, "version": q.Version, "platform": q.Platform} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !since.IsZero() {
		v.Set("since", since.UTC().Format(time.RFC3339Nano))
	}
	err := c.DoJSON(ctx, http.MethodGet, "/api/v1/apps/"+url.PathEscape(app)+"/devices/count?"+v.Encode(), nil, &out)
	return out.Devices, err
}

// Device returns a device's last check-in and recent events.
func (c *Client) Device(ctx context.Context, app, device string) (api.DeviceDetail, error) {
	var out api.DeviceDetail
	err := c.DoJSON(ctx, http.MethodGet, "/api/v1/apps/"+url.PathEscape(app)+"/devices/"+url.PathEscape(device), nil, &out)
	return out, err
}

// TailDevice streams a device's check-ins and events as the origin records
// them, for seconds (0: the origin's default), calling fn for each; it
// returns when the origin ends the stream, ctx ends, or fn fails.
func (c *Client) TailDevice(ctx context.Context, app, device string, seconds int, fn func(store.DeviceLogEntry) error) error {
	p := "/api/v1/apps/" + url.PathEscape(app) + "/devices/" + url.PathEscape(device) + "/tail"
	if seconds > 0 {
		p += "?seconds=" + strconv.Itoa(seconds)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+p, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.APIKey)
	hc := *c.HTTP
	hc.Timeout = 0 // a stream: ctx and the origin bound it
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("origin %s: %w (is `updraft serve` running?)", c.BaseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		e := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Code == "" {
			e.Code, e.Message = "http_error", strings.TrimSpace(string(data))
		}
		return e
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var e store.DeviceLogEntry
		if err := dec.Decode(&e); err != nil {
			if err == io.EOF || ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// ImportCohort streams a cohort file (CSV or JSON lines) to the origin; the
// cohort becomes exactly the file's set of members.
func (c *Client) ImportCohort(ctx context.Context, app, name string, file io.Reader, contentType string) (store.CohortChange, error) {
	var out store.CohortChange
	err := c.Do(ctx, http.MethodPut, "/api/v1/apps/"+url.PathEscape(app)+"/cohorts/"+url.PathEscape(name), file, contentType, &out)
	return out, err
}

// ListCohorts lists an app's cohorts.
func (c *Client) ListCohorts(ctx context.Context, app string) ([]store.Cohort, error) {
	var out []store.Cohort
	err := c.DoJSON(ctx, http.MethodGet, "/api/v1/apps/"+url.PathEscape(app)+"/cohorts", nil, &out)
	return out, err
}

// RemoveCohort deletes a cohort.
func (c *Client) RemoveCohort(ctx context.Context, app, name string) error {
	return c.DoJSON(ctx, http.MethodDelete, "/api/v1/apps/"+url.PathEscape(app)+"/cohorts/"+url.PathEscape(name), nil, nil)
}

// CohortMembers returns a cohort and its member keys (device ids, and the
// keys of custom ids), sorted.
func (c *Client) CohortMembers(ctx context.Context, app, name string) (api.CohortMemberList, error) {
	var out api.CohortMemberList
	err := c.DoJSON(ctx, http.MethodGet, "/api/v1/apps/"+url.PathEscape(app)+"/cohorts/"+url.PathEscape(name)+"/members", nil, &out)
	return out, err
}

// AddCohort adds (or recomputes) a behaviour cohort computed by the origin.
func (c *Client) AddCohort(ctx context.Context, app, name, rule string) (store.CohortChange, error) {
	var out store.CohortChange
	err := c.DoJSON(ctx, http.MethodPost, "/api/v1/apps/"+url.PathEscape(app)+"/cohorts", map[string]string{"name": name, "rule": rule}, &out)
	return out, err
}
