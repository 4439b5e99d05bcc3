package snapshot

import "strconv"

// Version is a parsed semantic version (semver 2.0.0). Pre and Build
// reference the parsed string; Version values are small and copied freely.
//
// Written here rather than taken from Masterminds/semver or x/mod/semver: the
// update check parses two or three versions per request and must not allocate,
// and Capgo's leniency ("1.2" means "1.2.0", a leading "v" is allowed) has to
// be matched exactly.
type Version struct {
	Major, Minor, Patch uint64
	Pre                 string // pre-release, without the '-'
	Build               string // build metadata, without the '+'
}

// ParseVersion parses s. Like Capgo it accepts a leading 'v' and fills a
// missing minor or patch with zero ("2" → 2.0.0, "2.1" → 2.1.0). Numbers must
// not have leading zeros; pre-release and build identifiers must be
// [0-9A-Za-z-] and non-empty.
func ParseVersion(s string) (Version, bool) {
	var v Version
	if len(s) == 0 || len(s) > 256 {
		return v, false
	}
	if s[0] == 'v' || s[0] == 'V' {
		s = s[1:]
	}
	core := s
	rest := ""
	for i := 0; i < len(s); i++ {
		if s[i] == '-' || s[i] == '+' {
			core, rest = s[:i], s[i:]
			break
		}
	}
	var nums [3]uint64
	n := 0
	start := 0
	for i := 0; i <= len(core); i++ {
		if i < len(core) && core[i] != '.' {
			continue
		}
		if n == 3 {
			return v, false
		}
		x, ok := parseNum(core[start:i])
		if !ok {
			return v, false
		}
		nums[n] = x
		n++
		start = i + 1
	}
	v.Major, v.Minor, v.Patch = nums[0], nums[1], nums[2]
	if len(rest) > 0 && rest[0] == '-' {
		end := len(rest)
		for i := 1; i < len(rest); i++ {
			if rest[i] == '+' {
				end = i
				break
			}
		}
		v.Pre = rest[1:end]
		if !validIdents(v.Pre, true) {
			return v, false
		}
		rest = rest[end:]
	}
	if len(rest) > 0 {
		v.Build = rest[1:]
		if !validIdents(v.Build, false) {
			return v, false
		}
	}
	return v, true
}

func parseNum(s string) (uint64, bool) {
	if len(s) == 0 || len(s) > 19 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	var x uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		x = x*10 + uint64(c-'0')
	}
	return x, true
}

// validIdents checks dot-separated identifiers; numeric pre-release
// identifiers must not have leading zeros.
func validIdents(s string, pre bool) bool {
	if s == "" {
		return false
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			c := s[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
				return false
			}
			continue
		}
		id := s[start:i]
		if id == "" {
			return false
		}
		if pre && len(id) > 1 && id[0] == '0' && allDigits(id) {
			return false
		}
		start = i + 1
	}
	return true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String formats the version canonically (MAJOR.MINOR.PATCH[-PRE][+BUILD]).
func (v Version) String() string {
	s := strconv.FormatUint(v.Major, 10) + "." + strconv.FormatUint(v.Minor, 10) + "." + strconv.FormatUint(v.Patch, 10)
	if v.Pre != "" {
		s += "-" + v.Pre
	}
	if v.Build != "" {
		s += "+" + v.Build
	}
	return s
}

// Compare orders versions by semver precedence: -1, 0 or +1. Build metadata
// is ignored, as semver requires.
func (v Version) Compare(w Version) int {
	if c := cmpU(v.Major, w.Major); c != 0 {
		return c
	}
	if c := cmpU(v.Minor, w.Minor); c != 0 {
		return c
	}
	if c := cmpU(v.Patch, w.Patch); c != 0 {
		return c
	}
	return comparePre(v.Pre, w.Pre)
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// comparePre: a version without pre-release ranks above one with it;
// identifiers compare numerically when both are numbers, else in ASCII order,
// and numbers rank below words.
func comparePre(a, b string) int {
	if a == b {
		return 0
	}
	if a == "" {
		return 1
	}
	if b == "" {
		return -1
	}
	for {
		ia, ra, moreA := cut(a)
		ib, rb, moreB := cut(b)
		na, nb := allDigits(ia), allDigits(ib)
		var c int
		switch {
		case na && nb:
			if c = cmpInt(len(ia), len(ib)); c == 0 {
				c = cmpStr(ia, ib)
			}
		case na:
			c = -1
		case nb:
			c = 1
		default:
			c = cmpStr(ia, ib)
		}
		if c != 0 {
			return c
		}
		switch {
		case !moreA && !moreB:
			return 0
		case !moreA:
			return -1
		case !moreB:
			return 1
		}
		a, b = ra, rb
	}
}

func cut(s string) (head, tail string, more bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
