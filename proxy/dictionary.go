package proxy

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// RFC 9842 (Compression Dictionary Transport) at the edge. Canonical bundle
// archives are served with Use-As-Dictionary, so a browser keeps the one it
// has; when it later asks for a newer bundle with Available-Dictionary naming
// that archive and Accept-Encoding listing dcz or dcb, and the origin built a
// delta between the two, the edge answers with the delta and
// Content-Encoding: dcz|dcb.

// dictionaryMatch is the URL pattern the canonical archives announce: every
// blob path, so that the next release's URL is covered.
const dictionaryMatch = `match="/b/*"`

// parseAvailableDictionary reads the structured-field byte sequence
// ":base64(sha256):" into lower-case hex.
func parseAvailableDictionary(v string) (string, bool) {
	v = strings.TrimSpace(v)
	if len(v) < 2 || v[0] != ':' || v[len(v)-1] != ':' {
		return "", false
	}
	b, err := base64.StdEncoding.DecodeString(v[1 : len(v)-1])
	if err != nil || len(b) != 32 {
		return "", false
	}
	return hex.EncodeToString(b), true
}

// acceptsDictionaryEncodings reports whether Accept-Encoding lists dcz and
// dcb (a q=0 entry refuses the coding).
func acceptsDictionaryEncodings(accept string) (dcz, dcb bool) {
	for _, part := range strings.Split(accept, ",") {
		coding, params, _ := strings.Cut(part, ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != "dcz" && coding != "dcb" {
			continue
		}
		if q := strings.ReplaceAll(strings.TrimSpace(params), " ", ""); q == "q=0" || q == "q=0.0" || q == "q=0.00" || q == "q=0.000" {
			continue
		}
		if coding == "dcz" {
			dcz = true
		} else {
			dcb = true
		}
	}
	return dcz, dcb
}
