package proxy

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// The Expo Updates protocol (expo/expo docs/pages/technical-specs/
// expo-updates-1.mdx, and version 0) at the edge: GET
// /expo/{app_id}/manifest answers the stock expo-updates client with a
// manifest, a directive or nothing, resolved by the same channels,
// segments, overrides, rollouts, A/B splits and guard as Capgo devices;
// GET /expo/{app_id}/a/{sha256} serves an asset's bytes (expo_assets.go).
// The client sends no app id, so it is in the path of the configured
// updates.url (docs/protocol.md, "Expo Updates").

// Edge codes of the Expo endpoints.
const (
	codeExpoProtocol       = "unsupported_protocol_version"
	codeExpoPlatform       = "invalid_platform"
	codeExpoRuntime        = "invalid_runtime_version"
	codeExpoClientID       = "invalid_client_id"
	codeExpoChannel        = "invalid_channel_name"
	codeExpoExpectSig      = "invalid_expect_signature"
	codeExpoSigningUnavail = "code_signing_unavailable"
	codeExpoNotAcceptable  = "not_acceptable"
	codeExpoSigningFailed  = "signing_failed"
	codeExpoDecodeBusy     = "decode_busy"
)

// maxExpoHeader bounds the runtime version and the channel name a client
// sends (and a runtime version an update may have).
const maxExpoHeader = 255

// expoMaxFailed bounds the expo-recent-failed-update-ids read per request.
const expoMaxFailed = 4

// expoState is the edge's Expo Updates state: the signing key, the table
// of the current snapshot (expo_table.go), the directives that do not
// depend on a snapshot, and the event bookkeeping (expo_events.go).
type expoState struct {
	key      *rsa.PrivateKey // nil: signing unavailable
	keyID    string
	boundary string // multipart boundary of this process

	buildMu sync.Mutex
	cur     atomic.Pointer[expoTable]

	noUpdate expoDirective

	// decodes bounds the brotli streams decoded at once for clients that
	// do not accept br (each holds a window of up to 16 MiB).
	decodes chan struct{}
	// gzip holds the gzip variants of brotli-stored assets for clients
	// that take gzip but not br (expo_gzip.go).
	gzip expoGzipCache

	events expoEvents

	outcomes   *prometheus.CounterVec
	assetsVec  *prometheus.CounterVec
	downloads  *prometheus.CounterVec
	signatures prometheus.Counter
}

// expoMaxDecodes bounds concurrent brotli decodes of assets.
const expoMaxDecodes = 16

func newExpoState(cfg config.Edge, log *slog.Logger, reg *prometheus.Registry) *expoState {
	var nonce [12]byte
	rand.Read(nonce[:])
	x := &expoState{keyID: cfg.ExpoSigningKeyID, boundary: "updraft-" + hex.EncodeToString(nonce[:]),
		decodes: make(chan struct{}, expoMaxDecodes),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "updraft_edge_expo_manifests_total", Help: "Expo Updates manifest requests answered, by outcome (update, rollback, no_update, or the reason nothing was offered, or the error code).",
		}, []string{"outcome"}),
		assetsVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "updraft_edge_expo_assets_total", Help: "Expo Updates asset requests answered, by outcome (br, gzip: the in-memory gzip variant for a client with gzip but not br, identity, decoded: brotli decoded for a client with neither, or the error code); gzip_too_large and hash_mismatch count gzip variants not made.",
		}, []string{"outcome"}),
		downloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "updraft_edge_expo_launch_downloads_total", Help: "Launch assets of Expo updates answered in full to a GET, by result: new (a download_complete event for the device and update), repeat (already reported today), no_client_id (no EAS-Client-ID: no event), ambiguous (two bundles share the launch asset: no event).",
		}, []string{"result"}),
		signatures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "updraft_edge_expo_signatures_total", Help: "Expo manifests and directives signed (once per encoded answer).",
		}),
	}
	x.noUpdate.body = []byte(`{"type":"noUpdateAvailable"}`)
	if x.keyID == "" {
		x.keyID = config.DefaultExpoSigningKeyID
	}
	if cfg.ExpoSigningKey != "" {
		k, err := config.LoadExpoSigningKey(cfg.ExpoSigningKey)
		if err != nil {
			// Validate refuses the configuration first; an edge built
			// without it answers signed requests 400.
			log.Error("edge: Expo signing key not loaded; clients expecting signatures get 400 code_signing_unavailable", "err", err)
		}
		x.key = k
	}
	x.events.init()
	x.gzip.init()
	reg.MustRegister(x.outcomes, x.assetsVec, x.downloads, x.signatures, x.events.dropped, x.events.sent)
	return x
}

