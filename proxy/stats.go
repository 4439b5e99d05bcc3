package proxy

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fastjson"

	"github.com/updraft-cdn/updraft/origin/events"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// Codes of POST /stats (Capgo's, plus the edge's own).
const (
	codeInvalidAppID     = "invalid_app_id"
	codeMixedAppIDs      = "mixed_app_ids"
	codeVersionNotFound  = "version_not_found"
	codeBatchTooLarge    = "batch_too_large"
	codeStatsUnavailable = "stats_unavailable"
)

// Limits of one event (Capgo's where it has them; ours bound the rest).
const (
	maxMetadataFields   = 30
	maxMetadataKey      = 64
	maxMetadataValue    = 2048
	maxStatsStringField = 128
)

// statsState is the pooled scratch of one POST /stats.
type statsState struct {
	parser  fastjson.Parser
	evs     []events.Event
	results []statsResult
	req     snapshot.Request
	meta    []byte
}

type statsResult struct {
	code, msg string
	status    int // for a single event: the HTTP status of the error
	issues    []snapshot.Issue
	version   string // version_not_found
	build     string // semver_error
}

var statsStates = sync.Pool{New: func() any { return new(statsState) }}

// dropLog rate-limits the log line about refused (dropped) events.
var dropLog atomic.Int64

// stats answers POST /stats: one event object or an array of up to 200 of
// one app, validated like Capgo's backend. Valid events are annotated with
// the device's placement (channel, segment, arm) under the current
// snapshot and appended to the durable spool before the answer: a 200 means
// the accepted events survive a crash and reach the origin. When the spool
// cannot take them, the answer is 429 stats_unavailable with Retry-After
// (the plugin keeps its batch and retries after it) and the drop is counted.
func (e *Edge) stats(client netip.Addr, body []byte, out *reply) {
	outcome := e.statsAnswer(client, body, out)
	e.metrics.statsRequests.WithLabelValues(outcome).Inc()
}

