// Package events is the published format of device events between edges and
// the origin: the normalized Event an edge accepts on POST /stats, and the
// spool segment that carries them (a file on the edge, a request body on the
// way to the origin). It owns encoding, decoding and the action vocabulary;
// it must not do I/O.
package events

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"strings"
)

// Event is one device event, normalized by the edge that accepted it.
// Channel, Segment and Arm are the edge's resolution of the device when it
// accepted the event ("" when the device did not resolve).
type Event struct {
	Timestamp      int64 // device time, Unix ms (0: not sent)
	Received       int64 // edge time, Unix ms
	AppID          string
	DeviceID       string
	Action         string
	VersionName    string // the bundle the event is about
	OldVersionName string
	Platform       string
	VersionBuild   string // native app version
	PluginVersion  string
	CustomID       string
	IsEmulator     bool
	IsProd         bool
	Channel        string
	Segment        string // override, self_assigned, segment:NAME or default
	Arm            string // rollout, base or an A/B arm name; "" without a split
	Metadata       string // JSON object as sent, "" when absent
	// ClientPrefix is the network of the client that sent the event as the
	// edge saw it (PrefixOf: /24 for IPv4, /48 for IPv6); the zero Prefix
	// when unknown (format 1 segments, written by older edges).
	ClientPrefix netip.Prefix
}

// PrefixOf is the client network the rollout guard and the edges' rate
// limits count by: the /24 of an IPv4 address (IPv4-mapped IPv6 included),
// the /48 of an IPv6 address; the zero Prefix for an invalid address.
func PrefixOf(a netip.Addr) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	a = a.Unmap().WithZone("")
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p
}

// CheckIns is a compact record of the devices of one app that checked for
// updates (POST /updates) at an edge: the origin learns from it which
// devices exist before they report anything, so that the rollout guard can
// tell devices established before a rollout from ids made up after it.
type CheckIns struct {
	AppID   string
	At      int64 // edge time of the batch, Unix ms
	Devices [][16]byte
	// Details, when not nil, holds what each device of Devices (same
	// index) sent and was served: the device inventory's last check-in.
	// A record with details is of kind 3; older edges write kind 2
	// (Details nil).
	Details []CheckInDetail
}

// CheckInDetail is one device's update check as the edge saw and resolved
// it. Request strings are truncated to MaxDetailString bytes.
type CheckInDetail struct {
	At            int64 // edge time of the check, Unix ms
	Platform      string
	VersionBuild  string // native app version
	VersionName   string // the bundle the device runs
	PluginVersion string
	CustomID      string
	Channel       string // "" when the device resolved to no channel
	Segment       string // why that channel: override, self_assigned, segment:NAME or default
	Arm           string // rollout or base on a channel with a rollout, the A/B arm, or ""
	Outcome       string // "update" when a bundle was offered, else the refusal code
	Bundle        string // the bundle offered ("" when none)
}

// MaxDetailString bounds each string of a CheckInDetail.
const MaxDetailString = 128

// Failure reports whether action is a failure: every "*_fail" action, as
// Capgo's /stats counts them.
func Failure(action string) bool { return strings.HasSuffix(action, "_fail") }

// NormalizePlatform maps a device's platform onto the few that aggregates
// keep apart (ios, android, electron); anything else is "other", so that
// made-up platforms cannot multiply aggregate rows.
func NormalizePlatform(p string) string {
	switch p {
	case "ios", "android", "electron":
		return p
	}
	return "other"
}

// Actions is the exact vocabulary of Capgo's /stats (its
// ALLOWED_STATS_ACTIONS); the edge refuses other actions.
var Actions = map[string]bool{}

// ActionList is the vocabulary in Capgo's order, for error messages.
var ActionList string

