package bench

// The stock expo-updates client's launch path (--client expo): what the
// Android client of expo/expo packages/expo-updates does when an app starts
// (read from its source, expo/expo main,
// packages/expo-updates/android/src/main/java/expo/modules/updates/loader/):
//
//   - the manifest request (FileDownloader.createRequestForRemoteUpdate): a
//     GET of the configured updates.url with Accept "multipart/mixed,
//     application/expo+json,application/json", Expo-Platform android,
//     Expo-Protocol-Version 1, Expo-API-Version 1, Expo-Updates-Environment
//     BARE, Expo-JSON-Error true, EAS-Client-ID (the install's UUID),
//     Expo-Runtime-Version, the app's updates.requestHeaders (here
//     expo-channel-name), and from its database
//     (getExtraHeadersForRemoteUpdateRequest) Expo-Current-Update-ID, the id
//     of the update it launched (the embedded update's on a fresh install)
//     and Expo-Embedded-Update-ID; OkHttp's BrotliInterceptor asks for
//     "br,gzip" and decodes the answer;
//   - the answer's parts (parseMultipartRemoteUpdateResponse) are named by
//     the "name" parameter of their Content-Disposition (an "inline" one
//     here): manifest, directive (noUpdateAvailable, rollBackToEmbedded),
//     extensions, certificate_chain; 204 or no part: nothing to do;
//   - a manifest whose assets it lacks (Loader.downloadAllAssets): every
//     asset, the launch asset among them, that its database does not
//     already hold by key (assetDao().loadAssetWithKey, with its file on
//     disk) is downloaded, each in its own coroutine (scope.async on
//     Dispatchers.IO) running a synchronous OkHttp call
//     (FileDownloader.downloadData: call.execute(), which OkHttp's
//     Dispatcher and its 5 requests per host do not bound): at most
//     Dispatchers.IO's 64 threads at once (DefaultExpoConcurrency); each
//     body is checked by the base64url SHA-256 of its (decoded) bytes
//     against the manifest's hash (UpdatesUtils.verifySHA256AndWriteToFile);
//     one failure fails the update (awaitAll). The asset requests
//     (createRequestForAsset) carry Expo-Platform, Expo-Protocol-Version,
//     Expo-API-Version, Expo-Updates-Environment, EAS-Client-ID, the
//     request headers, Accept application/javascript, and
//     (getExtraHeadersForRemoteAssetRequest) Expo-Current-Update-ID,
//     Expo-Embedded-Update-ID and Expo-Requested-Update-ID.
//
// One OkHttpClient carries the manifest request and the assets: HTTP/1.1,
// or HTTP/2 when TLS negotiates it, with OkHttp's default ConnectionPool
// (5 idle connections kept for 5 minutes: a warm lane's connections).
//
// Not modelled: the iOS client (the fleet is Android), code signing
// (expo-expect-signature), bsdiff patches of the launch asset (off by
// default: enableBsdiffPatchSupport), OkHttp's disk cache, disk writes and
// the database, the embedded update's own assets (which a device may also
// reuse), the one retry earlier versions made on a transport error.

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"time"

	"github.com/valyala/fastjson"
)

// ClientExpo is the stock expo-updates client (Options.Client).
const ClientExpo = "expo"

// PathExpo is the expo client's update path (PathReport.Path): the
// manifest's assets the device did not hold.
const PathExpo = "expo"

// ExpoOffered, as Options.VersionName with the expo client: the devices
// run the update the target offers a fresh install (learnt by one manifest
// request before the run) and report the id the target gave for it.
const ExpoOffered = "offered"

// DefaultExpoConcurrency is how many assets the client downloads at once:
// Dispatchers.IO's thread limit (max(64, cores)), which bounds the
// synchronous OkHttp calls of Loader.downloadAllAssets' coroutines.
// Clients before the coroutine loader (callbacks through OkHttp's enqueue)
// were bound by the Dispatcher's maxRequestsPerHost: 5.
const DefaultExpoConcurrency = 64

// MaxExpoConcurrency bounds Options.ExpoConcurrency.
const MaxExpoConcurrency = 256

// expoIdleConns is OkHttp's default ConnectionPool: 5 idle connections
// (kept 5 minutes); a warm device holds that many.
const expoIdleConns = 5

// ExpoChannel is the channel the devices name (expo-channel-name, from
// the app's updates.requestHeaders).
const ExpoChannel = "production"

const (
	expoUA      = "okhttp/4.12.0"
	expoAccept  = "multipart/mixed,application/expo+json,application/json"
	expoMaxBody = 64 << 20
)

// expoState is the expo client's run-wide state.
type expoState struct {
	embedded []string // the embedded update's id of each runtime version's build
	current  string   // the id the fleet launched: the offered update's, or "" (their embedded update)
	// held: the asset keys every device holds (those of the update it
	// runs), as its database has them.
	held     map[string]struct{}
	runtimes []string // expo-runtime-version, by device (VersionBuild's mix)
}

// build is the index of the build (runtime version) device dev runs.
func (x *expoState) build(dev *device) int { return int(dev.seq) % len(x.runtimes) }

