package snapshot

import (
	"fmt"
	"strings"
)

// Constraint is a compiled semver range such as ">=1.2.0 <2.0.0",
// "^1.4", "~2.1.3", "1.x" or "<1.0.0 || >=3.0.0". It is compiled once (at
// snapshot indexing) and checked without allocating.
//
// Syntax: alternatives separated by "||"; each alternative is comparators
// separated by spaces or commas, all of which must hold. A comparator is an
// operator (=, !=, >, >=, <, <=, ^, ~; none means =) and a version, which may
// be partial ("1.2" is 1.2.0) or use x/X/* wildcards ("1.x" is >=1.0.0 <2.0.0).
type Constraint struct {
	src  string
	alts [][]comparator
}

type comparator struct {
	op byte // '=', '!', '>', 'g' (>=), '<', 'l' (<=)
	v  Version
}

// String returns the source text.
func (c *Constraint) String() string { return c.src }

// ParseConstraint compiles a range; the error says what is wrong.
func ParseConstraint(src string) (*Constraint, error) {
	c := &Constraint{src: src}
	s := strings.TrimSpace(src)
	if s == "" {
		return nil, fmt.Errorf("range %q: empty", src)
	}
	if len(s) > 512 {
		return nil, fmt.Errorf("range %q: longer than 512 bytes", src)
	}
	for _, alt := range strings.Split(s, "||") {
		fields := strings.FieldsFunc(alt, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' })
		if len(fields) == 0 {
			return nil, fmt.Errorf("range %q: empty alternative", src)
		}
		// Join an operator written apart from its version: ">= 1.2.0".
		var joined []string
		for i := 0; i < len(fields); i++ {
			f := fields[i]
			if strings.Trim(f, "<>=!^~") == "" && i+1 < len(fields) {
				f += fields[i+1]
				i++
			}
			joined = append(joined, f)
		}
		var group []comparator
		for _, f := range joined {
			cs, err := parseComparator(f)
			if err != nil {
				return nil, fmt.Errorf("range %q: %w", src, err)
			}
			group = append(group, cs...)
		}
		c.alts = append(c.alts, group)
	}
	return c, nil
}

// parseComparator turns one term into one or two plain comparators.
func parseComparator(f string) ([]comparator, error) {
	op := ""
	for _, p := range []string{">=", "<=", "!=", "==", ">", "<", "=", "^", "~"} {
		if strings.HasPrefix(f, p) {
			op, f = p, f[len(p):]
			break
		}
	}
	v, parts, wild, err := parsePartial(f)
	if err != nil {
		return nil, err
	}
	// The next version above the given precision: upper bound of "1.2.x" is 1.3.0.
	bump := func(level int) Version {
		switch level {
		case 0:
			return Version{Major: v.Major + 1}
		case 1:
			return Version{Major: v.Major, Minor: v.Minor + 1}
		}
		return Version{Major: v.Major, Minor: v.Minor, Patch: v.Patch + 1}
	}
	rangeOf := func(level int) []comparator {
		return []comparator{{'g', v}, {'<', bump(level)}}
	}
	switch op {
	case "", "=", "==":
		if wild || parts < 3 {
			if parts == 0 {
				return []comparator{{'g', Version{}}}, nil // "*": anything
			}
			return rangeOf(parts - 1), nil
		}
		return []comparator{{'=', v}}, nil
	case "!=":
		if wild || parts < 3 {
			return nil, fmt.Errorf("%q: != needs a full version", f)
		}
		return []comparator{{'!', v}}, nil
	case ">":
		if parts < 3 { // >1.2 means >=1.3.0
			if parts == 0 {
				return nil, fmt.Errorf("\">*\" matches nothing")
			}
			return []comparator{{'g', bump(parts - 1)}}, nil
		}
		return []comparator{{'>', v}}, nil
	case ">=":
		return []comparator{{'g', v}}, nil
	case "<":
		return []comparator{{'<', v}}, nil
	case "<=":
		if parts < 3 { // <=1.2 means <1.3.0
			if parts == 0 {
				return []comparator{{'g', Version{}}}, nil
			}
			return []comparator{{'<', bump(parts - 1)}}, nil
		}
		return []comparator{{'l', v}}, nil
	case "~": // ~1.2.3: >=1.2.3 <1.3.0; ~1: >=1.0.0 <2.0.0
		if parts <= 1 {
			return rangeOf(0), nil
		}
		return rangeOf(1), nil
	case "^": // ^1.2.3: <2.0.0; ^0.2.3: <0.3.0; ^0.0.3: <0.0.4
		switch {
		case v.Major > 0 || parts == 1:
			return rangeOf(0), nil
		case v.Minor > 0 || parts == 2:
			return rangeOf(1), nil
		}
		return rangeOf(2), nil
	}
	return nil, fmt.Errorf("%q: unknown operator", f)
}

// parsePartial reads "1", "1.2", "1.2.3[-pre]", "1.x", "*": the version (zeros
// for missing parts), how many numeric parts were given, and whether a
// wildcard ended it.
func parsePartial(s string) (Version, int, bool, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "v"), "V")
	if s == "*" || s == "x" || s == "X" {
		return Version{}, 0, true, nil
	}
	core := s
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		core = s[:i]
	}
	parts := strings.Split(core, ".")
	n := 0
	for _, p := range parts {
		if p == "x" || p == "X" || p == "*" {
			// "1.x", "1.2.*", "1.x.x": at most three parts, numbers before
			// the wildcard, numbers or wildcards after it.
			if len(parts) > 3 {
				return Version{}, 0, false, fmt.Errorf("%q is not a semantic version", s)
			}
			for i, q := range parts {
				if _, ok := parseNum(q); !ok && (i < n || q != "x" && q != "X" && q != "*") {
					return Version{}, 0, false, fmt.Errorf("%q is not a semantic version", s)
				}
			}
			return partialVersion(parts[:n]), n, true, nil
		}
		n++
	}
	if n == 3 {
		v, ok := ParseVersion(s)
		if !ok {
			return Version{}, 0, false, fmt.Errorf("%q is not a semantic version", s)
		}
		return v, 3, false, nil
	}
	if len(core) != len(s) || n > 3 {
		return Version{}, 0, false, fmt.Errorf("%q is not a semantic version", s)
	}
	v, ok := ParseVersion(core)
	if !ok {
		return Version{}, 0, false, fmt.Errorf("%q is not a semantic version", s)
	}
	return v, n, false, nil
}

func partialVersion(parts []string) Version {
	var nums [3]uint64
	for i, p := range parts {
		x, _ := parseNum(p)
		nums[i] = x
	}
	return Version{Major: nums[0], Minor: nums[1], Patch: nums[2]}
}

// Check reports whether v is in the range.
func (c *Constraint) Check(v Version) bool {
	for _, alt := range c.alts {
		ok := true
		for _, cmp := range alt {
			r := v.Compare(cmp.v)
			switch cmp.op {
			case '=':
				ok = r == 0
			case '!':
				ok = r != 0
			case '>':
				ok = r > 0
			case 'g':
				ok = r >= 0
			case '<':
				ok = r < 0
			case 'l':
				ok = r <= 0
			}
			if !ok {
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
