package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the result of a run.
type Report struct {
	Scenario    string        `json:"scenario"`
	Target      string        `json:"target"`
	Devices     int           `json:"devices"`
	Connections int           `json:"connections"`
	Started     time.Time     `json:"started"`
	Phases      []PhaseReport `json:"phases"`
	// Client is the device software (ClientUpdraft, ClientCapgo) and Conn
	// the connection model (ConnWarm, ConnCold).
	Client string `json:"client,omitempty"`
	Conn   string `json:"conn,omitempty"`
	// ManifestConcurrency (capgo client): manifest files downloaded at once
	// per device; HeldFiles: files each device held from the bundle it ran.
	ManifestConcurrency int `json:"manifest_concurrency,omitempty"`
	HeldFiles           int `json:"held_files,omitempty"`
	// AssetConcurrency (expo client): assets downloaded at once per
	// device; HeldFiles: the assets (by key) each device held;
	// ExpoCurrentUpdateID: the update id the devices reported running
	// (empty: their embedded update's).
	AssetConcurrency    int    `json:"asset_concurrency,omitempty"`
	ExpoCurrentUpdateID string `json:"expo_current_update_id,omitempty"`
}

// PathReport is the figures of the updates that took one path (capgo
// client): the manifest's files or the zip.
type PathReport struct {
	Path         string      `json:"path"` // PathManifest, PathZip or PathExpo
	TimeToUpdate Percentiles `json:"time_to_update"`
	Downloads    Percentiles `json:"download_latency"`
	BytesDown    int64       `json:"bytes_downloaded"`
	// FilesDownloaded and FilesReused (manifest, expo): over all its
	// updates, the files (assets) fetched and those the devices already
	// held.
	FilesDownloaded int64 `json:"files_downloaded"`
	FilesReused     int64 `json:"files_reused"`
}

// PhaseReport is one phase's figures.
type PhaseReport struct {
	Name         string      `json:"name"`
	Kind         string      `json:"kind"`
	Planned      string      `json:"planned"`
	Elapsed      string      `json:"elapsed"`
	Started      int64       `json:"started"` // devices or checks started
	Checks       Percentiles `json:"check_latency"`
	Downloads    Percentiles `json:"download_latency"`
	TimeToUpdate Percentiles `json:"time_to_update"`
	ChecksPerSec float64     `json:"checks_per_sec"`
	EventsPerSec float64     `json:"events_per_sec,omitempty"` // stats phases: events accepted per second
	BytesDown    int64       `json:"bytes_downloaded"`
	MBPerSec     float64     `json:"download_mb_per_sec"`
	Outcomes     []Outcome   `json:"outcomes"`
	Failures     int64       `json:"failures"`
	PerSecond    []second    `json:"per_second"`
	Unfinished   int64       `json:"unfinished"`
	// TimeToUpdateBins is the time-to-update distribution (log-spaced bins).
	TimeToUpdateBins []Bin `json:"time_to_update_bins,omitempty"`
	// Paths (capgo and expo clients): time to update per download path.
	Paths []PathReport `json:"time_to_update_by_path,omitempty"`
	// ConnectionsOpened (capgo and expo clients): connections the devices
	// opened during the phase (TCP, or QUIC with h3).
	ConnectionsOpened int64 `json:"connections_opened,omitempty"`
	// Cohorts (cohorts phases): the steps, the cohorts against the
	// pattern, the routing.
	Cohorts *CohortFleetReport `json:"cohort_fleet,omitempty"`
}

func (r *recorder) report(p Phase, started int64, elapsed time.Duration) PhaseReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	pr := PhaseReport{Name: p.Name, Kind: p.Kind, Planned: time.Duration(p.Duration).String(), Elapsed: elapsed.Round(time.Millisecond).String(),
		Started: started, Checks: summarize(r.check), Downloads: summarize(r.download), TimeToUpdate: summarize(r.update),
		BytesDown: r.bytes, Outcomes: r.outcomeList(), PerSecond: r.seconds, TimeToUpdateBins: distribution(r.update, 40), Paths: r.pathList()}
	pr.ChecksPerSec = float64(pr.Checks.Count) / elapsed.Seconds()
	pr.MBPerSec = float64(r.bytes) / 1e6 / elapsed.Seconds()
	for _, s := range r.seconds {
		pr.Failures += s.Errors
	}
	pr.Unfinished = started - pr.Checks.Count
	return pr
}

