package jsonscan

import (
	"encoding/json"
	"unicode/utf8"
)

// IsSpace reports whether c is JSON whitespace: space, tab, newline or
// carriage return.
func IsSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// IsDigit reports whether c is an ASCII decimal digit.
func IsDigit(c byte) bool { return c >= '0' && c <= '9' }

// IsHex reports whether c is an ASCII hexadecimal digit, in either case.
func IsHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// SkipSpace returns the index of the first byte at or after i that is not
// JSON whitespace (len(b) if there is none). It never fails.
func SkipSpace(b []byte, i int) int {
	for i < len(b) && IsSpace(b[i]) {
		i++
	}
	return i
}

// SkipLiteral skips lit (true, false or null) at b[i:].
func SkipLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// SkipString skips the string literal at b[i:], quotes included: it must
// hold no control characters and only valid escapes.
func SkipString(b []byte, i int) int {
	var plain bool
	return skipString(b, i, &plain)
}

// SkipNumber skips the number at b[i:] (JSON's grammar: no leading zeros,
// '+', bare '.' or hexadecimal).
func SkipNumber(b []byte, i int) int {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		for i++; i < len(b) && IsDigit(b[i]); i++ {
		}
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		if i++; i >= len(b) || !IsDigit(b[i]) {
			return -1
		}
		for i < len(b) && IsDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		if i++; i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !IsDigit(b[i]) {
			return -1
		}
		for i < len(b) && IsDigit(b[i]) {
			i++
		}
	}
	return i
}

// SkipValue skips the JSON value at b[i:] (no whitespace before it is
// skipped, nor any after it). It fails too if the value nests objects and
// arrays more than maxDepth deep: a scalar has depth 0, [] and {} depth 1,
// [{}] depth 2.
func SkipValue(b []byte, i, maxDepth int) int {
	var plain bool
	return skipValue(b, i, maxDepth, &plain)
}

// SkipValueCompact is SkipValue that also reports whether the value is
// compact: it holds no whitespace between its tokens and none of the
// characters that encoding/json escapes when it writes a json.RawMessage
// (<, >, &, and the byte 0xE2 that starts U+2028 and U+2029, whatever
// follows it). AppendCompactHTML copies a compact value unchanged. compact
// means nothing when end is -1.
func SkipValueCompact(b []byte, i, maxDepth int) (end int, compact bool) {
	compact = true
	end = skipValue(b, i, maxDepth, &compact)
	return end, compact
}

// skipValue is SkipValue, clearing *plain if the value is not compact.
func skipValue(b []byte, i, depth int, plain *bool) int {
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; c {
	case '"':
		return skipString(b, i, plain)
	case '{', '[':
		if depth <= 0 {
			return -1
		}
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		i = skipSpaceIn(b, i+1, plain)
		if i < len(b) && b[i] == end {
			return i + 1
		}
		for {
			if c == '{' {
				if i = skipString(b, i, plain); i < 0 {
					return -1
				}
				i = skipSpaceIn(b, i, plain)
				if i >= len(b) || b[i] != ':' {
					return -1
				}
				i = skipSpaceIn(b, i+1, plain)
			}
			if i = skipValue(b, i, depth-1, plain); i < 0 {
				return -1
			}
			i = skipSpaceIn(b, i, plain)
			if i >= len(b) {
				return -1
			}
			if b[i] == end {
				return i + 1
			}
			if b[i] != ',' {
				return -1
			}
			i = skipSpaceIn(b, i+1, plain)
		}
	case 't':
		return SkipLiteral(b, i, "true")
	case 'f':
		return SkipLiteral(b, i, "false")
	case 'n':
		return SkipLiteral(b, i, "null")
	}
	return SkipNumber(b, i)
}

// skipSpaceIn is SkipSpace inside a value: whitespace there makes the value
// not compact.
func skipSpaceIn(b []byte, i int, plain *bool) int {
	j := SkipSpace(b, i)
	if j != i {
		*plain = false
	}
	return j
}

// skipString is SkipString, clearing *plain if the string holds a
// character encoding/json escapes in a json.RawMessage.
func skipString(b []byte, i int, plain *bool) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	i++
	for {
		for i < len(b) && plainStringByte[b[i]] {
			i++
		}
		if i >= len(b) {
			return -1
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c < 0x20:
			return -1
		case c == '\\':
			if i+1 >= len(b) {
				return -1
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(b)-i < 6 || !IsHex(b[i+2]) || !IsHex(b[i+3]) || !IsHex(b[i+4]) || !IsHex(b[i+5]) {
					return -1
				}
				i += 6
			default:
				return -1
			}
		default: // <, >, & or 0xE2, which may start U+2028 or U+2029
			*plain = false
			i++
		}
	}
}

// plainStringByte[c] is true for the bytes a string holds as they are and
// encoding/json writes unchanged in a json.RawMessage: all but '"', '\\',
// control characters, <, >, & and 0xE2.
var plainStringByte = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		switch c {
		case '"', '\\', '<', '>', '&', 0xE2:
		default:
			t[c] = true
		}
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// AppendCompactHTML appends the JSON value v (valid, as SkipValue accepts
// it) as encoding/json writes a json.RawMessage: without whitespace between
// tokens, and with <, >, &, U+2028 and U+2029 escaped as \u003c and so on.
// It allocates only to grow dst.
//
// Given invalid JSON it writes something, without panicking.
func AppendCompactHTML(dst, v []byte) []byte {
	inString := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '<' || c == '>' || c == '&':
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		case c == 0xE2 && i+2 < len(v) && v[i+1] == 0x80 && v[i+2]&^1 == 0xA8:
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[v[i+2]&0xF])
			i += 2
		case inString:
			dst = append(dst, c)
			if c == '\\' {
				if i++; i < len(v) {
					dst = append(dst, v[i])
				}
			} else if c == '"' {
				inString = false
			}
		case IsSpace(c):
		default:
			dst = append(dst, c)
			inString = c == '"'
		}
	}
	return dst
}

// AppendString appends s as a JSON string, as encoding/json writes it
// (with HTML escaping). Strings that need no escaping, the usual ones, are
// appended without allocating; the others go through encoding/json.
func AppendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(dst, q...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
