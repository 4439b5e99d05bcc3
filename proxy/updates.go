package proxy

import (
	"encoding/binary"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// Codes the edge itself answers with (the rest come from snapshot).
const (
	codeInvalidJSON    = "invalid_json_parse_body"
	codeBodyTooLarge   = "body_too_large"
	codeNotReady       = "not_ready"
	codeNotFound       = "not_found"
	codeMethod         = "method_not_allowed"
	codeInvalidBlobID  = "invalid_blob_id"
	codeBlobNotFound   = "blob_not_found"
	codeInvalidRange   = "invalid_range"
	codeRangeNotSatisf = "range_not_satisfiable"
	codeUpstream       = "upstream_unavailable"
	codeInternal       = "internal_error"
)

// updateState is the per-request scratch of an update check, pooled so that
// the hot path does not allocate.
type updateState struct {
	parser fastjson.Parser
	fields bodyFields
	req    snapshot.Request
	lower  [36]byte
}

var updateStates = sync.Pool{New: func() any { return new(updateState) }}

// bstr views b as a string without copying. The string is valid only while b
// is: here, until the pooled parser is reused after the reply is built.
func bstr(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// sbytes views s as bytes without copying; they must not be modified.
func sbytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// fieldIssue describes a field of the wrong JSON type.
type fieldIssue struct{ path, msg string }

var typeIssues = map[string]string{
	"app_id": "App ID must be a string", "device_id": "Device ID must be a string",
	"version_name": "Version name must be a string", "version_build": "Version build must be a string",
	"platform": "Platform is not supported or invalid", "plugin_version": "Plugin version is invalid",
	"defaultChannel": "defaultChannel must be a string", "install_source": "install_source must be a string",
	"key_id": "key_id must be a string", "is_emulator": "is_emulator must be a boolean", "is_prod": "is_prod must be a boolean",
}

// checkUpdateRequest parses and validates an update-check body into st.req
// as Capgo's parsePluginBody does with updateRequestSchema (POST /updates
// and /updates/manifest_size). It returns the parsed object, or nil and the
// error code after writing the 400 answer.
func checkUpdateRequest(st *updateState, body []byte, out *reply) (*fastjson.Value, string) {
	v, code := parseBody(st, body, out)
	if code != "" {
		return nil, code
	}
	return v, checkFields(st, out)
}

// checkUpdate is checkUpdateRequest for a caller that needs no more of the
// body than the request's fields: a flat object of strings, booleans and
// nulls without escapes (every plugin's body) is read by scanFlat, in one
// pass without fastjson's tree; anything else by fastjson, to the same
// result (FuzzScanFlat).
func checkUpdate(st *updateState, body []byte, out *reply) string {
	if !scanFlat(body, &st.fields) {
		if _, code := parseBody(st, body, out); code != "" {
			return code
		}
	}
	return checkFields(st, out)
}

// parseBody parses body with fastjson into st.fields; it answers the
// refusal of a body that is not a JSON object.
func parseBody(st *updateState, body []byte, out *reply) (*fastjson.Value, string) {
	v, err := st.parser.ParseBytes(body)
	if err != nil {
		out.badRequest(codeInvalidJSON, "Invalid JSON body", nil)
		return nil, codeInvalidJSON
	}
	if v.Type() != fastjson.TypeObject {
		out.badRequest(snapshot.CodeInvalidBody, "Cannot parse body", nil)
		return nil, snapshot.CodeInvalidBody
	}
	fieldsOf(v, &st.fields)
	return v, ""
}

// checkFields fills st.req from st.fields and validates it as Capgo does.
func checkFields(st *updateState, out *reply) string {
	r := &st.req
	typeErr := fillRequest(st, &st.fields)
	// Capgo checks presence before types: a non-string app_id or device_id
	// is present, so it fails the schema, not the presence check; so does {}.
	if st.fields.members == 0 || typeErr != nil && (typeErr.path == "app_id" || typeErr.path == "device_id") {
		is := []snapshot.Issue{{Path: "app_id", Message: "App ID is required"}}
		if typeErr != nil {
			is[0] = snapshot.Issue{Path: typeErr.path, Message: typeErr.msg}
		}
		out.requestError(&snapshot.RequestError{Code: snapshot.CodeInvalidBody, Message: "Cannot parse body", Issues: is})
		return snapshot.CodeInvalidBody
	}
	if rerr := r.Validate(); rerr != nil {
		out.requestError(rerr)
		return rerr.Code
	}
	if typeErr != nil {
		out.requestError(&snapshot.RequestError{Code: snapshot.CodeInvalidBody, Message: "Cannot parse body",
			Issues: []snapshot.Issue{{Path: typeErr.path, Message: typeErr.msg}}})
		return snapshot.CodeInvalidBody
	}
	return ""
}

// updates answers POST /updates: parse, validate, resolve, then the answer:
// an update answer from the answer cache (answers.go), encoded as
// acceptEncoding prefers, or a refusal encoded here.
func (e *Edge) updates(body []byte, baseURL []byte, acceptEncoding string, out *reply) {
	e.updatesInline(body, baseURL, acceptEncoding, 0, out)
}

// InlineDeltaHeader is the request header by which an Updraft-aware client
// asks for the delta inside the update answer, giving the largest it takes
// in bytes; DeltaOffsetHeader, on such an answer, is where the delta
// starts in the body (docs/protocol.md, "Inline delta").
const (
	InlineDeltaHeader  = "Updraft-Inline-Delta"
	DeltaOffsetHeader  = "Updraft-Delta-Offset"
	contentTypeInlined = "application/vnd.updraft.update+delta"
)

// updatesInline answers an update check; a client taking deltas of up to
// inlineMax bytes inline (0: none) gets the offered delta appended to the
// answer when it is in the memory tier and within --inline-delta-max.
func (e *Edge) updatesInline(body []byte, baseURL []byte, acceptEncoding string, inlineMax int64, out *reply) {
	st := updateStates.Get().(*updateState)
	defer updateStates.Put(st)
	if code := checkUpdate(st, body, out); code != "" {
		e.metrics.updates(code)
		return
	}
	r := &st.req
	if e.limiter != nil {
		if dev, ok := r.Device(); ok {
			if ok, wait := e.limiter.allow(dev, time.Now()); !ok {
				secs := int(wait/time.Second) + 1
				out.status, out.contentType, out.retryAfter = 429, contentTypeJSON, secs
				out.body = append(out.body[:0], `{"error":"too_many_requests","message":"Too many requests","moreInfo":{"retryAfterSeconds":`...)
				out.body = strconv.AppendInt(out.body, int64(secs), 10)
				out.body = append(out.body, "}}"...)
				e.metrics.updates("too_many_requests")
				return
			}
		}
	}
	snap := e.snap.Load()
	if snap == nil {
		out.jsonError(503, codeNotReady, "Edge has no snapshot yet")
		e.metrics.updates(codeNotReady)
		return
	}
	e.grantPreview(snap, r) // a preview token as defaultChannel (preview.go)
	r.Now = e.now()         // the channel's maintenance windows are evaluated at the edge's clock
	d := snapshot.Resolve(snap, r)
	e.recordCheckIn(snap, r, &d) // reported to the origin (clients.go)
	out.status = 200
	out.contentType = contentTypeJSON
	if d.OK() && d.Bundle.Builtin() {
		// The channel sends devices back to the store build. The bare answer
		// is deliberate: the unmodified plugin resets only on a "version":
		// "builtin" without error or kind (docs/design-notes.md).
		out.body = append(out.body[:0], `{"version":"builtin"}`...)
		e.metrics.updates("revert_to_builtin")
		return
	}
	if d.OK() && d.Bundle.Expo != nil {
		// An Expo update is never offered to the Capacitor plugin (it
		// holds no web app): answered as Capgo answers a channel without
		// a bundle.
		nb := snapshot.Decision{Code: snapshot.CodeNoBundle, Kind: snapshot.KindFailed, Message: "Cannot get bundle"}
		out.body = appendRefusal(out.body[:0], &nb)
		e.metrics.updates(snapshot.CodeNoBundle)
		return
	}
	if d.OK() {
		b := d.Bundle
		k := answerKey{bundle: b, base: bstr(baseURL), manifest: r.SupportsManifest() && len(b.Manifest) > 0,
			metadata: d.Metadata && (b.Link != "" || b.Comment != "")}
		// Offer a delta when the device runs a bundle we know (not the store
		// build): of the pair's dcz and dcb, the one the edge's device
		// profile finishes first (a loop over at most six deltas, no
		// allocation); the answer with it is then encoded once per snapshot.
		var from *snapshot.Bundle // nil: the store build or a bundle the app does not have
		if !r.OnBuiltin {
			if from = snap.App(r.AppID).Bundle(r.VersionName); from != nil && from.Canonical != "" {
				k.delta = b.DeltaFrom(from.Canonical, true, true, e.deltaCost)
			}
		}
		// The manifest only when the device, holding from's files, is
		// expected to finish by it no later than by the zip (decided once
		// per snapshot and pair; manifestchoice.go).
		if k.manifest && e.manifestCost.on() && !e.answers.manifestFirst(snap, e.manifestCost, from, b) {
			k.manifest = false
			e.metrics.manifestOmitted.Inc()
		}
		if k.delta != nil && inlineMax > 0 && e.inlineDelta(&k, inlineMax, snap, out) {
			e.metrics.updates("update")
			return
		}
		if !e.answers.answer(snap, &k, acceptEncoding, out) {
			out.body = appendAnswer(out.body[:0], &k)
			out.varyEncoding = len(out.body) >= compressMin
			e.metrics.answer(encIdentity, len(out.body))
		}
		e.metrics.updates("update")
		return
	}
	out.body = appendRefusal(out.body[:0], &d)
	e.metrics.updates(d.Code)
}

// The request fields fillRequest reads, in the order their type errors are
// reported.
const (
	fieldAppID = iota
	fieldDeviceID
	fieldVersionName
	fieldVersionBuild
	fieldPlatform
	fieldPluginVersion
	fieldDefaultChannel
	fieldKeyID
	fieldInstallSource
	fieldCustomID
	fieldIsEmulator
	fieldIsProd
	numFields
)

var fieldKeys = [numFields]string{"app_id", "device_id", "version_name", "version_build", "platform", "plugin_version",
	"defaultChannel", "key_id", "install_source", "custom_id", "is_emulator", "is_prod"}

func fieldOf(key []byte) int {
	switch string(key) {
	case "app_id":
		return fieldAppID
	case "device_id":
		return fieldDeviceID
	case "version_name":
		return fieldVersionName
	case "version_build":
		return fieldVersionBuild
	case "platform":
		return fieldPlatform
	case "plugin_version":
		return fieldPluginVersion
	case "defaultChannel":
		return fieldDefaultChannel
	case "key_id":
		return fieldKeyID
	case "install_source":
		return fieldInstallSource
	case "custom_id":
		return fieldCustomID
	case "is_emulator":
		return fieldIsEmulator
	case "is_prod":
		return fieldIsProd
	}
	return -1
}

// fillRequest reads the Capgo info object into st.req; strings alias the
// parser's buffer. It reports the first field of the wrong JSON type. The
// object is walked once; a key given twice counts by its first value, as
// a lookup by name would find it.
func fillRequest(st *updateState, bf *bodyFields) *fieldIssue {
	r := &st.req
	*r = snapshot.Request{}
	var typeErr *fieldIssue
	str := func(i int) string {
		switch bf.f[i].kind {
		case 0, 'n':
			return ""
		case '"':
			return bstr(bf.f[i].s)
		}
		if typeErr == nil {
			typeErr = &fieldIssue{fieldKeys[i], typeIssues[fieldKeys[i]]}
		}
		return ""
	}
	boolean := func(i int, def bool) bool {
		switch bf.f[i].kind {
		case 0, 'n':
			return def
		case 't':
			return true
		case 'f':
			return false
		}
		if typeErr == nil {
			typeErr = &fieldIssue{fieldKeys[i], typeIssues[fieldKeys[i]]}
		}
		return def
	}
	r.AppID = str(fieldAppID)
	r.DeviceID = lowerDeviceID(st, str(fieldDeviceID))
	r.VersionName = str(fieldVersionName)
	r.VersionBuild = str(fieldVersionBuild)
	r.Platform = str(fieldPlatform)
	r.PluginVersion = str(fieldPluginVersion)
	r.DefaultChannel = str(fieldDefaultChannel)
	r.KeyID = str(fieldKeyID)
	r.InstallSource = str(fieldInstallSource)
	if f := bf.f[fieldCustomID]; f.kind == '"' {
		r.CustomID = bstr(f.s)
	}
	r.IsEmulator = boolean(fieldIsEmulator, false)
	r.IsProd = boolean(fieldIsProd, true)
	return typeErr
}

// bodyFields is what fillRequest reads of a device's info object: its
// known members (the first of each name) and how many members it has.
type bodyFields struct {
	f       [numFields]jsonField
	members int
}

// jsonField is one member's value: kind 0 when absent, '"' a string (s,
// unescaped), 't' true, 'f' false, 'n' null, '?' any other type.
type jsonField struct {
	kind byte
	s    []byte
}

// fieldsOf reads the fields of the JSON object v.
func fieldsOf(v *fastjson.Value, bf *bodyFields) {
	*bf = bodyFields{}
	o := v.GetObject()
	bf.members = o.Len()
	o.Visit(func(key []byte, f *fastjson.Value) {
		i := fieldOf(key)
		if i < 0 || bf.f[i].kind != 0 {
			return
		}
		switch f.Type() {
		case fastjson.TypeString:
			s, _ := f.StringBytes()
			bf.f[i] = jsonField{'"', s}
		case fastjson.TypeNull:
			bf.f[i].kind = 'n'
		case fastjson.TypeTrue:
			bf.f[i].kind = 't'
		case fastjson.TypeFalse:
			bf.f[i].kind = 'f'
		default:
			bf.f[i].kind = '?'
		}
	})
}

// scanFlat reads body into bf when it is a flat JSON object whose values
// are strings without escapes, booleans or nulls (what every plugin sends),
// in one pass; false (bf undefined) for anything else, valid JSON or not,
// which fastjson then reads. Its strings view body.
func scanFlat(body []byte, bf *bodyFields) bool {
	*bf = bodyFields{}
	i := skipJSONSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return false
	}
	i = skipJSONSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return skipJSONSpace(body, i+1) == len(body)
	}
	for {
		if i >= len(body) || body[i] != '"' {
			return false
		}
		key, j, ok := scanJSONString(body, i+1)
		if !ok {
			return false
		}
		if i = skipJSONSpace(body, j); i >= len(body) || body[i] != ':' {
			return false
		}
		if i = skipJSONSpace(body, i+1); i >= len(body) {
			return false
		}
		var v jsonField
		switch body[i] {
		case '"':
			if v.s, i, ok = scanJSONString(body, i+1); !ok {
				return false
			}
			v.kind = '"'
		case 't', 'f', 'n':
			lit := "null"
			switch body[i] {
			case 't':
				lit = "true"
			case 'f':
				lit = "false"
			}
			if len(body)-i < len(lit) || string(body[i:i+len(lit)]) != lit {
				return false
			}
			v.kind, i = body[i], i+len(lit)
		default:
			return false // numbers, objects, arrays: fastjson's
		}
		bf.members++
		if k := fieldOf(key); k >= 0 && bf.f[k].kind == 0 {
			bf.f[k] = v
		}
		if i = skipJSONSpace(body, i); i >= len(body) {
			return false
		}
		switch body[i] {
		case ',':
			i = skipJSONSpace(body, i+1)
		case '}':
			return skipJSONSpace(body, i+1) == len(body)
		default:
			return false
		}
	}
}