func (e *Edge) statsAnswer(client netip.Addr, body []byte, out *reply) string {
	if e.spool == nil {
		out.jsonError(503, codeStatsUnavailable, "This edge does not collect stats (no stats sink configured)")
		return codeStatsUnavailable
	}
	st := statsStates.Get().(*statsState)
	defer statsStates.Put(st)
	v, err := st.parser.ParseBytes(body)
	if err != nil {
		// Capgo answers "moreInfo":{"e":{}} here: its JSON.stringify of the
		// parser's Error object, which carries nothing. The plugin reads only
		// "error", so the empty object /updates answers is used instead.
		out.badRequest(codeInvalidJSON, "Invalid JSON body", nil)
		return codeInvalidJSON
	}
	batch := v.Type() == fastjson.TypeArray
	var items []*fastjson.Value
	if batch {
		items = v.GetArray()
		if len(items) == 0 {
			out.status, out.contentType = 200, contentTypeJSON
			out.body = append(out.body[:0], `{"status":"ok","results":[]}`...)
			return "ok"
		}
		if len(items) > events.MaxBatch {
			out.badRequest(codeBatchTooLarge, "A batch carries at most "+strconv.Itoa(events.MaxBatch)+" events", nil)
			return codeBatchTooLarge
		}
	} else {
		items = []*fastjson.Value{v}
	}
	// One client network posts at most so many events a second (a client
	// making up devices is held back; the plugin waits out Retry-After).
	if !e.clients.allow(e.clients.stats, "stats", client, len(items), out) {
		return "too_many_requests"
	}
	// Capgo checks every app_id before anything else: the first one's
	// problems are a 400, a later one's a 200 refusing the whole batch.
	appID := ""
	for i, it := range items {
		id, msg := statsAppID(it)
		switch {
		case msg != "" && i == 0:
			out.badRequest(codeInvalidAppID, msg, nil)
			return codeInvalidAppID
		case msg != "":
			out.refusal200(codeInvalidAppID, msg)
			return codeInvalidAppID
		case i == 0:
			appID = id
		case id != appID:
			out.refusal200(codeMixedAppIDs, "All events in a batch must have the same app_id")
			return codeMixedAppIDs
		}
	}
	snap := e.snap.Load()
	if snap == nil {
		out.jsonError(503, codeNotReady, "Edge has no verified snapshot yet")
		return codeNotReady
	}
	app := snap.App(appID)
	if app == nil {
		// Capgo's cloud answers 429 on_premise_app, which the plugin retries
		// forever; like /updates, Updraft answers 200 app_not_found.
		if !batch {
			out.refusal200(snapshot.CodeAppNotFound, "App not found")
		} else {
			out.batchResults(len(items), appID, func(int) (string, string, string) { return snapshot.CodeAppNotFound, "App not found", "" })
		}
		return snapshot.CodeAppNotFound
	}
	now := time.Now().UnixMilli()
	prefix := events.PrefixOf(client)
	st.evs = st.evs[:0]
	st.results = st.results[:0]
	for _, it := range items {
		st.results = append(st.results, statsResult{})
		res := &st.results[len(st.results)-1]
		st.evs = append(st.evs, events.Event{})
		ev := &st.evs[len(st.evs)-1]
		if !e.statsEvent(st, snap, app, it, now, ev, res) {
			st.evs = st.evs[:len(st.evs)-1]
			continue
		}
		ev.ClientPrefix = prefix
	}
	if len(st.evs) > 0 {
		rec := events.AppendRecords(make([]byte, 0, 128*len(st.evs)), st.evs, maxRecordBytes)
		if err := e.spool.append(rec); err != nil {
			reason := "write_error"
			switch {
			case errors.Is(err, errSpoolFull):
				reason = "spool_full"
			case errors.Is(err, errSpoolBusy):
				reason = "queue_full"
			case errors.Is(err, errSpoolClosed):
				reason = "shutting_down"
			case errors.Is(err, errSpoolTimeout):
				reason = "write_timeout"
			}
			e.metrics.statsDropped.WithLabelValues(reason).Add(float64(len(st.evs)))
			if last := dropLog.Load(); now-last > 10_000 && dropLog.CompareAndSwap(last, now) {
				e.log.Warn("edge: stats refused with 503; the plugin retries the batch", "reason", reason, "events", len(st.evs), "err", err)
			}
			// 429 + Retry-After: the plugin keeps the batch and waits that
			// long (it retries 5xx every second, ignoring Retry-After).
			out.jsonError(429, codeStatsUnavailable, "Stats cannot be stored right now; retry later")
			out.retryAfter = 5
			return codeStatsUnavailable
		}
		failures := 0
		for i := range st.evs {
			if events.Failure(st.evs[i].Action) {
				failures++
			}
		}
		e.metrics.statsEvents.WithLabelValues("ok").Add(float64(len(st.evs) - failures))
		e.metrics.statsEvents.WithLabelValues("failure").Add(float64(failures))
	}
	if batch {
		out.batchResults(len(st.results), appID, func(i int) (string, string, string) {
			r := &st.results[i]
			return r.code, r.msg, r.version
		})
		return "ok"
	}
	r := &st.results[0]
	switch {
	case r.code == "":
		out.ok()
		return "ok"
	case r.code == codeVersionNotFound:
		out.status, out.contentType = 200, contentTypeJSON
		b := append(out.body[:0], '{')
		b = appendField(b, true, "error", r.code)
		b = appendField(b, false, "message", r.msg)
		b = appendField(b, false, "app_id", appID)
		b = appendField(b, false, "version_name", r.version)
		out.body = append(b, '}')
	default:
		out.requestError(&snapshot.RequestError{Code: r.code, Message: r.msg, Issues: r.issues, VersionBuild: r.build})
	}
	return r.code
}

// statsAppID returns an event's app id, or Capgo's message for a missing
// or malformed one.
func statsAppID(it *fastjson.Value) (string, string) {
	f := it.Get("app_id")
	if it.Type() != fastjson.TypeObject || f == nil || f.Type() != fastjson.TypeString {
		return "", "App ID is required"
	}
	b, _ := f.StringBytes()
	if !snapshot.ValidAppID(bstr(b)) {
		return "", "App ID must be a reverse domain string"
	}
	return bstr(b), ""
}

var requiredMessages = map[string]string{
	"platform": "Platform is required", "version_name": "Version name is required", "action": "action is required",
}

