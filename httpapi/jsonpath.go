package httpapi

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// unknownFieldError is the error of strictUnmarshal for a key that names
// no field: encoding/json's "json: unknown field" names only the key, this
// names its whole path from the top of the body ("provider.bogus",
// "items[2].bogus").
type unknownFieldError struct {
	Path string
}

func (e *unknownFieldError) Error() string { return "json: unknown field " + strconv.Quote(e.Path) }

// asUnknownField turns the error of decoding b into a value of type t
// strictly into an *unknownFieldError when it is encoding/json's unknown
// field error; other errors are returned as they are.
func asUnknownField(err error, b []byte, t reflect.Type) error {
	quoted, ok := strings.CutPrefix(err.Error(), "json: unknown field ")
	if !ok {
		return err
	}
	key, uerr := strconv.Unquote(quoted)
	if uerr != nil {
		key = strings.Trim(quoted, `"`)
	}
	// encoding/json keeps the first error in document order: the first
	// unknown key is the one it names. A walk that finds another (it
	// should not) names the key alone, as encoding/json does.
	if path, found, ok := firstUnknownField(b, t); ok && found == key {
		return &unknownFieldError{Path: path}
	}
	return &unknownFieldError{Path: key}
}

// firstUnknownField walks the JSON value b as encoding/json decodes it
// into a value of type t and returns the path of the first object key, in
// document order, that names no field of the struct it is decoded into,
// with the key itself. Fields are named as encoding/json names them
// (their JSON name, whatever the case of the key that matched), array
// elements by their index ("events[2].bogus") and map entries by their key.
// Values decoded by their own UnmarshalJSON or UnmarshalText, and values
// kept as they are (json.RawMessage, interfaces) are not looked into.
func firstUnknownField(b []byte, t reflect.Type) (path, key string, ok bool) {
	w := fieldWalker{dec: json.NewDecoder(bytes.NewReader(b))}
	w.dec.UseNumber()
	path, key, ok, err := w.value(t, "")
	if err != nil {
		return "", "", false
	}
	return path, key, ok
}

type fieldWalker struct {
	dec *json.Decoder
}

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// opaque reports whether values of type t decode themselves (UnmarshalJSON,
// or UnmarshalText, which encoding/json refuses objects and arrays for).
func opaque(t reflect.Type) bool {
	if t.Kind() != reflect.Pointer {
		t = reflect.PointerTo(t)
	}
	return t.Implements(jsonUnmarshalerType) || t.Implements(textUnmarshalerType)
}

// value reads the next value from w.dec, decoded into type t (nil: a value
// encoding/json skips) at path.
func (w *fieldWalker) value(t reflect.Type, path string) (string, string, bool, error) {
	for t != nil && !opaque(t) && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && opaque(t) {
		t = nil // not looked into
	}
	tok, err := w.dec.Token()
	if err != nil {
		return "", "", false, err
	}
	switch tok {
	case json.Delim('{'):
		switch {
		case t != nil && t.Kind() == reflect.Struct:
			fields := decodedFields(t)
			for w.dec.More() {
				key, err := w.key()
				if err != nil {
					return "", "", false, err
				}
				f := lookupField(fields, key)
				if f == nil {
					return joinPath(path, key), key, true, nil
				}
				if p, k, ok, err := w.value(f.typ, joinPath(path, f.name)); ok || err != nil {
					return p, k, ok, err
				}
			}
		case t != nil && t.Kind() == reflect.Map:
			for w.dec.More() {
				key, err := w.key()
				if err != nil {
					return "", "", false, err
				}
				if p, k, ok, err := w.value(t.Elem(), joinPath(path, key)); ok || err != nil {
					return p, k, ok, err
				}
			}
		default:
			if err := w.skipRest(); err != nil {
				return "", "", false, err
			}
			return "", "", false, nil
		}
	case json.Delim('['):
		if t == nil || (t.Kind() != reflect.Slice && t.Kind() != reflect.Array) {
			if err := w.skipRest(); err != nil {
				return "", "", false, err
			}
			return "", "", false, nil
		}
		for i := 0; w.dec.More(); i++ {
			elem := t.Elem()
			if t.Kind() == reflect.Array && i >= t.Len() {
				elem = nil // encoding/json drops the elements past the end
			}
			if p, k, ok, err := w.value(elem, path+"["+strconv.Itoa(i)+"]"); ok || err != nil {
				return p, k, ok, err
			}
		}
	default:
		return "", "", false, nil // a scalar
	}
	_, err = w.dec.Token() // the closing '}' or ']'
	return "", "", false, err
}