func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// scanJSONString reads a string's bytes from b[i:] up to its closing
// quote (and returns what follows it); false on an escape or a control
// byte.
func scanJSONString(b []byte, i int) (s []byte, next int, ok bool) {
	j := i
	// Eight bytes at a time: the lowest byte that is a quote, a backslash
	// or below 0x20 (the classic zero-byte tests on a word; the lowest flag
	// of each is exact, and so the lowest of their union) ends the run.
	for ; j+8 <= len(b); j += 8 {
		x := binary.LittleEndian.Uint64(b[j:])
		q, bs := x^(swarOnes*'"'), x^(swarOnes*'\\')
		if m := ((q-swarOnes)&^q | (bs-swarOnes)&^bs | (x-swarOnes*0x20)&^x) & swarHigh; m != 0 {
			j += bits.TrailingZeros64(m) / 8
			if b[j] == '"' {
				return b[i:j], j + 1, true
			}
			return nil, 0, false
		}
	}
	for ; j < len(b); j++ {
		if jsonStringStop[b[j]] {
			if b[j] == '"' {
				return b[i:j], j + 1, true
			}
			return nil, 0, false
		}
	}
	return nil, 0, false
}

const (
	swarOnes = 0x0101010101010101
	swarHigh = 0x8080808080808080
)