// statsEvent validates one event and fills ev; false (with res set) when
// the event is refused.
func (e *Edge) statsEvent(st *statsState, snap *snapshot.Snapshot, app *snapshot.App, it *fastjson.Value, now int64, ev *events.Event, res *statsResult) bool {
	var issues []snapshot.Issue
	add := func(path, msg string) { issues = append(issues, snapshot.Issue{Path: path, Message: msg}) }
	str := func(key string, required bool, max int) string {
		f := it.Get(key)
		if f == nil || f.Type() == fastjson.TypeNull {
			if required {
				add(key, requiredMessages[key])
			}
			return ""
		}
		if f.Type() != fastjson.TypeString {
			add(key, key+" must be a string")
			return ""
		}
		b, _ := f.StringBytes()
		if len(b) > max {
			add(key, "String must contain at most "+strconv.Itoa(max)+" character(s)")
		}
		return bstr(b)
	}
	boolean := func(key string, def bool) bool {
		b, ok := jsonBool(it.Get(key), def)
		if !ok {
			add(key, key+" must be a boolean")
		}
		return b
	}
	dev := str("device_id", false, 36)
	if dev == "" && len(issues) == 0 {
		res.code, res.msg = snapshot.CodeMissingDeviceID, "Cannot find device_id"
		return false
	}
	if strings.ContainsAny(dev, "ABCDEF") {
		dev = strings.ToLower(dev)
	}
	if f := it.Get("device_id"); f != nil && f.Type() == fastjson.TypeString && len(dev) <= 36 && !snapshot.ValidDeviceID(dev) {
		add("device_id", "Device ID must be a valid UUID string")
	}
	*ev = events.Event{
		Received:       now,
		AppID:          app.ID,
		DeviceID:       dev,
		Platform:       str("platform", true, 32),
		VersionName:    str("version_name", true, maxStatsStringField),
		OldVersionName: str("old_version_name", false, maxStatsStringField),
		VersionBuild:   str("version_build", false, 64),
		PluginVersion:  str("plugin_version", false, 64),
		CustomID:       str("custom_id", false, 36),
		Action:         str("action", true, 64),
		IsEmulator:     boolean("is_emulator", false),
		IsProd:         boolean("is_prod", true),
	}
	if it.Get("version_os") == nil {
		add("version_os", "Version OS is required")
	} else {
		str("version_os", false, 64)
	}
	str("version_code", false, 64)
	str("install_source", false, 64)
	str("key_id", false, 20)
	str("channel", false, maxStatsStringField)
	defaultChannel := str("defaultChannel", false, maxStatsStringField)
	if ev.Action != "" && !events.Actions[ev.Action] {
		add("action", "action must be one of: "+events.ActionList)
	}
	if f := it.Get("timestamp"); f != nil && f.Type() == fastjson.TypeNumber {
		if ts, err := f.Int64(); err == nil && ts > 0 {
			ev.Timestamp = ts
		}
	}
	if f := it.Get("metadata"); f != nil && f.Type() != fastjson.TypeNull {
		if msg := checkMetadata(f); msg != "" {
			add("metadata", msg)
		} else {
			st.meta = appendMetadata(st.meta[:0], f)
			ev.Metadata = string(st.meta)
		}
	}
	if issues != nil {
		res.code, res.msg, res.issues = snapshot.CodeInvalidBody, "Cannot parse body", issues
		return false
	}
	if ev.VersionBuild != "" {
		b, ok := snapshot.CoerceBuild(ev.VersionBuild)
		if !ok {
			res.code, res.build = snapshot.CodeSemver, ev.VersionBuild
			res.msg = "Native version: " + ev.VersionBuild + " doesn't follow semver convention, please check https://capgo.app/semver_tester/ to learn more about semver usage in Capgo"
			return false
		}
		ev.VersionBuild = b
	}
	if ev.Action == "download_fail" && legacyDownloadFail(ev.PluginVersion) {
		// Like Capgo (stats.ts:68-82, 142-150): plugins before 7.17.0 (6.x
		// before 6.14.25) report download_fail for downloads that did not
		// fail. Acknowledged, not kept (it would skew failure rates and the
		// rollout guard), counted — and, as there, before the version is
		// looked up: an unknown version is {"status":"ok"} too.
		e.metrics.statsDropped.WithLabelValues("legacy_download_fail").Inc()
		return false
	}
	// A composite name ("1.2.3:main.js") is about its bundle.
	sent := ev.VersionName
	if i := strings.IndexByte(ev.VersionName, ':'); i >= 0 {
		ev.VersionName = ev.VersionName[:i]
	}
	if ev.VersionName != "builtin" && ev.VersionName != "unknown" && app.Bundle(ev.VersionName) == nil {
		res.code, res.msg, res.version = codeVersionNotFound, "Version not found", sent
		return false
	}
	if app.IgnoreCustomID {
		// The app does not allow device custom ids (Capgo's
		// allow_device_custom_id = false): validated, then dropped.
		ev.CustomID = ""
	}
	st.req = snapshot.Request{AppID: app.ID, DeviceID: dev, VersionName: ev.VersionName, VersionBuild: ev.VersionBuild,
		Platform: ev.Platform, PluginVersion: ev.PluginVersion, CustomID: ev.CustomID, DefaultChannel: defaultChannel,
		IsEmulator: ev.IsEmulator, IsProd: ev.IsProd}
	e.grantPreview(snap, &st.req) // a preview token as defaultChannel: placed on its preview (preview.go)
	p := snapshot.Place(snap, &st.req)
	ev.Channel, ev.Segment, ev.Arm = p.Channel, p.Segment, p.Arm
	return true
}