const actionsText = `ping delete reset set get
		set_fail update_fail download_fail windows_path_fail canonical_path_fail directory_path_fail unzip_fail low_mem_fail
		download_0 download_10 download_20 download_30 download_40 download_50 download_60 download_70 download_80 download_90
		download_complete download_manifest_start download_manifest_complete download_zip_start download_zip_complete
		download_manifest_file_fail download_manifest_checksum_fail download_manifest_brotli_fail finish_download_fail
		manifest_path_fail decrypt_fail checksum_required insufficient_disk_space
		app_moved_to_foreground app_moved_to_background app_launch_start app_launch_ready app_launch_timeout
		uninstall needPlanUpgrade missingBundle noNew disablePlatformIos disablePlatformAndroid
		disableAutoUpdateToMajor cannotUpdateViaPrivateChannel disableAutoUpdateToMinor disableAutoUpdateToPatch
		channelMisconfigured disableAutoUpdateMetadata disableAutoUpdateUnderNative disableDevBuild disableProdBuild
		disableEmulator disableDevice cannotGetBundle checksum_fail NoChannelOrOverride setChannel getChannel
		rateLimited rate_limit_reached disableAutoUpdate keyMismatch InvalidIp blocked_by_server_url backend_refusal
		disablePlatformElectron customIdBlocked
		app_crash app_crash_native app_anr app_killed_low_memory app_killed_excessive_resource_usage
		app_initialization_failure app_memory_warning
		webview_javascript_error webview_unhandled_rejection webview_resource_error webview_security_policy_violation
		webview_unclean_restart webview_render_process_gone webview_content_process_terminated
		webview_dom_content_loaded webview_page_loaded
		set_next os_version_changed native_app_version_changed`

func init() {
	list := strings.Fields(actionsText)
	for _, a := range list {
		Actions[a] = true
	}
	ActionList = strings.Join(list, ", ")
}

// WellFormedAction accepts Capgo's action vocabulary and any action of the
// same shape (1–64 letters, digits and underscores).
func WellFormedAction(a string) bool {
	if Actions[a] {
		return true
	}
	if len(a) == 0 || len(a) > 64 {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Segment wire format. A segment is a magic header followed by records; a
// record is one accepted request (1..MaxBatch events of one app) or one
// batch of check-ins:
//
//	u32 payload length | u32 CRC-32C of payload | payload
//
// Format 2 (Magic, "UPDEVT2\n", written since the rollout guard counts
// client networks):
//
//	payload  = kind byte | body
//	kind 1   = uvarint event count | events
//	event    = varint ts | varint received | flags byte | 13 strings |
//	           client prefix (uvarint length 0, 3 or 6 + the prefix's leading bytes) |
//	           reserved string (empty)
//	kind 2   = app id string | varint edge time | uvarint device count | count × 16-byte device ids
//	kind 3   = app id string | varint edge time | uvarint device count | count × detailed check-in
//	detailed check-in = 16-byte device id | varint check time | 10 strings (platform, version_build,
//	           version_name, plugin_version, custom_id, channel, segment, arm, outcome, bundle) |
//	           reserved string (empty)
//
// Kind 3 is written since the device inventory (origins before it refuse
// such a segment: upgrade origins before edges).
//
// Format 1 (MagicV1, "UPDEVT1\n", older edges; still read):
//
//	payload  = uvarint event count | events
//	event    = varint ts | varint received | flags byte | 14 strings (the 14th reserved, empty)
//
// Strings are a uvarint length and the bytes. One segment holds records of
// one format. The CRC lets a reader find the torn tail a crash leaves
// (records are appended, then fsynced) and lets the origin refuse a damaged
// body.
const (
	Magic   = "UPDEVT2\n"
	MagicV1 = "UPDEVT1\n"
	// MagicLen is the length of either magic.
	MagicLen  = 8
	headerLen = 8
	// MaxBatch is the most events one request (one record) may carry.
	MaxBatch = 200
	// MaxCheckIns is the most devices one check-in record may carry.
	MaxCheckIns = 8192
	// MaxRecord bounds one record's payload.
	MaxRecord = 4 << 20

	kindEvents          = 1
	kindCheckIns        = 2
	kindCheckInsDetails = 3
)

// Version returns a segment's format (1 or 2), or 0 when seg does not start
// with a known magic.
func Version(seg []byte) int {
	if len(seg) < MagicLen {
		return 0
	}
	switch string(seg[:MagicLen]) {
	case Magic:
		return 2
	case MagicV1:
		return 1
	}
	return 0
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt reports bytes that are not a valid segment or record.
var ErrCorrupt = errors.New("events: corrupt segment")

// AppendRecord appends one record (current format) holding evs to dst.
func AppendRecord(dst []byte, evs []Event) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, headerLen)...)
	dst = append(dst, kindEvents)
	dst = binary.AppendUvarint(dst, uint64(len(evs)))
	for i := range evs {
		dst = appendEvent(dst, &evs[i], 2)
	}
	return frameRecord(dst, start)
}

// AppendRecordV1 appends one record of format 1 (no client prefix), as an
// edge before format 2 wrote it: for tests of older edges' segments.
func AppendRecordV1(dst []byte, evs []Event) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, headerLen)...)
	dst = binary.AppendUvarint(dst, uint64(len(evs)))
	for i := range evs {
		dst = appendEvent(dst, &evs[i], 1)
	}
	return frameRecord(dst, start)
}

