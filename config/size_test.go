package config

import (
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want Size
		err  bool
	}{
		{"512MiB", 512 * MiB, false},
		{"20GiB", 20 * GiB, false},
		{"20gib", 20 * GiB, false},
		{"1.5GB", 1500000000, false},
		{"4096", 4096, false},
		{"10KB", 10000, false},
		{"64k", 64 * KiB, false},
		{" 2 MiB ", 2 * MiB, false},
		{"5XB", 0, true},
		{"", 0, true},
		{"MiB", 0, true},
		{"-1MiB", 0, true},
		{"NaN", 0, true},
		{"1e30TiB", 0, true},
	}
	for _, c := range cases {
		got, err := ParseSize(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, err=%v", c.in, got, err, c.want, c.err)
		}
	}
}

func TestSizeString(t *testing.T) {
	for in, want := range map[Size]string{512 * MiB: "512MiB", 20 * GiB: "20GiB", 1536 * KiB: "1536KiB", 1500: "1.5KiB", 12: "12B"} {
		if got := in.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", in, got, want)
		}
		if back, err := ParseSize(want); err != nil || (in%KiB == 0 && back != in) {
			t.Errorf("round trip %q: %d %v", want, back, err)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512MiB", "1.5GB", "4096", "x", "1e400"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err == nil && n < 0 {
			t.Fatalf("ParseSize(%q) = %d < 0", s, n)
		}
	})
}

func TestValidateMessages(t *testing.T) {
	e := NewEdge("d")
	e.Listen = "nope"
	e.Upstream = "ftp://x"
	err := e.Validate()
	if err == nil {
		t.Fatal("want error")
	}
	for _, want := range []string{"edge.listen", "edge.upstream"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if err := NewEdge("d").Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
	if err := NewOrigin("d").Validate(); err != nil {
		t.Errorf("origin defaults invalid: %v", err)
	}
}
