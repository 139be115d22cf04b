package jsonscan

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestCharClasses(t *testing.T) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		space := strings.IndexByte(" \t\n\r", b) >= 0
		digit := strings.IndexByte("0123456789", b) >= 0
		hex := strings.IndexByte("0123456789abcdefABCDEF", b) >= 0
		if IsSpace(b) != space || IsDigit(b) != digit || IsHex(b) != hex {
			t.Errorf("byte %#02x: IsSpace %v IsDigit %v IsHex %v, want %v %v %v", c, IsSpace(b), IsDigit(b), IsHex(b), space, digit, hex)
		}
	}
}

// skipCase is a test of a Skip function: in is read from index i, and the
// result is want (an index, or -1).
type skipCase struct {
	in   string
	i    int
	want int
}

func runSkip(t *testing.T, name string, skip func([]byte, int) int, cases []skipCase) {
	t.Helper()
	for _, c := range cases {
		if got := skip([]byte(c.in), c.i); got != c.want {
			t.Errorf("%s(%q, %d) = %d, want %d", name, c.in, c.i, got, c.want)
		}
	}
}

func TestSkipSpace(t *testing.T) {
	runSkip(t, "SkipSpace", SkipSpace, []skipCase{
		{"", 0, 0},
		{"x", 0, 0},
		{" \t\r\nx", 0, 4},
		{"x  ", 1, 3},
		{"  ", 2, 2},
		{"\v\f x", 0, 0},   // not JSON whitespace
		{"\u00a0x", 0, 0},  // nor is NBSP
		{" \u2028 ", 0, 1}, // nor U+2028
		{"a b", 1, 2},
	})
}

func TestSkipLiteral(t *testing.T) {
	for _, c := range []struct {
		in, lit string
		i, want int
	}{
		{"null", "null", 0, 4},
		{"[true]", "true", 1, 5},
		{"false,", "false", 0, 5},
		{"nullx", "null", 0, 4}, // what follows is the caller's business
		{"nul", "null", 0, -1},
		{"nul", "null", 3, -1},
		{"", "null", 0, -1},
		{"Null", "null", 0, -1},
		{"tru e", "true", 0, -1},
		{"fals", "false", 0, -1},
		{"x null", "null", 1, -1},
	} {
		if got := SkipLiteral([]byte(c.in), c.i, c.lit); got != c.want {
			t.Errorf("SkipLiteral(%q, %d, %q) = %d, want %d", c.in, c.i, c.lit, got, c.want)
		}
	}
}

