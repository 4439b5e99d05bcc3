package bench

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Bin is one bar of a latency distribution (log-spaced bins).
type Bin struct {
	FromMs float64 `json:"from_ms"`
	ToMs   float64 `json:"to_ms"`
	Count  int64   `json:"count"`
}

// distribution folds a histogram into at most n log-spaced bins.
func distribution(h *hdrhistogram.Histogram, n int) []Bin {
	if h.TotalCount() == 0 {
		return nil
	}
	lo, hi := math.Log(float64(max(h.Min(), 1))), math.Log(float64(h.Max())+1)
	step := (hi - lo) / float64(n)
	if step <= 0 {
		step = 1
	}
	bins := make([]Bin, n)
	for i := range bins {
		bins[i] = Bin{FromMs: math.Exp(lo+float64(i)*step) / 1000, ToMs: math.Exp(lo+float64(i+1)*step) / 1000}
	}
	for _, b := range h.Distribution() {
		if b.Count == 0 {
			continue
		}
		i := int((math.Log(float64(max(b.From, 1))) - lo) / step)
		bins[min(max(i, 0), n-1)].Count += b.Count
	}
	return bins
}

// WriteHTML writes the report as a self-contained page with SVG charts (no
// script, no external resource: it works offline).
func (rep *Report) WriteHTML(w io.Writer) error {
	return htmlReport.Execute(w, rep)
}

