package snapshot

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
)

// Preview tokens (issue 20): a tester's device joins a preview channel —
// short-lived, unlisted, never a default, not choosable by name — by
// sending the token as the channel of setChannel (POST /channel_self).
//
// A token is base64url (no padding) of
//
//	version  uint8      1
//	expires  uint32     Unix seconds, big-endian
//	name     1-24 bytes the preview channel's name
//	sig      [64]byte   Ed25519 over PreviewMessage(app, name, expires)
//
// signed with the origin's snapshot signing key, which every edge already
// trusts. The app id is signed but not carried: the edge checks the token
// against the app_id of the request, so a token made for another app fails
// its signature. 70-93 bytes make 94-124 characters: longer than any
// channel name (at most 64), so the edge tells them apart by length alone,
// short enough for the plugin's defaultChannel (at most 128) and for a QR
// code.
const (
	previewTokenVersion = 1
	// MaxPreviewName bounds a preview channel's name, so that its token
	// fits the 128 characters of a defaultChannel.
	MaxPreviewName = 24
	minTokenBytes  = 1 + 4 + 1 + ed25519.SignatureSize
	maxTokenBytes  = 1 + 4 + MaxPreviewName + ed25519.SignatureSize
	// MinPreviewTokenLen and MaxPreviewTokenLen bound a token's text.
	MinPreviewTokenLen = (minTokenBytes*8 + 5) / 6
	MaxPreviewTokenLen = (maxTokenBytes*8 + 5) / 6
)

// Why a preview token is refused.
var (
	ErrPreviewMalformed = errors.New("preview token: malformed")
	ErrPreviewSignature = errors.New("preview token: bad signature (forged, or made for another app)")
	ErrPreviewExpired   = errors.New("preview token: expired")
)

// PreviewMessage is what a preview token's signature covers: a domain
// separator, the app id, the channel name and the expiry.
func PreviewMessage(appID, name string, expires int64) []byte {
	m := make([]byte, 0, 32+len(appID)+len(name))
	m = append(m, "updraft-preview-v1\x00"...)
	m = append(m, appID...)
	m = append(m, 0)
	m = append(m, name...)
	m = append(m, 0)
	return binary.BigEndian.AppendUint64(m, uint64(expires))
}

// SignPreviewToken makes the token for preview channel name of appID,
// valid until expires (Unix seconds).
func SignPreviewToken(key ed25519.PrivateKey, appID, name string, expires int64) (string, error) {
	if !ValidPreviewName(name) {
		return "", errors.New("preview token: channel name must be 1-24 letters, digits, '.', '_' or '-'")
	}
	if expires <= 0 || expires > 1<<32-1 {
		return "", errors.New("preview token: expiry out of range")
	}
	raw := make([]byte, 0, maxTokenBytes)
	raw = append(raw, previewTokenVersion)
	raw = binary.BigEndian.AppendUint32(raw, uint32(expires))
	raw = append(raw, name...)
	raw = append(raw, ed25519.Sign(key, PreviewMessage(appID, name, expires))...)
	return base64.RawURLEncoding.EncodeToString(raw), nil
}

// ValidPreviewName reports whether name can be a preview channel's.
func ValidPreviewName(name string) bool {
	return len(name) <= MaxPreviewName && ValidChannelName(name)
}

// LooksLikePreviewToken reports whether s has a token's length: no channel
// name does. It is the cheap test before ParsePreviewToken.
func LooksLikePreviewToken(s string) bool {
	return len(s) >= MinPreviewTokenLen && len(s) <= MaxPreviewTokenLen
}

// PreviewToken is a verified token.
type PreviewToken struct {
	Channel string
	Expires int64 // Unix seconds
}

// ParsePreviewToken verifies tok for appID with any of keys (several during
// a signing-key rotation) and returns the channel it grants. It checks the
// signature before the expiry, so an expired forged token is reported as
// forged; now is the Unix time to check the expiry against.
func ParsePreviewToken(tok, appID string, now int64, keys ...ed25519.PublicKey) (PreviewToken, error) {
	if !LooksLikePreviewToken(tok) {
		return PreviewToken{}, ErrPreviewMalformed
	}
	var buf [maxTokenBytes]byte
	n, err := base64.RawURLEncoding.Decode(buf[:], []byte(tok))
	if err != nil || n < minTokenBytes || buf[0] != previewTokenVersion {
		return PreviewToken{}, ErrPreviewMalformed
	}
	raw := buf[:n]
	exp := int64(binary.BigEndian.Uint32(raw[1:5]))
	name := string(raw[5 : n-ed25519.SignatureSize])
	if !ValidPreviewName(name) {
		return PreviewToken{}, ErrPreviewMalformed
	}
	if !verifySignature(PreviewMessage(appID, name, exp), raw[n-ed25519.SignatureSize:], keys) {
		return PreviewToken{}, ErrPreviewSignature
	}
	if now >= exp {
		return PreviewToken{Channel: name, Expires: exp}, ErrPreviewExpired
	}
	return PreviewToken{Channel: name, Expires: exp}, nil
}