func TestSkipString(t *testing.T) {
	runSkip(t, "SkipString", SkipString, []skipCase{
		{`""`, 0, 2},
		{`"abc"`, 0, 5},
		{`x"a"y`, 1, 4},
		{`"a"b"`, 0, 3},
		{`"\"\\\/\b\f\n\r\t"`, 0, 18},
		{`"\u00e9\uD800\uABCD"`, 0, 20},
		{`"<&>"`, 0, 5},
		{"\"\xff\xfe\"", 0, 4}, // invalid UTF-8 is accepted, as encoding/json does
		{"\"\u2028\"", 0, 5},
		{"\"\x7f\"", 0, 3},
		// Malformed.
		{``, 0, -1},
		{`"`, 0, -1},
		{`"abc`, 0, -1},
		{`abc"`, 0, -1},
		{`"a"`, 3, -1},
		{"\"a\nb\"", 0, -1},
		{"\"a\x00\"", 0, -1},
		{"\"\x1f\"", 0, -1},
		{`"\x"`, 0, -1},
		{`"\'"`, 0, -1},
		{`"\U0041"`, 0, -1},
		{`"\u12"`, 0, -1},
		{`"\u12`, 0, -1},
		{`"\u12G4"`, 0, -1},
		{`"\`, 0, -1},
		{`"\"`, 0, -1},
		{`'a'`, 0, -1},
	})
}

func TestSkipNumber(t *testing.T) {
	runSkip(t, "SkipNumber", SkipNumber, []skipCase{
		{"0", 0, 1},
		{"-0", 0, 2},
		{"7", 0, 1},
		{"123", 0, 3},
		{"-123.456e+78", 0, 12},
		{"1E9", 0, 3},
		{"1e-0", 0, 4},
		{"0.5", 0, 3},
		{"[12,", 1, 3},
		// A number ends where its grammar ends: the caller judges what follows.
		{"01", 0, 1},
		{"1x", 0, 1},
		{"1.5.5", 0, 3},
		{"1e5e5", 0, 3},
		{"00", 0, 1},
		// Malformed.
		{"", 0, -1},
		{"-", 0, -1},
		{"+1", 0, -1},
		{".5", 0, -1},
		{"-.5", 0, -1},
		{"1.", 0, -1},
		{"1.e3", 0, -1},
		{"1e", 0, -1},
		{"1e+", 0, -1},
		{"1E-x", 0, -1},
		{"--1", 0, -1},
		{"x", 0, -1},
		{"NaN", 0, -1},
		{"Infinity", 0, -1},
		{"0x10", 0, 1},
		{"1", 1, -1},
	})
}

// valueCases are SkipValue and SkipValueCompact tests, with maxDepth 3.
var valueCases = []struct {
	in      string
	i       int
	want    int
	compact bool // when want >= 0
}{
	{`null`, 0, 4, true},
	{`true`, 0, 4, true},
	{`false`, 0, 5, true},
	{`-1.5e3`, 0, 6, true},
	{`"s"`, 0, 3, true},
	{`{}`, 0, 2, true},
	{`[]`, 0, 2, true},
	{`[1,"a",{"b":null}]`, 0, 18, true},
	{`{"a":[true,false]}`, 0, 18, true},
	{`x:[1] `, 2, 5, true},
	{`[1]]`, 0, 3, true},
	{`{"a":1}{`, 0, 7, true},
	{`"\u003c"`, 0, 8, true}, // already escaped
	// Not compact.
	{`[ ]`, 0, 3, false},
	{`{ }`, 0, 3, false},
	{`[1 ,2]`, 0, 6, false},
	{"[1,\n2]", 0, 6, false},
	{`{"a" :1}`, 0, 8, false},
	{`{"a": 1}`, 0, 8, false},
	{"{\"a\":1\t}", 0, 8, false},
	{`"<"`, 0, 3, false},
	{`">"`, 0, 3, false},
	{`"&"`, 0, 3, false},
	{`["a&b"]`, 0, 7, false},
	{"\"\u2028\"", 0, 5, false},
	{"\"\u2029\"", 0, 5, false},
	{"\"\u20ac\"", 0, 5, false}, // starts with 0xE2 too: compact is conservative
	{`"a b"`, 0, 5, true},       // spaces inside a string are content
	// Depth.
	{`[[[]]]`, 0, 6, true},
	{`[[[1,{}]]]`, 0, -1, false},
	{`{"a":{"b":{"c":1}}}`, 0, 19, true},
	{`{"a":{"b":{"c":{}}}}`, 0, -1, false},
	{`[[["deep"]]]`, 0, 12, true},
	// Malformed.
	{``, 0, -1, false},
	{` 1`, 0, -1, false}, // no leading whitespace is skipped
	{`1`, 1, -1, false},
	{`[`, 0, -1, false},
	{`[1`, 0, -1, false},
	{`[1,`, 0, -1, false},
	{`[1,]`, 0, -1, false},
	{`[,1]`, 0, -1, false},
	{`[1 2]`, 0, -1, false},
	{`[01]`, 0, -1, false},
	{`{`, 0, -1, false},
	{`{"a"}`, 0, -1, false},
	{`{"a":}`, 0, -1, false},
	{`{"a":1,}`, 0, -1, false},
	{`{"a" 1}`, 0, -1, false},
	{`{a:1}`, 0, -1, false},
	{`{1:1}`, 0, -1, false},
	{`{"a":1]`, 0, -1, false},
	{`[1}`, 0, -1, false},
	{`{"a\x":1}`, 0, -1, false},
	{`["\u00"]`, 0, -1, false},
	{`tru`, 0, -1, false},
	{`nul`, 0, -1, false},
	{`fals`, 0, -1, false},
	{`True`, 0, -1, false},
	{`undefined`, 0, -1, false},
	{`-`, 0, -1, false},
	{`+1`, 0, -1, false},
	{`'a'`, 0, -1, false},
	{`]`, 0, -1, false},
	{`}`, 0, -1, false},
	{`,`, 0, -1, false},
}

func TestSkipValue(t *testing.T) {
	for _, c := range valueCases {
		if got := SkipValue([]byte(c.in), c.i, 3); got != c.want {
			t.Errorf("SkipValue(%q, %d, 3) = %d, want %d", c.in, c.i, got, c.want)
		}
		end, compact := SkipValueCompact([]byte(c.in), c.i, 3)
		if end != c.want || (end >= 0 && compact != c.compact) {
			t.Errorf("SkipValueCompact(%q, %d, 3) = %d %v, want %d %v", c.in, c.i, end, compact, c.want, c.compact)
		}
	}
}

func TestSkipValueDepth(t *testing.T) {
	for depth := 0; depth <= 5; depth++ {
		arrays := strings.Repeat("[", depth) + "0" + strings.Repeat("]", depth)
		objects := strings.Repeat(`{"k":`, depth) + "0" + strings.Repeat("}", depth)
		mixed := strings.Repeat(`[{"k":`, depth) + "0" + strings.Repeat("}]", depth) // depth 2*depth
		for maxDepth := -1; maxDepth <= 11; maxDepth++ {
			for _, c := range []struct {
				in string
				d  int
			}{{arrays, depth}, {objects, depth}, {mixed, 2 * depth}} {
				want := len(c.in)
				if c.d > maxDepth && c.d > 0 {
					want = -1
				}
				if got := SkipValue([]byte(c.in), 0, maxDepth); got != want {
					t.Errorf("SkipValue(%s, 0, %d) = %d, want %d", c.in, maxDepth, got, want)
				}
			}
		}
	}
}

func TestAppendCompactHTML(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{``, ``},
		{`1`, `1`},
		{` { "a" : [ 1 , 2 ] } `, `{"a":[1,2]}`},
		{"[\n\t1,\r\n2\n]", `[1,2]`},
		{`"a b  c"`, `"a b  c"`},
		{`"<a&b>"`, `"\u003ca\u0026b\u003e"`},
		{`{"<": ">"}`, `{"\u003c":"\u003e"}`},
		{"\"\u2028\u2029\"", `"\u2028\u2029"`},
		{"\"\u20ac\"", "\"\u20ac\""},
		{`"\" <"`, `"\" \u003c"`},
		{`"\\" < 1`, `"\\"\u003c1`},
		{`"\u003c"`, `"\u003c"`},
		{`["a", "b c"]`, `["a","b c"]`},
		// Malformed: something is written, without a panic.
		{`"a\`, `"a\`},
		{"\"\xe2\x80", "\"\xe2\x80"},
		{"\xe2", "\xe2"},
		{`"unterminated <`, `"unterminated \u003c`},
		{`] x [`, `]x[`},
	} {
		if got := AppendCompactHTML(nil, []byte(c.in)); string(got) != c.want {
			t.Errorf("AppendCompactHTML(%q) = %q, want %q", c.in, got, c.want)
		}
		if got := AppendCompactHTML([]byte("pre:"), []byte(c.in)); string(got) != "pre:"+c.want {
			t.Errorf("AppendCompactHTML(pre:, %q) = %q", c.in, got)
		}
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{
		"", "a", "evt_123", "hello world", "~!@#$%^*()_+=-`[]{}|;:',./?", "\x7f",
		`"`, `\`, "<", ">", "&", "\n", "\t", "\x00", "\x1f", "\b\f",
		"é", "\u2028", "\u2029", "\u20ac", "\xff", "a\xe2\x80", "\U0001F600",
	} {
		want, _ := json.Marshal(s)
		if got := AppendString(nil, s); string(got) != string(want) {
			t.Errorf("AppendString(%q) = %s, want %s", s, got, want)
		}
		if got := AppendString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Errorf("AppendString(x, %q) = %s", s, got)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	v := []byte(` {"a": [1, -2.5e3, true, false, null, "x<\u00e9\"\u2028"], "b": {}} `)
	dst := make([]byte, 0, 256)
	n := testing.AllocsPerRun(100, func() {
		i := SkipSpace(v, 0)
		end := SkipValue(v, i, 10)
		_, _ = SkipValueCompact(v, i, 10)
		_ = SkipString([]byte(`"abc"`), 0)
		_ = SkipNumber([]byte(`-1.5e3`), 0)
		_ = SkipLiteral(v, 0, "null")
		dst = AppendCompactHTML(dst[:0], v[i:end])
		dst = AppendString(dst[:0], "evt_1")
	})
	if n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
}

// FuzzSkipValue checks the scanner against encoding/json: it accepts what
// json.Valid accepts, and AppendCompactHTML writes what json.Marshal writes
// for a json.RawMessage.
func FuzzSkipValue(f *testing.F) {
	for _, c := range valueCases {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		i := SkipSpace(b, 0)
		end := SkipValue(b, i, 10000) // encoding/json's own limit
		ok := end >= 0 && SkipSpace(b, end) == len(b)
		if ok != json.Valid(b) {
			t.Fatalf("SkipValue(%q) = %d, json.Valid says %v", b, end, json.Valid(b))
		}
		end2, compact := SkipValueCompact(b, i, 10000)
		if end2 != end {
			t.Fatalf("SkipValueCompact(%q) = %d, SkipValue %d", b, end2, end)
		}
		if !ok {
			return
		}
		v := b[i:end]
		got := AppendCompactHTML(nil, v)
		want, err := json.Marshal(json.RawMessage(v))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("AppendCompactHTML(%q) = %q, json.Marshal gives %q %v", v, got, want, err)
		}
		if compact && !bytes.Equal(got, v) {
			t.Fatalf("%q is called compact but is written %q", v, got)
		}
	})
}

func FuzzAppendString(f *testing.F) {
	f.Add("evt_1")
	f.Add("a<\u2028\xff\"\\\n")
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("AppendString(%q) = %s, want %s", s, got, want)
		}
	})
}
