package main

// Role settings from the command line, the environment and a configuration
// file (docs/cli.md): serve, origin and edge parse their flags, then take
// each flag not given on the command line from its environment variable,
// else from the --config file (or UPDRAFT_CONFIG), else its default. The
// file's keys are the long flag names; `updraft config check` prints the
// result.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/updraft-cdn/updraft/config"
)

// envVar is the environment variable that sets a flag (below the command
// line, above the config file).
type envVar struct {
	name string
	conv func(string) string // how its value becomes the flag's (nil: as is)
}

// roleFlags are a role's flags and where else each may come from.
type roleFlags struct {
	role   string // serve, origin or edge
	fs     *flag.FlagSet
	env    map[string]envVar // by flag name
	config *string           // --config
	secret map[string]bool   // flags config check does not print
	// finish builds and checks the role's configuration from the flags.
	finish func() error

	// Filled by load:
	source  map[string]string // flag name → "flag", "env NAME", "FILE:LINE"
	file    *config.File
	ignored []config.Setting // settings of the file for other roles
}

func newRoleFlags(role string) *roleFlags {
	r := &roleFlags{role: role, fs: flag.NewFlagSet(role, flag.ContinueOnError), env: map[string]envVar{}, secret: map[string]bool{}}
	r.config = r.fs.String("config", "", "read settings from this TOML file: keys are the long flag names, at the top level or in a [serve], [origin] or [edge] table; flags and environment variables win over it; env UPDRAFT_CONFIG")
	return r
}

// withEnv records the environment variables of flags (name → variable).
func (r *roleFlags) withEnv(vars map[string]string) {
	for f, v := range vars {
		r.env[f] = envVar{name: v}
	}
}

// load parses args and fills every flag not given there from the
// environment and the config file, then finishes the configuration. Every
// problem is a usage error.
func (r *roleFlags) load(args []string) error {
	pos, err := parseFlags(r.fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef(r.role, "%s: takes flags only, got %q", r.role, strings.Join(pos, " "))
	}
	return r.apply()
}

// apply fills the flags not set on the command line (see load).
func (r *roleFlags) apply() error {
	r.source = map[string]string{}
	r.fs.Visit(func(f *flag.Flag) { r.source[f.Name] = "flag" })
	names := make([]string, 0, len(r.env))
	for n := range r.env {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ev := r.env[n]
		v := os.Getenv(ev.name)
		if r.source[n] != "" || v == "" {
			continue
		}
		if ev.conv != nil {
			v = ev.conv(v)
		}
		if err := r.fs.Set(n, v); err != nil {
			return usagef(r.role, "%s: environment %s=%q: %s", r.role, ev.name, v, setProblem(r.fs.Lookup(n), v, err))
		}
		r.source[n] = "env " + ev.name
	}
	path := *r.config
	if path == "" {
		if path = os.Getenv("UPDRAFT_CONFIG"); path != "" {
			*r.config = path
			r.source["config"] = "env UPDRAFT_CONFIG"
		}
	}
	if path != "" {
		f, err := config.LoadFile(path)
		if err != nil {
			return asUsage(r.role, err)
		}
		r.file = f
		if err := r.applyFile(f); err != nil {
			return asUsage(r.role, err)
		}
	}
	return asUsage(r.role, r.finish())
}

// applyFile sets the flags the file names and neither the command line nor
// the environment did: top-level keys first, then the role's table. A key
// that is no flag of any role (top level) or of its table's role is an
// error; keys for other roles are kept in r.ignored.
func (r *roleFlags) applyFile(f *config.File) error {
	var errs []error
	var mine []config.Setting
	for _, s := range f.Settings {
		if s.Key == "config" {
			errs = append(errs, f.Errorf(s, "config: the file cannot name another file"))
			continue
		}
		var roles []string // roles the setting is for
		if s.Table == "" {
			roles = config.Roles
		} else {
			roles = []string{s.Table}
		}
		known := false
		var all []string
		for _, role := range roles {
			fs := roleFlagSet(role)
			known = known || fs.Lookup(s.Key) != nil
			all = append(all, flagNames(fs)...)
		}
		if !known {
			msg := fmt.Sprintf("unknown key %q", s.Key)
			if c := closest(s.Key, slices.DeleteFunc(all, func(n string) bool { return n == "config" })); c != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", c)
			}
			where := "updraft serve, origin or edge"
			if s.Table != "" {
				where = "updraft " + s.Table
			}
			errs = append(errs, f.Errorf(s, "%s: keys are the long flag names of %s (see --help)", msg, where))
			continue
		}
		if r.fs.Lookup(s.Key) == nil || s.Table != "" && s.Table != r.role {
			r.ignored = append(r.ignored, s)
			if s.Table != "" { // still a value that role must take
				if fs := roleFlagSet(s.Table); fs.Lookup(s.Key) != nil {
					if err := fs.Set(s.Key, s.Value); err != nil {
						errs = append(errs, f.Errorf(s, "[%s] %s = %q: %s", s.Table, s.Key, s.Value, setProblem(fs.Lookup(s.Key), s.Value, err)))
					}
				}
			}
			continue
		}
		mine = append(mine, s)
	}
	// The role's table wins over the top level.
	slices.SortStableFunc(mine, func(a, b config.Setting) int {
		return strings.Compare(a.Table, b.Table) // "" first
	})
	for _, s := range mine {
		if src := r.source[s.Key]; src == "flag" || strings.HasPrefix(src, "env ") {
			continue
		}
		if err := r.fs.Set(s.Key, s.Value); err != nil {
			errs = append(errs, f.Errorf(s, "%s = %q: %s", s.Key, s.Value, setProblem(r.fs.Lookup(s.Key), s.Value, err)))
			continue
		}
		r.source[s.Key] = fmt.Sprintf("%s:%d", f.Path, s.Line)
	}
	return errors.Join(errs...)
}

