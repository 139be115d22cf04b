package httpapi

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/meetsync/meetsync"
)

type pathLeaf struct {
	Kind string `json:"kind"`
}

type pathMiddle struct {
	Name  string              `json:"name"`
	Inner *pathLeaf           `json:"inner"`
	Items []pathLeaf          `json:"items"`
	Grid  [][]pathLeaf        `json:"grid"`
	Pair  [1]pathLeaf         `json:"pair"`
	ByKey map[string]pathLeaf `json:"by_key"`
	Raw   json.RawMessage     `json:"raw"`
	Any   any                 `json:"any"`
	Dur   meetsync.Duration   `json:"dur"`
}

type PathEmbedded struct {
	E *pathLeaf `json:"e"`
}

type pathBody struct {
	PathEmbedded
	Outer pathMiddle   `json:"outer"`
	List  []pathMiddle `json:"list"`
	Plain struct {
		Inner pathLeaf
	}
}

// TestUnknownFieldPath: an unknown field is named by its whole path from
// the top of the body, at any depth and inside array elements, as the
// field of the invalid error and in its message.
func TestUnknownFieldPath(t *testing.T) {
	for _, tc := range []struct {
		name, body, prefix, field, msg string
	}{
		{"top level", `{"bogus":1}`, "", "bogus", "unknown field bogus"},
		{"one level nested", `{"outer":{"name":"n","bogus":1}}`, "", "outer.bogus", "unknown field outer.bogus"},
		{"two levels nested", `{"outer":{"inner":{"kind":"k","bogus":{"x":1}}}}`, "", "outer.inner.bogus", "unknown field outer.inner.bogus"},
		{"inside an array element", `{"list":[{"name":"a"},{"name":"b","bogus":1}]}`, "", "list[1].bogus", "unknown field list[1].bogus"},
		{"array element inside nested", `{"outer":{"items":[{"kind":"a"},{"kind":"b"},{"bogus":1}]}}`, "", "outer.items[2].bogus", "unknown field outer.items[2].bogus"},
		{"array of arrays", `{"outer":{"grid":[[{}],[{},{"bogus":1}]]}}`, "", "outer.grid[1][1].bogus", "unknown field outer.grid[1][1].bogus"},
		{"array element deep in an array element", `{"list":[{},{"inner":{},"items":[{"bogus":1}]}]}`, "", "list[1].items[0].bogus", "unknown field list[1].items[0].bogus"},
		{"fixed-size array", `{"outer":{"pair":[{"bogus":1}]}}`, "", "outer.pair[0].bogus", "unknown field outer.pair[0].bogus"},
		{"past a fixed-size array's end", `{"outer":{"pair":[{},{"bogus":1}]},"late":1}`, "", "late", "unknown field late"},
		{"map entry", `{"outer":{"by_key":{"k1":{},"k2":{"bogus":1}}}}`, "", "outer.by_key.k2.bogus", "unknown field outer.by_key.k2.bogus"},
		{"parent matched case-insensitively", `{"OUTER":{"Inner":{"bogus":1}}}`, "", "outer.inner.bogus", "unknown field outer.inner.bogus"},
		{"promoted field of an embedded struct", `{"e":{"bogus":1}}`, "", "e.bogus", "unknown field e.bogus"},
		{"untagged field", `{"Plain":{"inner":{"bogus":1}}}`, "", "Plain.Inner.bogus", "unknown field Plain.Inner.bogus"},
		{"first in document order", `{"outer":{"inner":{"kind":"x"},"zz":1},"aa":2}`, "", "outer.zz", "unknown field outer.zz"},
		{"raw, any and self-decoding values are not looked into", `{"outer":{"raw":{"bogus":1},"any":{"bogus":1},"dur":"1s"},"after":1}`, "", "after", "unknown field after"},
		{"key that needs quoting", `{"outer":{"a b":1}}`, "", "outer.a b", `unknown field "outer.a b"`},
		{"escaped key", `{"outer":{"\u00e9\n":1}}`, "", "outer.é\n", `unknown field "outer.é\n"`},
		{"under a prefix", `{"outer":{"bogus":1}}`, "events[2]", "events[2].outer.bogus", "unknown field events[2].outer.bogus"},
		{"top level under a prefix", `{"bogus":1}`, "events[2]", "events[2].bogus", "unknown field events[2].bogus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v pathBody
			err := strictUnmarshal([]byte(tc.body), &v)
			if err == nil {
				t.Fatalf("%s decoded", tc.body)
			}
			var me *meetsync.Error
			if !errors.As(jsonError(err, tc.prefix), &me) {
				t.Fatalf("jsonError(%v) is not a meetsync error", err)
			}
			if me.Code != meetsync.EINVALID || me.Field != tc.field || me.Message != tc.msg {
				t.Errorf("%s: code %q field %q message %q, want invalid %q %q", tc.body, me.Code, me.Field, me.Message, tc.field, tc.msg)
			}
		})
	}
}

