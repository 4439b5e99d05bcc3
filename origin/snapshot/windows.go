package snapshot

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	// Time zone data in the binary: windows name IANA zones, and the
	// runtime image may have no /usr/share/zoneinfo. time.LoadLocation
	// still prefers the system's database when there is one.
	_ "time/tzdata"
)

// Maintenance windows (issue 19): a channel may take updates only inside
// weekly windows of local wall-clock time in a named zone, and never on
// blackout dates. Outside them a device that would get a new bundle (or be
// sent back to the store build) gets Capgo's "no_new_version_available"
// instead, and Decision.Held says why. The edge evaluates them from the
// snapshot and its own clock: Held is a pure function of (windows, now).
//
// Wall-clock semantics (docs/protocol.md, "Maintenance windows"): an
// instant is inside "Sat 01:00-05:00 Europe/Rome" when its wall-clock time
// in Europe/Rome is a Saturday between 01:00 (included) and 05:00
// (excluded). So, at daylight-saving transitions:
//   - spring forward (a wall time that does not exist): the window opens at
//     the first wall time that does exist after its start (Sun 02:30-04:00
//     in Rome on the last Sunday of March opens at 03:00 CEST); a window
//     wholly inside the skipped hour does not open that week;
//   - fall back (a wall time that occurs twice): the window is open during
//     both occurrences, so it lasts an hour longer that night.
// A window whose end is before its start spans midnight and belongs to the
// day it starts ("Sat 23:00-02:00": Saturday 23:00 to Sunday 02:00); end
// "24:00" is midnight at the end of the day. A blackout date closes the
// whole local day (00:00 to 24:00 in its zone), inside windows or not.
// Blackouts alone (no weekly window) leave the channel open every other day.

// Limits of a channel's schedule.
const (
	MaxWindows   = 16
	MaxBlackouts = 64
)

// Held reasons (Decision.Held): why an update the device would get waits.
const (
	HeldOutsideWindow = "outside_maintenance_window"
	HeldBlackout      = "maintenance_blackout"
)

// CodeInvalidWindow is the stable error code of a malformed window or
// blackout (HTTP 400).
const CodeInvalidWindow = "invalid_window"

// Windows is a channel's maintenance schedule.
type Windows struct {
	Weekly    []Window   `json:"weekly,omitempty"`
	Blackouts []Blackout `json:"blackouts,omitempty"`
}

// Window is a weekly window: Day ("mon".."sun") from Start to End ("HH:MM",
// End may be "24:00"; End before Start spans midnight) in time zone TZ.
type Window struct {
	Day   string `json:"day"`
	Start string `json:"start"`
	End   string `json:"end"`
	TZ    string `json:"tz"`

	loc        *time.Location
	wd         time.Weekday
	start, end int // minutes of the day
}

// Blackout is a local date (YYYY-MM-DD) in time zone TZ without updates.
type Blackout struct {
	Date string `json:"date"`
	TZ   string `json:"tz"`

	loc *time.Location
	y   int
	m   time.Month
	d   int
}

// WindowError is a malformed window or blackout; Error names what is wrong.
type WindowError struct{ Msg string }

func (e *WindowError) Error() string { return e.Msg }

func windowErr(format string, a ...any) error { return &WindowError{Msg: fmt.Sprintf(format, a...)} }

var days = [7]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

func parseDay(s string) (time.Weekday, bool) {
	s = strings.ToLower(s)
	for i, d := range days {
		if s == d || len(s) > 3 && strings.HasPrefix(strings.ToLower(time.Weekday(i).String()), s) {
			return time.Weekday(i), true
		}
	}
	return 0, false
}

// parseClock parses "HH:MM" (00:00..23:59, and 24:00 when end) into minutes.
func parseClock(s string, end bool) (int, bool) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) < 1 || len(h) > 2 || len(m) != 2 {
		return 0, false
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || h[0] == '+' || m[0] == '+' {
		return 0, false
	}
	if hh == 24 && mm == 0 && end {
		return 24 * 60, true
	}
	if hh > 23 {
		return 0, false
	}
	return hh*60 + mm, true
}

// locations caches loaded zones: every snapshot indexes the same few.
var locations sync.Map // name → *time.Location

