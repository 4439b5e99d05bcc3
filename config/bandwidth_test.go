package config

import (
	"flag"
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseBandwidth(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Bandwidth
		str  string
	}{
		{"20mbit", 20 * Mbit, "20mbit"}, {"100mbit", 100 * Mbit, "100mbit"}, {"1gbit", Gbit, "1gbit"},
		{"1.5gbit", 1500 * Mbit, "1500mbit"}, {"512kbit", 512 * Kbit, "512kbit"}, {" 20 MBit ", 20 * Mbit, "20mbit"},
		{"8000bit", 8 * Kbit, "8kbit"}, {"0", 0, "0"}, {"0mbit", 0, "0"}, {"1234567bit", 1234567, "1.2mbit"},
	} {
		got, err := ParseBandwidth(c.in)
		if err != nil || got != c.want || got.String() != c.str {
			t.Errorf("ParseBandwidth(%q) = %d (%s), %v; want %d (%s)", c.in, got, got, err, c.want, c.str)
		}
	}
	for _, c := range []struct{ in, msg string }{
		{"20", "want a unit"}, {"20mb", "want a bandwidth like 20mbit"}, {"20MB/s", "want a bandwidth"},
		{"fast", "want a bandwidth"}, {"", "want a bandwidth"}, {"-1mbit", "want a bandwidth"},
		{"NaNmbit", "want a bandwidth"}, {"1e30gbit", "too large"},
	} {
		if got, err := ParseBandwidth(c.in); err == nil || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), "20mbit") && c.msg != "too large" {
			t.Errorf("ParseBandwidth(%q) = %d, %v; want an error with %q", c.in, got, err, c.msg)
		}
	}
	// A flag.Value, like Size.
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	b := DefaultDeltaLink
	fs.Var(&b, "delta-link", "")
	if err := fs.Parse([]string{"--delta-link", "100mbit"}); err != nil || b != 100*Mbit {
		t.Fatalf("flag: %s, %v", b, err)
	}
}

// The delta choice's device profile: defaults valid, 0 means "the smaller
// delta", out-of-range and NaN values refused with the setting's name.
func TestEdgeDeltaProfile(t *testing.T) {
	if e := NewEdge("d"); e.DeltaLink != 20*Mbit || e.DeltaDecodeFactor != 4 {
		t.Fatalf("defaults: %s, %g", e.DeltaLink, e.DeltaDecodeFactor)
	}
	for _, c := range []struct {
		link   Bandwidth
		factor float64
		bad    string // "" valid, else the setting the error names
	}{
		{20 * Mbit, 4, ""}, {0, 4, ""}, {20 * Mbit, 0, ""}, {8 * Kbit, 1000, ""}, {1000 * Gbit, 0.5, ""},
		{Kbit, 4, "delta_link"}, {1001 * Gbit, 4, "delta_link"}, {-Mbit, 4, "delta_link"},
		{20 * Mbit, -1, "delta_decode_factor"}, {20 * Mbit, 1001, "delta_decode_factor"},
		{20 * Mbit, math.NaN(), "delta_decode_factor"}, {20 * Mbit, math.Inf(1), "delta_decode_factor"},
	} {
		e := NewEdge("d")
		e.DeltaLink, e.DeltaDecodeFactor = c.link, c.factor
		err := e.Validate()
		if c.bad == "" && err != nil || c.bad != "" && (err == nil || !strings.Contains(err.Error(), "edge."+c.bad)) {
			t.Errorf("delta_link %s, delta_decode_factor %g: %v (want error naming %q)", c.link, c.factor, err, c.bad)
		}
	}
}

// The manifest choice's round trip: 100ms by default, 0 turns the choice
// off, 1ms to 10s otherwise.
func TestEdgeDeviceRTT(t *testing.T) {
	if e := NewEdge("d"); e.DeviceRTT != 100*time.Millisecond || e.Validate() != nil {
		t.Fatalf("default %s: %v", e.DeviceRTT, e.Validate())
	}
	for _, c := range []struct {
		rtt time.Duration
		ok  bool
	}{
		{0, true}, {time.Millisecond, true}, {40 * time.Millisecond, true}, {10 * time.Second, true},
		{time.Microsecond, false}, {-time.Millisecond, false}, {11 * time.Second, false},
	} {
		e := NewEdge("d")
		e.DeviceRTT = c.rtt
		err := e.Validate()
		if c.ok != (err == nil) || err != nil && !strings.Contains(err.Error(), "edge.device_rtt "+c.rtt.String()) {
			t.Errorf("device_rtt %s: %v (want ok %v)", c.rtt, err, c.ok)
		}
	}
}