// jsonStringStop: the bytes that end a string's plain run (its quote, an
// escape, a control byte).
var jsonStringStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// jsonBool reads an optional boolean: def when absent or null; ok is false
// (and the result def) for a value of another type.
func jsonBool(f *fastjson.Value, def bool) (b, ok bool) {
	if f == nil {
		return def, true
	}
	switch f.Type() {
	case fastjson.TypeNull:
		return def, true
	case fastjson.TypeTrue:
		return true, true
	case fastjson.TypeFalse:
		return false, true
	}
	return def, false
}

// lowerDeviceID lower-cases a device id like Capgo does, copying only when
// it has upper-case letters.
func lowerDeviceID(st *updateState, id string) string {
	if len(id) > len(st.lower) {
		return id // rejected by Validate anyway
	}
	upper := false
	for i := 0; i < len(id); i++ {
		if id[i] >= 'A' && id[i] <= 'Z' {
			upper = true
			break
		}
	}
	if !upper {
		return id
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		st.lower[i] = c
	}
	return bstr(st.lower[:len(id)])
}

// appendUpdate encodes a "new version" answer for bundle b in Capgo's key
// order, with the file manifest (manifest) and link/comment (metadata) when
// the plugin takes them. base is scheme://host, validated: nothing in it
// needs escaping.
func appendUpdate(dst []byte, b *snapshot.Bundle, base string, manifest, metadata bool) []byte {
	dst = append(dst, '{')
	dst = appendField(dst, true, "version", b.Version)
	dst = append(dst, `,"url":"`...)
	dst = append(dst, base...)
	dst = append(dst, "/b/"...)
	dst = append(dst, b.SHA256...)
	dst = append(dst, '"')
	// An encrypted bundle's session key and encrypted checksum are answered
	// as the operator's CLI made them; the url still names the blob by the
	// SHA-256 of the ciphertext, which the edge verifies.
	dst = appendField(dst, false, "session_key", b.SessionKey)
	dst = appendField(dst, false, "checksum", b.AnswerChecksum())
	if manifest && len(b.Manifest) > 0 {
		dst = append(dst, `,"manifest":[`...)
		for i := range b.Manifest {
			f := &b.Manifest[i]
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendField(append(dst, '{'), true, "file_name", f.Name)
			dst = appendField(dst, false, "file_hash", f.Hash)
			dst = append(dst, `,"download_url":"`...)
			dst = append(dst, base...)
			dst = append(dst, "/f/"...)
			dst = append(dst, f.Blob...)
			dst = append(dst, `"}`...)
		}
		dst = append(dst, ']')
	}
	if metadata && b.Link != "" {
		dst = appendField(dst, false, "link", b.Link)
	}
	if metadata && b.Comment != "" {
		dst = appendField(dst, false, "comment", b.Comment)
	}
	return append(dst, '}')
}

