package origin

// The device inventory's API: a device's last check-in and recent events,
// the app's devices (filters, keyset cursor), and a live tail of one
// device's check-ins and events as edges forward them (origin/store/devices.go
// keeps them).

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// maxDevicePage bounds one page of the device list.
const maxDevicePage = 1000

// Tail bounds: a tail lasts ?seconds= (default 300, at most maxTailSeconds)
// and polls the store every tailPoll, so that it sees what any origin
// sharing the store ingested.
const maxTailSeconds = 3600

var tailPoll = 500 * time.Millisecond

// cursorKey signs list cursors: from the store (secret
// "device_cursor_key"), so that every origin sharing it accepts the others'
// cursors.
func (s *Server) cursorKey(ctx context.Context) ([]byte, error) {
	if k := s.devCursorKey.Load(); k != nil {
		return *k, nil
	}
	var b [32]byte
	rand.Read(b[:])
	v, err := s.store.InitSecret(ctx, "device_cursor_key", hex.EncodeToString(b[:]))
	if err != nil {
		return nil, err
	}
	k, err := hex.DecodeString(v)
	if err != nil {
		return nil, err
	}
	s.devCursorKey.Store(&k)
	return k, nil
}

// cursorMAC binds a cursor to its app and filters.
func cursorMAC(key []byte, q store.DeviceQuery, after string) []byte {
	m := hmac.New(sha256.New, key)
	for _, f := range []string{q.AppID, q.Channel, q.Version, q.Platform, after} {
		m.Write([]byte(f))
		m.Write([]byte{0})
	}
	return m.Sum(nil)[:16]
}

func encodeCursor(key []byte, q store.DeviceQuery, after string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(after)) + "." + base64.RawURLEncoding.EncodeToString(cursorMAC(key, q, after))
}

func decodeCursor(key []byte, q store.DeviceQuery, c string) (string, error) {
	bad := errf(http.StatusBadRequest, "invalid_cursor", "cursor: not one this origin gave for these filters; start again without --cursor")
	a, m, ok := strings.Cut(c, ".")
	if !ok {
		return "", bad
	}
	after, err1 := base64.RawURLEncoding.DecodeString(a)
	mac, err2 := base64.RawURLEncoding.DecodeString(m)
	if err1 != nil || err2 != nil || !snapshot.ValidDeviceID(string(after)) || !hmac.Equal(mac, cursorMAC(key, q, string(after))) {
		return "", bad
	}
	return string(after), nil
}

func (s *Server) deviceParam(r *http.Request) (appID, deviceID string, err error) {
	if appID, err = s.appParam(r); err != nil {
		return "", "", err
	}
	deviceID = strings.ToLower(r.PathValue("id"))
	if !snapshot.ValidDeviceID(deviceID) {
		return "", "", errf(http.StatusBadRequest, "invalid_device_id", "device id %q: want a UUID", r.PathValue("id"))
	}
	return appID, deviceID, nil
}

// listDevices is GET /api/v1/apps/{app}/devices.
func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	v := r.URL.Query()
	q := store.DeviceQuery{AppID: appID, Channel: v.Get("channel"), Version: v.Get("version"), Platform: strings.ToLower(v.Get("platform")), Limit: 100}
	if l := v.Get("limit"); l != "" {
		if q.Limit, err = strconv.Atoi(l); err != nil || q.Limit < 1 || q.Limit > maxDevicePage {
			return errf(http.StatusBadRequest, "invalid_limit", "limit: want 1..%d", maxDevicePage)
		}
	}
	key, err := s.cursorKey(r.Context())
	if err != nil {
		return err
	}
	if c := v.Get("cursor"); c != "" {
		if q.After, err = decodeCursor(key, q, c); err != nil {
			return err
		}
	}
	devs, err := s.events.Devices(r.Context(), q)
	if err != nil {
		return err
	}
	out := DeviceList{Devices: devs}
	if len(devs) == q.Limit {
		out.NextCursor = encodeCursor(key, q, devs[len(devs)-1].DeviceID)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// countDevices is GET /api/v1/apps/{app}/devices/count: how many devices
// of the inventory match the list's filters and, with ?since=, last checked
// in at or after it (RFC 3339, fractions allowed, or Unix seconds; edge
// time): what the origin has ingested so far.
func (s *Server) countDevices(w http.ResponseWriter, r *http.Request) error {
	appID, err := s.appParam(r)
	if err != nil {
		return err
	}
	v := r.URL.Query()
	q := store.DeviceQuery{AppID: appID, Channel: v.Get("channel"), Version: v.Get("version"), Platform: strings.ToLower(v.Get("platform"))}
	var since int64
	if t := v.Get("since"); t != "" {
		if n, err := strconv.ParseInt(t, 10, 64); err == nil && n >= 0 && n < math.MaxInt64/1000 {
			since = n * 1000
		} else if at, err := time.Parse(time.RFC3339Nano, t); err == nil {
			since = at.UnixMilli()
		} else {
			return errf(http.StatusBadRequest, "invalid_time", "since=%q: want RFC 3339 (2026-11-28T12:00:00.250Z) or Unix seconds", t)
		}
	}
	n, err := s.events.CountDevices(r.Context(), q, since)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, DeviceCount{AppID: appID, Devices: n})
	return nil
}