func loadLocation(name string) (*time.Location, error) {
	if name == "" {
		return nil, windowErr("missing time zone (an IANA name such as Europe/Rome)")
	}
	if l, ok := locations.Load(name); ok {
		return l.(*time.Location), nil
	}
	// "Local" would make the answer depend on the machine's zone.
	if name == "Local" || strings.EqualFold(name, "local") {
		return nil, windowErr("time zone %q: name an IANA zone such as Europe/Rome (the machine's zone differs between edges)", name)
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, windowErr("unknown time zone %q (want an IANA name such as Europe/Rome or UTC)", name)
	}
	locations.Store(name, l)
	return l, nil
}

// ParseWindow parses "Sat 01:00-05:00 Europe/Rome" (day, start-end, zone).
func ParseWindow(s string) (Window, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return Window{}, windowErr("window %q: want DAY HH:MM-HH:MM ZONE, e.g. \"Sat 01:00-05:00 Europe/Rome\"", s)
	}
	start, end, ok := strings.Cut(f[1], "-")
	if !ok {
		return Window{}, windowErr("window %q: want the hours as HH:MM-HH:MM", s)
	}
	w := Window{Day: f[0], Start: start, End: end, TZ: f[2]}
	if err := w.index(); err != nil {
		return Window{}, err
	}
	return w, nil
}

// index checks the window, normalizes its fields and loads its zone.
func (w *Window) index() error {
	wd, ok := parseDay(w.Day)
	if !ok {
		return windowErr("window %s: day %q: want mon, tue, wed, thu, fri, sat or sun", w, w.Day)
	}
	start, ok := parseClock(w.Start, false)
	if !ok {
		return windowErr("window %s: start %q: want HH:MM from 00:00 to 23:59", w, w.Start)
	}
	end, ok := parseClock(w.End, true)
	if !ok {
		return windowErr("window %s: end %q: want HH:MM from 00:00 to 24:00", w, w.End)
	}
	if end == start {
		return windowErr("window %s: end equals start (an empty window; for a whole day use 00:00-24:00)", w)
	}
	loc, err := loadLocation(w.TZ)
	if err != nil {
		return windowErr("window %s: %v", w, err)
	}
	w.Day, w.Start, w.End = days[wd], fmt.Sprintf("%02d:%02d", start/60, start%60), fmt.Sprintf("%02d:%02d", end/60, end%60)
	w.loc, w.wd, w.start, w.end = loc, wd, start, end
	return nil
}

// String is the window as ParseWindow reads it.
func (w Window) String() string {
	d := w.Day
	if d != "" {
		d = strings.ToUpper(d[:1]) + d[1:]
	}
	return d + " " + w.Start + "-" + w.End + " " + w.TZ
}

// ParseBlackout parses "2026-12-24" or "2026-12-24 Europe/Rome"; without a
// zone, TZ stays empty (Windows.Normalize gives it the windows' zone).
func ParseBlackout(s string) (Blackout, error) {
	f := strings.Fields(s)
	if len(f) < 1 || len(f) > 2 {
		return Blackout{}, windowErr("blackout %q: want YYYY-MM-DD [ZONE], e.g. \"2026-12-24 Europe/Rome\"", s)
	}
	b := Blackout{Date: f[0]}
	if len(f) == 2 {
		b.TZ = f[1]
	}
	if _, err := time.Parse(time.DateOnly, b.Date); err != nil {
		return Blackout{}, windowErr("blackout %q: date %q: want YYYY-MM-DD", s, b.Date)
	}
	return b, nil
}

func (b *Blackout) index() error {
	t, err := time.Parse(time.DateOnly, b.Date)
	if err != nil {
		return windowErr("blackout %q: want a date YYYY-MM-DD", b.Date)
	}
	loc, err := loadLocation(b.TZ)
	if err != nil {
		return windowErr("blackout %s: %v", b.Date, err)
	}
	b.loc = loc
	b.y, b.m, b.d = t.Date()
	return nil
}

// String is the blackout as ParseBlackout reads it.
func (b Blackout) String() string { return strings.TrimSpace(b.Date + " " + b.TZ) }

