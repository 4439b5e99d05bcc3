package proxy

import (
	"errors"
	"strings"
)

// Expo structured field values (expo/expo docs/pages/technical-specs/
// expo-sfv-0.mdx): the subset of RFC 8941 the Expo Updates protocol uses,
// read without allocating (a string with escapes is the one exception).
// Dictionaries and lists of items — strings, integers, decimals, booleans
// and tokens — with parameters, which are read and ignored; byte sequences
// and inner lists are not in the subset and fail the parse.

// sfvKind is the type of a bare item.
type sfvKind uint8

const (
	sfvString sfvKind = iota + 1
	sfvToken
	sfvInteger
	sfvDecimal
	sfvBoolean
)

// sfvItem is one bare item: str holds a string (unescaped), a token or
// the text of an integer or decimal; b a boolean.
type sfvItem struct {
	kind sfvKind
	str  string
	b    bool
}

var errSFV = errors.New("malformed structured field value")

// sfvParser reads one field value.
type sfvParser struct {
	s string
	i int
}

func (p *sfvParser) skipSP() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *sfvParser) skipOWS() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// key reads an RFC 8941 key: lcalpha or '*', then lcalpha, digits, '_',
// '-', '.' or '*'.
func (p *sfvParser) key() (string, error) {
	start := p.i
	if p.i >= len(p.s) || !(p.s[p.i] >= 'a' && p.s[p.i] <= 'z' || p.s[p.i] == '*') {
		return "", errSFV
	}
	p.i++
	for p.i < len(p.s) {
		c := p.s[p.i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '*') {
			break
		}
		p.i++
	}
	return p.s[start:p.i], nil
}

// bareItem reads a string, token, integer, decimal or boolean.
func (p *sfvParser) bareItem() (sfvItem, error) {
	if p.i >= len(p.s) {
		return sfvItem{}, errSFV
	}
	switch c := p.s[p.i]; {
	case c == '"':
		return p.str()
	case c == '?':
		if p.i+1 < len(p.s) && (p.s[p.i+1] == '0' || p.s[p.i+1] == '1') {
			p.i += 2
			return sfvItem{kind: sfvBoolean, b: p.s[p.i-1] == '1'}, nil
		}
		return sfvItem{}, errSFV
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '*':
		start := p.i
		p.i++
		for p.i < len(p.s) && (isTChar(p.s[p.i]) || p.s[p.i] == ':' || p.s[p.i] == '/') {
			p.i++
		}
		return sfvItem{kind: sfvToken, str: p.s[start:p.i]}, nil
	}
	return sfvItem{}, errSFV // byte sequences (':'), inner lists ('('), anything else
}

// str reads a quoted string: printable ASCII, with \" and \\ escapes.
func (p *sfvParser) str() (sfvItem, error) {
	p.i++ // opening quote
	start, escaped := p.i, false
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '\\':
			if p.i+1 >= len(p.s) || p.s[p.i+1] != '"' && p.s[p.i+1] != '\\' {
				return sfvItem{}, errSFV
			}
			escaped = true
			p.i += 2
		case c == '"':
			v := p.s[start:p.i]
			p.i++
			if escaped {
				var b strings.Builder
				for j := 0; j < len(v); j++ {
					if v[j] == '\\' {
						j++
					}
					b.WriteByte(v[j])
				}
				v = b.String()
			}
			return sfvItem{kind: sfvString, str: v}, nil
		case c < 0x20 || c > 0x7e:
			return sfvItem{}, errSFV
		default:
			p.i++
		}
	}
	return sfvItem{}, errSFV // unterminated
}

// number reads an integer (at most 15 digits) or a decimal (at most 12
// digits, a dot and 1 to 3 digits), with an optional minus sign.
func (p *sfvParser) number() (sfvItem, error) {
	start := p.i
	if p.s[p.i] == '-' {
		p.i++
	}
	digits, dot, frac := 0, false, 0
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c >= '0' && c <= '9':
			if dot {
				frac++
			} else {
				digits++
			}
		case c == '.' && !dot:
			dot = true
		default:
			goto end
		}
		p.i++
	}
end:
	switch {
	case digits == 0:
		return sfvItem{}, errSFV
	case !dot && digits <= 15:
		return sfvItem{kind: sfvInteger, str: p.s[start:p.i]}, nil
	case dot && digits <= 12 && frac >= 1 && frac <= 3:
		return sfvItem{kind: sfvDecimal, str: p.s[start:p.i]}, nil
	}
	return sfvItem{}, errSFV
}

// params reads and discards ";key[=item]" parameters.
func (p *sfvParser) params() error {
	for p.i < len(p.s) && p.s[p.i] == ';' {
		p.i++
		p.skipSP()
		if _, err := p.key(); err != nil {
			return err
		}
		if p.i < len(p.s) && p.s[p.i] == '=' {
			p.i++
			if _, err := p.bareItem(); err != nil {
				return err
			}
		}
	}
	return nil
}