// AppendCheckIns appends one check-in record (current format) to dst. It
// holds 1..MaxCheckIns devices (the caller splits larger batches); with
// Details (as many as Devices) it is a kind 3 record.
func AppendCheckIns(dst []byte, c *CheckIns) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, headerLen)...)
	if c.Details != nil {
		dst = append(dst, kindCheckInsDetails)
	} else {
		dst = append(dst, kindCheckIns)
	}
	dst = binary.AppendUvarint(dst, uint64(len(c.AppID)))
	dst = append(dst, c.AppID...)
	dst = binary.AppendVarint(dst, c.At)
	dst = binary.AppendUvarint(dst, uint64(len(c.Devices)))
	for i := range c.Devices {
		dst = append(dst, c.Devices[i][:]...)
		if c.Details != nil {
			d := &c.Details[i]
			dst = binary.AppendVarint(dst, d.At)
			for _, s := range d.strings() {
				s = s[:min(len(s), MaxDetailString)]
				dst = binary.AppendUvarint(dst, uint64(len(s)))
				dst = append(dst, s...)
			}
			dst = append(dst, 0) // the reserved string, empty
		}
	}
	return frameRecord(dst, start)
}

func (d *CheckInDetail) strings() [10]string {
	return [...]string{d.Platform, d.VersionBuild, d.VersionName, d.PluginVersion, d.CustomID,
		d.Channel, d.Segment, d.Arm, d.Outcome, d.Bundle}
}

func (d *CheckInDetail) fields() [10]*string {
	return [...]*string{&d.Platform, &d.VersionBuild, &d.VersionName, &d.PluginVersion, &d.CustomID,
		&d.Channel, &d.Segment, &d.Arm, &d.Outcome, &d.Bundle}
}

// frameRecord fills in the header of the record that starts at dst[start].
func frameRecord(dst []byte, start int) []byte {
	payload := dst[start+headerLen:]
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(payload, castagnoli))
	return dst
}

// AppendRecords appends evs to dst as one record, or as several when one
// would hold more than maxPayload bytes (each record holds at least one
// event; maxPayload above MaxRecord is taken as MaxRecord).
func AppendRecords(dst []byte, evs []Event, maxPayload int) []byte {
	maxPayload = min(maxPayload, MaxRecord)
	for start := 0; start < len(evs); {
		size, end := 0, start
		for end < len(evs) {
			n := eventSize(&evs[end])
			if end > start && size+n+1+binary.MaxVarintLen16 > maxPayload {
				break
			}
			size += n
			end++
		}
		dst = AppendRecord(dst, evs[start:end])
		start = end
	}
	return dst
}

// prefixBytes is the encoded length of an event's client prefix: 3 bytes
// of an IPv4 /24, 6 of an IPv6 /48, none when unknown.
func prefixBytes(p netip.Prefix) int {
	switch {
	case !p.IsValid():
		return 0
	case p.Addr().Is4():
		return 3
	}
	return 6
}

// eventSize is len(appendEvent(nil, e, 2)), computed without encoding.
func eventSize(e *Event) int {
	n := varintLen(e.Timestamp) + varintLen(e.Received) + 1
	for _, s := range [...]string{e.AppID, e.DeviceID, e.Action, e.VersionName, e.OldVersionName,
		e.Platform, e.VersionBuild, e.PluginVersion, e.CustomID, e.Channel, e.Segment, e.Arm, e.Metadata, ""} {
		n += uvarintLen(uint64(len(s))) + len(s)
	}
	return n + 1 + prefixBytes(e.ClientPrefix)
}

func appendEvent(dst []byte, e *Event, version int) []byte {
	dst = binary.AppendVarint(dst, e.Timestamp)
	dst = binary.AppendVarint(dst, e.Received)
	var flags byte
	if e.IsEmulator {
		flags |= 1
	}
	if e.IsProd {
		flags |= 2
	}
	dst = append(dst, flags)
	for _, s := range [...]string{e.AppID, e.DeviceID, e.Action, e.VersionName, e.OldVersionName,
		e.Platform, e.VersionBuild, e.PluginVersion, e.CustomID, e.Channel, e.Segment, e.Arm, e.Metadata} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	if version >= 2 {
		n := prefixBytes(e.ClientPrefix)
		dst = append(dst, byte(n))
		if n > 0 {
			a := e.ClientPrefix.Addr().As16()
			if n == 3 {
				dst = append(dst, a[12:15]...)
			} else {
				dst = append(dst, a[:6]...)
			}
		}
	}
	return append(dst, 0) // the reserved string, empty
}

