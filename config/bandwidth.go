package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Bandwidth is a link rate in bits per second, written as 20mbit, 100mbit,
// 1gbit or 512kbit (decimal units, as tc and `updraft bench --link` write
// them).
type Bandwidth int64

// Bandwidth multiples accepted by ParseBandwidth.
const (
	Kbit Bandwidth = 1000
	Mbit           = 1000 * Kbit
	Gbit           = 1000 * Mbit
)

var bandwidthUnits = []struct {
	suffix string
	mult   Bandwidth
}{{"gbit", Gbit}, {"mbit", Mbit}, {"kbit", Kbit}, {"bit", 1}}

// ParseBandwidth reads a link rate: a number and a unit (kbit, mbit, gbit,
// or bit), like 20mbit or 1.5gbit; case is ignored. "0" is 0.
func ParseBandwidth(s string) (Bandwidth, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "0" {
		return 0, nil
	}
	for _, u := range bandwidthUnits {
		if !strings.HasSuffix(t, u.suffix) {
			continue
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), 64)
		if err != nil || n < 0 || math.IsNaN(n) || math.IsInf(n, 0) {
			break
		}
		v := n * float64(u.mult)
		if v >= math.MaxInt64 {
			return 0, fmt.Errorf("%q: too large", s)
		}
		return Bandwidth(v), nil
	}
	if _, err := strconv.ParseFloat(t, 64); err == nil {
		return 0, fmt.Errorf("%q: want a unit, like 20mbit (kbit, mbit or gbit: bits per second)", s)
	}
	return 0, fmt.Errorf("%q: want a bandwidth like 20mbit, 100mbit or 1gbit", s)
}

// String prints the rate with the largest unit that keeps it exact, or
// with one decimal when none does.
func (b Bandwidth) String() string {
	if b == 0 {
		return "0"
	}
	for _, u := range bandwidthUnits[:3] {
		if b >= u.mult && b%u.mult == 0 {
			return strconv.FormatInt(int64(b/u.mult), 10) + u.suffix
		}
	}
	for _, u := range bandwidthUnits[:3] {
		if b >= u.mult {
			return strconv.FormatFloat(float64(b)/float64(u.mult), 'f', 1, 64) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10) + "bit"
}

// Set implements flag.Value.
func (b *Bandwidth) Set(v string) error {
	n, err := ParseBandwidth(v)
	if err != nil {
		return err
	}
	*b = n
	return nil
}