// next ends a member: end of input (done), or a comma and the next member.
func (p *sfvParser) next() (done bool, err error) {
	p.skipOWS()
	if p.i >= len(p.s) {
		return true, nil
	}
	if p.s[p.i] != ',' {
		return false, errSFV
	}
	p.i++
	p.skipOWS()
	if p.i >= len(p.s) {
		return false, errSFV // trailing comma
	}
	return false, nil
}

// sfvDictionary calls fn for every member of the dictionary s, in order
// (a key given twice is seen twice; RFC 8941 keeps the last). A key
// without a value is the boolean true. An empty field is an empty
// dictionary.
func sfvDictionary(s string, fn func(key string, v sfvItem)) error {
	p := sfvParser{s: s}
	p.skipSP()
	if p.i >= len(p.s) {
		return nil
	}
	for {
		k, err := p.key()
		if err != nil {
			return err
		}
		v := sfvItem{kind: sfvBoolean, b: true}
		if p.i < len(p.s) && p.s[p.i] == '=' {
			p.i++
			if v, err = p.bareItem(); err != nil {
				return err
			}
		}
		if err := p.params(); err != nil {
			return err
		}
		fn(k, v)
		if done, err := p.next(); done || err != nil {
			return err
		}
	}
}

// sfvList calls fn for every item of the list s, in order.
func sfvList(s string, fn func(v sfvItem)) error {
	p := sfvParser{s: s}
	p.skipSP()
	if p.i >= len(p.s) {
		return nil
	}
	for {
		v, err := p.bareItem()
		if err != nil {
			return err
		}
		if err := p.params(); err != nil {
			return err
		}
		fn(v)
		if done, err := p.next(); done || err != nil {
			return err
		}
	}
}

// isTChar reports an RFC 9110 token character.
func isTChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// expectSignature is what expo-expect-signature asks for.
type expectSignature struct {
	keyID, alg string // "" when not given
}

// parseExpectSignature reads an expo-expect-signature dictionary: sig
// (true), keyid and alg (strings; a token is taken too).
func parseExpectSignature(h string) (expectSignature, error) {
	var x expectSignature
	err := sfvDictionary(h, func(k string, v sfvItem) {
		if v.kind != sfvString && v.kind != sfvToken {
			return
		}
		switch k {
		case "keyid":
			x.keyID = v.str
		case "alg":
			x.alg = v.str
		}
	})
	return x, err
}

// Media types of a manifest answer, in the order preferred on a tie of
// q-values: multipart carries directives and signatures per part.
const (
	expoFormatNone = iota
	expoFormatMultipart
	expoFormatExpoJSON
	expoFormatJSON
)

var expoFormatTypes = [...]string{"", "multipart/mixed", "application/expo+json", "application/json"}

// negotiateExpo chooses the answer's media type from an Accept header
// (RFC 9110 §12.5.1): each of the three types takes the q-value of the
// most specific range that matches it (type/subtype, type/*, */*); the
// highest q above 0 wins, multipart first on a tie. An absent header
// accepts anything (multipart); expoFormatNone: nothing acceptable (406).
func negotiateExpo(accept string) int {
	if trimOWS(accept) == "" {
		return expoFormatMultipart
	}
	var q, spec [4]int // per format: q in thousandths, specificity of the range that set it
	for i := range q {
		q[i] = -1
	}
	for len(accept) > 0 {
		var elem string
		if i := strings.IndexByte(accept, ','); i >= 0 {
			elem, accept = accept[:i], accept[i+1:]
		} else {
			elem, accept = accept, ""
		}
		rng, params, _ := strings.Cut(elem, ";")
		rng = trimOWS(rng)
		typ, sub, ok := strings.Cut(rng, "/")
		if !ok || typ == "" || sub == "" {
			continue
		}
		w, ok := qValue(params)
		if !ok {
			continue
		}
		for f := expoFormatMultipart; f <= expoFormatJSON; f++ {
			ft, fs, _ := strings.Cut(expoFormatTypes[f], "/")
			s := 0
			switch {
			case strings.EqualFold(typ, ft) && strings.EqualFold(sub, fs):
				s = 3
			case strings.EqualFold(typ, ft) && sub == "*":
				s = 2
			case typ == "*" && sub == "*":
				s = 1
			}
			if s == 0 || s < spec[f] {
				continue
			}
			if s > spec[f] {
				spec[f], q[f] = s, w
			} else {
				q[f] = max(q[f], w)
			}
		}
	}
	best, bestQ := expoFormatNone, 0
	for f := expoFormatMultipart; f <= expoFormatJSON; f++ {
		if q[f] > bestQ {
			best, bestQ = f, q[f]
		}
	}
	return best
}
