package proxy

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// /channel_self, the plugin's setChannel (POST), getChannel (PUT),
// unsetChannel (DELETE) and listChannels (GET), as Capgo's
// plugin_runtime/plugins/channel_self.ts answers them.
//
// Current plugins (≥ 5.34.0, 6.34.0, 7.34.0, every 8.x) keep a
// self-assigned channel on the device and send it as defaultChannel with
// every update check, so the edge only validates and answers. Older
// ("legacy") plugins expect the server to remember it: their setChannel and
// unsetChannel are stored as device overrides with source "device" at the
// origin (the edge holds no state), through DeviceChannels; the edge answers
// once its own snapshot holds the change, so the device's next /updates at
// this edge sees it.

// DeviceChannels stores the channel choices of legacy plugins at the origin:
// POST /v1/device-channel, or the origin itself under `updraft serve`.
type DeviceChannels interface {
	// SetDeviceChannel pins deviceID of appID to channel ("" removes the
	// device's override) and returns the snapshot revision that holds the
	// change. A *DeviceChannelRefusal is Capgo's refusal (this edge's
	// snapshot was behind the origin's); any other error means the change
	// was not stored.
	SetDeviceChannel(ctx context.Context, appID, deviceID, channel string) (rev int64, err error)
}

// DeviceChannelRefusal is the origin refusing a device's channel change with
// one of Capgo's /channel_self codes (cannot_override,
// channel_self_set_not_allowed, channel_not_found, app_not_found).
type DeviceChannelRefusal struct {
	Code    string
	Message string
}

func (r *DeviceChannelRefusal) Error() string { return r.Code + ": " + r.Message }

// ErrDeviceChannelsBusy is an upstream refusing a device channel change for
// its rate limit: the device gets 429 with Retry-After, and retries.
var ErrDeviceChannelsBusy = errors.New("device channel changes: upstream busy")

// deviceChannelRefusals are the codes a DeviceChannels upstream refuses
// with, and the message a device gets for each (Capgo's).
var deviceChannelRefusals = map[string]string{
	"cannot_override":              "Cannot change device override current channel don't allow it",
	"channel_self_set_not_allowed": "This channel does not allow devices to self associate",
	"channel_not_found":            "Cannot find channel",
	"app_not_found":                "App not found",
	"override_not_allowed":         "Cannot do channel override",
}

// SetDeviceChannels sets where legacy plugins' channel choices are stored.
// Without it they are refused with 503 upstream_unavailable. Call it before
// serving.
func (e *Edge) SetDeviceChannels(dc DeviceChannels) { e.deviceChannels = dc }

// deviceChannelWait bounds how long a legacy setChannel waits for this
// edge's snapshot to hold the change it stored.
const deviceChannelWait = 2 * time.Second

const (
	codeInvalidQuery = "invalid_query_parameters"
	codeCannotOver   = "cannot_override"
	msgCannotOver    = "Cannot change device override current channel don't allow it"
)

func validPlatform(p string) bool {
	return p == snapshot.PlatformIOS || p == snapshot.PlatformAndroid || p == snapshot.PlatformElectron
}

// channelSelfValidate applies Capgo's parsePluginBody checks, in its order
// (plugin_parser.ts:56-85), to st.req filled from a body or a query: empty
// → invalid (invalid_json_body for bodies, invalid_query_parameters for
// queries), missing device_id (unless !requireDevice, GET), missing app_id,
// a version_build that is not semver (semver_error), then the schema. It
// writes the 400 answer and returns false on failure.
func channelSelfValidate(r *snapshot.Request, empty bool, invalid string, requireDevice bool, out *reply) bool {
	switch {
	case empty:
		out.badRequest(invalid, "Cannot parse body", nil)
		return false
	case requireDevice && r.DeviceID == "":
		out.badRequest(snapshot.CodeMissingDeviceID, "Cannot find device_id", nil)
		return false
	case r.AppID == "":
		out.badRequest(snapshot.CodeMissingAppID, "Cannot find app_id", nil)
		return false
	}
	if r.VersionBuild != "" {
		if _, ok := snapshot.CoerceBuild(r.VersionBuild); !ok {
			out.requestError(snapshot.SemverError(r.VersionBuild))
			return false
		}
	}
	var issues []snapshot.Issue
	if !snapshot.ValidAppID(r.AppID) {
		issues = append(issues, snapshot.Issue{Path: "app_id", Message: "App ID must be a reverse domain string"})
	}
	if requireDevice && !snapshot.ValidDeviceID(r.DeviceID) {
		issues = append(issues, snapshot.Issue{Path: "device_id", Message: "Device ID must be a valid UUID string"})
	}
	if !validPlatform(r.Platform) {
		issues = append(issues, snapshot.Issue{Path: "platform", Message: "Platform is not supported or invalid"})
	}
	if issues != nil {
		out.requestError(&snapshot.RequestError{Code: invalid, Message: "Cannot parse body", Issues: issues})
		return false
	}
	return true
}

