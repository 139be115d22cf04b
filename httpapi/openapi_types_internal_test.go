package httpapi

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/session"
)

// TestOpenAPIGoTypes: every JSON field of the Go types the handlers answer
// with is declared by its schema in openapi.json with a matching type, and
// a field that can be null (a pointer without omitempty) may be null there.
// It sees fields no test answer happens to carry (those of custom event
// types, a login without meeting credentials…).
func TestOpenAPIGoTypes(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	c := typeChecker{schemas: doc.Components.Schemas}
	for _, tc := range []struct {
		schema string
		v      any
	}{
		{"App", appJSON{}},
		{"Key", keyJSON{}},
		{"EventType", eventTypeJSON{}},
		{"Endpoint", endpointJSON{}},
		{"Delivery", meetsync.Delivery{}},
		{"Attempt", meetsync.Attempt{}},
		{"User", userJSON{}},
		{"Session", sessionJSON{}},
		{"Meeting", meetingJSON{}},
		{"LoginResult", session.LoginResult{}},
		{"LogoutResult", session.LogoutResult{}},
		{"MeetingAccount", meetsync.MeetingAccount{}},
		{"Command", meetsync.Command{}},
		{"Invitation", meetsync.Invitation{}},
	} {
		s, ok := c.schemas[tc.schema]
		if !ok {
			t.Errorf("openapi.json has no schema %s", tc.schema)
			continue
		}
		for _, p := range c.walk(reflect.TypeOf(tc.v), s, tc.schema) {
			t.Error(p)
		}
	}
	// The checker finds what it is meant to find.
	type probe struct {
		ID    string     `json:"id"`
		Extra int        `json:"extra"`
		At    *time.Time `json:"at"`
		N     string     `json:"n"`
	}
	bad := c.walk(reflect.TypeOf(probe{}), map[string]any{"type": "object", "properties": map[string]any{
		"id": map[string]any{"type": "string"}, "at": map[string]any{"type": "string"}, "n": map[string]any{"type": "integer"},
	}}, "probe")
	if len(bad) != 3 {
		t.Errorf("the checker found %q in a probe with 3 faults", bad)
	}
}

type typeChecker struct {
	schemas map[string]map[string]any
}

var marshalerType = reflect.TypeFor[json.Marshaler]()

// resolve follows $ref, and takes the one schema of a oneOf/anyOf that is
// not {"type":"null"}.
func (c *typeChecker) resolve(s map[string]any) map[string]any {
	for range 8 {
		if ref, ok := s["$ref"].(string); ok {
			s = c.schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
			continue
		}
		var alts []any
		for _, k := range []string{"oneOf", "anyOf"} {
			if a, ok := s[k].([]any); ok {
				alts = a
			}
		}
		var nonNull []map[string]any
		for _, a := range alts {
			if m, ok := a.(map[string]any); ok && m["type"] != "null" {
				nonNull = append(nonNull, m)
			}
		}
		if len(nonNull) != 1 {
			return s
		}
		s = nonNull[0]
	}
	return s
}

// allowsNull reports whether s accepts null.
func (c *typeChecker) allowsNull(s map[string]any) bool {
	if ref, ok := s["$ref"].(string); ok {
		return c.allowsNull(c.schemas[strings.TrimPrefix(ref, "#/components/schemas/")])
	}
	if hasType(s, "null") {
		return true
	}
	for _, k := range []string{"oneOf", "anyOf"} {
		alts, _ := s[k].([]any)
		for _, a := range alts {
			if m, ok := a.(map[string]any); ok && c.allowsNull(m) {
				return true
			}
		}
	}
	return false
}

func hasType(s map[string]any, want string) bool {
	switch t := s["type"].(type) {
	case string:
		return t == want
	case []any:
		for _, x := range t {
			if x == want {
				return true
			}
		}
	}
	return false
}

// walk compares the JSON encoding of t with schema s and returns the faults.
func (c *typeChecker) walk(t reflect.Type, s map[string]any, at string) []string {
	s = c.resolve(s)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	want := func(typ string) []string {
		if hasType(s, typ) {
			return nil
		}
		return []string{at + ": the server sends " + typ + ", openapi.json says " + jsonString(s["type"])}
	}
	switch {
	case t == reflect.TypeFor[time.Time](), t == reflect.TypeFor[meetsync.Duration]():
		return want("string")
	case t == reflect.TypeFor[json.RawMessage]():
		return nil // any JSON the server holds (data, schemas)
	case t.Implements(marshalerType) || reflect.PointerTo(t).Implements(marshalerType):
		return []string{at + ": " + t.String() + " has its own MarshalJSON; teach TestOpenAPIGoTypes its form"}
	}
	switch t.Kind() {
	case reflect.String:
		return want("string")
	case reflect.Bool:
		return want("boolean")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return want("integer")
	case reflect.Float32, reflect.Float64:
		return want("number")
	case reflect.Map:
		return want("object")
	case reflect.Slice, reflect.Array:
		if bad := want("array"); bad != nil {
			return bad
		}
		items, _ := s["items"].(map[string]any)
		return c.walk(t.Elem(), items, at+"[]")
	case reflect.Struct:
		if bad := want("object"); bad != nil {
			return bad
		}
		props, _ := s["properties"].(map[string]any)
		if len(props) == 0 {
			return []string{at + ": openapi.json declares no properties for " + t.String()}
		}
		var bad []string
		for _, f := range jsonFields(t) {
			ps, ok := props[f.name].(map[string]any)
			if !ok {
				bad = append(bad, at+"."+f.name+": sent by the server, not declared in openapi.json")
				continue
			}
			if f.nullable && !c.allowsNull(ps) {
				bad = append(bad, at+"."+f.name+": the server can send null, openapi.json does not allow it")
			}
			bad = append(bad, c.walk(f.typ, ps, at+"."+f.name)...)
		}
		return bad
	}
	return []string{at + ": cannot check a " + t.Kind().String()}
}

type jsonField struct {
	name     string
	typ      reflect.Type
	nullable bool // a nil value is sent as null
}

// jsonFields lists the fields encoding/json writes for struct type t
// (embedded structs without a tag flattened).
func jsonFields(t reflect.Type) []jsonField {
	var out []jsonField
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				out = append(out, jsonFields(ft)...)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		omit := strings.Contains(","+opts+",", ",omitempty,") || strings.Contains(","+opts+",", ",omitzero,")
		out = append(out, jsonField{name: name, typ: f.Type, nullable: !omit && (f.Type.Kind() == reflect.Pointer || f.Type.Kind() == reflect.Map)})
	}
	return out
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
