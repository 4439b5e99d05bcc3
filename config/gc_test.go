package config

import (
	"strings"
	"testing"
	"time"
)

func TestOriginGCValidate(t *testing.T) {
	o := NewOrigin("d")
	if o.GCGrace != time.Hour || o.GCInterval != time.Hour {
		t.Fatalf("GC defaults: grace %s interval %s, want 1h and 1h", o.GCGrace, o.GCInterval)
	}
	for _, c := range []struct {
		grace, interval time.Duration
		ok              bool
		name            string
	}{
		{0, 0, true, ""}, {time.Minute, time.Minute, true, ""},
		{-time.Second, time.Hour, false, "gc_grace"}, {time.Hour, time.Millisecond, false, "gc_interval"},
	} {
		o.GCGrace, o.GCInterval = c.grace, c.interval
		err := o.Validate()
		if (err == nil) != c.ok || err != nil && !strings.Contains(err.Error(), c.name) {
			t.Errorf("grace %s interval %s: %v", c.grace, c.interval, err)
		}
	}
}