// channelSelfApp returns the app of a validated request from the current
// snapshot, or writes the answer (503 before a snapshot, app_not_found).
func (e *Edge) channelSelfApp(appID string, out *reply) (*snapshot.App, bool) {
	s := e.snap.Load()
	if s == nil {
		out.jsonError(503, codeNotReady, "Edge has no snapshot yet")
		return nil, false
	}
	app := s.App(appID)
	if app == nil {
		// No "kind": Capgo puts it on /updates answers only (update.ts:119-157).
		out.refusal200(snapshot.CodeAppNotFound, "App not found")
		return nil, false
	}
	return app, true
}

// channelSelfBody parses and validates the info object of POST/PUT
// /channel_self (whatever its Content-Type: Capgo reads the body as JSON
// regardless, and its tests send none). It returns false after writing an
// error answer.
func (e *Edge) channelSelfBody(body []byte, st *updateState, out *reply) (*snapshot.App, *fastjson.Value, bool) {
	v, code := parseBody(st, body, out)
	if code != "" {
		return nil, nil, false
	}
	typeErr := fillRequest(st, &st.fields)
	if !channelSelfValidate(&st.req, st.fields.members == 0, snapshot.CodeInvalidBody, true, out) {
		return nil, nil, false
	}
	// The rest of Capgo's channelSelfRequestSchema (plugin_validation.ts):
	// field types, key_id ≤ 20 (key_id_e2e.test.ts:255), install_source ≤ 64.
	var issues []snapshot.Issue
	if typeErr != nil {
		issues = append(issues, snapshot.Issue{Path: typeErr.path, Message: typeErr.msg})
	}
	if c := v.Get("channel"); c != nil && c.Type() != fastjson.TypeString && c.Type() != fastjson.TypeNull {
		issues = append(issues, snapshot.Issue{Path: "channel", Message: "channel must be a string"})
	}
	if len(st.req.KeyID) > 20 {
		issues = append(issues, snapshot.Issue{Path: "key_id", Message: "String must contain at most 20 character(s)"})
	}
	if len(st.req.InstallSource) > 64 {
		issues = append(issues, snapshot.Issue{Path: "install_source", Message: "String must contain at most 64 character(s)"})
	}
	if issues != nil {
		out.requestError(&snapshot.RequestError{Code: snapshot.CodeInvalidBody, Message: "Cannot parse body", Issues: issues})
		return nil, nil, false
	}
	app, ok := e.channelSelfApp(st.req.AppID, out)
	return app, v, ok
}