// getDevice is GET /api/v1/apps/{app}/devices/{id}.
func (s *Server) getDevice(w http.ResponseWriter, r *http.Request) error {
	appID, devID, err := s.deviceParam(r)
	if err != nil {
		return err
	}
	d, err := s.deviceDetail(r.Context(), appID, devID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

func (s *Server) deviceDetail(ctx context.Context, appID, devID string) (DeviceDetail, error) {
	d, ok, err := s.events.Device(ctx, appID, devID)
	if err != nil {
		return DeviceDetail{}, err
	}
	if !ok {
		return DeviceDetail{}, errf(http.StatusNotFound, "device_not_found", "no device %s in app %s's inventory (never seen, or not seen within the retention)", devID, appID)
	}
	log, err := s.events.DeviceLog(ctx, appID, devID, 0)
	if err != nil {
		return DeviceDetail{}, err
	}
	// Oldest first by edge time: seq is the order the origin recorded
	// them in (an edge sends check-ins once a second, events at once).
	slices.SortStableFunc(log, func(a, b store.DeviceLogEntry) int { return cmp.Compare(a.At, b.At) })
	return DeviceDetail{Device: d, Events: log}, nil
}

// tailDevice is GET /api/v1/apps/{app}/devices/{id}/tail: the device's
// check-ins and events recorded from now on (or after ?after=SEQ), one JSON
// object a line (application/x-ndjson), for ?seconds= (default 300). It
// polls the store, so it sees what any origin sharing it ingests.
func (s *Server) tailDevice(w http.ResponseWriter, r *http.Request) error {
	appID, devID, err := s.deviceParam(r)
	if err != nil {
		return err
	}
	v := r.URL.Query()
	secs := 300
	if t := v.Get("seconds"); t != "" {
		if secs, err = strconv.Atoi(t); err != nil || secs < 1 || secs > maxTailSeconds {
			return errf(http.StatusBadRequest, "invalid_seconds", "seconds: want 1..%d", maxTailSeconds)
		}
	}
	var after int64
	if a := v.Get("after"); a != "" {
		if after, err = strconv.ParseInt(a, 10, 64); err != nil || after < 0 {
			return errf(http.StatusBadRequest, "invalid_after", "after: want a log sequence number")
		}
	} else {
		if after, err = s.events.DeviceLogSeq(r.Context(), appID, devID); err != nil { // 0 for a device not yet seen
			return err
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(secs)*time.Second)
	defer cancel()
	http.NewResponseController(w).SetWriteDeadline(time.Time{}) // a long stream, bounded by secs
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	enc := json.NewEncoder(w)
	t := time.NewTicker(tailPoll)
	defer t.Stop()
	for {
		log, err := s.events.DeviceLog(ctx, appID, devID, after)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("origin: device tail", "app", appID, "device", devID, "err", err)
			return nil // the status is sent: the stream just ends
		}
		for _, e := range log {
			if err := enc.Encode(e); err != nil {
				return nil
			}
			after = e.Seq
		}
		if len(log) > 0 && fl != nil {
			fl.Flush()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// pruneDevices removes the devices not seen within the retention.
func (s *Server) pruneDevices(ctx context.Context) {
	if s.cfg.DeviceRetention <= 0 {
		return
	}
	n, err := s.events.PruneDevices(ctx, time.Now().Add(-s.cfg.DeviceRetention).UnixMilli())
	if err != nil && ctx.Err() == nil {
		s.log.Error("origin: prune device inventory", "err", err)
	} else if n > 0 {
		s.log.Info("origin: removed devices not seen within the retention", "devices", n, "retention", s.cfg.DeviceRetention)
	}
}
