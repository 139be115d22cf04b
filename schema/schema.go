package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/meetsync/meetsync"
)

// printer renders the library's messages (in English).
var printer = message.NewPrinter(language.English)

// resourceURL is the address a schema is compiled under: references
// inside it resolve against it (or against its own $id).
const resourceURL = "https://meetsync.invalid/event-type.json"

// noLoader refuses every schema outside the one compiled: a schema cannot
// make meetsync read a file or fetch a URL. The metaschemas of the drafts
// are built into the library and need no loader.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, errors.New("references outside the schema are not supported; put the definitions in $defs")
}

// decode reads JSON keeping numbers as written.
func decode(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("invalid character after top-level value")
	}
	return v, nil
}

// Canonical returns the canonical form of a schema as the API stores and
// compares it (compact, object keys sorted, numbers as written, no HTML
// escaping) with the value it decodes to. Errors are EINVALID on field "schema".
func Canonical(raw json.RawMessage) (json.RawMessage, any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil, meetsync.FieldErrorf("schema", "schema is required: a JSON Schema (draft 2020-12) object, e.g. {\"type\":\"object\"}")
	}
	doc, err := decode(raw)
	if err != nil {
		return nil, nil, meetsync.FieldErrorf("schema", "schema is not valid JSON: %v", err)
	}
	switch doc.(type) {
	case map[string]any, bool:
	default:
		return nil, nil, meetsync.FieldErrorf("schema", "schema must be a JSON object (or true or false)")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, nil, meetsync.FieldErrorf("schema", "schema cannot be encoded: %v", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), doc, nil
}

// compile compiles a decoded schema. Without $schema it is read as draft
// 2020-12; format is asserted (a "format":"email" rejects what is not an
// email address); references must stay inside the schema. Errors are
// EINVALID on field "schema" with the compiler's explanation.
func compile(doc any) (*jsonschema.Schema, error) {
	if err := checkDraft(doc); err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(noLoader{})
	if err := c.AddResource(resourceURL, doc); err != nil {
		return nil, meetsync.FieldErrorf("schema", "invalid schema: %s", compileMessage(err))
	}
	sch, err := c.Compile(resourceURL)
	if err != nil {
		return nil, meetsync.FieldErrorf("schema", "invalid schema: %s", compileMessage(err))
	}
	return sch, nil
}

// compileMessage words a compile error: the metaschema violation (where in
// the schema and what is wrong) or the library's own message.
func compileMessage(err error) string {
	var se *jsonschema.SchemaValidationError
	if errors.As(err, &se) {
		var ve *jsonschema.ValidationError
		if errors.As(se.Err, &ve) {
			leaf := leafError(ve)
			return fmt.Sprintf("at %s: %s (the schema does not conform to its draft's metaschema)",
				pointer(leaf.InstanceLocation), leaf.ErrorKind.LocalizedString(printer))
		}
	}
	msg := err.Error()
	msg = strings.ReplaceAll(msg, resourceURL, "")
	return strings.TrimPrefix(msg, "jsonschema: ")
}

// leafError follows the first cause down to an error with none: the most
// specific reason (e.g. "minimum" rather than "validation failed").
func leafError(ve *jsonschema.ValidationError) *jsonschema.ValidationError {
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	return ve
}

// pointer renders instance location tokens as a JSON pointer ("/" for the root).
func pointer(tokens []string) string {
	if len(tokens) == 0 {
		return "/"
	}
	var sb strings.Builder
	for _, t := range tokens {
		sb.WriteByte('/')
		t = strings.ReplaceAll(t, "~", "~0")
		sb.WriteString(strings.ReplaceAll(t, "/", "~1"))
	}
	return sb.String()
}