// svgSeries draws per-second values as a polyline chart.
func svgSeries(title string, vals []float64, unit string) template.HTML {
	const W, H, pad = 640.0, 180.0, 36.0
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="%s">`, W, H, W, H, template.HTMLEscapeString(title))
	top := 0.0
	for _, v := range vals {
		top = math.Max(top, v)
	}
	if top == 0 {
		top = 1
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="14" font-size="12">%s (max %.1f %s)</text>`, pad, template.HTMLEscapeString(title), top, unit)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#999"/>`, pad, H-pad, W-8, H-pad)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="20" x2="%.0f" y2="%.0f" stroke="#999"/>`, pad, pad, H-pad)
	if len(vals) > 0 {
		b.WriteString(`<polyline class="series" fill="none" stroke="#1f6feb" stroke-width="2" points="`)
		for i, v := range vals {
			x := pad + (W-8-pad)*float64(i)/math.Max(1, float64(len(vals)-1))
			y := H - pad - (H-pad-20)*v/top
			fmt.Fprintf(&b, "%.1f,%.1f ", x, y)
		}
		b.WriteString(`"/>`)
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="11">0 s</text><text x="%.0f" y="%.0f" font-size="11" text-anchor="end">%d s</text></svg>`,
		pad, H-pad+14, W-8, H-pad+14, len(vals))
	return template.HTML(b.String())
}

// svgBins draws a distribution as bars.
func svgBins(title string, bins []Bin) template.HTML {
	const W, H, pad = 640.0, 180.0, 36.0
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="%s">`, W, H, W, H, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<text x="%.0f" y="14" font-size="12">%s</text>`, pad, template.HTMLEscapeString(title))
	var top int64 = 1
	for _, x := range bins {
		top = max(top, x.Count)
	}
	bw := (W - 8 - pad) / math.Max(1, float64(len(bins)))
	for i, x := range bins {
		h := (H - pad - 20) * float64(x.Count) / float64(top)
		fmt.Fprintf(&b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#2da44e"><title>%.2f–%.2f ms: %d</title></rect>`,
			pad+float64(i)*bw, H-pad-h, math.Max(1, bw-1), h, x.FromMs, x.ToMs, x.Count)
	}
	if len(bins) > 0 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="11">%.1f ms</text><text x="%.0f" y="%.0f" font-size="11" text-anchor="end">%.1f ms (log scale)</text>`,
			pad, H-pad+14, bins[0].FromMs, W-8, H-pad+14, bins[len(bins)-1].ToMs)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func checksPerSecond(p PhaseReport) []float64 {
	out := make([]float64, len(p.PerSecond))
	for i, s := range p.PerSecond {
		out[i] = float64(s.Checks)
	}
	return out
}

func maxLatencyPerSecond(p PhaseReport) []float64 {
	out := make([]float64, len(p.PerSecond))
	for i, s := range p.PerSecond {
		out[i] = float64(s.MaxUs) / 1000
	}
	return out
}

var htmlReport = template.Must(template.New("report").Funcs(template.FuncMap{
	"series": svgSeries, "bins": svgBins, "checks": checksPerSecond, "maxlat": maxLatencyPerSecond,
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>updraft bench: {{.Scenario}}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:right}th:first-child,td:first-child{text-align:left}</style></head>
<body><h1>updraft bench: {{.Scenario}}</h1>
<p>Target {{.Target}}, {{.Devices}} devices, {{.Connections}} connections{{if eq .Client "capgo"}}, client capgo (stock plugin), {{.Conn}} connections, {{.ManifestConcurrency}} manifest files at once, {{.HeldFiles}} files held{{end}}{{if eq .Client "expo"}}, client expo (stock expo-updates, Android), {{.Conn}} connections, {{.AssetConcurrency}} assets at once, {{.HeldFiles}} assets held{{end}}, started {{.Started.Format "2006-01-02 15:04:05 MST"}}.</p>
{{range .Phases}}<h2>Phase {{.Name}} ({{.Kind}})</h2>
<p>Planned {{.Planned}}, took {{.Elapsed}}; {{.Started}} started; {{printf "%.0f" .ChecksPerSec}} checks/s; {{.BytesDown}} bytes downloaded ({{printf "%.1f" .MBPerSec}} MB/s); {{.Failures}} failures.</p>
<table><tr><th>latency (ms)</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>
<tr><td>update check</td><td>{{.Checks.Count}}</td><td>{{printf "%.2f" .Checks.P50}}</td><td>{{printf "%.2f" .Checks.P90}}</td><td>{{printf "%.2f" .Checks.P99}}</td><td>{{printf "%.2f" .Checks.P999}}</td><td>{{printf "%.2f" .Checks.Max}}</td></tr>
<tr><td>download</td><td>{{.Downloads.Count}}</td><td>{{printf "%.2f" .Downloads.P50}}</td><td>{{printf "%.2f" .Downloads.P90}}</td><td>{{printf "%.2f" .Downloads.P99}}</td><td>{{printf "%.2f" .Downloads.P999}}</td><td>{{printf "%.2f" .Downloads.Max}}</td></tr>
<tr><td>time to update</td><td>{{.TimeToUpdate.Count}}</td><td>{{printf "%.2f" .TimeToUpdate.P50}}</td><td>{{printf "%.2f" .TimeToUpdate.P90}}</td><td>{{printf "%.2f" .TimeToUpdate.P99}}</td><td>{{printf "%.2f" .TimeToUpdate.P999}}</td><td>{{printf "%.2f" .TimeToUpdate.Max}}</td></tr>
{{range .Paths}}<tr><td>time to update ({{.Path}})</td><td>{{.TimeToUpdate.Count}}</td><td>{{printf "%.2f" .TimeToUpdate.P50}}</td><td>{{printf "%.2f" .TimeToUpdate.P90}}</td><td>{{printf "%.2f" .TimeToUpdate.P99}}</td><td>{{printf "%.2f" .TimeToUpdate.P999}}</td><td>{{printf "%.2f" .TimeToUpdate.Max}}</td></tr>
{{end}}</table>
{{range .Paths}}<p>{{.Path}}: {{.BytesDown}} bytes downloaded{{if eq .Path "manifest"}}, {{.FilesDownloaded}} files downloaded, {{.FilesReused}} reused{{end}}.</p>
{{end}}{{if .ConnectionsOpened}}<p>Connections opened: {{.ConnectionsOpened}}.</p>{{end}}
<p>Outcomes: {{range .Outcomes}}{{.Outcome}} {{.Count}}; {{end}}</p>
{{series "update checks per second" (checks .) "checks/s"}}
{{series "slowest update check per second" (maxlat .) "ms"}}
{{if .TimeToUpdateBins}}{{bins "time to update: distribution" .TimeToUpdateBins}}{{end}}
{{end}}</body></html>
`))