// appendDeltaOffer completes an update answer for bundle to (whose closing
// brace was cut) with the delta an Updraft-aware client can download
// instead of the zip: applied to the canonical archive of the bundle it
// runs (delta_base_checksum, dl.Base) it yields the new bundle's canonical
// archive (delta_checksum). The stock plugin ignores these keys.
func appendDeltaOffer(dst []byte, dl *snapshot.Delta, to *snapshot.Bundle, base string) []byte {
	dst = append(dst, `,"delta_url":"`...)
	dst = append(dst, base...)
	dst = append(dst, "/b/"...)
	dst = append(dst, dl.SHA256...)
	dst = append(dst, '"')
	dst = appendField(dst, false, "delta_encoding", dl.Encoding)
	dst = append(dst, `,"delta_size":`...)
	dst = strconv.AppendInt(dst, dl.Size, 10)
	dst = appendField(dst, false, "delta_base_checksum", dl.Base)
	dst = appendField(dst, false, "delta_checksum", to.Canonical)
	return append(dst, '}')
}

// inlineDelta answers k with its delta appended, for a client taking up to
// max bytes inline: the plain answer (without the manifest, which a client
// applying the delta does not read; url stays its fallback) and the delta
// from the memory tier, with the offset of the delta in a header. It
// reports false, leaving out untouched, when the delta is larger than the
// client or --inline-delta-max allows or is not in memory (the client then
// fetches delta_url, which also brings it into memory), or when the answer
// cache cannot hold the answer (a snapshot swap under way).
func (e *Edge) inlineDelta(k *answerKey, max int64, snap *snapshot.Snapshot, out *reply) bool {
	if k.delta.Size > max || k.delta.Size > e.inlineMax || e.cache == nil {
		return false
	}
	data, ok := e.cache.Memory(k.delta.SHA256)
	if !ok || int64(len(data)) != k.delta.Size {
		return false
	}
	// Only a cached answer: its bytes outlive the reply, which goes back to
	// its pool before fasthttp streams the body (an answer encoded into
	// out.body would be overwritten by the next request using the reply).
	manifest := k.manifest
	k.manifest = false
	if !e.answers.answer(snap, k, encIdentity, out) {
		k.manifest = manifest
		return false
	}
	out.contentEncoding, out.varyEncoding = "", false
	out.contentType = contentTypeInlined
	out.deltaOffset = len(out.data)
	out.tail = data
	e.metrics.inlineDeltas.Inc()
	e.metrics.bytesServed.Add(float64(len(data)))
	return true
}