// An array at the top of the body names its elements by index alone.
func TestUnknownFieldPathTopLevelArray(t *testing.T) {
	var v []pathLeaf
	err := strictUnmarshal([]byte(`[{"kind":"a"},{"bogus":1}]`), &v)
	var me *meetsync.Error
	if !errors.As(jsonError(err, ""), &me) || me.Field != "[1].bogus" {
		t.Errorf("got %v, want field [1].bogus", err)
	}
	if errors.As(jsonError(err, "x"), &me); me.Field != "x[1].bogus" {
		t.Errorf("under prefix x: field %q, want x[1].bogus", me.Field)
	}
}

// The ingest body names an unknown field like its other fields: as sent
// in the single-event form, under events[i] in a batch, whichever parser
// reads it.
func TestUnknownFieldPathIngest(t *testing.T) {
	for body, field := range map[string]string{
		`{"type":"crm.a","user_id":"u","bogus":{"x":1}}`:                     "bogus",
		`{"type":"crm.a","user_id":"u","data":{"x":1},"Bogus":1}`:            "Bogus",
		`{"events":[{"type":"crm.a","user_id":"u"},{"type":"crm.a","x":1}]}`: "events[1].x",
		`{"events":[{"type":"crm.a","user_id":"u"}],"bogus":1}`:              "bogus",
	} {
		for name, parse := range map[string]func([]byte) ([]*meetsync.EventInput, bool, error){
			"ParseIngestBody": ParseIngestBody, "parseIngestBodyJSON": parseIngestBodyJSON, "parseIngestBodyEach": parseIngestBodyEach,
		} {
			_, _, err := parse([]byte(body))
			var me *meetsync.Error
			if !errors.As(err, &me) || me.Field != field || me.Message != "unknown field "+field {
				t.Errorf("%s(%s) = %v, want field %q", name, body, err, field)
			}
		}
	}
}

// decodedFields picks the fields encoding/json decodes into: a key
// encoding/json accepts is known, one it refuses is not.
func TestDecodedFieldsAgree(t *testing.T) {
	type Inner struct {
		A int `json:"a"`
		B int
	}
	type Other struct {
		A int `json:"a"`
		C int `json:"c"`
	}
	type Tagged struct {
		B int `json:"B"`
	}
	type withEmbeds struct {
		Inner
		*Other
		Tagged
		D int `json:"-"`
		F int `json:"f,omitempty"`
		g int
	}
	_ = withEmbeds{}.g
	typ := reflect.TypeFor[withEmbeds]()
	fields := decodedFields(typ)
	for _, key := range []string{"a", "A", "B", "b", "c", "C", "D", "-", "f", "F", "g", "Inner", "Other", "Tagged", "x", "ſ", "K"} {
		err := strictUnmarshal([]byte(`{"`+key+`":1}`), new(withEmbeds))
		var uf *unknownFieldError
		refused := errors.As(err, &uf)
		if err != nil && !refused {
			t.Errorf("key %q: %v", key, err)
			continue
		}
		if got := lookupField(fields, key) == nil; got != refused {
			t.Errorf("key %q: lookupField says unknown=%v, encoding/json unknown=%v (%v)", key, got, refused, err)
		}
	}
}
