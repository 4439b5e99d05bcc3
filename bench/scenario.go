package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"
)

// Phase kinds.
const (
	// KindStorm: every device of the fleet checks once, arrivals spread
	// evenly over the phase (open loop), and downloads when offered an update.
	KindStorm = "storm"
	// KindSteady: Connections workers check back to back (closed loop),
	// cycling through the fleet; no downloads.
	KindSteady = "steady"
	// KindRate: checks at a fixed rate per second (open loop), cycling
	// through the fleet; downloads when Download is set.
	KindRate = "rate"
	// KindSwitch: every device assigns itself to Channel (POST
	// /channel_self, as the plugin's setChannel) and then checks for an
	// update with it as its defaultChannel, arrivals spread over the phase.
	KindSwitch = "switch"
	// KindStats: Connections workers post device events back to back
	// (closed loop): batches of Batch events (default 50, at most 200) as
	// the plugin flushes its queue, cycling through the fleet and a mix of
	// actions (installs, downloads, failures).
	KindStats = "stats"
	// KindCohorts: the cohort-fleet scenario (cohortfleet.go), through the
	// edge and the operator API (Options.Operator): HeavyChecks rounds of
	// check-ins over the phase (Power percent of the fleet in every round,
	// the others in 1 to 3, every device in the last; some devices report
	// an install failure or an install), at most Rate check-ins a second;
	// once the origin has ingested them, the behaviour cohorts power:P%,
	// failing:7d and active:1/1d must hold exactly the devices the
	// pattern puts in them; then a segment routes the power cohort to
	// Channel, and every device checks once.
	KindCohorts = "cohorts"
)

// Phase is one stage of a scenario.
type Phase struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Duration    Duration `json:"duration"`
	Rate        float64  `json:"rate,omitempty"`         // KindRate: checks per second
	Connections int      `json:"connections,omitempty"`  // KindSteady: workers
	Download    bool     `json:"download,omitempty"`     // KindRate: download offered updates
	Channel     string   `json:"channel,omitempty"`      // KindSwitch: channel devices assign themselves to
	Batch       int      `json:"batch,omitempty"`        // KindStats: events per request (default 50)
	Power       float64  `json:"power,omitempty"`        // KindCohorts: percent of the fleet in the heavy set (default 5)
	HeavyChecks int      `json:"heavy_checks,omitempty"` // KindCohorts: check-ins of a heavy device (default 20)
}

// Scenario is a named list of phases run in order.
type Scenario struct {
	Name   string  `json:"name"`
	Phases []Phase `json:"phases"`
}

// Duration is a time.Duration written as "30s" in scenario files.
type Duration time.Duration

// UnmarshalJSON reads "30s", "2m".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string like \"30s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return fmt.Errorf("duration %q: want a positive duration like \"30s\"", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Builtin returns a built-in scenario sized by the command line.
func Builtin(name string, duration time.Duration, connections int) (Scenario, error) {
	switch name {
	case "release-storm":
		return Scenario{Name: name, Phases: []Phase{{Name: "storm", Kind: KindStorm, Duration: Duration(duration)}}}, nil
	case "steady":
		return Scenario{Name: name, Phases: []Phase{{Name: "checks", Kind: KindSteady, Duration: Duration(duration), Connections: connections}}}, nil
	case "stats":
		return Scenario{Name: name, Phases: []Phase{{Name: "events", Kind: KindStats, Duration: Duration(duration), Connections: connections, Batch: 50}}}, nil
	case "cohort-fleet":
		return Scenario{Name: name, Phases: []Phase{{Name: "cohorts", Kind: KindCohorts, Duration: Duration(duration), Power: DefaultPower,
			HeavyChecks: DefaultHeavyChecks, Rate: DefaultCohortRate, Channel: DefaultCohortRoute}}}, nil
	}
	return Scenario{}, fmt.Errorf("scenario %q: want release-storm, steady, stats, cohort-fleet, or a scenario file (.json)", name)
}

// LoadScenario reads a scenario file (JSON) and validates it.
func LoadScenario(path string) (Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Scenario{}, err
	}
	return ParseScenario(b)
}

// ParseScenario parses and validates a scenario document.
func ParseScenario(b []byte) (Scenario, error) {
	var s Scenario
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("scenario: %w", err)
	}
	return s, s.Validate()
}

// Validate checks a scenario and says what is wrong, phase by phase.
func (s Scenario) Validate() error {
	if len(s.Phases) == 0 {
		return errors.New("scenario: no phases")
	}
	var errs []error
	for i, p := range s.Phases {
		where := fmt.Sprintf("scenario %q phase %d (%s)", s.Name, i+1, p.Name)
		if p.Duration <= 0 {
			errs = append(errs, fmt.Errorf("%s: duration must be positive, like \"30s\"", where))
		}
		switch p.Kind {
		case KindStorm:
		case KindSteady:
			if p.Connections < 1 || p.Connections > 10000 {
				errs = append(errs, fmt.Errorf("%s: steady needs connections between 1 and 10000", where))
			}
		case KindStats:
			if p.Connections < 1 || p.Connections > 10000 {
				errs = append(errs, fmt.Errorf("%s: stats needs connections between 1 and 10000", where))
			}
			if p.Batch < 0 || p.Batch > 200 {
				errs = append(errs, fmt.Errorf("%s: stats batch %d: want 1..200 events per request", where, p.Batch))
			}
		case KindSwitch:
			if p.Channel == "" {
				errs = append(errs, fmt.Errorf("%s: switch needs the channel devices move to", where))
			}
		case KindCohorts:
			if p.Duration < Duration(5*time.Second) {
				errs = append(errs, fmt.Errorf("%s: cohorts duration: at least 5s (the edge reports a device's check-ins once a second; the heavy devices' must span several reports)", where))
			}
			if p.Power != 0 && (p.Power < 0.01 || p.Power > 50) || math.IsNaN(p.Power) {
				errs = append(errs, fmt.Errorf("%s: cohorts power %v%%: want a share of the fleet from 0.01%% to 50%%", where, p.Power))
			}
			if p.HeavyChecks != 0 && (p.HeavyChecks < maxLightChecks+2 || p.HeavyChecks > 40) {
				errs = append(errs, fmt.Errorf("%s: cohorts heavy_checks %d: want %d..40 (light devices check in up to %d times)", where, p.HeavyChecks, maxLightChecks+2, maxLightChecks))
			}
			if p.Rate != 0 && (p.Rate < 1 || p.Rate > 1e6) || math.IsNaN(p.Rate) {
				errs = append(errs, fmt.Errorf("%s: cohorts rate: want check-ins per second from 1 to 1000000", where))
			}
		case KindRate:
			if p.Rate <= 0 || p.Rate > 1e6 {
				errs = append(errs, fmt.Errorf("%s: rate needs a rate between 0 and 1000000 per second", where))
			}
		default:
			errs = append(errs, fmt.Errorf("%s: kind %q: want storm, steady, rate, switch, stats or cohorts", where, p.Kind))
		}
	}
	return errors.Join(errs...)
}