// launched is the id of the update dev runs (expo-current-update-id).
func (x *expoState) launched(dev *device) string {
	if x.current != "" {
		return x.current
	}
	return x.embedded[x.build(dev)]
}

// expoAsset is an asset as the manifest lists it.
type expoAsset struct{ key, hash, url string }

// expoManifest is what the client reads of a manifest.
type expoManifest struct {
	id     string
	assets []expoAsset // the launch asset first
}

// expoEmbeddedID is the embedded update's id of the app's build for a
// runtime version: fixed for a run (every device installed the same
// build), never one of the target's.
func expoEmbeddedID(app, runtime string) string {
	s := sha256.Sum256([]byte("updraft bench embedded update\x00" + app + "\x00" + runtime))
	s[6] = s[6]&0x0f | 0x40
	s[8] = s[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", s[0:4], s[4:6], s[6:8], s[8:10], s[10:16])
}

// expoSetup prepares the expo client: its connections (the capgo client's
// lanes and dials, one OkHttp client per device) and, for devices on the
// offered update, that update's id and assets.
func (r *runner) expoSetup(ctx context.Context) error {
	r.capgo = r.newConnState()
	x := &expoState{held: map[string]struct{}{}, runtimes: strings.Split(r.o.VersionBuild, ",")}
	for _, rv := range x.runtimes {
		x.embedded = append(x.embedded, expoEmbeddedID(r.o.AppID, rv))
	}
	r.expo = x
	if r.o.VersionName == ExpoOffered {
		st := r.newClientStack(nil)
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		m, outcome, _ := r.expoCheck(cctx, st.plugin, &r.devices[0], x.embedded[0])
		cancel()
		st.close()
		if m == nil {
			return fmt.Errorf("bench --client expo --version-name %s: a fresh install of %s (runtime version %s, channel %s) is offered no update by %s: %s",
				ExpoOffered, r.o.AppID, x.runtimes[0], ExpoChannel, r.o.Target, outcome)
		}
		x.current = m.id
		for _, a := range m.assets {
			x.held[a.key] = struct{}{}
		}
	}
	r.openLanes(ctx)
	return nil
}

// expoDevice runs one device's launch as the stock client: the manifest
// request, then the assets it lacks, each verified. Time to update runs
// from the manifest request to the last verified asset.
func (r *runner) expoDevice(ctx context.Context, dev *device, due time.Time, download bool, rec *recorder) {
	r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	st, release := r.deviceStack(dev)
	defer release()
	m, outcome, failed := r.expoCheck(ctx, st.plugin, dev, r.expo.launched(dev))
	done := time.Now()
	rec.checked(due, done, outcome, failed)
	if m == nil || !download {
		return
	}
	wire, fetched, reused, fail := r.expoAssets(ctx, st.plugin, dev, m)
	if fail != "" {
		rec.failed(fail)
		return
	}
	rec.updated(PathExpo, due, done, time.Now(), wire, fetched, reused)
}

// expoHeaders sets what every request of the client carries.
func (r *runner) expoHeaders(h http.Header, dev *device) {
	h["Expo-Platform"] = []string{"android"}
	h["Expo-Protocol-Version"] = []string{"1"}
	h["Expo-Api-Version"] = []string{"1"}
	h["Expo-Updates-Environment"] = []string{"BARE"}
	h["Eas-Client-Id"] = []string{dev.id}
	h["Expo-Channel-Name"] = []string{ExpoChannel}
	h["Expo-Embedded-Update-Id"] = []string{r.expo.embedded[r.expo.build(dev)]}
	h["Accept-Encoding"] = []string{"br,gzip"} // BrotliInterceptor
	h["User-Agent"] = []string{expoUA}
}

// expoCheck sends the manifest request of a device that launched update
// current and reads the answer. It returns the manifest when one is
// offered (nil otherwise) and the check's outcome: update, a directive's
// type (noUpdateAvailable, rollBackToEmbedded), no_content (204 or no
// part), already_downloaded (the manifest of the update it runs), or a
// failure (failed).
func (r *runner) expoCheck(ctx context.Context, hc *http.Client, dev *device, current string) (m *expoManifest, outcome string, failed bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.o.Target+"/expo/"+r.o.AppID+"/manifest", nil)
	if err != nil {
		return nil, "bad_url", true
	}
	r.expoHeaders(req.Header, dev)
	req.Header["Accept"] = []string{expoAccept}
	req.Header["Expo-Json-Error"] = []string{"true"}
	req.Header["Expo-Runtime-Version"] = []string{r.expo.runtimes[r.expo.build(dev)]}
	req.Header["Expo-Current-Update-Id"] = []string{current}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "transport_error", true
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return nil, "no_content", false
	}
	if resp.StatusCode != 200 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil, fmt.Sprintf("http_%d", resp.StatusCode), true
	}
	body, release, err := decodeBody(resp.Header.Get("Content-Encoding"), resp.Body)
	if err != nil {
		return nil, "decode_error", true
	}
	defer release()
	parts, err := readExpoParts(resp.Header.Get("Content-Type"), io.LimitReader(body, expoMaxBody))
	if err != nil {
		return nil, "bad_answer", true
	}
	if d := parts["directive"]; d != nil {
		p := r.parsers.Get()
		defer r.parsers.Put(p)
		v, err := p.ParseBytes(d)
		if err != nil || len(v.GetStringBytes("type")) == 0 {
			return nil, "bad_directive", true
		}
		return nil, string(v.GetStringBytes("type")), false
	}
	mb := parts["manifest"]
	if mb == nil {
		return nil, "no_content", false
	}
	m, err = r.parseExpoManifest(mb)
	if err != nil {
		return nil, "bad_manifest", true
	}
	if strings.EqualFold(m.id, current) { // Loader.processUpdate: already READY
		return nil, "already_downloaded", false
	}
	return m, "update", false
}

