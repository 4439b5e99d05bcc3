package config

import (
	"errors"
	"strings"
	"testing"
)

func TestParseFile(t *testing.T) {
	f, err := ParseFile("u.toml", []byte(`# comment
store = "postgres://u:p@db/updraft"
max-bundle-size = "256MiB"
max-bundle-entries = 5000
proxy-protocol = true
updates-per-prefix-second = 12.5
serve.data = "/var/lib/updraft"

[origin]
listen = "0.0.0.0:8090"

[edge]
upstream = ["http://a:8090", "http://b:8090"]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Setting{
		{"", "store", "postgres://u:p@db/updraft", 2},
		{"", "max-bundle-size", "256MiB", 3},
		{"", "max-bundle-entries", "5000", 4},
		{"", "proxy-protocol", "true", 5},
		{"", "updates-per-prefix-second", "12.5", 6},
		{"serve", "data", "/var/lib/updraft", 7},
		{"origin", "listen", "0.0.0.0:8090", 10},
		{"edge", "upstream", "http://a:8090,http://b:8090", 13},
	}
	if len(f.Settings) != len(want) {
		t.Fatalf("settings: %+v", f.Settings)
	}
	for i, s := range f.Settings {
		if s != want[i] {
			t.Errorf("setting %d: %+v, want %+v", i, s, want[i])
		}
	}
}

func TestParseFileErrors(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"store = \"x\"\nlisten = \n", "u.toml:2: not valid TOML"},
		{"store = \"x\"\nstore = \"y\"\n", "u.toml:2: not valid TOML"},
		{"a = 1\n\n[cache]\nsize = 1\n", "u.toml:3: unknown table [cache]"},
		{"[edge]\nlisten = \"x\"\n[edge.tls]\nmode = \"acme\"\n", "u.toml:3: unknown table [edge.tls]"},
		{"gc-grace = 1979-05-27\n", `u.toml:1: gc-grace: want a string, a number or a boolean, not a date`},
		{"x = 1\n[origin]\nupstream = [[\"a\"]]\n", "u.toml:3: origin.upstream: want a list of strings"},
	} {
		_, err := ParseFile("u.toml", []byte(c.doc))
		var fe *FileError
		if err == nil || !errors.As(err, &fe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.doc, err, c.want)
		}
	}
}