// appendRefusal encodes {"error","message",[extras],"kind"} as Capgo does.
func appendRefusal(dst []byte, d *snapshot.Decision) []byte {
	dst = append(dst, '{')
	dst = appendField(dst, true, "error", d.Code)
	dst = appendField(dst, false, "message", d.Message)
	if d.Major {
		dst = append(dst, `,"major":true`...)
	}
	if d.Version != "" {
		dst = appendField(dst, false, "version", d.Version)
		dst = appendField(dst, false, "old", d.Old)
	}
	if d.Code == snapshot.CodeAlreadyOnBuiltin {
		dst = append(dst, `,"version":"builtin"`...)
	}
	if d.Code == snapshot.CodeKeyIDMismatch {
		dst = appendField(dst, false, "deviceKeyId", d.DeviceKeyID)
		dst = appendField(dst, false, "bundleKeyId", d.BundleKeyID)
	}
	dst = appendField(dst, false, "kind", d.Kind)
	return append(dst, '}')
}

// requestError encodes a validation failure: HTTP 400 with moreInfo.
func (out *reply) requestError(e *snapshot.RequestError) {
	var more []byte
	switch {
	case e.Code == snapshot.CodeSemver:
		more = appendField([]byte{'{'}, true, "version_build", e.VersionBuild)
		more = append(more, '}')
	case len(e.Issues) > 0:
		more = append(more, `{"issues":[`...)
		for i, is := range e.Issues {
			if i > 0 {
				more = append(more, ',')
			}
			more = append(more, `{"path":[`...)
			more = appendString(more, is.Path)
			more = append(more, `],"message":`...)
			more = appendString(more, is.Message)
			more = append(more, '}')
		}
		more = append(more, "]}"...)
	}
	out.badRequest(e.Code, e.Message, more)
}

