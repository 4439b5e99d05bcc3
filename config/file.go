package config

// The configuration file (docs/cli.md, "Configuration file"): TOML whose
// keys are the long names of the role's flags, at the top level (for every
// role that has the flag) or in a [serve], [origin] or [edge] table (for
// that role only, over a top-level value). Values are what the flag takes:
// strings, numbers and booleans, and lists for the comma-separated flags.
//
// It is read with github.com/pelletier/go-toml/v2: the document is decoded
// with its stable API, and its parser (go-toml's unstable package) gives the
// line of every key, so that every error, including a value the flag
// refuses, names the key and its line.

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Roles are the commands that read a configuration file, and the names of
// its tables.
var Roles = []string{"serve", "origin", "edge"}

// Setting is one key of a configuration file.
type Setting struct {
	Table string // "" for a top-level key; serve, origin or edge
	Key   string // a long flag name
	Value string // as the flag takes it on the command line (lists joined with commas)
	Line  int
}

// File is a parsed configuration file.
type File struct {
	Path     string
	Settings []Setting // in file order
}

// FileError is a problem at a line of a configuration file.
type FileError struct {
	Path string
	Line int // 0: the whole file
	Msg  string
}

func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Msg)
}

// Errorf returns a FileError at the line of setting s.
func (f *File) Errorf(s Setting, format string, args ...any) error {
	return &FileError{Path: f.Path, Line: s.Line, Msg: fmt.Sprintf(format, args...)}
}

// LoadFile reads and parses a configuration file.
func LoadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	return ParseFile(path, data)
}

// ParseFile parses a configuration file's content. It checks the TOML and
// the file's shape (tables, value types); whether each key is a flag of
// its role is for the caller, which knows the flags.
func ParseFile(path string, data []byte) (*File, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, _ := de.Position()
			return nil, &FileError{Path: path, Line: line, Msg: "not valid TOML: " + strings.TrimPrefix(de.Error(), "toml: ")}
		}
		return nil, &FileError{Path: path, Msg: "not valid TOML: " + err.Error()}
	}
	lines := keyLines(data)
	f := &File{Path: path}
	var errs []error
	add := func(table, key string, v any) {
		line := lines[keyPath(table, key)]
		s, err := flagText(v)
		if err != nil {
			errs = append(errs, &FileError{Path: path, Line: line, Msg: fmt.Sprintf("%s: %v", dotted(table, key), err)})
			return
		}
		f.Settings = append(f.Settings, Setting{Table: table, Key: key, Value: s, Line: line})
	}
	for k, v := range doc {
		t, isTable := v.(map[string]any)
		switch {
		case !isTable:
			add("", k, v)
		case !slices.Contains(Roles, k):
			errs = append(errs, &FileError{Path: path, Line: lines[keyPath(k, "")],
				Msg: fmt.Sprintf("unknown table [%s]: the tables are [serve], [origin] and [edge]", k)})
		default:
			for kk, vv := range t {
				if _, ok := vv.(map[string]any); ok {
					errs = append(errs, &FileError{Path: path, Line: lines[keyPath(k, kk)],
						Msg: fmt.Sprintf("unknown table [%s.%s]: keys of [%s] are flag names", k, kk, k)})
					continue
				}
				add(k, kk, vv)
			}
		}
	}
	slices.SortFunc(f.Settings, func(a, b Setting) int { return a.Line - b.Line })
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b error) int { return a.(*FileError).Line - b.(*FileError).Line })
		return nil, errors.Join(errs...)
	}
	return f, nil
}

// keyPath is the path of a key ("" table: top level) or, with key "", of a table.
func keyPath(table, key string) string {
	switch {
	case table == "":
		return key
	case key == "":
		return table
	}
	return table + "\x00" + key
}

func dotted(table, key string) string {
	if table == "" {
		return key
	}
	return table + "." + key
}

// keyLines maps every key and table of a valid document (its path joined
// by keyPath) to the line where it first appears.
func keyLines(data []byte) map[string]int {
	lines := map[string]int{}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable, unstable.KeyValue:
		default:
			continue
		}
		var parts []string
		line := 0
		it := e.Key()
		for it.Next() {
			n := it.Node()
			if line == 0 {
				line = p.Shape(n.Raw).Start.Line
			}
			parts = append(parts, string(n.Data))
		}
		full := parts
		if e.Kind == unstable.KeyValue {
			full = append(slices.Clone(table), parts...)
		} else {
			table = parts
		}
		for i := 1; i <= len(full); i++ {
			k := strings.Join(full[:i], "\x00")
			if _, ok := lines[k]; !ok {
				lines[k] = line
			}
		}
	}
	return lines
}

// flagText is a TOML value as a flag's command-line text.
func flagText(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	case []any:
		var parts []string
		for _, e := range v {
			if _, ok := e.([]any); ok {
				return "", errors.New("want a list of strings, not of lists")
			}
			s, err := flagText(e)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	case time.Time, toml.LocalDate, toml.LocalDateTime, toml.LocalTime:
		return "", errors.New(`want a string, a number or a boolean, not a date (durations are strings like "10m")`)
	}
	return "", fmt.Errorf("want a string, a number, a boolean or a list, not %T", v)
}