// channelSelfSet answers POST /channel_self (setChannel), Capgo
// channel_self.ts:285-415. Current plugins are only validated:
// {"status":"ok","allowSet":true}. A legacy plugin's choice is stored as a
// device override through the origin: {"status":"ok"}.
func (e *Edge) channelSelfSet(ctx context.Context, body []byte, out *reply) {
	st := updateStates.Get().(*updateState)
	defer updateStates.Put(st)
	app, v, ok := e.channelSelfBody(body, st, out)
	if !ok {
		e.metrics.channelSelf("set", "invalid")
		return
	}
	r := &st.req
	name := string(v.GetStringBytes("channel"))
	legacy := snapshot.LegacyChannelSelf(r.PluginVersion)
	var cur *snapshot.Channel // the device's override, read for legacy plugins only
	if legacy {
		cur = app.Override(r.DeviceID)
	}
	out.status, out.contentType = 200, contentTypeJSON
	ch := app.Channel(name)
	refuseAs := func(code, msg, label string) {
		out.body = append(out.body[:0], '{')
		out.body = appendField(out.body, true, "error", code)
		out.body = appendField(out.body, false, "message", msg)
		out.body = appendField(out.body, false, "channel", name)
		out.body = appendField(out.body, false, "app_id", app.ID)
		out.body = append(out.body, '}')
		e.metrics.channelSelf("set", label)
	}
	refuse := func(code, msg string) { refuseAs(code, msg, code) }
	// Preview channels (preview.go): unknown by name; joined with a valid
	// preview token only, by plugins that keep their channel themselves.
	var preview error
	switch {
	case ch != nil && ch.Preview():
		ch = nil
	case ch == nil && snapshot.LooksLikePreviewToken(name):
		if ch, preview = e.previewChannel(app, name, time.Now()); preview == nil && legacy {
			ch, preview = nil, errPreviewLegacy
		}
	}
	switch {
	case name == "":
		out.body = append(out.body[:0], `{"error":"missing_channel","message":"Cannot find channel in body"}`...)
		e.metrics.channelSelf("set", "missing_channel")
	case cur != nil && !cur.AllowDeviceSelfSet:
		out.refusal200(codeCannotOver, msgCannotOver)
		e.metrics.channelSelf("set", codeCannotOver)
	case preview == errPreviewLegacy:
		refuseAs("channel_self_set_not_allowed", "This channel does not allow devices to self associate", previewReason(preview))
	case preview != nil:
		refuseAs("channel_not_found", "Cannot find channel", previewReason(preview))
	case ch != nil && ch.Preview():
		out.body = append(out.body[:0], `{"status":"ok","allowSet":true}`...)
		e.metrics.channelSelf("set", "preview_ok")
	case ch == nil:
		refuse("channel_not_found", "Cannot find channel")
	case !ch.AllowDeviceSelfSet && ch.Public:
		refuse("public_channel_self_set_not_allowed", "This channel is public and does not allow device self-assignment. Unset the channel and the device will automatically use the public channel.")
	case !ch.AllowDeviceSelfSet:
		refuse("channel_self_set_not_allowed", "This channel does not allow devices to self associate")
	case !legacy:
		out.body = append(out.body[:0], `{"status":"ok","allowSet":true}`...)
		e.metrics.channelSelf("set", "ok")
	default:
		// Capgo: choosing the platform's main (default) channel removes the
		// override; choosing the channel already pinned writes nothing.
		target := name
		if main := app.DefaultChannel(r.Platform); main != nil && main.Name == name {
			if cur == nil {
				out.ok()
				e.metrics.channelSelf("set", "ok")
				return
			}
			target = ""
		} else if cur != nil && cur.Name == name {
			out.ok()
			e.metrics.channelSelf("set", "ok")
			return
		}
		e.storeDeviceChannel(ctx, "set", app.ID, r.DeviceID, target, out)
	}
}

