package origin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// maxCohortBody bounds an import's body: 5M ids of a few dozen bytes.
const maxCohortBody = 1 << 30

// maxCustomIDLen bounds a custom id in a cohort file.
const maxCustomIDLen = 256

// CohortFileError is a refused line of a cohort file.
type CohortFileError struct {
	Line int
	Msg  string
}

func (e *CohortFileError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// ReadCohortFile reads a cohort file as it streams: CSV (one id per line,
// or a header row naming device_id and/or custom_id columns) or JSON lines
// ({"device_id": …} or {"custom_id": …} per line; the first non-blank
// character '{' says which). An id without a header is a device id when it
// is a UUID and a custom id otherwise. It returns the member keys, sorted
// and without duplicates; past max distinct ones it stops reading
// (errTooMany), holding at most max+max/4 keys before deduplicating.
func ReadCohortFile(r io.Reader, max int) ([][16]byte, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	first, err := peekNonBlank(br)
	if err != nil {
		return nil, err
	}
	var keys [][16]byte
	// add adds a row's device id and custom id (either may be empty; a row
	// naming both adds both: the device matches by either).
	add := func(line int, dev, custom string) error {
		if dev != "" {
			u, ok := snapshot.ParseDeviceID(dev)
			if !ok {
				return &CohortFileError{line, fmt.Sprintf("device id %q is not a UUID", dev)}
			}
			keys = append(keys, u)
		}
		if custom != "" {
			if len(custom) > maxCustomIDLen {
				return &CohortFileError{line, fmt.Sprintf("custom id of %d bytes: at most %d", len(custom), maxCustomIDLen)}
			}
			keys = append(keys, snapshot.CohortKeyOfCustomID(custom))
		}
		if len(keys) > max+max/4 {
			keys = store.SortKeys(keys)
			if len(keys) > max {
				return errTooMany
			}
		}
		return nil
	}
	if first == '{' {
		line := 0
		for {
			b, err := br.ReadSlice('\n')
			if err == bufio.ErrBufferFull {
				return nil, &CohortFileError{line + 1, "line too long"}
			}
			if len(b) > 0 {
				line++
				b = bytes.TrimSpace(b)
				if len(b) > 0 {
					var rec struct {
						DeviceID string `json:"device_id"`
						CustomID string `json:"custom_id"`
					}
					if jerr := json.Unmarshal(b, &rec); jerr != nil {
						return nil, &CohortFileError{line, "want a JSON object {\"device_id\": …} or {\"custom_id\": …}: " + jerr.Error()}
					}
					if rec.DeviceID == "" && rec.CustomID == "" {
						return nil, &CohortFileError{line, "neither device_id nor custom_id"}
					}
					if aerr := add(line, rec.DeviceID, rec.CustomID); aerr != nil {
						return nil, aerr
					}
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, err
			}
		}
	} else {
		cr := csv.NewReader(br)
		cr.FieldsPerRecord = -1
		cr.ReuseRecord = true
		cr.TrimLeadingSpace = true
		devCol, customCol, header := -1, -1, false
		for {
			rec, err := cr.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				var pe *csv.ParseError
				if errors.As(err, &pe) {
					return nil, &CohortFileError{pe.Line, pe.Err.Error()}
				}
				return nil, err
			}
			line, _ := cr.FieldPos(0)
			if !header && devCol < 0 && customCol < 0 && len(keys) == 0 {
				for i, f := range rec {
					switch strings.ToLower(strings.TrimSpace(f)) {
					case "device_id":
						devCol, header = i, true
					case "custom_id":
						customCol, header = i, true
					}
				}
				if header {
					continue
				}
				if len(rec) > 1 {
					return nil, &CohortFileError{line, "several columns without a header naming device_id or custom_id"}
				}
			}
			var dev, custom string
			if header {
				if devCol >= 0 && devCol < len(rec) {
					dev = strings.TrimSpace(rec[devCol])
				}
				if customCol >= 0 && customCol < len(rec) {
					custom = strings.TrimSpace(rec[customCol])
				}
			} else if len(rec) > 0 {
				id := strings.TrimSpace(rec[0])
				if snapshot.ValidDeviceID(id) {
					dev = id
				} else {
					custom = id
				}
			}
			if aerr := add(line, dev, custom); aerr != nil {
				return nil, aerr
			}
		}
	}
	keys = store.SortKeys(keys)
	if len(keys) > max {
		return nil, errTooMany
	}
	return keys, nil
}

var errTooMany = errors.New("too many members")

// peekNonBlank returns the first non-whitespace byte (0 for an empty body).
func peekNonBlank(br *bufio.Reader) (byte, error) {
	for i := 1; ; i++ {
		b, err := br.Peek(i)
		if len(b) < i {
			if err == io.EOF {
				return 0, nil
			}
			return 0, err
		}
		c := b[i-1]
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return c, nil
		}
		if i == 4096 {
			return 0, nil
		}
	}
}

