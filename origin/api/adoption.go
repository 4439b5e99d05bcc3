package api

import (
	"fmt"
	"time"
)

// AdoptionReport is how fast and how well an app's releases were taken:
// per release (bundle on a channel) and per segment, the time until 50%,
// 90% and 95% of the active devices ran it, the share that ran it within
// 24 hours of its start, its install success rate, and its cumulative
// adoption curve; with the installs and failures by hour of day and day of
// week (UTC) per segment (release timing). "Active" is defined once, in
// store.ActiveWindow.
type AdoptionReport struct {
	AppID   string    `json:"app_id"`
	Channel string    `json:"channel,omitempty"`
	Segment string    `json:"segment,omitempty"`
	Version string    `json:"version_name,omitempty"`
	At      time.Time `json:"at"` // the time the report considers (now)
	// ActiveWindowSeconds: a device is active when seen (check-in or
	// event) within this long before At.
	ActiveWindowSeconds int64             `json:"active_window_seconds"`
	Releases            []ReleaseAdoption `json:"releases"`
	Timing              []SegmentTiming   `json:"timing"`
}

// ReleaseAdoption is one bundle on one channel.
type ReleaseAdoption struct {
	Channel string    `json:"channel"`
	Version string    `json:"version_name"`
	Start   time.Time `json:"start"`
	// StartSource says where Start comes from: "audit" (the first
	// channel.created, channel.changed, rollout.set or ab.set record that
	// offered the bundle on the channel) or "first_event" (the first minute
	// a device of the channel reported about the bundle), whichever is
	// earlier.
	StartSource string `json:"start_source"`
	// Segments: the whole channel first (Segment ""), then each segment.
	Segments []SegmentAdoption `json:"segments"`
}

// SegmentAdoption is a release's figures among one segment's devices (all
// of the channel's when Segment is "").
type SegmentAdoption struct {
	Segment string `json:"segment"`
	// Active: devices of the channel and segment (by their last check-in)
	// seen within the active window before the report's time.
	Active int64 `json:"active_devices"`
	// Devices: devices whose latest install is this release, now.
	Devices int64   `json:"devices"`
	Share   float64 `json:"share"` // Devices / Active (0 without active devices)
	// Share24h: share of the active devices running it 24 h after Start.
	Share24h float64 `json:"share_24h"`
	// Seconds from Start (minute resolution) until 50%, 90% and 95% of the
	// active devices ran it; absent when not reached.
	TimeTo50 *int64 `json:"time_to_50_seconds,omitempty"`
	TimeTo90 *int64 `json:"time_to_90_seconds,omitempty"`
	TimeTo95 *int64 `json:"time_to_95_seconds,omitempty"`
	// Installs ("set") and failures (every *_fail action) reported for the
	// release; SuccessRate installs / (installs + failures), absent
	// without either.
	Installs    int64    `json:"installs"`
	Failures    int64    `json:"failures"`
	SuccessRate *float64 `json:"success_rate,omitempty"`
	// Curve: cumulative adoption (share of active devices) at Start
	// (Curve[0]: devices already on it), then at the end of every
	// CurveStepSeconds after it (at most 120 steps, up to the report's
	// time or the active window, whichever is shorter).
	CurveStepSeconds int64     `json:"curve_step_seconds"`
	Curve            []float64 `json:"curve"`
}

// SegmentTiming is when a segment's devices install and fail: counts by
// hour of day (0–23) and by day of week (0 Sunday – 6 Saturday), UTC.
type SegmentTiming struct {
	Segment        string    `json:"segment"`
	InstallsByHour [24]int64 `json:"installs_by_hour"`
	FailuresByHour [24]int64 `json:"failures_by_hour"`
	InstallsByDay  [7]int64  `json:"installs_by_weekday"`
	FailuresByDay  [7]int64  `json:"failures_by_weekday"`
}

// Cells lists the hours and weekdays with installs or failures, each as
// "07h 12/1" or "Mon 40/3" (installs/failures), in order: how the CLI and
// /ui print release timing.
func (t SegmentTiming) Cells() (hours, weekdays []string) {
	days := [7]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
	for h := range 24 {
		if t.InstallsByHour[h]+t.FailuresByHour[h] > 0 {
			hours = append(hours, fmt.Sprintf("%02dh %d/%d", h, t.InstallsByHour[h], t.FailuresByHour[h]))
		}
	}
	for d := range 7 {
		if t.InstallsByDay[d]+t.FailuresByDay[d] > 0 {
			weekdays = append(weekdays, fmt.Sprintf("%s %d/%d", days[d], t.InstallsByDay[d], t.FailuresByDay[d]))
		}
	}
	return hours, weekdays
}