// key reads an object key.
func (w *fieldWalker) key() (string, error) {
	tok, err := w.dec.Token()
	if err != nil {
		return "", err
	}
	key, ok := tok.(string)
	if !ok {
		return "", errors.New("object key is not a string")
	}
	return key, nil
}

// skipRest reads the rest of the object or array whose opening delimiter
// was read.
func (w *fieldWalker) skipRest() error {
	for depth := 1; depth > 0; {
		tok, err := w.dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

// joinPath appends the field (or map key) name to path.
func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// decodedField is a field of a struct as encoding/json decodes it.
type decodedField struct {
	name  string
	tag   bool // name is from the json tag
	index []int
	typ   reflect.Type
}

// decodedFields returns the fields encoding/json decodes into for struct type
// t, in the order of their index sequence, with the rules of encoding/json
// (typeFields): json tags, promoted fields of embedded structs, and the
// Go rules for hidden fields except that tagged fields are promoted.
func decodedFields(t reflect.Type) []decodedField {
	var fields []decodedField
	current, next := []decodedField{}, []decodedField{{typ: t}}
	var count, nextCount map[reflect.Type]int
	visited := map[reflect.Type]bool{}
	for len(next) > 0 {
		current, next = next, current[:0]
		count, nextCount = nextCount, map[reflect.Type]int{}
		for _, f := range current {
			if visited[f.typ] {
				continue
			}
			visited[f.typ] = true
			for i := 0; i < f.typ.NumField(); i++ {
				sf := f.typ.Field(i)
				if sf.Anonymous {
					t := sf.Type
					if t.Kind() == reflect.Pointer {
						t = t.Elem()
					}
					if !sf.IsExported() && t.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, _, _ := strings.Cut(tag, ",")
				if !validTagName(name) {
					name = ""
				}
				index := append(slices.Clip(f.index), i)
				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if name != "" || !sf.Anonymous || ft.Kind() != reflect.Struct {
					tagged := name != ""
					if name == "" {
						name = sf.Name
					}
					fields = append(fields, decodedField{name: name, tag: tagged, index: index, typ: sf.Type})
					if count[f.typ] > 1 {
						// Several instances: a duplicate, which no field dominates.
						fields = append(fields, fields[len(fields)-1])
					}
					continue
				}
				nextCount[ft]++
				if nextCount[ft] == 1 {
					next = append(next, decodedField{name: ft.Name(), index: index, typ: ft})
				}
			}
		}
	}
	slices.SortFunc(fields, func(a, b decodedField) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		if c := len(a.index) - len(b.index); c != 0 {
			return c
		}
		if a.tag != b.tag {
			if a.tag {
				return -1
			}
			return 1
		}
		return slices.Compare(a.index, b.index)
	})
	out := fields[:0]
	for advance, i := 0, 0; i < len(fields); i += advance {
		for advance = 1; i+advance < len(fields) && fields[i+advance].name == fields[i].name; advance++ {
		}
		same := fields[i : i+advance]
		// The dominant field is the only one of the least depth, or the
		// only tagged one among them; with none, the name is dropped.
		if len(same) > 1 && len(same[0].index) == len(same[1].index) && same[0].tag == same[1].tag {
			continue
		}
		out = append(out, same[0])
	}
	slices.SortFunc(out, func(a, b decodedField) int { return slices.Compare(a.index, b.index) })
	return out
}

// validTagName is encoding/json's isValidTag.
func validTagName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}

// lookupField returns the field key decodes into: the field of that name,
// else the first whose name equals it under encoding/json's case folding.
func lookupField(fields []decodedField, key string) *decodedField {
	for i := range fields {
		if fields[i].name == key {
			return &fields[i]
		}
	}
	folded := foldName(key)
	for i := range fields {
		if foldName(fields[i].name) == folded {
			return &fields[i]
		}
	}
	return nil
}

// foldName is encoding/json's foldName: ASCII letters upper-cased, other
// runes mapped to the smallest rune of their fold set.
func foldName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf:
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
		default:
			for {
				r2 := unicode.SimpleFold(r)
				if r2 <= r {
					r = r2
					break
				}
				r = r2
			}
		}
		b.WriteRune(r)
	}
	return b.String()
}
