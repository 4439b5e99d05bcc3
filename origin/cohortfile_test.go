package origin

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

func TestReadCohortFile(t *testing.T) {
	d1, d2 := "11111111-2222-4333-8444-555555555555", "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
	k1, _ := snapshot.ParseDeviceID(d1)
	k2, _ := snapshot.ParseDeviceID(d2)
	c1, c2 := snapshot.CohortKeyOfCustomID("acme-1"), snapshot.CohortKeyOfCustomID("acme, 2")
	want := func(ks ...[16]byte) [][16]byte { return store.SortKeys(ks) }
	for _, c := range []struct {
		name, in string
		want     [][16]byte
	}{
		{"plain ids", d1 + "\n" + strings.ToUpper(d2) + "\r\nacme-1\n\n" + d1 + "\n", want(k1, k2, c1)},
		{"header", "email,custom_id,device_id\nx@y,acme-1," + d1 + "\nz@y,\"acme, 2\",\n", want(k1, c1, c2)},
		{"header device only", "device_id\n" + d2 + "\n", want(k2)},
		{"json lines", "\n {\"device_id\":\"" + d1 + "\"}\n{\"custom_id\":\"acme-1\"}\n{\"custom_id\":\"acme, 2\"}", want(k1, c1, c2)},
		{"empty", "", nil},
	} {
		got, err := ReadCohortFile(strings.NewReader(c.in), 10)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%s: %x %v, want %x", c.name, got, err, c.want)
		}
	}
	for _, c := range []struct{ name, in, line string }{
		{"bad uuid", "device_id\n" + d1 + "\nnope\n", "line 3"},
		{"bad json", "{\"device_id\":\"" + d1 + "\"}\n{oops\n", "line 2"},
		{"empty object", "{}\n", "line 1"},
		{"columns without header", "a,b\n", "line 1"},
		{"long custom id", strings.Repeat("x", 300) + "\n", "line 1"},
	} {
		_, err := ReadCohortFile(strings.NewReader(c.in), 10)
		var fe *CohortFileError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), c.line) {
			t.Errorf("%s: %v, want an error on %s", c.name, err, c.line)
		}
	}
	// The bound counts distinct ids, and stops reading past it.
	var b strings.Builder
	for i := 0; i < 30; i++ {
		b.WriteString(d1 + "\n") // one distinct id, many times
	}
	if got, err := ReadCohortFile(strings.NewReader(b.String()), 2); err != nil || len(got) != 1 {
		t.Errorf("duplicates past the bound: %d %v", len(got), err)
	}
	if _, err := ReadCohortFile(strings.NewReader("a\nb\nc\n"), 2); !errors.Is(err, errTooMany) {
		t.Errorf("3 ids, bound 2: %v", err)
	}
}
