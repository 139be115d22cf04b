package client

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestSSEReader(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream string
		want   []sseMessage
		retry  time.Duration
	}{
		{"one message", "id: 1\ndata: {\"a\":1}\n\n", []sseMessage{{ID: "1", Data: `{"a":1}`}}, 0},
		{"named events and comments", ": hello\nretry: 1500\n\nevent: command\nid: cmd_1\ndata: x\n\n: keep-alive\n\n",
			[]sseMessage{{Event: "command", ID: "cmd_1", Data: "x"}}, 1500 * time.Millisecond},
		{"multi-line data", "data: a\ndata: b\ndata\n\n", []sseMessage{{Data: "a\nb\n"}}, 0},
		{"no space after the colon", "id:7\ndata:x\n\n", []sseMessage{{ID: "7", Data: "x"}}, 0},
		{"CRLF and CR line ends", "id: 1\r\ndata: a\r\n\r\nid: 2\rdata: b\r\r", []sseMessage{{ID: "1", Data: "a"}, {ID: "2", Data: "b"}}, 0},
		{"the id carries on", "id: 5\ndata: a\n\ndata: b\n\n", []sseMessage{{ID: "5", Data: "a"}, {ID: "5", Data: "b"}}, 0},
		{"an id without data sets the id only", "id: 9\n\ndata: c\n\n", []sseMessage{{ID: "9", IDOnly: true}, {ID: "9", Data: "c"}}, 0},
		{"an id with NUL is ignored", "id: 1\ndata: a\n\nid: x\x00y\ndata: b\n\n", []sseMessage{{ID: "1", Data: "a"}, {ID: "1", Data: "b"}}, 0},
		{"the event name resets after a message", "event: command\ndata: a\n\ndata: b\n\n", []sseMessage{{Event: "command", Data: "a"}, {Data: "b"}}, 0},
		{"unknown fields are ignored", "foo: bar\ndata: a\n\n", []sseMessage{{Data: "a"}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newSSEReader(strings.NewReader(tc.stream), "")
			var got []sseMessage
			for {
				m, err := r.next()
				if err != nil {
					if !errors.Is(err, io.EOF) {
						t.Fatalf("error %v", err)
					}
					break
				}
				got = append(got, m)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("message %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
			if r.retry != tc.retry {
				t.Errorf("retry = %v, want %v", r.retry, tc.retry)
			}
		})
	}
	t.Run("a message cut off is not dispatched", func(t *testing.T) {
		r := newSSEReader(strings.NewReader("data: a\n\ndata: b\n"), "")
		if m, err := r.next(); err != nil || m.Data != "a" {
			t.Fatalf("first: %+v, %v", m, err)
		}
		if _, err := r.next(); err == nil {
			t.Fatal("a message without its blank line was dispatched")
		}
		r = newSSEReader(strings.NewReader("data: a"), "")
		if _, err := r.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("a line without its end: %v", err)
		}
	})
}

func TestResultOf(t *testing.T) {
	if r := ResultOf(nil); !r.OK || r.Code != 0 || r.Message != "" {
		t.Errorf("ResultOf(nil) = %+v", r)
	}
	if r := ResultOf(errors.New("boom")); r.OK || r.Code != -1 || r.Message != "boom" {
		t.Errorf("ResultOf(plain) = %+v", r)
	}
	if r := ResultOf(codedErr{7}); r.OK || r.Code != 7 {
		t.Errorf("ResultOf(coded) = %+v", r)
	}
	if r := ResultOf(errors.New(strings.Repeat("x", 2000))); len(r.Message) != 500 {
		t.Errorf("a long message is kept at %d bytes", len(r.Message))
	}
}

type codedErr struct{ code int }

func (e codedErr) Error() string { return "coded" }
func (e codedErr) Code() int     { return e.code }

func TestDurationJSON(t *testing.T) {
	var d Duration
	if err := d.UnmarshalJSON([]byte(`"1m30s"`)); err != nil || time.Duration(d) != 90*time.Second {
		t.Fatalf("%v, %v", time.Duration(d), err)
	}
	if b, _ := d.MarshalJSON(); string(b) != `"1m30s"` {
		t.Fatalf("marshal = %s", b)
	}
	if err := d.UnmarshalJSON([]byte(`"soon"`)); err == nil {
		t.Fatal("a bad duration was accepted")
	}
}
