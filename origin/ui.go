package origin

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// The operator web page (/ui): adoption and failure-rate charts per bundle,
// drawn on the server as SVG, with no script and no external resource. It
// takes an admin, deploy or read key (a key limited to one app sees only
// that app) like the API (Authorization header), or from the
// login form (POST) or once as ?key= (for links from scripts); both set an
// HttpOnly, SameSite=Strict session cookie that holds its expiry and an HMAC
// of (key hash, expiry) under the origin's private key, not the key, and
// redirect. The session ends at its expiry (uiSessionTTL), when the key
// expires or is removed, or when the signing key is rotated.

const uiCookie = "updraft_key"

// uiSessionTTL is how long a /ui login lasts.
const uiSessionTTL = 12 * time.Hour

// uiPalette colours series in order; the Chromium test looks for them.
var uiPalette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"}

// uiAuthorized returns the key the request's session, login or header
// presents, when it may open /ui (uiAccess: admin, deploy and read keys);
// otherwise it has answered (login form, redirect after a login, refusal).
func (s *Server) uiAuthorized(w http.ResponseWriter, r *http.Request) (keyHash, bool) {
	key := r.URL.Query().Get("key")
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
		key = r.PostFormValue("key")
	}
	if key != "" {
		sum := sha256.Sum256([]byte(key))
		k, ok := s.lookupKey(sum[:])
		if !ok || !k.valid(time.Now().Unix()) || k.scope == store.ScopeEdge {
			http.Error(w, "wrong key", http.StatusUnauthorized)
			return keyHash{}, false
		}
		if !uiAccess.accepts(k.scope) {
			http.Error(w, fmt.Sprintf("key %q has scope %s; /ui takes a key of scope %s", k.name, k.scope, uiAccess.needs()), http.StatusForbidden)
			return keyHash{}, false
		}
		http.SetCookie(w, &http.Cookie{Name: uiCookie, Value: s.uiSession(sum[:], time.Now().Add(uiSessionTTL)), Path: "/ui",
			MaxAge: int(uiSessionTTL / time.Second), HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
		q := r.URL.Query()
		q.Del("key")
		u := *r.URL
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
		return keyHash{}, false
	}
	if c, err := r.Cookie(uiCookie); err == nil {
		if k, ok := s.uiSessionKey(c.Value); ok {
			if ae := uiAccess.check(r, k); ae != nil {
				http.Error(w, ae.Message, ae.Status)
				return keyHash{}, false
			}
			return k, true
		}
	}
	if requestKey(r) != "" {
		a, ae := s.authorize(r, uiAccess)
		if ae == nil {
			return keyHash{name: a.Key, scope: a.Scope, app: a.App}, true
		}
		if ae.Status == http.StatusForbidden {
			http.Error(w, ae.Message, ae.Status)
			return keyHash{}, false
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprint(w, `<!doctype html><title>Updraft</title><form method="post"><p>API key (admin, deploy or read; the admin key is in DATA/api-key):
<input name="key" type="password" autofocus> <button>Open</button></form>`)
	return keyHash{}, false
}

// uiSession is the cookie for a key (by its hash) until expires:
// "EXPIRY.MAC", EXPIRY in Unix seconds and MAC an HMAC of (key hash,
// expiry) under the origin's private key, so the cookie reveals nothing of
// the key, cannot be extended, and stops working when the key is removed.
func (s *Server) uiSession(keySum []byte, expires time.Time) string {
	exp := strconv.FormatInt(expires.Unix(), 10)
	return exp + "." + s.uiSessionMAC(keySum, exp)
}

func (s *Server) uiSessionMAC(keySum []byte, exp string) string {
	m := hmac.New(sha256.New, s.signingKey().Seed())
	m.Write([]byte("updraft ui session v2\x00"))
	m.Write(keySum)
	m.Write([]byte{0})
	m.Write([]byte(exp))
	return hex.EncodeToString(m.Sum(nil))
}

// uiSessionKey returns the key a session cookie was made for, if the
// cookie is intact and unexpired and the key still opens /ui.
func (s *Server) uiSessionKey(v string) (keyHash, bool) {
	exp, mac, found := strings.Cut(v, ".")
	if !found {
		return keyHash{}, false
	}
	t, err := strconv.ParseInt(exp, 10, 64)
	now := time.Now().Unix()
	if err != nil || t <= now || t > now+int64(uiSessionTTL/time.Second) {
		return keyHash{}, false
	}
	found, match := false, keyHash{}
	for _, k := range s.apiKeys() {
		if uiAccess.accepts(k.scope) && k.valid(now) && subtle.ConstantTimeCompare([]byte(mac), []byte(s.uiSessionMAC(k.sum, exp))) == 1 {
			found, match = true, k
		}
	}
	return match, found
}

type uiChart struct {
	Title  string
	Width  int
	Height int
	Lines  []uiLine
	YTicks []uiTick
	XTicks []uiTick
	Empty  bool
}

type uiLine struct {
	Version string
	Color   string
	Points  string // SVG polyline points
	Dots    []uiDot
}

type uiDot struct{ X, Y float64 }

type uiTick struct {
	Pos    float64
	Label  string
	Anchor string
}

type uiPage struct {
	App      string
	Apps     []store.App
	Channel  string
	Segment  string
	Since    string
	Report   *StatsReport
	Charts   []uiChart
	Segments []string
	Guards   []GuardInfo
	History  []uiHistory
	Colors   map[string]string
	Windows  []string
	// Cohorts: the app's cohorts, their members and churn (Report.Cohorts);
	// ChurnWindow names the report's window.
	Cohorts     []uiCohort
	ChurnWindow string
	// Schedules: each channel's maintenance windows (and those of the
	// segments that have their own), held or open now.
	Schedules []uiSchedule
	// Adoption: the adoption speed of the newest release (of the selected
	// channel), per segment.
	Adoption *uiAdoption

	// The device page (/ui/apps/{app}/device?id=ID): what `updraft device
	// show` prints.
	DeviceMode bool
	DeviceID   string
	Device     *DeviceDetail
	DeviceErr  string
}

// uiSegmentPalette colours the adoption chart's segments: the whole
// channel first, then each segment; none is in uiPalette (the Chromium
// test tells them apart).
var uiSegmentPalette = []string{"#444444", "#e6a100", "#00a087", "#c2185b", "#7a3fbf", "#6d8f00"}

type uiAdoption struct {
	Channel, Version, Start, Source, Window string
	Chart                                   uiChart
	Rows                                    []uiAdoptionRow
	Timing                                  []uiTiming
}

// uiTiming is a segment's release timing, as text: "09h 2/1 · 11h 1/0".
type uiTiming struct{ Segment, Hours, Days string }

type uiAdoptionRow struct {
	SegmentAdoption
	Name, Color, To50, To90, To95, Success string
}

// uiAdoptionOf draws the cumulative adoption of rep's newest release (by
// start) per segment.
func uiAdoptionOf(rep *AdoptionReport) *uiAdoption {
	if len(rep.Releases) == 0 {
		return nil
	}
	r := rep.Releases[0]
	for _, x := range rep.Releases[1:] {
		if x.Start.After(r.Start) {
			r = x
		}
	}
	a := &uiAdoption{Channel: r.Channel, Version: r.Version, Start: r.Start.Format("2006-01-02 15:04"),
		Source: map[string]string{"audit": "first offered on the channel", "first_event": "first reported by a device"}[r.StartSource],
		Window: fmt.Sprintf("%d days", rep.ActiveWindowSeconds/86400)}
	colors := map[string]string{}
	var series []Series
	step := int64(60)
	dur := func(s *int64) string {
		if s == nil {
			return "-"
		}
		return (time.Duration(*s) * time.Second).String()
	}
	for i, s := range r.Segments {
		name := s.Segment
		if name == "" {
			name = "all segments"
		}
		colors[name] = uiSegmentPalette[i%len(uiSegmentPalette)]
		series = append(series, Series{Version: name, Points: s.Curve})
		step = s.CurveStepSeconds
		row := uiAdoptionRow{SegmentAdoption: s, Name: name, Color: colors[name], To50: dur(s.TimeTo50), To90: dur(s.TimeTo90), To95: dur(s.TimeTo95), Success: "-"}
		if s.SuccessRate != nil {
			row.Success = strconv.FormatFloat(100**s.SuccessRate, 'f', 1, 64) + "%"
		}
		a.Rows = append(a.Rows, row)
	}
	for _, t := range rep.Timing {
		hours, wd := t.Cells()
		a.Timing = append(a.Timing, uiTiming{t.Segment, strings.Join(hours, " · "), strings.Join(wd, " · ")})
	}
	// The curve's first point is at the start: the chart's x ticks are
	// From + (i+1) steps.
	axis := &StatsReport{From: r.Start.Add(-time.Duration(step) * time.Second), StepSeconds: step}
	a.Chart = chart("Cumulative adoption of "+r.Version+" per segment", axis, series, 1, func(v float64) string {
		return strconv.FormatFloat(100*v, 'f', 0, 64) + "%"
	}, colors)
	return a
}

// uiCohort is a cohort's row: kind (imported or the rule), members now,
// churn over the page's window and over 7 days, last change.
type uiCohort struct {
	CohortStats
	KindText, Changed, Segments string
}

func uiCohortsOf(cs []CohortStats) []uiCohort {
	var out []uiCohort
	for _, c := range cs {
		row := uiCohort{CohortStats: c, KindText: "imported", Changed: "-", Segments: strings.Join(c.Segments, ", ")}
		if c.Rule != "" {
			row.KindText = "computed: " + c.Rule
		}
		if c.ChangedAt != nil {
			row.Changed = c.ChangedAt.UTC().Format("2006-01-02 15:04:05")
		}
		out = append(out, row)
	}
	return out
}

// uiSchedule is a channel's (or a segment's) maintenance schedule as
// `channel set --window/--blackout` reads it, and whether it holds updates
// at the page's time: Held is snapshot.Windows.Held's reason, Next the
// next opening (with the channel's schedule, for a segment), as resolve
// reports them.
type uiSchedule struct {
	Channel, Segment   string
	Windows, Blackouts string
	Held, State, Next  string
}

// uiSchedulesOf reads the schedules of the app's channels (of channel
// only, when one is selected) and of its segments with their own, from
// the published snapshot (whose schedules are indexed), at now.
func uiSchedulesOf(app *snapshot.App, channel string, now time.Time) []uiSchedule {
	if app == nil {
		return nil
	}
	row := func(ch *snapshot.Channel, seg *snapshot.Rule) uiSchedule {
		own := ch.Windows
		sc := uiSchedule{Channel: ch.Name, State: "open"}
		if seg != nil {
			sc.Segment, own = seg.Name, seg.Windows
		}
		var ws, bs []string
		if own != nil {
			for _, w := range own.Weekly {
				ws = append(ws, w.String())
			}
			for _, b := range own.Blackouts {
				bs = append(bs, b.String())
			}
		}
		sc.Windows, sc.Blackouts = strings.Join(ws, ", "), strings.Join(bs, ", ")
		if len(ws) == 0 {
			sc.Windows = "any time"
		}
		if len(bs) == 0 {
			sc.Blackouts = "none"
		}
		held := ch.Windows.Held(now)
		if seg != nil && held == "" {
			held = seg.Windows.Held(now)
		}
		if held == "" {
			return sc
		}
		sc.Held, sc.State = held, "held: outside the maintenance windows"
		if held == snapshot.HeldBlackout {
			sc.State = "held: a blackout date"
		}
		var segWindows *snapshot.Windows
		if seg != nil {
			segWindows = seg.Windows
		}
		if next, ok := snapshot.NextOpenAll(now, ch.Windows, segWindows); ok {
			sc.Next = next.UTC().Format("2006-01-02 15:04")
		} else {
			sc.Next = "none within a year"
		}
		return sc
	}
	var out []uiSchedule
	for _, ch := range app.Channels {
		if channel != "" && ch.Name != channel {
			continue
		}
		out = append(out, row(ch, nil))
		for _, r := range app.Rules {
			if r.Channel == ch.Name && !r.Windows.Empty() {
				out = append(out, row(ch, r))
			}
		}
	}
	return out
}

// uiHistory is a channel's deployment history: its last uiHistoryLen
// audit records, newest first.
type uiHistory struct {
	Channel string
	Entries []uiHistoryEntry
}

type uiHistoryEntry struct {
	At, Actor, Addr, Action, Before, After string
}

const uiHistoryLen = 20

// uiChannelHistory reads the history of the app's channels (of channel
// only, when one is selected).
func (s *Server) uiChannelHistory(ctx context.Context, appID, channel string) ([]uiHistory, error) {
	chs, err := s.store.ListChannels(ctx, appID)
	if err != nil {
		return nil, err
	}
	var out []uiHistory
	for _, ch := range chs {
		if channel != "" && ch.Name != channel {
			continue
		}
		page, err := s.channelHistory(ctx, appID, ch.Name, store.AuditQuery{Limit: uiHistoryLen})
		if err != nil {
			return nil, err
		}
		h := uiHistory{Channel: ch.Name}
		for _, r := range page.Records {
			h.Entries = append(h.Entries, uiHistoryEntry{At: time.UnixMilli(r.At).UTC().Format("2006-01-02 15:04:05"),
				Actor: r.Actor, Addr: r.Addr, Action: r.Action, Before: string(r.Before), After: string(r.After)})
		}
		out = append(out, h)
	}
	return out, nil
}

// chart draws series (nil points are gaps, negative values skipped) on a
// 640×220 plot with y from 0 to the series' maximum (or yMax when set).
func chart(title string, rep *StatsReport, series []Series, yMax float64, yFmt func(float64) string, colors map[string]string) uiChart {
	const w, h, left, right, top, bottom = 720, 240, 56, 12, 12, 28
	c := uiChart{Title: title, Width: w, Height: h}
	max := yMax
	if max == 0 {
		for _, s := range series {
			for _, v := range s.Points {
				max = math.Max(max, v)
			}
		}
		if max == 0 {
			max = 1
		}
	}
	n := 0
	for _, s := range series {
		n = len(s.Points)
	}
	pw, ph := float64(w-left-right), float64(h-top-bottom)
	x := func(i int) float64 {
		if n <= 1 {
			return left + pw
		}
		return left + pw*float64(i)/float64(n-1)
	}
	y := func(v float64) float64 { return top + ph*(1-v/max) }
	for i := 0; i <= 4; i++ {
		v := max * float64(i) / 4
		c.YTicks = append(c.YTicks, uiTick{y(v), yFmt(v), "end"})
	}
	prev := -1
	for i := 0; i <= 4 && n > 0; i++ {
		idx := (n - 1) * i / 4
		if idx == prev {
			continue // fewer than 5 points: one label each
		}
		prev = idx
		t := rep.From.Add(time.Duration(idx+1) * time.Duration(rep.StepSeconds) * time.Second)
		anchor := "middle"
		switch i {
		case 0:
			anchor = "start"
		case 4:
			anchor = "end"
		}
		c.XTicks = append(c.XTicks, uiTick{x(idx), t.Format("01-02 15:04"), anchor})
	}
	for _, s := range series {
		var b strings.Builder
		l := uiLine{Version: s.Version, Color: colors[s.Version]}
		for i, v := range s.Points {
			if v < 0 {
				continue // no data in this bucket
			}
			fmt.Fprintf(&b, "%.1f,%.1f ", x(i), y(v))
			// Dots mark buckets with data, so a lone point is visible.
			if i == 0 || s.Points[i-1] != v || i == len(s.Points)-1 || s.Points[i+1] != v {
				l.Dots = append(l.Dots, uiDot{math.Round(x(i)*10) / 10, math.Round(y(v)*10) / 10})
			}
		}
		if b.Len() == 0 {
			continue
		}
		l.Points = strings.TrimSpace(b.String())
		c.Lines = append(c.Lines, l)
	}
	c.Empty = len(c.Lines) == 0
	return c
}

var uiTemplate = template.Must(template.New("ui").Funcs(template.FuncMap{
	"ms":  func(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05.000") },
	"pct": func(f float64) string { return strconv.FormatFloat(100*f, 'f', 1, 64) + "%" },
	"q": func(app, channel, segment, since string) string {
		v := url.Values{}
		for k, s := range map[string]string{"channel": channel, "segment": segment, "since": since} {
			if s != "" {
				v.Set(k, s)
			}
		}
		u := "/ui/apps/" + url.PathEscape(app)
		if len(v) > 0 {
			u += "?" + v.Encode()
		}
		return u
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Updraft{{if .App}} · {{.App}}{{end}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 12px} h2{font-size:16px;margin:24px 0 8px}
table{border-collapse:collapse;margin:8px 0} td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child{text-align:left} .muted{color:#777} a{color:#1f5fa8}
svg{display:block;border:1px solid #ddd;background:#fcfcfc} .axis{stroke:#999;stroke-width:1} .grid{stroke:#eee}
.series{fill:none;stroke-width:2.5} .tick{font-size:11px;fill:#555} .legend span{display:inline-block;margin-right:14px}
.swatch{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
h3{font-size:14px;margin:16px 0 4px} table.history td,table.history th{text-align:left;vertical-align:top}
table.history code{font-size:12px;word-break:break-all} table.windows td,table.windows th{text-align:left}
</style></head><body>
<h1>Updraft analytics</h1>
{{if .DeviceMode}}
<p><a href="{{q .App "" "" ""}}">{{.App}}</a> · <a href="/ui">all apps</a></p>
<form method="get" action="/ui/apps/{{.App}}/device"><label>Device id <input name="id" size="40" value="{{.DeviceID}}"></label> <button>Look up</button></form>
{{if .DeviceErr}}<p class="muted">{{.DeviceErr}}</p>{{end}}
{{with .Device}}{{with .Device}}
<h2>Device {{.DeviceID}}</h2>
<table class="device">
<tr><td>last seen</td><td>{{ms .LastSeen}}</td></tr>
<tr><td>last check-in</td><td>{{if .CheckedIn}}{{ms .CheckedIn}}{{else}}none (events only){{end}}</td></tr>
<tr><td>edge</td><td>{{.EdgeID}}</td></tr>
<tr><td>platform</td><td>{{.Platform}}</td></tr>
<tr><td>native version</td><td>{{.VersionBuild}}</td></tr>
<tr><td>bundle version</td><td>{{.VersionName}}</td></tr>
<tr><td>plugin version</td><td>{{.PluginVersion}}</td></tr>
<tr><td>custom id</td><td>{{.CustomID}}</td></tr>
<tr><td>channel</td><td>{{.Channel}}</td></tr>
<tr><td>why</td><td>{{.Reason}}{{if .Arm}} (arm {{.Arm}}){{end}}</td></tr>
<tr><td>answer</td><td>{{.Outcome}}</td></tr>
<tr><td>bundle offered</td><td>{{.Bundle}}</td></tr>
</table>{{end}}
<h2>Recent check-ins and events</h2>
<table class="device-log"><tr><th>seq</th><th>time (UTC)</th><th>kind</th><th>action</th><th>version</th><th>target</th><th>channel</th><th>why</th><th>edge</th></tr>
{{range .Events}}<tr><td>{{.Seq}}</td><td>{{ms .At}}</td><td>{{.Kind}}</td><td>{{.Action}}</td><td>{{.VersionName}}</td><td>{{.Target}}</td><td>{{.Channel}}</td><td>{{.Reason}}</td><td>{{.EdgeID}}</td></tr>{{end}}
</table>{{end}}
{{else if not .App}}
<p>Apps:</p><ul>{{range .Apps}}<li><a href="{{q .ID "" "" ""}}">{{.ID}}</a></li>{{else}}<li class="muted">none yet</li>{{end}}</ul>
{{else}}
<p><b>{{.App}}</b>{{if .Channel}} · channel <b>{{.Channel}}</b>{{end}}{{if .Segment}} · segment <b>{{.Segment}}</b>{{end}}
 · {{.Report.From.Format "2006-01-02 15:04"}} to {{.Report.To.Format "2006-01-02 15:04"}} UTC · {{.Report.Events}} events
 · <a href="/ui">all apps</a></p>
<p>Window: {{$p := .}}{{range $s := .Windows}}<a href="{{q $p.App $p.Channel $p.Segment $s}}">{{$s}}</a> {{end}}
 {{if or .Channel .Segment}}· <a href="{{q .App "" "" .Since}}">all devices</a>{{end}}</p>
<form method="get" action="/ui/apps/{{.App}}/device"><label>Device id <input name="id" size="40"></label> <button>Look up</button></form>
<p>Segments: {{range .Segments}}<a href="{{q $p.App $p.Channel . $p.Since}}">{{.}}</a> {{else}}<span class="muted">none</span>{{end}}</p>
<p class="legend">{{range .Report.Bundles}}<span><i class="swatch" style="background:{{index $p.Colors .Version}}"></i>{{.Version}}</span>{{end}}</p>
{{range .Charts}}
<h2>{{.Title}}</h2>
{{template "chart" .}}
{{end}}
{{with .Adoption}}<h2 id="adoption">Adoption speed: {{.Version}} on {{.Channel}}</h2>
<p class="muted">Share of active devices (seen within {{.Window}}) running {{.Version}}, from its start {{.Start}} UTC ({{.Source}}), per segment.</p>
<p class="legend">{{range .Rows}}<span><i class="swatch" style="background:{{.Color}}"></i>{{.Name}}</span>{{end}}</p>
{{template "chart" .Chart}}
<table class="adoption"><tr><th>segment</th><th>active</th><th>devices</th><th>share</th><th>to 50%</th><th>to 90%</th><th>to 95%</th><th>in 24 h</th><th>installs</th><th>failures</th><th>success</th></tr>
{{range .Rows}}<tr><td>{{.Name}}</td><td>{{.Active}}</td><td>{{.Devices}}</td><td>{{pct .Share}}</td><td>{{.To50}}</td><td>{{.To90}}</td><td>{{.To95}}</td><td>{{pct .Share24h}}</td><td>{{.Installs}}</td><td>{{.Failures}}</td><td>{{.Success}}</td></tr>{{end}}
</table>
{{if .Timing}}<h3>Release timing (UTC): installs / failures</h3>
<table class="timing"><tr><th>segment</th><th>by hour of day</th><th>by day of week</th></tr>
{{range .Timing}}<tr><td>{{.Segment}}</td><td>{{.Hours}}</td><td>{{.Days}}</td></tr>{{end}}
</table>{{end}}{{end}}
<h2>Bundles</h2>
<table><tr><th>bundle</th><th>devices</th><th>downloads</th><th>installs</th><th>failures</th><th>fail rate</th><th>lower 95%</th></tr>
{{range .Report.Bundles}}<tr><td>{{.Version}}</td><td>{{.Devices}}</td><td>{{.Downloads}}</td><td>{{.Installs}}</td><td>{{.Failures}}</td><td>{{pct .FailureRate}}</td><td>{{pct .FailureRateLower}}</td></tr>{{end}}
</table>
<h2>Segments</h2>
<table><tr><th>segment</th><th>bundle</th><th>devices</th><th>installs</th><th>failures</th><th>fail rate</th></tr>
{{range .Report.Segments}}<tr><td>{{.Segment}}</td><td>{{.Version}}</td><td>{{.Devices}}</td><td>{{.Installs}}</td><td>{{.Failures}}</td><td>{{pct .FailureRate}}</td></tr>{{end}}
</table>
{{if .Cohorts}}<h2 id="cohorts">Cohorts</h2>
<table class="cohorts"><tr><th>cohort</th><th>kind</th><th>members</th><th>churn {{.ChurnWindow}}</th><th>churn 7 d</th><th>last change (UTC)</th><th>segments</th></tr>
{{range .Cohorts}}<tr><td>{{.Name}}</td><td>{{.KindText}}</td><td>{{.Members}}</td><td>{{template "churn" .Churn}}</td><td>{{template "churn" .Churn7d}}</td><td>{{.Changed}}</td><td>{{.Segments}}</td></tr>{{end}}
</table>
<p class="muted">Churn: members added and removed by imports and recomputations (how many changed the cohort).</p>{{end}}
{{if .Schedules}}<h2 id="windows">Maintenance windows</h2>
<table class="windows"><tr><th>channel</th><th>segment</th><th>weekly windows</th><th>blackout dates</th><th>now</th><th>next opening (UTC)</th></tr>
{{range .Schedules}}<tr><td>{{.Channel}}</td><td>{{.Segment}}</td><td>{{.Windows}}</td><td>{{.Blackouts}}</td><td{{if .Held}} title="{{.Held}}"{{end}}>{{.State}}</td><td>{{.Next}}</td></tr>{{end}}
</table>{{end}}
{{if .Guards}}<h2>Rollout guards</h2>
<table><tr><th>channel</th><th>action</th><th>threshold</th><th>state</th><th>devices</th><th>failed</th><th>last action</th></tr>
{{range .Guards}}<tr><td>{{.Channel}}</td><td>{{.Guard.Action}}</td><td>{{.Guard.ThresholdBPS}} bps</td><td>{{with .Status}}{{.State}}{{end}}</td>
<td>{{with .Status}}{{.Attempts}}{{end}}</td><td>{{with .Status}}{{.Failures}}{{end}}</td><td>{{range $i, $a := .Actions}}{{if eq $i 0}}{{$a.Action}} {{$a.At.Format "01-02 15:04:05"}}{{end}}{{end}}</td></tr>{{end}}
</table>{{end}}
{{if .History}}<h2>Deployment history</h2>
{{range .History}}<h3 id="history-{{.Channel}}">{{.Channel}}</h3>
<table class="history"><tr><th>time (UTC)</th><th>by</th><th>action</th><th>before</th><th>after</th></tr>
{{range .Entries}}<tr><td>{{.At}}</td><td title="{{.Addr}}">{{.Actor}}</td><td>{{.Action}}</td><td><code>{{.Before}}</code></td><td><code>{{.After}}</code></td></tr>
{{else}}<tr><td class="muted" colspan="5">no change recorded</td></tr>{{end}}
</table>{{end}}{{end}}
{{end}}
</body></html>
{{define "churn"}}+{{.Added}} -{{.Removed}} ({{.Changes}}){{end}}
{{define "chart"}}<svg class="chart" width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}" role="img" aria-label="{{.Title}}">
{{range .YTicks}}<line class="grid" x1="56" x2="708" y1="{{.Pos}}" y2="{{.Pos}}"/><text class="tick" x="50" y="{{.Pos}}" text-anchor="end" dominant-baseline="middle">{{.Label}}</text>{{end}}
{{range .XTicks}}<text class="tick" x="{{.Pos}}" y="232" text-anchor="{{.Anchor}}">{{.Label}}</text>{{end}}
<line class="axis" x1="56" x2="56" y1="12" y2="212"/><line class="axis" x1="56" x2="708" y1="212" y2="212"/>
{{range .Lines}}<polyline class="series" data-version="{{.Version}}" stroke="{{.Color}}" points="{{.Points}}"/>{{$c := .Color}}{{range .Dots}}<circle cx="{{.X}}" cy="{{.Y}}" r="3" fill="{{$c}}"/>{{end}}{{end}}
{{if .Empty}}<text class="tick" x="380" y="110" text-anchor="middle">no data in this window</text>{{end}}
</svg>{{end}}
`))

// ui serves /ui (app list) and /ui/apps/{app}.
func (s *Server) ui(w http.ResponseWriter, r *http.Request) {
	key, ok := s.uiAuthorized(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	page := uiPage{Windows: []string{"1h", "6h", "24h", "168h"}}
	fail := func(status int, err error) {
		http.Error(w, err.Error(), status)
	}
	appID := r.PathValue("app")
	if strings.HasSuffix(r.URL.Path, "/device") {
		// The device page: a lookup by id in the app's inventory.
		if _, err := s.store.GetApp(ctx, appID); err != nil {
			fail(http.StatusNotFound, fmt.Errorf("no app %q", appID))
			return
		}
		page.App, page.DeviceMode, page.DeviceID = appID, true, r.URL.Query().Get("id")
		switch id := strings.ToLower(strings.TrimSpace(page.DeviceID)); {
		case id == "":
		case !snapshot.ValidDeviceID(id):
			page.DeviceErr = "not a device id: want a UUID"
		default:
			d, err := s.deviceDetail(ctx, appID, id)
			var ae *apiError
			switch {
			case errors.As(err, &ae):
				page.DeviceErr = ae.Message
			case err != nil:
				fail(http.StatusInternalServerError, err)
				return
			default:
				page.Device = &d
			}
		}
	} else if appID == "" {
		apps, err := s.store.ListApps(ctx)
		if err != nil {
			fail(http.StatusInternalServerError, err)
			return
		}
		if key.app != "" { // a key limited to one app
			apps = slices.DeleteFunc(apps, func(a store.App) bool { return a.ID != key.app })
		}
		page.Apps = apps
	} else {
		if _, err := s.store.GetApp(ctx, appID); err != nil {
			fail(http.StatusNotFound, fmt.Errorf("no app %q", appID))
			return
		}
		q := r.URL.Query()
		page.App, page.Channel, page.Segment, page.Since = appID, q.Get("channel"), q.Get("segment"), q.Get("since")
		since := 24 * time.Hour
		if page.Since != "" {
			d, err := time.ParseDuration(page.Since)
			if err != nil || d < time.Minute || d > 90*24*time.Hour {
				fail(http.StatusBadRequest, fmt.Errorf("since=%q: want a duration between 1m and 2160h", page.Since))
				return
			}
			since = d
		}
		now := time.Now()
		f := store.EventFilter{AppID: appID, Channel: page.Channel, Segment: page.Segment, From: now.Add(-since).UnixMilli(), To: now.UnixMilli()}
		rep, err := s.Report(ctx, f, 0)
		if err != nil {
			fail(http.StatusInternalServerError, err)
			return
		}
		page.Report = rep
		page.Cohorts, page.ChurnWindow = uiCohortsOf(rep.Cohorts), "24h"
		if page.Since != "" {
			page.ChurnWindow = page.Since
		}
		if cur := s.Current(); cur != nil && cur.Snap != nil {
			page.Schedules = uiSchedulesOf(cur.Snap.App(appID), page.Channel, now)
		}
		page.Colors = map[string]string{}
		for i, b := range rep.Bundles {
			page.Colors[b.Version] = uiPalette[i%len(uiPalette)]
		}
		all, err := s.events.Segments(ctx, appID)
		if err != nil {
			fail(http.StatusInternalServerError, err)
			return
		}
		page.Segments = all
		count := func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
		page.Charts = []uiChart{
			chart("Adoption: devices per bundle", rep, rep.Adoption, 0, count, page.Colors),
			chart("Install failure rate per bundle", rep, rep.FailureRate, 0, func(v float64) string {
				return strconv.FormatFloat(100*v, 'f', 0, 64) + "%"
			}, page.Colors),
		}
		adoption, err := s.adoptionReport(ctx, AdoptionQuery{AppID: appID, Channel: page.Channel, Segment: page.Segment})
		if err != nil {
			fail(http.StatusInternalServerError, err)
			return
		}
		page.Adoption = uiAdoptionOf(adoption)
		guards, err := s.store.Guards(ctx, appID)
		if err != nil {
			fail(http.StatusInternalServerError, err)
			return
		}
		for _, g := range guards {
			if info, err := s.guardInfo(ctx, appID, g.Channel); err == nil {
				page.Guards = append(page.Guards, *info)
			}
		}
		if page.History, err = s.uiChannelHistory(ctx, appID, page.Channel); err != nil {
			fail(http.StatusInternalServerError, err)
			return
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	if err := uiTemplate.Execute(w, page); err != nil {
		s.log.Error("origin: ui", "err", err)
	}
}