// WriteJSON writes the report as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteText writes the report as tables.
func (rep *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "updraft bench: scenario %s against %s, %d devices, %d connections\n", rep.Scenario, rep.Target, rep.Devices, rep.Connections)
	if rep.Client == ClientCapgo {
		fmt.Fprintf(w, "client capgo (stock plugin %s): %s connections, %d manifest files at once, %d files held from the bundle the devices run\n",
			capgoPluginVersion, rep.Conn, rep.ManifestConcurrency, rep.HeldFiles)
	}
	if rep.Client == ClientExpo {
		on := "their embedded update"
		if rep.ExpoCurrentUpdateID != "" {
			on = "update " + rep.ExpoCurrentUpdateID
		}
		fmt.Fprintf(w, "client expo (stock expo-updates, Android): %s connections, %d assets at once, devices on %s holding %d assets\n",
			rep.Conn, rep.AssetConcurrency, on, rep.HeldFiles)
	}
	for _, p := range rep.Phases {
		fmt.Fprintf(w, "\nphase %s (%s): planned %s, took %s; %d started, %.0f checks/s", p.Name, p.Kind, p.Planned, p.Elapsed, p.Started, p.ChecksPerSec)
		if p.BytesDown > 0 {
			fmt.Fprintf(w, ", %.1f MB downloaded (%.1f MB/s)", float64(p.BytesDown)/1e6, p.MBPerSec)
		}
		if p.EventsPerSec > 0 {
			fmt.Fprintf(w, ", %.0f events/s", p.EventsPerSec)
		}
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "latency (ms)\tcount\tp50\tp90\tp99\tp99.9\tmax\t")
		for _, row := range []struct {
			name string
			p    Percentiles
		}{{"update check", p.Checks}, {"download", p.Downloads}, {"time to update", p.TimeToUpdate}} {
			if row.p.Count == 0 {
				continue
			}
			fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", row.name, row.p.Count, row.p.P50, row.p.P90, row.p.P99, row.p.P999, row.p.Max)
		}
		for _, pa := range p.Paths {
			q := pa.TimeToUpdate
			fmt.Fprintf(tw, "time to update (%s)\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", pa.Path, q.Count, q.P50, q.P90, q.P99, q.P999, q.Max)
		}
		tw.Flush()
		for _, pa := range p.Paths {
			fmt.Fprintf(w, "%s: %d updates, %.1f MB", pa.Path, pa.TimeToUpdate.Count, float64(pa.BytesDown)/1e6)
			switch pa.Path {
			case PathManifest:
				fmt.Fprintf(w, ", %d files downloaded, %d reused", pa.FilesDownloaded, pa.FilesReused)
			case PathExpo:
				fmt.Fprintf(w, ", %d assets downloaded, %d held", pa.FilesDownloaded, pa.FilesReused)
			}
			fmt.Fprintln(w)
		}
		if rep.Client == ClientCapgo || rep.Client == ClientExpo {
			fmt.Fprintf(w, "connections opened: %d\n", p.ConnectionsOpened)
		}
		var parts []string
		for _, o := range p.Outcomes {
			parts = append(parts, fmt.Sprintf("%s %d", o.Outcome, o.Count))
		}
		fmt.Fprintf(w, "outcomes: %s\n", strings.Join(parts, ", "))
		if p.Failures > 0 || p.Unfinished > 0 {
			fmt.Fprintf(w, "failures: %d, unfinished at the deadline: %d\n", p.Failures, p.Unfinished)
		}
		if p.Cohorts != nil {
			p.Cohorts.writeText(w)
		}
	}
}
