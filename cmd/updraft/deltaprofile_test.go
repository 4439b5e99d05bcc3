package main

import (
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/config"
)

// TestConfigDeltaProfile: serve and edge take the delta and manifest choices' device
// profile from flags and the configuration file; a bad value is a usage
// error naming what is wanted.
func TestConfigDeltaProfile(t *testing.T) {
	t.Setenv("UPDRAFT_CONFIG", "")
	r, s := newServeFlags()
	if err := r.load(nil); err != nil {
		t.Fatal(err)
	}
	if s.ec.DeltaLink != config.DefaultDeltaLink || s.ec.DeltaDecodeFactor != config.DefaultDeltaDecodeFactor || s.ec.DeviceRTT != config.DefaultDeviceRTT {
		t.Fatalf("serve defaults: %s, %g, %s", s.ec.DeltaLink, s.ec.DeltaDecodeFactor, s.ec.DeviceRTT)
	}
	r, s = newServeFlags()
	if err := r.load([]string{"--delta-link", "100mbit", "--delta-decode-factor", "2.5", "--device-rtt", "40ms"}); err != nil {
		t.Fatal(err)
	}
	if s.ec.DeltaLink != 100*config.Mbit || s.ec.DeltaDecodeFactor != 2.5 || s.ec.DeviceRTT != 40*time.Millisecond {
		t.Fatalf("serve flags: %s, %g, %s", s.ec.DeltaLink, s.ec.DeltaDecodeFactor, s.ec.DeviceRTT)
	}

	path := writeConfig(t, "[edge]\nupstream = [\"http://a:8090\"]\nedge-key = \"k\"\n"+
		"origin-pubkey = \"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"\ndelta-link = \"1gbit\"\ndelta-decode-factor = 0\ndevice-rtt = \"0s\"\n")
	re, se := newEdgeFlags()
	if err := re.load([]string{"--config", path}); err != nil {
		t.Fatal(err)
	}
	if se.ec.DeltaLink != config.Gbit || se.ec.DeltaDecodeFactor != 0 || se.ec.DeviceRTT != 0 {
		t.Fatalf("edge file: %s, %g, %s", se.ec.DeltaLink, se.ec.DeltaDecodeFactor, se.ec.DeviceRTT)
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
		{[]string{"--device-rtt", "100"}, "device-rtt"},
		{[]string{"--device-rtt", "20s"}, "edge.device_rtt 20s: want 0 (the manifest whenever the plugin takes one) or 1ms to 10s"},
	} {
		r, _ := newServeFlags()
		err := r.load(c.args)
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), c.want) {
			t.Errorf("serve %v: %v (exit %d), want a usage error with %q", c.args, err, exitCode(err), c.want)
		}
	}
}