// storeDeviceChannel stores a legacy plugin's choice at the origin, waits
// until this edge serves it, and answers {"status":"ok"}; Capgo's refusal
// when the origin refuses; 503 upstream_unavailable when it cannot be
// stored (never a false ok: the plugin would believe it moved).
func (e *Edge) storeDeviceChannel(ctx context.Context, op, appID, deviceID, channel string, out *reply) {
	if e.deviceChannels == nil {
		out.jsonError(503, codeUpstream, "This edge cannot store the channel of plugins before 7.34.0 (no upstream)")
		e.metrics.channelSelf(op, codeUpstream)
		return
	}
	if e.channelWrites != nil && !e.channelWrites.Allow() {
		out.tooManyChannelWrites()
		e.metrics.channelSelf(op, "too_many_requests")
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	// The strings alias pooled request buffers; an upstream may keep them.
	appID, deviceID, channel = strings.Clone(appID), strings.Clone(deviceID), strings.Clone(channel)
	rev, err := e.deviceChannels.SetDeviceChannel(cctx, appID, deviceID, channel)
	var ref *DeviceChannelRefusal
	switch {
	case errors.Is(err, ErrDeviceChannelsBusy):
		out.tooManyChannelWrites()
		e.metrics.channelSelf(op, "too_many_requests")
	case errors.As(err, &ref):
		msg := deviceChannelRefusals[ref.Code]
		if msg == "" {
			msg = ref.Message
		}
		out.refusal200(ref.Code, msg)
		e.metrics.channelSelf(op, ref.Code)
	case err != nil:
		e.log.Warn("edge: storing a device's channel failed", "app", appID, "device", deviceID, "channel", channel, "err", err)
		out.jsonError(503, codeUpstream, "The channel could not be stored; retry later")
		e.metrics.channelSelf(op, codeUpstream)
	default:
		e.awaitSnapshot(ctx, rev, deviceChannelWait)
		out.ok()
		e.metrics.channelSelf(op, "ok")
	}
}

// awaitSnapshot waits, at most max, until the edge serves a snapshot of at
// least rev. It reports whether it does.
func (e *Edge) awaitSnapshot(ctx context.Context, rev int64, max time.Duration) bool {
	timer := time.NewTimer(max)
	defer timer.Stop()
	for {
		cur, _, changed := e.wireAndChanged()
		if cur >= rev {
			return true
		}
		select {
		case <-changed:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// channelSelfGet answers PUT /channel_self (getChannel), Capgo
// channel_self.ts:417-491. Current plugins: the channel they sent as
// "channel" (an override they hold), else their defaultChannel, else the
// platform's default channel, else "production", as "default" (no
// allowSet). Legacy plugins: the stored override, else the channel named
// by defaultChannel, else the platform's default channel.
func (e *Edge) channelSelfGet(body []byte, out *reply) {
	st := updateStates.Get().(*updateState)
	defer updateStates.Put(st)
	app, v, ok := e.channelSelfBody(body, st, out)
	if !ok {
		e.metrics.channelSelf("get", "invalid")
		return
	}
	r := &st.req
	out.status, out.contentType = 200, contentTypeJSON
	answer := func(name, status string, allowSet *bool) {
		out.body = append(out.body[:0], '{')
		out.body = appendField(out.body, true, "channel", name)
		out.body = appendField(out.body, false, "status", status)
		if allowSet != nil {
			out.body = append(out.body, `,"allowSet":`...)
			out.body = strconv.AppendBool(out.body, *allowSet)
		}
		out.body = append(out.body, '}')
		e.metrics.channelSelf("get", "ok")
	}
	if !snapshot.LegacyChannelSelf(r.PluginVersion) {
		if held := v.GetStringBytes("channel"); len(held) > 0 {
			t := true
			answer(bstr(held), "override", &t)
			return
		}
		name := r.DefaultChannel
		if name == "" {
			// Capgo answers the literal "production"; the platform's
			// default channel is what this device actually gets.
			name = "production"
			if c := app.DefaultChannel(r.Platform); c != nil {
				name = c.Name
			}
		}
		answer(name, "default", nil)
		return
	}
	if cur := app.Override(r.DeviceID); cur != nil {
		allow := cur.AllowDeviceSelfSet
		answer(cur.Name, "override", &allow)
		return
	}
	var c *snapshot.Channel
	if r.DefaultChannel != "" {
		c = app.Channel(r.DefaultChannel)
	} else {
		c = app.DefaultChannel(r.Platform)
	}
	if c == nil {
		out.body = append(out.body[:0], `{"error":"channel_not_found","message":"Cannot find channel"}`...)
		e.metrics.channelSelf("get", "channel_not_found")
		return
	}
	answer(c.Name, "default", nil)
}

// fillQueryRequest reads an info object from query parameters as Capgo's
// convertQueryToBody does (plugin_parser.ts:87-113): device_id lower-cased,
// is_emulator true only for "true", is_prod true when absent or "true".
func fillQueryRequest(st *updateState, q queryGetter) {
	r := &st.req
	*r = snapshot.Request{}
	r.AppID = q.get("app_id")
	r.DeviceID = lowerDeviceID(st, q.get("device_id"))
	r.VersionName = q.get("version_name")
	r.VersionBuild = q.get("version_build")
	r.Platform = q.get("platform")
	r.PluginVersion = q.get("plugin_version")
	r.DefaultChannel = q.get("defaultChannel")
	r.CustomID = q.get("custom_id")
	r.IsEmulator = q.get("is_emulator") == "true"
	prod := q.get("is_prod")
	r.IsProd = prod == "" || prod == "true"
}

// channelSelfUnset answers DELETE /channel_self?... (unsetChannel), Capgo
// channel_self.ts:493-549; its parameters are in the query string. Current
// plugins forget the channel on the device: {"status":"ok"}. For a legacy
// plugin the stored override is removed, through the origin, unless there is
// none or its channel does not allow self-assignment (cannot_override).
func (e *Edge) channelSelfUnset(ctx context.Context, q queryGetter, out *reply) {
	st := updateStates.Get().(*updateState)
	defer updateStates.Put(st)
	fillQueryRequest(st, q)
	r := &st.req
	if !channelSelfValidate(r, q.empty(), codeInvalidQuery, true, out) {
		e.metrics.channelSelf("unset", "invalid")
		return
	}
	app, ok := e.channelSelfApp(r.AppID, out)
	if !ok {
		e.metrics.channelSelf("unset", "invalid")
		return
	}
	if !snapshot.LegacyChannelSelf(r.PluginVersion) {
		out.ok()
		e.metrics.channelSelf("unset", "ok")
		return
	}
	if cur := app.Override(r.DeviceID); cur == nil || !cur.AllowDeviceSelfSet {
		out.refusal200(codeCannotOver, msgCannotOver)
		e.metrics.channelSelf("unset", codeCannotOver)
		return
	}
	e.storeDeviceChannel(ctx, "unset", app.ID, r.DeviceID, "", out)
}

// channelSelfList answers GET /channel_self?app_id=&platform=&is_emulator=&is_prod=
// (listChannels), Capgo channel_self.ts:551-598: channels the device may
// assign itself to.
func (e *Edge) channelSelfList(q queryGetter, out *reply) {
	st := updateStates.Get().(*updateState)
	defer updateStates.Put(st)
	fillQueryRequest(st, q)
	r := &st.req
	if !channelSelfValidate(r, q.empty(), codeInvalidQuery, false, out) {
		e.metrics.channelSelf("list", "invalid")
		return
	}
	app, ok := e.channelSelfApp(r.AppID, out)
	if !ok {
		return
	}
	platform, emu, prod := r.Platform, r.IsEmulator, r.IsProd
	out.status, out.contentType = 200, contentTypeJSON
	out.body = append(out.body[:0], '[')
	n := 0
	for _, ch := range app.Channels {
		if !ch.Platform(platform) || !(ch.AllowDeviceSelfSet || ch.Public) || ch.Preview() {
			continue
		}
		if (emu && !ch.AllowEmulator) || (!emu && !ch.AllowDevice) || (prod && !ch.AllowProd) || (!prod && !ch.AllowDev) {
			continue
		}
		if n > 0 {
			out.body = append(out.body, ',')
		}
		n++
		out.body = append(out.body, `{"id":`...)
		out.body = strconv.AppendInt(out.body, ch.ID, 10)
		out.body = appendField(out.body, false, "name", ch.Name)
		out.body = append(out.body, `,"public":`...)
		out.body = strconv.AppendBool(out.body, ch.Public)
		out.body = append(out.body, `,"allow_self_set":`...)
		out.body = strconv.AppendBool(out.body, ch.AllowDeviceSelfSet)
		out.body = append(out.body, '}')
	}
	out.body = append(out.body, ']')
	e.metrics.channelSelf("list", "ok")
}

// relayDeviceChannel passes a child edge's POST /v1/device-channel on to
// this edge's own upstream and answers with its verdict: {"rev":N}, 409 with
// the refusal's code, or 502 upstream_unavailable.
func (e *Edge) relayDeviceChannel(ctx context.Context, body []byte, out *reply) {
	if e.deviceChannels == nil {
		out.jsonError(503, codeUpstream, "This edge does not forward channel choices")
		return
	}
	var p fastjson.Parser
	v, err := p.ParseBytes(body)
	if err != nil || v.Type() != fastjson.TypeObject {
		out.jsonError(400, "invalid_json", "want {\"app_id\",\"device_id\",\"channel\"}")
		return
	}
	appID, dev, ch := string(v.GetStringBytes("app_id")), string(v.GetStringBytes("device_id")), string(v.GetStringBytes("channel"))
	rev, err := e.deviceChannels.SetDeviceChannel(ctx, appID, dev, ch)
	var ref *DeviceChannelRefusal
	switch {
	case errors.Is(err, ErrDeviceChannelsBusy):
		out.status, out.contentType, out.retryAfter = 429, contentTypeJSON, 1
		out.body = appendEnvelope(out.body[:0], "too_many_requests", "Too many requests", nil)
	case errors.As(err, &ref):
		out.jsonError(409, ref.Code, ref.Message)
	case err != nil:
		e.log.Warn("edge: relaying a child's device channel failed", "app", appID, "err", err)
		out.jsonError(502, codeUpstream, "The origin did not take the change; retry")
	default:
		out.status, out.contentType = 200, contentTypeJSON
		out.body = strconv.AppendInt(append(out.body[:0], `{"rev":`...), rev, 10)
		out.body = append(out.body, '}')
	}
}

// tooManyChannelWrites answers a legacy channel change refused for the
// rate limit: 429 with Retry-After, which the plugin honours.
func (out *reply) tooManyChannelWrites() {
	out.status, out.contentType, out.retryAfter = 429, contentTypeJSON, 1
	out.body = append(out.body[:0], `{"error":"too_many_requests","message":"Too many requests","moreInfo":{"retryAfterSeconds":1}}`...)
}