// violation turns a validation error of the data of an event into an
// EINVALID *Error: field is the path of the failing value under
// prefix.data (events[2].data.items[0].sku), the message names the type,
// its schema version, the failing rule and the schema keyword.
func violation(err error, doc any, typ string, version int, prefix string) error {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return meetsync.FieldErrorf(dataField(prefix), "data does not match the schema of %s (version %d): %v", typ, version, err)
	}
	leaf := leafError(ve)
	msg := ruleMessage(leaf)
	tokens := leaf.InstanceLocation
	if alt := alternatives(ve); alt != nil {
		// No alternative matched: point at the value they are about, and
		// give the first alternative's reason as an example.
		msg = fmt.Sprintf("%s: no alternative matched (the first fails at %s with %s)",
			strings.Join(alt.ErrorKind.KeywordPath(), "/"), pointer(leaf.InstanceLocation), msg)
		tokens = alt.InstanceLocation
		return meetsync.FieldErrorf(fieldPath(dataField(prefix), doc, tokens),
			"data does not match the schema of %s (version %d): %s", typ, version, msg)
	}
	// Point at the property at fault, not at the object holding it.
	switch k := leaf.ErrorKind.(type) {
	case *kind.Required:
		if len(k.Missing) > 0 {
			tokens = append(tokens[:len(tokens):len(tokens)], k.Missing[0])
		}
	case *kind.DependentRequired:
		if len(k.Missing) > 0 {
			tokens = append(tokens[:len(tokens):len(tokens)], k.Missing[0])
		}
	case *kind.Dependency:
		if len(k.Missing) > 0 {
			tokens = append(tokens[:len(tokens):len(tokens)], k.Missing[0])
		}
	case *kind.AdditionalProperties:
		if len(k.Properties) > 0 {
			tokens = append(tokens[:len(tokens):len(tokens)], k.Properties[0])
		}
	}
	return meetsync.FieldErrorf(fieldPath(dataField(prefix), doc, tokens),
		"data does not match the schema of %s (version %d): %s", typ, version, msg)
}

// ruleMessage is the library's message for an error, led by the schema
// keyword that failed ("minimum: got -5, want 0").
func ruleMessage(ve *jsonschema.ValidationError) string {
	rule := strings.Join(ve.ErrorKind.KeywordPath(), "/")
	msg := ve.ErrorKind.LocalizedString(printer)
	if rule != "" && !strings.HasPrefix(msg, rule) {
		msg = rule + ": " + msg
	}
	return msg
}

// alternatives returns the first anyOf or oneOf on the path to the leaf
// error that failed because no alternative matched, or nil.
func alternatives(ve *jsonschema.ValidationError) *jsonschema.ValidationError {
	for ; len(ve.Causes) > 0; ve = ve.Causes[0] {
		switch k := ve.ErrorKind.(type) {
		case *kind.AnyOf:
			return ve
		case *kind.OneOf:
			if len(k.Subschemas) == 0 {
				return ve
			}
		}
	}
	return nil
}

func dataField(prefix string) string {
	if prefix == "" {
		return "data"
	}
	return prefix + ".data"
}

// fieldPath appends instance location tokens to field in the API's field
// notation: .name for plain object keys, [i] for array items, ["key"] for
// any other key.
func fieldPath(field string, doc any, tokens []string) string {
	var sb strings.Builder
	sb.WriteString(field)
	v := doc
	for _, t := range tokens {
		switch x := v.(type) {
		case []any:
			sb.WriteByte('[')
			sb.WriteString(t)
			sb.WriteByte(']')
			if i, err := strconv.Atoi(t); err == nil && i >= 0 && i < len(x) {
				v = x[i]
			} else {
				v = nil
			}
			continue
		case map[string]any:
			v = x[t]
		default:
			v = nil
		}
		if plainKey(t) {
			sb.WriteByte('.')
			sb.WriteString(t)
		} else {
			b, _ := json.Marshal(t)
			sb.WriteByte('[')
			sb.Write(b)
			sb.WriteByte(']')
		}
	}
	return sb.String()
}

// plainKey reports whether an object key can be written after a dot.
func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// drafts are the metaschemas a schema may name in $schema (without the
// scheme and a trailing "#").
var drafts = map[string]bool{
	"json-schema.org/draft-04/schema":      true,
	"json-schema.org/draft-06/schema":      true,
	"json-schema.org/draft-07/schema":      true,
	"json-schema.org/draft/2019-09/schema": true,
	"json-schema.org/draft/2020-12/schema": true,
}

// checkDraft refuses a $schema that names no draft the library has built
// in (the library would try to load it, and the loader refuses every URL).
func checkDraft(doc any) error {
	m, ok := doc.(map[string]any)
	if !ok {
		return nil
	}
	v, ok := m["$schema"]
	if !ok {
		return nil
	}
	u, ok := v.(string)
	if !ok {
		return meetsync.FieldErrorf("schema", "$schema must be a string: the URL of a JSON Schema draft")
	}
	key := strings.TrimSuffix(u, "#")
	key = strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	if !drafts[key] {
		return meetsync.FieldErrorf("schema", "$schema %q is not a JSON Schema draft meetsync supports: "+
			"draft-04, draft-06, draft-07, 2019-09 or 2020-12 (https://json-schema.org/draft/2020-12/schema), or leave it out for 2020-12", u)
	}
	return nil
}