// NextRecord reads the record at the start of b. It returns the record's
// payload and the bytes that follow it; ErrCorrupt when b does not start
// with a whole, intact record (a torn tail reads as ErrCorrupt too).
func NextRecord(b []byte) (payload, rest []byte, err error) {
	if len(b) < headerLen {
		return nil, b, ErrCorrupt
	}
	n := binary.LittleEndian.Uint32(b)
	if n > MaxRecord || uint64(len(b)-headerLen) < uint64(n) {
		return nil, b, ErrCorrupt
	}
	payload = b[headerLen : headerLen+int(n)]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return nil, b, ErrCorrupt
	}
	return payload, b[headerLen+int(n):], nil
}

// Visitor receives what a segment holds; a nil func skips that kind. The
// values passed are reused between calls, but their strings and slices
// are copies: a func may keep them.
type Visitor struct {
	Event    func(*Event) error
	CheckIns func(*CheckIns) error
}

// DecodeRecord decodes a record payload of the current format, calling fn
// for each event (a check-in record has none).
func DecodeRecord(payload []byte, fn func(*Event) error) error {
	return decodeRecord(2, payload, Visitor{Event: fn})
}

func decodeRecord(version int, payload []byte, v Visitor) error {
	if version >= 2 {
		if len(payload) == 0 {
			return fmt.Errorf("%w: empty record", ErrCorrupt)
		}
		kind := payload[0]
		payload = payload[1:]
		switch kind {
		case kindEvents:
		case kindCheckIns:
			return decodeCheckIns(payload, false, v.CheckIns)
		case kindCheckInsDetails:
			return decodeCheckIns(payload, true, v.CheckIns)
		default:
			return fmt.Errorf("%w: unknown record kind %d", ErrCorrupt, kind)
		}
	}
	count, n := binary.Uvarint(payload)
	if n <= 0 || n != uvarintLen(count) || count == 0 || count > MaxBatch {
		return fmt.Errorf("%w: bad event count", ErrCorrupt)
	}
	b := payload[n:]
	var e Event
	for i := uint64(0); i < count; i++ {
		var err error
		if b, err = decodeEvent(b, &e, version); err != nil {
			return err
		}
		if v.Event != nil {
			if err := v.Event(&e); err != nil {
				return err
			}
		}
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes in record", ErrCorrupt, len(b))
	}
	return nil
}

func decodeCheckIns(b []byte, details bool, fn func(*CheckIns) error) error {
	var c CheckIns
	l, n := binary.Uvarint(b)
	if n <= 0 || n != uvarintLen(l) || l > uint64(len(b)-n) {
		return fmt.Errorf("%w: check-ins: bad app id", ErrCorrupt)
	}
	c.AppID = string(b[n : n+int(l)])
	b = b[n+int(l):]
	if c.At, n = binary.Varint(b); n <= 0 || n != varintLen(c.At) {
		return fmt.Errorf("%w: check-ins: bad time", ErrCorrupt)
	}
	b = b[n:]
	count, n := binary.Uvarint(b)
	if n <= 0 || n != uvarintLen(count) || count == 0 || count > MaxCheckIns || !details && uint64(len(b)-n) != 16*count {
		return fmt.Errorf("%w: check-ins: bad device count", ErrCorrupt)
	}
	b = b[n:]
	if !details {
		if fn == nil {
			return nil
		}
		c.Devices = make([][16]byte, count)
		for i := range c.Devices {
			copy(c.Devices[i][:], b[16*i:])
		}
		return fn(&c)
	}
	if uint64(len(b)) < 18*count { // at the least a device id, a time and the reserved string
		return fmt.Errorf("%w: check-ins: bad device count", ErrCorrupt)
	}
	c.Devices = make([][16]byte, count)
	c.Details = make([]CheckInDetail, count)
	for i := range c.Devices {
		if len(b) < 16 {
			return fmt.Errorf("%w: check-ins: truncated", ErrCorrupt)
		}
		copy(c.Devices[i][:], b)
		b = b[16:]
		d := &c.Details[i]
		if d.At, n = binary.Varint(b); n <= 0 || n != varintLen(d.At) {
			return fmt.Errorf("%w: check-ins: bad time", ErrCorrupt)
		}
		b = b[n:]
		for _, p := range d.fields() {
			l, n := binary.Uvarint(b)
			if n <= 0 || n != uvarintLen(l) || l > MaxDetailString || l > uint64(len(b)-n) {
				return fmt.Errorf("%w: check-ins: bad string", ErrCorrupt)
			}
			*p = string(b[n : n+int(l)])
			b = b[n+int(l):]
		}
		if len(b) == 0 || b[0] != 0 {
			return fmt.Errorf("%w: check-ins: reserved string", ErrCorrupt)
		}
		b = b[1:]
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes in check-ins", ErrCorrupt, len(b))
	}
	if fn == nil {
		return nil
	}
	return fn(&c)
}

