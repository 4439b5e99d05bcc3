package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// Cohort error codes.
const (
	CodeInvalidCohort  = "invalid_cohort"
	CodeCohortNotFound = "cohort_not_found"
	CodeCohortTooLarge = "cohort_too_large"
	CodeCohortInUse    = "cohort_in_use"
)

// MaxCohortMembers bounds the members of all of an app's cohorts together:
// they travel in the snapshot's shards (26 bytes each on the wire).
var MaxCohortMembers = 5_000_000

// Cohort is a named set of an app's devices (by device id or custom id).
type Cohort struct {
	AppID string `json:"app_id"`
	Name  string `json:"name"`
	Bit   int    `json:"bit"`
	// Rule is the behaviour rule of a computed cohort; "" for an imported one.
	Rule    string `json:"rule,omitempty"`
	Members int64  `json:"members"`
	// Added and Removed are the churn of the last import or recomputation.
	Added     int64     `json:"added"`
	Removed   int64     `json:"removed"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// CohortChange is what an import or recomputation changed.
type CohortChange struct {
	Cohort
	Created bool `json:"created"`
}

// ValidCohortName reports whether name may name a cohort.
func ValidCohortName(name string) bool {
	return name != "" && len(name) <= 64 && snapshot.ValidChannelName(name)
}

// SortKeys sorts member keys and drops duplicates, as SetCohort wants them.
func SortKeys(keys [][16]byte) [][16]byte {
	slices.SortFunc(keys, func(a, b [16]byte) int { return bytes.Compare(a[:], b[:]) })
	return slices.Compact(keys)
}

// SetCohort makes the cohort's members exactly keys (sorted and without
// duplicates, see SortKeys), creating the cohort when it does not exist
// (with rule: "" for an imported cohort). It writes only the difference
// with the stored set, and moves the revision only when something changed:
// importing the same set again changes nothing.
func (s *Store) SetCohort(ctx context.Context, appID, name, rule string, keys [][16]byte) (CohortChange, error) {
	var out CohortChange
	if !ValidCohortName(name) {
		return out, invalid(CodeInvalidCohort, "cohort name %q: want 1-64 letters, digits, '.', '_' or '-'", name)
	}
	err := s.write(ctx, false, func(tx *Tx) error {
		if err := appExists(ctx, tx, appID); err != nil {
			return err
		}
		c, err := getCohort(ctx, tx, appID, name)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			var bits []int
			rows, err := tx.QueryContext(ctx, `SELECT bit FROM cohorts WHERE app_id = ?`, appID)
			if err != nil {
				return err
			}
			for rows.Next() {
				var b int
				if err := rows.Scan(&b); err != nil {
					rows.Close()
					return err
				}
				bits = append(bits, b)
			}
			rows.Close()
			if len(bits) >= snapshot.MaxCohorts {
				return invalid(CodeCohortTooLarge, "app %s has %d cohorts, the most it may have", appID, snapshot.MaxCohorts)
			}
			bit := 0
			for slices.Contains(bits, bit) {
				bit++
			}
			now := time.Now()
			c = Cohort{AppID: appID, Name: name, Bit: bit, Rule: rule, CreatedAt: now.Truncate(time.Second), UpdatedAt: now.Truncate(time.Second)}
			if _, err := tx.ExecContext(ctx, `INSERT INTO cohorts (app_id, name, bit, rule, members, added, removed, created_at, updated_at)
				VALUES (?, ?, ?, ?, 0, 0, 0, ?, ?)`, appID, name, bit, rule, now.Unix(), now.Unix()); err != nil {
				return err
			}
			out.Created = true
		case err != nil:
			return err
		case c.Rule != rule:
			return invalid(CodeInvalidCohort, "cohort %s is %s; remove it first to replace it", name, cohortKind(c.Rule))
		}
		var others int64
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(sum(members), 0) FROM cohorts WHERE app_id = ? AND name <> ?`, appID, name).Scan(&others); err != nil {
			return err
		}
		if others+int64(len(keys)) > int64(MaxCohortMembers) {
			return invalid(CodeCohortTooLarge, "cohort %s: %d members, and the app's other cohorts hold %d: at most %d in all",
				name, len(keys), others, MaxCohortMembers)
		}
		cur, err := cohortKeys(ctx, tx, appID, name)
		if err != nil {
			return err
		}
		// Merge the two sorted sets.
		var add, del [][16]byte
		i, j := 0, 0
		for i < len(cur) || j < len(keys) {
			switch {
			case j == len(keys) || i < len(cur) && bytes.Compare(cur[i][:], keys[j][:]) < 0:
				del = append(del, cur[i])
				i++
			case i == len(cur) || bytes.Compare(cur[i][:], keys[j][:]) > 0:
				add = append(add, keys[j])
				j++
			default:
				i++
				j++
			}
		}
		// Many rows a statement: an import of a million ids holds the write
		// lock (and the publications waiting on it) for the least time.
		for rest := del; len(rest) > 0; {
			n := min(len(rest), rowsPerStatement)
			args := make([]any, 0, n+2)
			args = append(args, appID, name)
			for _, k := range rest[:n] {
				args = append(args, k[:])
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM cohort_members WHERE app_id = ? AND cohort = ? AND member IN (?`+
				strings.Repeat(", ?", n-1)+`)`, args...); err != nil {
				return err
			}
			rest = rest[n:]
		}
		rows := make([][]any, len(add))
		for i := range add {
			rows[i] = []any{appID, name, add[i][:]}
		}
		if err := insertRows(ctx, tx, `INSERT INTO cohort_members (app_id, cohort, member) VALUES `, rows, ``); err != nil {
			return err
		}
		now := time.Now()
		c.Members, c.Added, c.Removed = int64(len(keys)), int64(len(add)), int64(len(del))
		if _, err := tx.ExecContext(ctx, `UPDATE cohorts SET members = ?, added = ?, removed = ?, updated_at = ? WHERE app_id = ? AND name = ?`,
			c.Members, c.Added, c.Removed, now.Unix(), appID, name); err != nil {
			return err
		}
		c.UpdatedAt = now.Truncate(time.Second)
		out.Cohort = c
		if len(add) == 0 && len(del) == 0 && !out.Created {
			return nil
		}
		action := "cohort.imported"
		if rule != "" {
			action = "cohort.computed"
		}
		// The audit trail is the cohort's history (CohortChurn sums it): a
		// change is recorded whoever makes it, the origin's own by default.
		actx := ctx
		if _, ok := WhoFrom(ctx); !ok {
			actx = WithWho(ctx, Who{Actor: "origin"})
		}
		if err := audit(actx, tx, appID, action, name, nil, obj{{"added", c.Added}, {"removed", c.Removed}, {"members", c.Members}}); err != nil {
			return err
		}
		return bumpRev(ctx, tx)
	})
	return out, err
}

func cohortKind(rule string) string {
	if rule == "" {
		return "imported"
	}
	return "computed (" + rule + ")"
}

func getCohort(ctx context.Context, tx *Tx, appID, name string) (Cohort, error) {
	c := Cohort{AppID: appID, Name: name}
	var created, updated int64
	err := tx.QueryRowContext(ctx, `SELECT bit, rule, members, added, removed, created_at, updated_at FROM cohorts WHERE app_id = ? AND name = ?`,
		appID, name).Scan(&c.Bit, &c.Rule, &c.Members, &c.Added, &c.Removed, &created, &updated)
	c.CreatedAt, c.UpdatedAt = time.Unix(created, 0), time.Unix(updated, 0)
	return c, err
}

// cohortKeys returns a cohort's members, sorted.
func cohortKeys(ctx context.Context, tx *Tx, appID, name string) ([][16]byte, error) {
	rows, err := tx.QueryContext(ctx, `SELECT member FROM cohort_members WHERE app_id = ? AND cohort = ?`, appID, name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][16]byte
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return nil, err
		}
		if len(raw) == 16 {
			out = append(out, [16]byte(raw))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Sorted here: the engines order bytes alike, but collations need not.
	return SortKeys(out), nil
}

// CohortMembers returns the sorted member keys of a cohort.
func (s *Store) CohortMembers(ctx context.Context, appID, name string) ([][16]byte, error) {
	tx, err := s.db.beginRead(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	return cohortKeys(ctx, tx, appID, name)
}

// Cohorts lists the app's cohorts by name.
func (s *Store) Cohorts(ctx context.Context, appID string) ([]Cohort, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT app_id, name, bit, rule, members, added, removed, created_at, updated_at FROM cohorts
		WHERE app_id = ? OR ? = '' ORDER BY app_id, name`, appID, appID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Cohort{}
	for rows.Next() {
		var c Cohort
		var created, updated int64
		if err := rows.Scan(&c.AppID, &c.Name, &c.Bit, &c.Rule, &c.Members, &c.Added, &c.Removed, &created, &updated); err != nil {
			return nil, err
		}
		c.CreatedAt, c.UpdatedAt = time.Unix(created, 0), time.Unix(updated, 0)
		out = append(out, c)
	}
	return out, rows.Err()
}

// RemoveCohort deletes a cohort and its members. A cohort that a segment
// names cannot be removed (cohort_in_use): remove the segment first.
func (s *Store) RemoveCohort(ctx context.Context, appID, name string) error {
	return s.write(ctx, true, func(tx *Tx) error {
		c, err := getCohort(ctx, tx, appID, name)
		if errors.Is(err, sql.ErrNoRows) {
			return invalid(CodeCohortNotFound, "app %s has no cohort %q", appID, name)
		}
		if err != nil {
			return err
		}
		segs, err := listSegments(ctx, tx, appID)
		if err != nil {
			return err
		}
		for _, sg := range segs {
			if sg.Rule.Cohort == name {
				return invalid(CodeCohortInUse, "segment %s routes cohort %s: remove the segment first", sg.Rule.Name, name)
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM cohort_members WHERE app_id = ? AND cohort = ?`, appID, name); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM cohorts WHERE app_id = ? AND name = ?`, appID, name); err != nil {
			return err
		}
		return audit(ctx, tx, appID, "cohort.removed", name, obj{{"members", c.Members}, {"rule", c.Rule}}, nil)
	})
}

// CohortBitsInShard returns key → cohort bits of one shard of an app (keys
// whose first byte is shard), or of all shards when shard < 0.
func (s *Store) CohortBitsInShard(ctx context.Context, appID string, shard int) (map[[16]byte]uint64, error) {
	q := `SELECT m.member, c.bit FROM cohort_members m JOIN cohorts c ON c.app_id = m.app_id AND c.name = m.cohort WHERE m.app_id = ?`
	args := []any{appID}
	if shard >= 0 {
		lo := make([]byte, 16)
		lo[0] = byte(shard)
		q += ` AND m.member >= ?`
		args = append(args, lo)
		if shard < snapshot.ShardCount-1 {
			hi := make([]byte, 16)
			hi[0] = byte(shard + 1)
			q += ` AND m.member < ?`
			args = append(args, hi)
		}
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[[16]byte]uint64{}
	for rows.Next() {
		var raw []byte
		var bit int
		if err := rows.Scan(&raw, &bit); err != nil {
			return nil, err
		}
		if len(raw) == 16 && bit >= 0 && bit < snapshot.MaxCohorts {
			out[[16]byte(raw)] |= 1 << bit
		}
	}
	return out, rows.Err()
}

// listCohortRefs returns the snapshot's cohort list per app.
func listCohortRefs(ctx context.Context, tx *Tx) (map[string][]snapshot.CohortRef, error) {
	rows, err := tx.QueryContext(ctx, `SELECT app_id, name, bit FROM cohorts ORDER BY app_id, name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]snapshot.CohortRef{}
	for rows.Next() {
		var app string
		var c snapshot.CohortRef
		if err := rows.Scan(&app, &c.Name, &c.Bit); err != nil {
			return nil, err
		}
		out[app] = append(out[app], c)
	}
	return out, rows.Err()
}

// CohortChurn is how a cohort's membership changed over a time range: the
// members its imports and recomputations added and removed, and how many
// of them changed it.
type CohortChurn struct {
	Added   int64 `json:"added"`
	Removed int64 `json:"removed"`
	Changes int64 `json:"changes"`
}

// cohortChangeActions are the audit actions of a membership change; their
// after state holds the change's added and removed counts.
var cohortChangeActions = `('cohort.imported', 'cohort.computed')`

// sinceLastRemoval keeps the audit records a of the cohort now of that
// name: those after its last removal (by record id, which orders records
// even within one second).
const sinceLastRemoval = `a.id > coalesce((SELECT max(r.id) FROM audit_log r
	WHERE r.app_id = a.app_id AND r.action = 'cohort.removed' AND r.target = a.target), 0)`

// CohortChurn sums, per cohort of the app, the membership changes recorded
// after from and up to to (Unix ms): the cohort's audit records, written
// in the transaction of each change. Records of an earlier cohort of the
// same name (removed, then made again) do not count.
func (s *Store) CohortChurn(ctx context.Context, appID string, from, to int64) (map[string]CohortChurn, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT a.target, a.after FROM audit_log a
		JOIN cohorts c ON c.app_id = a.app_id AND c.name = a.target
		WHERE a.app_id = ? AND a.action IN `+cohortChangeActions+` AND a.at > ? AND a.at <= ? AND `+sinceLastRemoval,
		appID, from, to)
	if err != nil {
		return nil, err
	}
	out := map[string]CohortChurn{}
	err = eachRow(rows, func(rows *sql.Rows) error {
		var name, after string
		if err := rows.Scan(&name, &after); err != nil {
			return err
		}
		var ch struct{ Added, Removed int64 }
		if err := json.Unmarshal([]byte(after), &ch); err != nil {
			return fmt.Errorf("audit record of cohort %s: %w", name, err)
		}
		c := out[name]
		c.Added, c.Removed, c.Changes = c.Added+ch.Added, c.Removed+ch.Removed, c.Changes+1
		out[name] = c
		return nil
	})
	return out, err
}

// CohortsChangedAt returns, per cohort of the app, when its membership
// last changed (Unix ms; absent: never recorded).
func (s *Store) CohortsChangedAt(ctx context.Context, appID string) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT a.target, max(a.at) FROM audit_log a
		JOIN cohorts c ON c.app_id = a.app_id AND c.name = a.target
		WHERE a.app_id = ? AND a.action IN `+cohortChangeActions+` AND `+sinceLastRemoval+` GROUP BY a.target`, appID)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	err = eachRow(rows, func(rows *sql.Rows) error {
		var name string
		var at int64
		if err := rows.Scan(&name, &at); err != nil {
			return err
		}
		out[name] = at
		return nil
	})
	return out, err
}