// expoReq is the pooled scratch of one manifest request.
type expoReq struct {
	req   snapshot.Request
	lower [36]byte
}

var expoReqs = sync.Pool{New: func() any { return new(expoReq) }}

// expoRoute answers /expo/{app}/manifest and /expo/{app}/a/{sha256}.
func (e *Edge) expoRoute(r *request, rest string, out *reply) {
	app, sub, _ := strings.Cut(rest, "/")
	switch {
	case sub == "manifest":
		e.expoManifest(r, app, out)
	case len(sub) > 2 && sub[:2] == "a/":
		e.expoAsset(r, app, sub[2:], out)
	default:
		out.jsonError(404, codeNotFound, "Not found")
	}
}

// expoManifest answers GET /expo/{app}/manifest.
func (e *Edge) expoManifest(r *request, app string, out *reply) {
	outcome := e.expoManifestAnswer(r, app, out)
	e.expo.outcomes.WithLabelValues(outcome).Inc()
}

func (e *Edge) expoManifestAnswer(r *request, app string, out *reply) string {
	x := e.expo
	if r.method != "GET" {
		out.jsonError(405, codeMethod, "Use GET for the Expo manifest")
		return codeMethod
	}
	if e.refuseStale(out) {
		return codeStale
	}
	h := r.header
	// The request headers, in the order the spec lists them. A missing
	// expo-protocol-version is version 0 (clients before it existed).
	var proto byte
	switch v := h.get("expo-protocol-version"); v {
	case "", "0":
		proto = '0'
	case "1":
		proto = '1'
	default:
		out.badRequest(codeExpoProtocol, "expo-protocol-version must be 0 or 1", nil)
		return codeExpoProtocol
	}
	platform := h.get("expo-platform")
	if platform != snapshot.PlatformIOS && platform != snapshot.PlatformAndroid {
		out.badRequest(codeExpoPlatform, "expo-platform must be ios or android", nil)
		return codeExpoPlatform
	}
	runtime := h.get("expo-runtime-version")
	if runtime == "" || len(runtime) > maxExpoHeader || !printable(runtime) {
		out.badRequest(codeExpoRuntime, "expo-runtime-version is required: the runtime version the app was built with (1-255 printable characters)", nil)
		return codeExpoRuntime
	}
	channel := h.get("expo-channel-name")
	if len(channel) > 128 {
		out.badRequest(codeExpoChannel, "expo-channel-name must be at most 128 characters", nil)
		return codeExpoChannel
	}
	st := expoReqs.Get().(*expoReq)
	defer expoReqs.Put(st)
	clientID := h.get("eas-client-id")
	dev, ok := snapshot.ParseDeviceID(clientID)
	if !ok {
		// Stock clients always send it (a random UUID per install):
		// rollouts, A/B, overrides and the guard key on it, so a request
		// without one cannot be placed (docs/design-notes.md).
		out.badRequest(codeExpoClientID, "eas-client-id must be the device's UUID (the expo-updates client sends it)", nil)
		return codeExpoClientID
	}
	for i := 0; i < 36; i++ {
		c := clientID[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		st.lower[i] = c
	}
	format := negotiateExpo(h.get("Accept"))
	if format == expoFormatNone {
		out.jsonError(406, codeExpoNotAcceptable, "Accept: the edge answers multipart/mixed, application/expo+json or application/json")
		return codeExpoNotAcceptable
	}
	signed := false
	if v := h.get("expo-expect-signature"); v != "" {
		if _, err := parseExpectSignature(v); err != nil {
			out.badRequest(codeExpoExpectSig, "expo-expect-signature must be a structured-field dictionary like sig, keyid=\"main\", alg=\"rsa-v1_5-sha256\"", nil)
			return codeExpoExpectSig
		}
		if x.key == nil {
			out.badRequest(codeExpoSigningUnavail, "The client expects signed manifests (expo-expect-signature) but this edge has no --expo-signing-key", nil)
			return codeExpoSigningUnavail
		}
		signed = true
	}
	if !e.clients.allow(e.clients.updates, "expo", r.client, 1, out) {
		return "too_many_requests"
	}
	if e.limiter != nil {
		if ok, wait := e.limiter.allow(dev, time.Now()); !ok {
			tooManyRequests(out, wait)
			return "too_many_requests"
		}
	}
	snap := e.snap.Load()
	if snap == nil {
		out.jsonError(503, codeNotReady, "Edge has no snapshot yet")
		return codeNotReady
	}
	a := snap.App(app)
	if a == nil {
		out.jsonError(404, snapshot.CodeAppNotFound, "App not found: the updates.url path names an app id the edge does not know")
		return snapshot.CodeAppNotFound
	}
	base, ok := e.requestBase(r, out)
	if !ok {
		return "invalid_host"
	}
	t := x.table(snap)
	currentID := h.get("expo-current-update-id")
	cur := t.current(a.ID, platform, currentID)
	embedded := h.get("expo-embedded-update-id")
	onEmbedded := currentID == "" || strings.EqualFold(currentID, embedded)

	// The device as the resolver sees it (docs/protocol.md, "Expo
	// Updates"): no plugin (0.0.0), the runtime version as its native
	// version when it is semver (else 0.0.0), the bundle it runs when its
	// update id is one of the app's, else "unknown".
	rq := &st.req
	*rq = snapshot.Request{AppID: a.ID, DeviceID: bstr(st.lower[:]), VersionName: "unknown", VersionBuild: "0.0.0",
		Platform: platform, PluginVersion: "0.0.0", DefaultChannel: channel, BuildChannel: true, IsProd: true}
	if cur != nil {
		rq.VersionName = cur.bundle.Version
	}
	_, runtimeSemver := snapshot.ParseVersion(runtime)
	if runtimeSemver {
		rq.VersionBuild = runtime
	}
	if rerr := rq.Validate(); rerr != nil {
		out.requestError(rerr)
		return rerr.Code
	}
	rq.Now = e.now() // maintenance windows, at the edge's clock
	d := snapshot.Resolve(snap, rq)
	e.recordCheckIn(snap, rq, &d) // the guard's established devices, the device inventory (clients.go)
	e.expoEvents(snap, t, a, rq, dev, cur, runtimeSemver, h.get("expo-recent-failed-update-ids"), h.get("expo-fatal-error"),
		onEmbedded, r.client)

	var u *expoUpdate
	outcome := d.Code
	switch {
	case d.OK() && d.Bundle.Builtin(), d.Code == snapshot.CodeRevertTooOld:
		// The channel sends devices back to the store build (Resolve
		// answers plugin 0.0.0 "too old" once the channel's gates passed).
		if onEmbedded {
			return e.expoNothing(proto, format, signed, "no_update", out)
		}
		if proto == '0' {
			out.jsonError(406, codeExpoNotAcceptable, "Rolling back to the embedded update needs expo-protocol-version 1")
			return "rollback_protocol_0"
		}
		return e.expoDirective(t.rollbackDirective(), format, signed, "rollback", out)
	case d.OK():
		u, outcome = t.update(d.Bundle, platform), "update"
	case d.Code == snapshot.CodeNoNewVersion && cur != nil:
		u, outcome = cur, "up_to_date" // the device runs the channel's bundle
	}
	switch {
	case u == nil && outcome == "update":
		outcome = "not_expo" // a Capgo bundle, or no files for this platform
	case u != nil && u.runtime != runtime:
		u, outcome = nil, "runtime_mismatch"
	case u != nil && cur != nil && cur.prefix == u.prefix && proto == '1':
		// The device runs the bundle (under whichever id: the prefix
		// names it; the same zip uploaded twice shares it).
		u, outcome = nil, "up_to_date"
	}
	if u == nil {
		if outcome == "" {
			outcome = "no_update"
		}
		return e.expoNothing(proto, format, signed, outcome, out)
	}
	// The manifest's id depends on the update the device runs (its
	// prefix, or none), so that a move to a bundle the device does not
	// run is an id it never stored (expoManifestID).
	var curPrefix expoPrefix
	if cur != nil {
		curPrefix = cur.prefix
	}
	ans := t.answer(u, curPrefix, bstr(base))
	out.status = 200
	out.expoProto = proto
	if format != expoFormatMultipart {
		var sig string
		if signed {
			enc := x.encode(&ans.enc[1], "manifest", ans.manifest, true)
			if enc.err != nil {
				return e.expoSignFailed(enc.err, out)
			}
			sig = enc.sig
		}
		out.contentType, out.data, out.expoSig = expoFormatTypes[format], ans.manifest, sig
		return "update"
	}
	i := 0
	if signed {
		i = 1
	}
	enc := x.encode(&ans.enc[i], "manifest", ans.manifest, signed)
	if enc.err != nil {
		return e.expoSignFailed(enc.err, out)
	}
	out.contentType, out.data = enc.ctype, enc.multipart
	return "update"
}

// expoNothing answers a request with nothing to install: the
// noUpdateAvailable directive (protocol 1, multipart), 204 (protocol 0:
// it has no directives; a multipart answer without parts may be a 204),
// or 406 to a protocol 1 client that takes only JSON, which cannot carry
// a directive (expo-updates-1.mdx, "Response").
func (e *Edge) expoNothing(proto byte, format int, signed bool, outcome string, out *reply) string {
	if proto == '0' {
		out.status, out.expoProto = 204, proto
		return outcome
	}
	if format != expoFormatMultipart {
		out.jsonError(406, codeExpoNotAcceptable, "No update to serve: the noUpdateAvailable directive needs Accept: multipart/mixed")
		return outcome
	}
	return e.expoDirective(&e.expo.noUpdate, format, signed, outcome, out)
}

// expoDirective answers a directive as a multipart part.
func (e *Edge) expoDirective(dir *expoDirective, format int, signed bool, outcome string, out *reply) string {
	if format != expoFormatMultipart {
		out.jsonError(406, codeExpoNotAcceptable, "A directive needs Accept: multipart/mixed")
		return outcome
	}
	i := 0
	if signed {
		i = 1
	}
	enc := e.expo.encode(&dir.enc[i], "directive", dir.body, signed)
	if enc.err != nil {
		return e.expoSignFailed(enc.err, out)
	}
	out.status, out.expoProto, out.contentType, out.data = 200, '1', enc.ctype, enc.multipart
	return outcome
}

func (e *Edge) expoSignFailed(err error, out *reply) string {
	e.log.Error("edge: signing an Expo answer failed", "err", err)
	out.jsonError(500, codeExpoSigningFailed, "The manifest could not be signed")
	return codeExpoSigningFailed
}

// requestBase is scheme://host of the URLs in answers: --public-url, or
// the request's Host (written into out.scratch). It answers 400
// invalid_host itself.
func (e *Edge) requestBase(r *request, out *reply) ([]byte, bool) {
	if e.baseURL != nil {
		return e.baseURL, true
	}
	base, ok := appendBaseURL(out.scratch[:0], r.tls, r.host)
	out.scratch = base
	if !ok {
		out.jsonError(400, "invalid_host", "Host header is missing or not a plain host name")
	}
	return base, ok
}

// printable reports whether s is printable ASCII (what a header value
// copied into JSON and event records may hold).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