// readExpoParts reads an answer into its parts by name: a multipart/mixed
// one with the standard library's parser (names from the "name" parameter
// of each part's Content-Disposition, as the client reads them), or a
// JSON one as the manifest (protocol 0's form).
func readExpoParts(contentType string, body io.Reader) (map[string][]byte, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(mt, "multipart/") {
		if mt != "application/json" && mt != "application/expo+json" {
			return nil, fmt.Errorf("content type %q", contentType)
		}
		b, err := io.ReadAll(body)
		return map[string][]byte{"manifest": b}, err
	}
	if params["boundary"] == "" {
		return nil, errors.New("multipart answer without a boundary")
	}
	parts := map[string][]byte{}
	mr := multipart.NewReader(body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return parts, nil
		}
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return nil, err
		}
		if _, dp, err := mime.ParseMediaType(p.Header.Get("Content-Disposition")); err == nil && dp["name"] != "" {
			parts[dp["name"]] = b
		}
	}
}

// parseExpoManifest reads a manifest's id and assets (launch asset first).
func (r *runner) parseExpoManifest(b []byte) (*expoManifest, error) {
	p := r.parsers.Get()
	defer r.parsers.Put(p)
	v, err := p.ParseBytes(b)
	if err != nil {
		return nil, err
	}
	m := &expoManifest{id: string(v.GetStringBytes("id"))}
	launch := v.Get("launchAsset")
	if m.id == "" || launch == nil {
		return nil, errors.New("manifest without id or launchAsset")
	}
	list := v.GetArray("assets")
	m.assets = make([]expoAsset, 0, len(list)+1)
	for _, a := range append([]*fastjson.Value{launch}, list...) {
		e := expoAsset{key: string(a.GetStringBytes("key")), hash: string(a.GetStringBytes("hash")), url: string(a.GetStringBytes("url"))}
		if e.key == "" || e.url == "" {
			return nil, errors.New("asset without key or url")
		}
		m.assets = append(m.assets, e)
	}
	return m, nil
}

// expoAssets downloads the manifest's assets the device does not hold, at
// most Options.ExpoConcurrency at once, and verifies each. It returns the
// bytes on the wire, the assets downloaded and already held, and the
// first failure ("" when every asset verified).
func (r *runner) expoAssets(ctx context.Context, hc *http.Client, dev *device, m *expoManifest) (wire int64, fetched, reused int, fail string) {
	pending := make([]expoAsset, 0, len(m.assets))
	seen := make(map[string]struct{}, len(m.assets))
	for _, a := range m.assets {
		if _, dup := seen[a.key]; dup {
			continue
		}
		seen[a.key] = struct{}{}
		if a.hash == "" {
			return 0, 0, 0, "manifest_missing_hash"
		}
		if _, ok := r.expo.held[a.key]; ok {
			reused++
			continue
		}
		pending = append(pending, a)
	}
	wire, fail = fetchEach(len(pending), r.o.ExpoConcurrency, func(i int) (int64, string) {
		return r.expoFetch(ctx, hc, dev, m.id, &pending[i])
	})
	return wire, len(pending), reused, fail
}

// expoFetch downloads one asset and checks the base64url SHA-256 of its
// decoded bytes against the manifest's hash. It returns the bytes on the
// wire and the failure outcome ("" when verified).
func (r *runner) expoFetch(ctx context.Context, hc *http.Client, dev *device, requested string, a *expoAsset) (int64, string) {
	resp, fail := get(ctx, hc, a.url, func(h http.Header) {
		r.expoHeaders(h, dev)
		h["Accept"] = []string{"application/javascript"} // createRequestForAsset without a patch
		h["Expo-Current-Update-Id"] = []string{r.expo.launched(dev)}
		h["Expo-Requested-Update-Id"] = []string{requested}
	}, "asset_")
	if fail != "" {
		return 0, fail
	}
	defer resp.Body.Close()
	wr := &wireReader{r: resp.Body}
	sum, err := sumContent(resp.Header.Get("Content-Encoding"), wr, false)
	switch {
	case wr.err != nil:
		return wr.n, "asset_transport_error"
	case err != nil:
		return wr.n, "asset_decode_error"
	case base64.RawURLEncoding.EncodeToString(sum[:]) != strings.TrimRight(a.hash, "="):
		return wr.n, "asset_hash_mismatch"
	}
	return wr.n, ""
}
