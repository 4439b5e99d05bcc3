package postgres

import (
	"strings"
	"testing"
)

func TestRebind(t *testing.T) {
	for in, want := range map[string]string{
		`SELECT 1`:                                               `SELECT 1`,
		`SELECT a FROM t WHERE b = ? AND c = ?`:                  `SELECT a FROM t WHERE b = $1 AND c = $2`,
		`INSERT INTO t VALUES (?, '?', ?)`:                       `INSERT INTO t VALUES ($1, '?', $2)`,
		`SELECT 'it''s ?' , ? FROM "we?ird"`:                     `SELECT 'it''s ?' , $1 FROM "we?ird"`,
		"SELECT ? -- a comment?\n, ?":                            "SELECT $1 -- a comment?\n, $2",
		`UPDATE t SET v = CASE WHEN v > ? THEN v - ? ELSE 0 END`: `UPDATE t SET v = CASE WHEN v > $1 THEN v - $2 ELSE 0 END`,
		`SELECT 'unterminated ?`:                                 `SELECT 'unterminated ?`,
	} {
		if got := Rebind(in); got != want {
			t.Errorf("Rebind(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseURLHidesPassword(t *testing.T) {
	_, err := ParseURL("postgres://user:s3cret@host:notaport/db")
	if err == nil {
		t.Fatal("bad port accepted")
	}
	if s := err.Error(); strings.Contains(s, "s3cret") {
		t.Fatalf("error repeats the password: %s", s)
	}
}