// uvarintLen is the length of x's minimal uvarint encoding; decoders
// refuse longer encodings, so that every valid record has one encoding.
func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func varintLen(x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}

func decodeEvent(b []byte, e *Event, version int) ([]byte, error) {
	var n int
	if e.Timestamp, n = binary.Varint(b); n <= 0 || n != varintLen(e.Timestamp) {
		return nil, ErrCorrupt
	}
	b = b[n:]
	if e.Received, n = binary.Varint(b); n <= 0 || n != varintLen(e.Received) {
		return nil, ErrCorrupt
	}
	b = b[n:]
	if len(b) == 0 || b[0]&^3 != 0 {
		return nil, ErrCorrupt
	}
	e.IsEmulator, e.IsProd = b[0]&1 != 0, b[0]&2 != 0
	b = b[1:]
	str := func(p *string) bool {
		l, n := binary.Uvarint(b)
		if n <= 0 || n != uvarintLen(l) || l > uint64(len(b)-n) {
			return false
		}
		*p = string(b[n : n+int(l)])
		b = b[n+int(l):]
		return true
	}
	for _, p := range [...]*string{&e.AppID, &e.DeviceID, &e.Action, &e.VersionName, &e.OldVersionName,
		&e.Platform, &e.VersionBuild, &e.PluginVersion, &e.CustomID, &e.Channel, &e.Segment, &e.Arm, &e.Metadata} {
		if !str(p) {
			return nil, ErrCorrupt
		}
	}
	e.ClientPrefix = netip.Prefix{}
	if version >= 2 {
		if len(b) == 0 {
			return nil, ErrCorrupt
		}
		switch l := b[0]; {
		case l == 0:
		case l == 3 && len(b) >= 4:
			e.ClientPrefix = netip.PrefixFrom(netip.AddrFrom4([4]byte{b[1], b[2], b[3], 0}), 24)
		case l == 6 && len(b) >= 7:
			var a [16]byte
			copy(a[:], b[1:7])
			e.ClientPrefix = netip.PrefixFrom(netip.AddrFrom16(a), 48)
		default:
			return nil, ErrCorrupt
		}
		b = b[1+prefixBytes(e.ClientPrefix):]
	}
	// The reserved string: empty, so that every record has one encoding.
	if len(b) == 0 || b[0] != 0 {
		return nil, ErrCorrupt
	}
	return b[1:], nil
}

// DecodeSegment decodes a whole segment (magic and records), calling fn for
// each event in order. It refuses the segment, before calling fn at all,
// when any record is damaged.
func DecodeSegment(seg []byte, fn func(*Event) error) error {
	return Decode(seg, Visitor{Event: fn})
}

// Decode decodes a whole segment of either format, calling v's funcs for
// its events and check-ins in order. It refuses the segment, before calling
// them at all, when any record's framing is damaged.
func Decode(seg []byte, v Visitor) error {
	recs, err := Records(seg)
	if err != nil {
		return err
	}
	version := Version(seg)
	for _, p := range recs {
		if err := decodeRecord(version, p, v); err != nil {
			return err
		}
	}
	return nil
}

// Records checks a segment's magic (either format) and every record's
// framing and CRC, and returns the record payloads.
func Records(seg []byte) ([][]byte, error) {
	if Version(seg) == 0 {
		return nil, fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	var recs [][]byte
	for b := seg[MagicLen:]; len(b) > 0; {
		p, rest, err := NextRecord(b)
		if err != nil {
			return nil, err
		}
		recs = append(recs, p)
		b = rest
	}
	return recs, nil
}

// RecordEvents is the number of events a record payload of a segment of
// the given format says it holds (0 for check-ins or a malformed count).
func RecordEvents(version int, payload []byte) int {
	if version >= 2 {
		if len(payload) == 0 || payload[0] != kindEvents {
			return 0
		}
		payload = payload[1:]
	}
	if c, k := binary.Uvarint(payload); k > 0 && c <= MaxBatch {
		return int(c)
	}
	return 0
}