func (out *reply) badRequest(code, msg string, moreInfo []byte) {
	out.status = 400
	out.contentType = contentTypeJSON
	out.body = appendEnvelope(out.body[:0], code, msg, moreInfo)
}

// jsonError sets an error answer in Capgo's envelope with the given status.
func (out *reply) jsonError(status int, code, msg string) {
	out.status = status
	out.contentType = contentTypeJSON
	out.body = appendEnvelope(out.body[:0], code, msg, nil)
}

func appendEnvelope(dst []byte, code, msg string, moreInfo []byte) []byte {
	dst = append(dst, '{')
	dst = appendField(dst, true, "error", code)
	dst = appendField(dst, false, "message", msg)
	dst = append(dst, `,"moreInfo":`...)
	if moreInfo == nil {
		dst = append(dst, "{}"...)
	} else {
		dst = append(dst, moreInfo...)
	}
	return append(dst, '}')
}

// appendBaseURL writes scheme://host for update answers from the request's
// Host header, refusing hosts with characters a URL or JSON would need to
// escape. It reports false for an unusable host.
func appendBaseURL(dst []byte, tls bool, host string) ([]byte, bool) {
	if len(host) == 0 || len(host) > 255 {
		return dst, false
	}
	for _, c := range []byte(host) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_') {
			return dst, false
		}
	}
	if tls {
		dst = append(dst, "https://"...)
	} else {
		dst = append(dst, "http://"...)
	}
	return append(dst, host...), true
}