// importCohort is PUT /api/v1/apps/{app}/cohorts/{name}: the body (a
// cohort file, streamed) becomes the cohort's exact set of members.
func (s *Server) importCohort(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if !store.ValidCohortName(name) {
		return errf(http.StatusBadRequest, store.CodeInvalidCohort, "cohort name %q: want 1-64 letters, digits, '.', '_' or '-'", name)
	}
	keys, err := ReadCohortFile(http.MaxBytesReader(w, r.Body, maxCohortBody), store.MaxCohortMembers)
	var fe *CohortFileError
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, errTooMany):
		return errf(http.StatusRequestEntityTooLarge, store.CodeCohortTooLarge, "cohort %s: more than %d members", name, store.MaxCohortMembers)
	case errors.As(err, &mbe):
		return errf(http.StatusRequestEntityTooLarge, store.CodeCohortTooLarge, "cohort file over %d bytes", maxCohortBody)
	case errors.As(err, &fe):
		return errf(http.StatusBadRequest, store.CodeInvalidCohort, "cohort file: %v", fe)
	case err != nil:
		return errf(http.StatusBadRequest, store.CodeInvalidCohort, "cohort file: %v", err)
	}
	var out store.CohortChange
	err = s.shards.writeApps([]string{appID}, func() error {
		var err error
		out, err = s.store.SetCohort(r.Context(), appID, name, "", keys)
		return err
	})
	if err != nil {
		return storeErr(err, appID)
	}
	s.log.Info("origin: cohort imported", "app", appID, "cohort", name, "members", out.Members, "added", out.Added, "removed", out.Removed)
	s.awaitPublished(r.Context())
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listCohorts(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	if _, err := s.store.GetApp(r.Context(), appID); err != nil {
		return storeErr(err, appID)
	}
	out, err := s.store.Cohorts(r.Context(), appID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) removeCohort(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	err = s.shards.writeApps([]string{appID}, func() error { return s.store.RemoveCohort(r.Context(), appID, name) })
	if err != nil {
		return storeErr(err, appID)
	}
	s.log.Info("origin: cohort removed", "app", appID, "cohort", name)
	s.awaitPublished(r.Context())
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// cohortMembers is GET /api/v1/apps/{app}/cohorts/{name}/members.
func (s *Server) cohortMembers(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	all, err := s.store.Cohorts(r.Context(), appID)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(all, func(c store.Cohort) bool { return c.Name == name })
	if i < 0 {
		if _, err := s.store.GetApp(r.Context(), appID); err != nil {
			return storeErr(err, appID)
		}
		return errf(http.StatusNotFound, store.CodeCohortNotFound, "app %s has no cohort %q", appID, name)
	}
	keys, err := s.store.CohortMembers(r.Context(), appID, name)
	if err != nil {
		return err
	}
	// A CohortMemberList, streamed: a cohort may hold millions of members
	// (store.MaxCohortMembers), which as one encoded document would cost
	// several times the keys' 16 bytes each in memory.
	head, err := json.Marshal(all[i])
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(head[:len(head)-1])
	if len(head) > 2 {
		bw.WriteByte(',')
	}
	bw.WriteString(`"member_keys":[`)
	for j, k := range keys {
		if j > 0 {
			bw.WriteByte(',')
		}
		bw.WriteByte('"')
		bw.WriteString(store.DeviceIDString(k))
		bw.WriteByte('"')
	}
	bw.WriteString("]}\n")
	if err := bw.Flush(); err != nil {
		// The answer has begun: nothing else can be sent (the client left).
		s.log.Debug("origin: cohort members: answer cut", "app", appID, "cohort", name, "err", err)
	}
	return nil
}

// CohortRecomputeEvery is how often the origin holding the "cohorts" lease
// recomputes the behaviour cohorts.
var CohortRecomputeEvery = time.Hour

// AddCohortRequest is the body of POST /api/v1/apps/{app}/cohorts.
type AddCohortRequest struct {
	Name string `json:"name"`
	Rule string `json:"rule"`
}

// addCohort is POST /api/v1/apps/{app}/cohorts: a behaviour cohort,
// computed now and then on the origin's schedule.
func (s *Server) addCohort(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	var in AddCohortRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	rule, err := store.ParseCohortRule(in.Rule)
	if err != nil {
		return storeErr(err, appID)
	}
	out, err := s.computeCohort(r.Context(), appID, in.Name, rule)
	if err != nil {
		return storeErr(err, appID)
	}
	s.log.Info("origin: cohort computed", "app", appID, "cohort", in.Name, "rule", rule.String(), "members", out.Members)
	s.awaitPublished(r.Context())
	status := http.StatusOK
	if out.Created {
		status = http.StatusCreated
	}
	writeJSON(w, status, out)
	return nil
}

// computeCohort recomputes one behaviour cohort at the current time.
func (s *Server) computeCohort(ctx context.Context, appID, name string, rule store.CohortRule) (store.CohortChange, error) {
	if !store.ValidCohortName(name) {
		return store.CohortChange{}, errf(http.StatusBadRequest, store.CodeInvalidCohort, "cohort name %q: want 1-64 letters, digits, '.', '_' or '-'", name)
	}
	keys, err := s.events.CohortMembers(ctx, appID, rule, time.Now().UnixMilli())
	if err != nil {
		return store.CohortChange{}, err
	}
	var out store.CohortChange
	err = s.shards.writeApps([]string{appID}, func() error {
		var err error
		out, err = s.store.SetCohort(ctx, appID, name, rule.String(), keys)
		return err
	})
	return out, err
}

// recomputeCohorts recomputes every behaviour cohort now and then every
// CohortRecomputeEvery, while this origin holds the "cohorts" lease.
func (s *Server) recomputeCohorts(ctx context.Context) {
	t := time.NewTicker(CohortRecomputeEvery)
	defer t.Stop()
	for {
		s.recomputeCohortsOnce(store.WithWho(ctx, store.Who{Actor: "cohorts"}))
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

func (s *Server) recomputeCohortsOnce(ctx context.Context) {
	all, err := s.store.Cohorts(ctx, "")
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("origin: list cohorts", "err", err)
		}
		return
	}
	for _, c := range all {
		if c.Rule == "" {
			continue
		}
		rule, err := store.ParseCohortRule(c.Rule)
		if err != nil {
			continue
		}
		out, err := s.computeCohort(ctx, c.AppID, c.Name, rule)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("origin: recompute cohort", "app", c.AppID, "cohort", c.Name, "err", err)
			}
			continue
		}
		if out.Added+out.Removed > 0 {
			s.log.Info("origin: cohort recomputed", "app", c.AppID, "cohort", c.Name, "members", out.Members, "added", out.Added, "removed", out.Removed)
		}
	}
}