// setProblem says why fs.Set refused a value, as flagError does for the
// command line.
func setProblem(f *flag.Flag, value string, err error) string {
	return valueProblem(f, strings.TrimPrefix(err.Error(), strconv.Quote(value)+": "))
}

// roleFlagSet is a fresh flag set of a role, for checking keys.
func roleFlagSet(role string) *flag.FlagSet {
	switch role {
	case "serve":
		r, _ := newServeFlags()
		return r.fs
	case "origin":
		r, _ := newOriginFlags()
		return r.fs
	}
	r, _ := newEdgeFlags()
	return r.fs
}

func newRole(role string) *roleFlags {
	switch role {
	case "serve":
		r, _ := newServeFlags()
		return r
	case "origin":
		r, _ := newOriginFlags()
		return r
	}
	r, _ := newEdgeFlags()
	return r
}

func checkLogLevel(level string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return nil
}

// Environment variables of the role flags.
var (
	originEnv = map[string]string{"store": "UPDRAFT_STORE", "blobs": "UPDRAFT_BLOBS", "build-nice": "UPDRAFT_BUILD_NICE"}
	edgeEnv   = map[string]string{"public-url": "UPDRAFT_PUBLIC_URL", "tls-listen": "UPDRAFT_TLS_LISTEN"}
)

// cmdConfigCheck is `updraft config check [--config FILE] [FILE] [serve|origin|edge]`.
func cmdConfigCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	path := fs.String("config", "", "the configuration file to check; env UPDRAFT_CONFIG")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	role := ""
	for _, p := range pos {
		switch {
		case slices.Contains(config.Roles, p) && role == "":
			role = p
		case *path == "" && !slices.Contains(config.Roles, p):
			*path = p
		default:
			return usagef("", "config check: want --config FILE and at most one role (serve, origin or edge), got %q", strings.Join(pos, " "))
		}
	}
	if *path == "" {
		*path = os.Getenv("UPDRAFT_CONFIG")
	}
	if *path == "" {
		return usagef("", "config check: want --config FILE (or UPDRAFT_CONFIG)")
	}
	f, err := config.LoadFile(*path)
	if err != nil {
		return asUsage("", err)
	}
	if role == "" {
		role = "serve"
		var tables []string
		for _, s := range f.Settings {
			if s.Table != "" && !slices.Contains(tables, s.Table) {
				tables = append(tables, s.Table)
			}
		}
		if len(tables) == 1 {
			role = tables[0]
		}
	}
	r := newRole(role)
	*r.config = *path
	if err := r.apply(); err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			ue.cmd = "config check"
		}
		return err
	}
	fmt.Fprintf(stdout, "# %s: valid for updraft %s. The effective configuration (flags > environment > file > defaults), secrets redacted:\n", *path, role)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	r.fs.VisitAll(func(fl *flag.Flag) {
		if fl.Name == "config" {
			return
		}
		src := r.source[fl.Name]
		if src == "" {
			src = "default"
		}
		fmt.Fprintf(tw, "%s = %s\t# %s\n", fl.Name, tomlValue(fl, r.redacted(fl)), src)
	})
	tw.Flush()
	for _, s := range r.ignored {
		fmt.Fprintf(stdout, "# %s:%d: %s is not used by %s\n", f.Path, s.Line, dottedKey(s), role)
	}
	return nil
}

func dottedKey(s config.Setting) string {
	if s.Table == "" {
		return s.Key
	}
	return "[" + s.Table + "] " + s.Key
}

// redacted is a flag's value as config check prints it: secrets hidden,
// URL passwords and secret-looking query parameters masked.
func (r *roleFlags) redacted(f *flag.Flag) string {
	v := f.Value.String()
	if r.secret[f.Name] && v != "" {
		return "(redacted)"
	}
	if !strings.Contains(v, "://") {
		return v
	}
	var out []string
	for _, part := range strings.Split(v, ",") {
		out = append(out, redactURL(part))
	}
	return strings.Join(out, ",")
}

var secretParam = regexp.MustCompile(`(?i)pass|secret|token|key|credential`)

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(redacted: not a URL)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	changed := false
	for k := range q {
		if secretParam.MatchString(k) {
			q.Set(k, "xxxxx")
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// tomlValue writes a flag's value as the file would: numbers and booleans
// bare, everything else a string.
func tomlValue(f *flag.Flag, v string) string {
	switch flagType(f) {
	case "", "int", "uint", "float":
		if v != "" {
			return v
		}
	}
	return strconv.Quote(v)
}

// dataEnv reads UPDRAFT_DATA into a role's --data, below sub when given
// (the edge keeps its files in DATA/edge).
func dataEnv(sub string) envVar {
	return envVar{name: "UPDRAFT_DATA", conv: func(v string) string {
		if sub == "" {
			return v
		}
		return filepath.Join(v, sub)
	}}
}