// manifestSize answers POST /updates/manifest_size: the bytes a device
// would download for the manifest entries it lists. The body is an update
// check plus the manifest, validated like one first (Capgo updates.ts:43-66:
// parsePluginBody with updateRequestSchema).
func (e *Edge) manifestSize(body []byte, out *reply) {
	st := updateStates.Get().(*updateState)
	defer updateStates.Put(st)
	v, code := checkUpdateRequest(st, body, out)
	if code != "" {
		return
	}
	entries := v.GetArray("manifest")
	if entries == nil {
		entries = v.GetArray("files")
	}
	if entries == nil || len(entries) > 100000 {
		out.badRequest(snapshot.CodeInvalidBody, "Cannot parse body", []byte(`{"issues":[{"path":["manifest"],"message":"manifest must be an array of at most 100000 entries"}]}`))
		return
	}
	snap := e.snap.Load()
	if snap == nil {
		out.jsonError(503, codeNotReady, "Edge has no snapshot yet")
		return
	}
	var total int64
	known, unknown := 0, 0
	files := make([]byte, 0, 128*len(entries))
	for i, en := range entries {
		if i > 0 {
			files = append(files, ',')
		}
		name, hash, url := string(en.GetStringBytes("file_name")), string(en.GetStringBytes("file_hash")), string(en.GetStringBytes("download_url"))
		files = appendField(append(files, '{'), true, "file_name", name)
		files = appendField(files, false, "file_hash", hash)
		files = appendField(files, false, "download_url", url)
		blob := url[strings.LastIndexByte(url, '/')+1:]
		if n, ok := snap.ManifestFileSize(blob); ok && strings.Contains(url, "/f/") {
			total += n
			known++
			files = strconv.AppendInt(append(files, `,"size":`...), n, 10)
		} else {
			unknown++
			files = append(files, `,"error":"size_unknown"`...)
		}
		files = append(files, '}')
	}
	out.status, out.contentType = 200, contentTypeJSON
	out.body = strconv.AppendInt(append(out.body[:0], `{"totalSize":`...), total, 10)
	out.body = strconv.AppendInt(append(out.body, `,"knownFiles":`...), int64(known), 10)
	out.body = strconv.AppendInt(append(out.body, `,"unknownFiles":`...), int64(unknown), 10)
	out.body = append(append(append(out.body, `,"files":[`...), files...), "]}"...)
}
