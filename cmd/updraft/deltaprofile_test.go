package main

import (
	"strings"
	"testing"

	"github.com/updraft-cdn/updraft/config"
)

// TestConfigDeltaProfile: serve and edge take the delta choice's device
// profile from flags and the configuration file; a bad value is a usage
// error naming what is wanted.
func TestConfigDeltaProfile(t *testing.T) {
	t.Setenv("UPDRAFT_CONFIG", "")
	r, s := newServeFlags()
	if err := r.load(nil); err != nil {
		t.Fatal(err)
	}
	if s.ec.DeltaLink != config.DefaultDeltaLink || s.ec.DeltaDecodeFactor != config.DefaultDeltaDecodeFactor {
		t.Fatalf("serve defaults: %s, %g", s.ec.DeltaLink, s.ec.DeltaDecodeFactor)
	}
	r, s = newServeFlags()
	if err := r.load([]string{"--delta-link", "100mbit", "--delta-decode-factor", "2.5"}); err != nil {
		t.Fatal(err)
	}
	if s.ec.DeltaLink != 100*config.Mbit || s.ec.DeltaDecodeFactor != 2.5 {
		t.Fatalf("serve flags: %s, %g", s.ec.DeltaLink, s.ec.DeltaDecodeFactor)
	}

	path := writeConfig(t, "[edge]\nupstream = [\"http://a:8090\"]\nedge-key = \"k\"\n"+
		"origin-pubkey = \"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"\ndelta-link = \"1gbit\"\ndelta-decode-factor = 0\n")
	re, se := newEdgeFlags()
	if err := re.load([]string{"--config", path}); err != nil {
		t.Fatal(err)
	}
	if se.ec.DeltaLink != config.Gbit || se.ec.DeltaDecodeFactor != 0 {
		t.Fatalf("edge file: %s, %g", se.ec.DeltaLink, se.ec.DeltaDecodeFactor)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--delta-link", "100mb"}, "want a bandwidth like 20mbit"},
		{[]string{"--delta-link", "100"}, "want a unit"},
		{[]string{"--delta-link", "1kbit"}, "edge.delta_link 1kbit: want 0 (the smaller delta) or 8kbit to 1000gbit"},
		{[]string{"--delta-decode-factor", "-1"}, "edge.delta_decode_factor -1"},
		{[]string{"--delta-decode-factor", "fast"}, "delta-decode-factor"},
	} {
		r, _ := newServeFlags()
		err := r.load(c.args)
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), c.want) {
			t.Errorf("serve %v: %v (exit %d), want a usage error with %q", c.args, err, exitCode(err), c.want)
		}
	}
}
