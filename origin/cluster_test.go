package origin

import (
	"context"
	"strings"
	"testing"

	"github.com/updraft-cdn/updraft/internal/testenv"
)

// A wrong --store is a clear error at start that names the flag, never
// repeats the password, and leaves no origin half-started.
func TestOpenStoreErrorsNameTheFlag(t *testing.T) {
	cases := map[string]string{
		"mysql://u@h/db":                        "want empty (SQLite in the data folder) or a postgres:// URL",
		"postgres://u:pw-secret@127.0.0.1:1/db": "cannot reach PostgreSQL at 127.0.0.1:1",
		"postgres://u:pw-secret@h:port/db":      "not a valid PostgreSQL URL",
	}
	if testenv.StoreEngine() == "postgres" {
		u := testenv.PostgresURL(t)
		cases[u[:strings.LastIndex(u, "/")]+"/no_such_database?sslmode=disable"] = `database "no_such_database" does not exist`
	}
	for url, want := range cases {
		cfg := testConfig(t, t.TempDir())
		cfg.Store = url
		srv, err := Open(context.Background(), cfg, nil)
		if err == nil {
			srv.Close()
			t.Fatalf("--store %q accepted", url)
		}
		if msg := err.Error(); !strings.Contains(msg, "--store") || !strings.Contains(msg, want) || strings.Contains(msg, "pw-secret") {
			t.Errorf("--store %q: %v\nwant an error naming --store and saying %q, without the password", url, err, want)
		}
	}
}