// Normalize checks the schedule (stable error: *WindowError), writes its
// fields in canonical form and gives a blackout without a zone the zone of
// the weekly windows (an error when they use several zones or there are
// none). An empty schedule is valid: no restriction.
func (ws *Windows) Normalize() error {
	if len(ws.Weekly) > MaxWindows {
		return windowErr("%d windows: at most %d per channel", len(ws.Weekly), MaxWindows)
	}
	if len(ws.Blackouts) > MaxBlackouts {
		return windowErr("%d blackout dates: at most %d per channel", len(ws.Blackouts), MaxBlackouts)
	}
	zone := ""
	for i := range ws.Weekly {
		w := &ws.Weekly[i]
		if err := w.index(); err != nil {
			return err
		}
		if i == 0 {
			zone = w.TZ
		} else if w.TZ != zone {
			zone = "\x00" // several zones
		}
	}
	seen := map[string]bool{}
	for i := range ws.Blackouts {
		b := &ws.Blackouts[i]
		if b.TZ == "" {
			switch zone {
			case "":
				return windowErr("blackout %s: name its time zone (\"%s Europe/Rome\"): there is no window to take it from", b.Date, b.Date)
			case "\x00":
				return windowErr("blackout %s: name its time zone (\"%s Europe/Rome\"): the windows use several", b.Date, b.Date)
			}
			b.TZ = zone
		}
		if err := b.index(); err != nil {
			return err
		}
		if seen[b.String()] {
			return windowErr("blackout %s given twice", b)
		}
		seen[b.String()] = true
	}
	return nil
}

// Empty reports whether the schedule restricts nothing.
func (ws *Windows) Empty() bool { return ws == nil || len(ws.Weekly) == 0 && len(ws.Blackouts) == 0 }

// Held reports why an update at instant t must wait: HeldBlackout on a
// blackout date, HeldOutsideWindow outside every weekly window, "" when it
// may go ahead. The schedule must have been indexed (Normalize or
// Snapshot.Index). It does not allocate.
func (ws *Windows) Held(t time.Time) string {
	if ws == nil {
		return ""
	}
	for i := range ws.Blackouts {
		b := &ws.Blackouts[i]
		if y, m, d := t.In(b.loc).Date(); y == b.y && m == b.m && d == b.d {
			return HeldBlackout
		}
	}
	if len(ws.Weekly) == 0 {
		return ""
	}
	var loc *time.Location
	var wd time.Weekday
	var min int
	for i := range ws.Weekly {
		w := &ws.Weekly[i]
		if w.loc != loc { // windows in one zone share the conversion
			loc = w.loc
			l := t.In(loc)
			h, m, _ := l.Clock()
			wd, min = l.Weekday(), h*60+m
		}
		if w.start < w.end {
			if wd == w.wd && min >= w.start && min < w.end {
				return ""
			}
		} else if wd == w.wd && min >= w.start || wd == (w.wd+1)%7 && min < w.end {
			return ""
		}
	}
	return HeldOutsideWindow
}

// NextOpen returns the first instant at or after t at which Held is "",
// searching a year ahead; ok is false when there is none in that time.
// It is for operators (resolve), not the device path: it allocates.
func (ws *Windows) NextOpen(t time.Time) (next time.Time, ok bool) {
	t = t.Truncate(time.Minute)
	if ws.Held(t) == "" {
		return t, true
	}
	// Candidates: each window's start on each of the coming days, and the
	// midnight after each blackout date; the earliest that is open wins,
	// then moved back to the minute the schedule actually opened (a start
	// inside a spring-forward gap).
	var cands []time.Time
	for _, w := range ws.Weekly {
		l := t.In(w.loc)
		for k := 0; k <= 370; k++ {
			day := time.Date(l.Year(), l.Month(), l.Day()+k, 12, 0, 0, 0, w.loc)
			if day.Weekday() != w.wd {
				continue
			}
			cands = append(cands, time.Date(day.Year(), day.Month(), day.Day(), w.start/60, w.start%60, 0, 0, w.loc))
		}
	}
	for _, b := range ws.Blackouts {
		cands = append(cands, time.Date(b.y, b.m, b.d+1, 0, 0, 0, 0, b.loc))
	}
	found := false
	for _, c := range cands {
		if c.Before(t) || found && !c.Before(next) || ws.Held(c) != "" {
			continue
		}
		next, found = c, true
	}
	if !found {
		return time.Time{}, false
	}
	for i := 0; i < 180 && next.After(t); i++ {
		prev := next.Add(-time.Minute)
		if ws.Held(prev) != "" {
			break
		}
		next = prev
	}
	return next, true
}

// NextOpenAll returns the first instant at or after t at which every one
// of the schedules (nil ones are always open) is open, searching a year
// ahead of each; ok is false when there is none.
func NextOpenAll(t time.Time, schedules ...*Windows) (time.Time, bool) {
	for range 64 {
		moved := false
		for _, ws := range schedules {
			if ws == nil {
				continue
			}
			next, ok := ws.NextOpen(t)
			if !ok {
				return time.Time{}, false
			}
			if !next.Equal(t) {
				t, moved = next, true
			}
		}
		if !moved {
			return t, true
		}
	}
	return time.Time{}, false
}
