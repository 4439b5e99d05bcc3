package main

// Usage errors and exit codes (docs/cli.md): 0 success, 1 an operation
// failed (the server refused, the network, a file), 2 the command line was
// wrong (unknown command or flag, a missing or bad value). Flag parse errors
// are rewritten into one friendly line naming the flag and the closest valid
// one, instead of Go's raw flag dump.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/updraft-cdn/updraft/config"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// usageError is a wrong command line: the process exits 2 and points at
// `updraft CMD --help`.
type usageError struct {
	cmd string // the command whose --help explains it ("bundle upload"); "" for the top level
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usage error of command cmd.
func usagef(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, err: fmt.Errorf(format, args...)}
}

// asUsage marks err (when not nil) as a usage error of command cmd.
func asUsage(cmd string, err error) error {
	if err == nil {
		return nil
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return err
	}
	return &usageError{cmd: cmd, err: err}
}

// exitCode is the process exit status for run's error.
func exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	}
	return exitError
}

// helpRequest is --help (or -h) on a command: run prints the command's
// help to stdout and succeeds.
type helpRequest struct{ fs *flag.FlagSet }

func (h *helpRequest) Error() string { return "help requested" }

// parseFlags parses flags that may come before, between or after positional
// arguments ("bundle upload PATH --app ID") and returns the positionals. A
// wrong flag is a usage error naming it (and the closest valid flag); --help
// is a helpRequest.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard) // errors are reported once, by main
	fs.Usage = func() {}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, &helpRequest{fs}
			}
			return nil, flagError(fs, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

var (
	reUndefined = regexp.MustCompile(`^flag provided but not defined: -+(.*)$`)
	reBadValue  = regexp.MustCompile(`^invalid (?:boolean )?value "(.*)" for (?:flag )?-+(\S+): (.*)$`)
	reNoValue   = regexp.MustCompile(`^flag needs an argument: -+(.*)$`)
)

// flagError rewrites one of the flag package's parse errors as a usage
// error of fs's command.
func flagError(fs *flag.FlagSet, err error) error {
	cmd := fs.Name()
	msg := err.Error()
	if m := reUndefined.FindStringSubmatch(msg); m != nil {
		name, _, _ := strings.Cut(m[1], "=")
		s := fmt.Sprintf("%s: unknown flag --%s", cmd, name)
		if c := closest(name, flagNames(fs)); c != "" {
			s += fmt.Sprintf(" (did you mean --%s?)", c)
		}
		return &usageError{cmd: cmd, err: errors.New(s)}
	}
	if m := reBadValue.FindStringSubmatch(msg); m != nil {
		f := fs.Lookup(m[2])
		return usagef(cmd, "%s: --%s %q: %s", cmd, m[2], m[1], valueProblem(f, strings.TrimPrefix(m[3], strconv.Quote(m[1])+": ")))
	}
	if m := reNoValue.FindStringSubmatch(msg); m != nil {
		return usagef(cmd, "%s: --%s needs a value", cmd, m[1])
	}
	return usagef(cmd, "%s: %s", cmd, msg)
}

// valueProblem says what a flag wants, given the reason its value was
// refused: the flag's own words for custom values, its type otherwise.
func valueProblem(f *flag.Flag, reason string) string {
	if reason != "parse error" && reason != "value out of range" || f == nil {
		return reason
	}
	if reason == "value out of range" {
		return "out of range"
	}
	return "want " + wantOf(f)
}

// wantOf describes the values a flag takes.
func wantOf(f *flag.Flag) string {
	switch flagType(f) {
	case "":
		return "true or false"
	case "duration":
		return "a duration like 30s, 10m or 1h"
	case "int", "uint":
		return "a whole number"
	case "float":
		return "a number"
	case "size":
		return "a size like 512MiB, 20GiB or 4096"
	}
	return "a value"
}

// flagType is the type name a flag's help shows ("" for a switch).
func flagType(f *flag.Flag) string {
	switch f.Value.(type) {
	case *config.Size:
		return "size"
	case *optBool:
		return "bool"
	}
	name, _ := flag.UnquoteUsage(&flag.Flag{Value: f.Value}) // the type, not a back-quoted word of the usage
	return name
}

func flagNames(fs *flag.FlagSet) []string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}

// closest returns the candidate nearest to s (a typo, a transposition, a
// prefix), or "" when none is near enough to suggest.
func closest(s string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		d := editDistance(s, c)
		if len(s) >= 3 && strings.HasPrefix(c, s) && d > 1 {
			d = 1 // an abbreviation
		}
		if d < bestD || d == bestD && c < best {
			best, bestD = c, d
		}
	}
	limit := 1
	if len(s) >= 5 {
		limit = 2
	}
	if len(s) >= 9 {
		limit = 3
	}
	if bestD > limit {
		return ""
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and adjacent transpositions cost 1.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range rb {
		d[0][j+1] = j + 1
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// unknownSub is the usage error for a missing or unknown subcommand of
// group (valid: subs).
func unknownSub(group, sub string, subs []string) error {
	list := orList(subs)
	if sub == "" {
		return usagef(group, "%s: want a subcommand: %s", group, list)
	}
	if strings.HasPrefix(sub, "-") {
		return usagef(group, "%s: want a subcommand before the flags: %s (got %s)", group, list, sub)
	}
	s := fmt.Sprintf("%s: unknown subcommand %q", group, sub)
	if c := closest(sub, subs); c != "" {
		s += fmt.Sprintf(" (did you mean %s?)", c)
	}
	return &usageError{cmd: group, err: fmt.Errorf("%s; want %s", s, list)}
}

// orList writes a, b or c.
func orList(s []string) string {
	s = slices.Clone(s)
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// want checks the number of positional arguments.
func want(n int, pos []string, what string) error {
	switch {
	case len(pos) == n:
	case len(pos) == 0:
		return usagef("", "want %s, got none", what)
	default:
		return usagef("", "want %s, got %q", what, strings.Join(pos, " "))
	}
	return nil
}

// isSet reports whether flag name was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