var (
	v7_17_0, _  = snapshot.ParseVersion("7.17.0")
	v6_14_25, _ = snapshot.ParseVersion("6.14.25")
)

// legacyDownloadFail reports whether a plugin version is one whose
// download_fail events Capgo ignores (shouldRecordStatsAction): before
// 7.17.0, 6.x before 6.14.25, and a missing or unparsable version.
func legacyDownloadFail(plugin string) bool {
	v, ok := snapshot.ParseVersion(plugin)
	if !ok {
		return true
	}
	if v.Major == 6 {
		return v.Compare(v6_14_25) < 0
	}
	return v.Compare(v7_17_0) < 0
}

// checkMetadata applies Capgo's metadata limits; "" when valid.
func checkMetadata(f *fastjson.Value) string {
	o, err := f.Object()
	if err != nil {
		return "metadata must be an object"
	}
	if o.Len() > maxMetadataFields {
		return "metadata must contain at most 30 fields"
	}
	msg := ""
	o.Visit(func(k []byte, v *fastjson.Value) {
		switch {
		case msg != "":
		case len(k) > maxMetadataKey:
			msg = "metadata keys must contain at most 64 characters"
		case v.Type() != fastjson.TypeString:
			msg = "metadata values must be strings"
		default:
			if b, _ := v.StringBytes(); len(b) > maxMetadataValue {
				msg = "metadata values must contain at most 2048 characters"
			}
		}
	})
	return msg
}

// appendMetadata writes a validated metadata object (string values) as
// JSON with our own escaping (fastjson's MarshalTo quotes like Go, which is
// not always JSON).
func appendMetadata(dst []byte, f *fastjson.Value) []byte {
	o, _ := f.Object()
	dst = append(dst, '{')
	first := true
	o.Visit(func(k []byte, v *fastjson.Value) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendString(dst, bstr(k))
		dst = append(dst, ':')
		b, _ := v.StringBytes()
		dst = appendString(dst, bstr(b))
	})
	return append(dst, '}')
}

// refusal200 is Capgo's simpleError200: HTTP 200 {"error","message"}.
func (out *reply) refusal200(code, msg string) {
	out.status, out.contentType = 200, contentTypeJSON
	b := append(out.body[:0], '{')
	b = appendField(b, true, "error", code)
	b = appendField(b, false, "message", msg)
	out.body = append(b, '}')
}

// batchResults writes {"status":"ok","results":[...]} with one entry per
// event; at(i) gives the event's error code ("" for ok), message and, for
// version_not_found, the version.
func (out *reply) batchResults(n int, appID string, at func(i int) (code, msg, version string)) {
	out.status, out.contentType = 200, contentTypeJSON
	b := append(out.body[:0], `{"status":"ok","results":[`...)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		code, msg, version := at(i)
		if code == "" {
			b = append(b, `{"status":"ok","index":`...)
		} else {
			b = append(b, `{"status":"error"`...)
			b = appendField(b, false, "error", code)
			b = appendField(b, false, "message", msg)
			if code == codeVersionNotFound {
				b = append(b, `,"moreInfo":{"app_id":`...)
				b = appendString(b, appID)
				b = append(b, `,"version_name":`...)
				b = appendString(b, version)
				b = append(b, '}')
			}
			b = append(b, `,"index":`...)
		}
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, '}')
	}
	out.body = append(b, "]}"...)
}

// relayEvents passes a child edge's segment on to this edge's own sink (the
// origin or a further parent) and answers with the sink's verdict, so the
// child deletes the segment only once the origin has it. The origin
// deduplicates by the child's (edge id, seq).
func (e *Edge) relayEvents(ctx context.Context, edgeID, seqText string, body []byte, out *reply) {
	if e.statsSink == nil {
		out.jsonError(503, codeStatsUnavailable, "This edge does not forward stats")
		return
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		out.jsonError(400, "corrupt_segment", "X-Updraft-Segment: want the segment's sequence number")
		return
	}
	if err := e.statsSink.DeliverEvents(ctx, edgeID, seq, body); err != nil {
		var perm *PermanentError
		if errors.As(err, &perm) {
			out.jsonError(400, "corrupt_segment", err.Error())
			return
		}
		e.log.Warn("edge: relaying a child's event segment failed", "edge", edgeID, "seq", seq, "err", err)
		out.jsonError(502, codeUpstream, "The origin did not take the segment; retry")
		return
	}
	out.ok()
}
