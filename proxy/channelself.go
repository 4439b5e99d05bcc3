package proxy

import (
	"strconv"

	"github.com/valyala/fastjson"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// /channel_self, the plugin's setChannel / getChannel / unsetChannel /
// listChannels. Current plugins (≥ 5.34.0, 6.34.0, 7.34.0, 8.x) keep a
// self-assigned channel on the device and send it as defaultChannel with
// every update check, so the edge only validates and answers: a
// self-assignment takes effect at the device's next /updates, with no
// per-device state at the edge.

// channelSelfCheck parses and validates the info object of POST/PUT
// /channel_self. It returns false after writing an error answer.
func (e *Edge) channelSelfCheck(body []byte, st *updateState, out *reply) (*snapshot.Snapshot, *snapshot.App, *fastjson.Value, bool) {
	v, err := st.parser.ParseBytes(body)
	if err != nil {
		out.badRequest(codeInvalidJSON, "Invalid JSON body", nil)
		return nil, nil, nil, false
	}
	if v.Type() != fastjson.TypeObject || v.GetObject().Len() == 0 {
		out.badRequest(snapshot.CodeInvalidBody, "Cannot parse body", nil)
		return nil, nil, nil, false
	}
	fillRequest(st, v)
	r := &st.req
	switch {
	case r.DeviceID == "":
		out.badRequest(snapshot.CodeMissingDeviceID, "Cannot find device_id", nil)
		return nil, nil, nil, false
	case r.AppID == "":
		out.badRequest(snapshot.CodeMissingAppID, "Cannot find app_id", nil)
		return nil, nil, nil, false
	case !snapshot.ValidAppID(r.AppID), !snapshot.ValidDeviceID(r.DeviceID):
		out.badRequest(snapshot.CodeInvalidBody, "Cannot parse body", nil)
		return nil, nil, nil, false
	}
	if r.Platform != snapshot.PlatformIOS && r.Platform != snapshot.PlatformAndroid && r.Platform != snapshot.PlatformElectron {
		out.badRequest(snapshot.CodeInvalidBody, "Cannot parse body", []byte(`{"issues":[{"path":["platform"],"message":"Platform is not supported or invalid"}]}`))
		return nil, nil, nil, false
	}
	s := e.snap.Load()
	if s == nil {
		out.jsonError(503, codeNotReady, "Edge has no snapshot yet")
		return nil, nil, nil, false
	}
	app := s.App(r.AppID)
	if app == nil {
		out.status, out.contentType = 200, contentTypeJSON
		out.body = appendRefusal(out.body[:0], &snapshot.Decision{Code: snapshot.CodeAppNotFound, Message: "App not found", Kind: snapshot.KindFailed})
		return nil, nil, nil, false
	}
	return s, app, v, true
}

// channelSelfSet answers POST /channel_self (setChannel).
func (e *Edge) channelSelfSet(body []byte, out *reply) {
	st := updateStates.Get().(*updateState)
	defer updateStates.Put(st)
	_, app, v, ok := e.channelSelfCheck(body, st, out)
	if !ok {
		e.metrics.channelSelf("set", "invalid")
		return
	}
	name := string(v.GetStringBytes("channel"))
	out.status, out.contentType = 200, contentTypeJSON
	ch := app.Channel(name)
	refuse := func(code, msg string) {
		out.body = append(out.body[:0], '{')
		out.body = appendField(out.body, true, "error", code)
		out.body = appendField(out.body, false, "message", msg)
		out.body = appendField(out.body, false, "channel", name)
		out.body = appendField(out.body, false, "app_id", app.ID)
		out.body = append(out.body, '}')
		e.metrics.channelSelf("set", code)
	}
	switch {
	case name == "":
		out.body = append(out.body[:0], `{"error":"missing_channel","message":"Cannot find channel in body"}`...)
		e.metrics.channelSelf("set", "missing_channel")
	case ch == nil:
		refuse("channel_not_found", "Cannot find channel")
	case !ch.AllowDeviceSelfSet && ch.Public:
		refuse("public_channel_self_set_not_allowed", "This channel is public and does not allow device self-assignment. Unset the channel and the device will automatically use the public channel.")
	case !ch.AllowDeviceSelfSet:
		refuse("channel_self_set_not_allowed", "This channel does not allow devices to self associate")
	default:
		out.body = append(out.body[:0], `{"status":"ok","allowSet":true}`...)
		e.metrics.channelSelf("set", "ok")
	}
}

// channelSelfGet answers PUT /channel_self (getChannel): the channel the
// device's next update check will use, "override" when the operator or the
// device chose it, "default" otherwise.
func (e *Edge) channelSelfGet(body []byte, out *reply) {
	st := updateStates.Get().(*updateState)
	defer updateStates.Put(st)
	s, _, _, ok := e.channelSelfCheck(body, st, out)
	if !ok {
		e.metrics.channelSelf("get", "invalid")
		return
	}
	out.status, out.contentType = 200, contentTypeJSON
	ch, rule := snapshot.ChannelFor(s, &st.req)
	if ch == nil {
		out.body = append(out.body[:0], `{"error":"channel_not_found","message":"Cannot find channel"}`...)
		e.metrics.channelSelf("get", "channel_not_found")
		return
	}
	status, allowSet := "default", "true"
	switch rule {
	case snapshot.RuleOverride:
		status, allowSet = "override", "false"
	case snapshot.RuleSelfAssigned:
		status = "override"
	}
	out.body = append(out.body[:0], '{')
	out.body = appendField(out.body, true, "channel", ch.Name)
	out.body = appendField(out.body, false, "status", status)
	out.body = append(out.body, `,"allowSet":`...)
	out.body = append(out.body, allowSet...)
	out.body = append(out.body, '}')
	e.metrics.channelSelf("get", "ok")
}

// channelSelfList answers GET /channel_self?app_id=&platform=&is_emulator=&is_prod=
// (listChannels): channels the device may assign itself to.
func (e *Edge) channelSelfList(appID, platform, isEmulator, isProd string, out *reply) {
	if appID == "" || platform == "" || !snapshot.ValidAppID(appID) {
		out.badRequest("invalid_query_parameters", "Cannot parse body", nil)
		e.metrics.channelSelf("list", "invalid")
		return
	}
	s := e.snap.Load()
	if s == nil {
		out.jsonError(503, codeNotReady, "Edge has no snapshot yet")
		return
	}
	app := s.App(appID)
	out.status, out.contentType = 200, contentTypeJSON
	if app == nil {
		out.body = appendRefusal(out.body[:0], &snapshot.Decision{Code: snapshot.CodeAppNotFound, Message: "App not found", Kind: snapshot.KindFailed})
		return
	}
	emu, prod := isEmulator == "true", isProd != "false"
	out.body = append(out.body[:0], '[')
	n := 0
	for _, ch := range app.Channels {
		if !ch.Platform(platform) || !(ch.AllowDeviceSelfSet || ch.Public) {
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
