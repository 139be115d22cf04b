package sqlite

import (
	"reflect"
	"testing"
)

// TestChunkRoundTrip: a chunk gives back the positions, seqs, client_seqs
// and devices it was made of, whatever the gaps between them.
func TestChunkRoundTrip(t *testing.T) {
	events := []pendingEvent{
		{pos: 7, seq: 1, clientSeq: 0, deviceID: ""},
		{pos: 9, seq: 2, clientSeq: 17, deviceID: "laptop"},
		{pos: 1 << 40, seq: 3, clientSeq: 1 << 50, deviceID: "phone,;\x00?"},
		{pos: 1<<40 + 1, seq: 4, clientSeq: 16, deviceID: "laptop"},
		{pos: 1<<40 + 9, seq: 9, clientSeq: 18, deviceID: ""},
	}
	first, b := encodeChunk(events)
	if first != 7 {
		t.Fatalf("first position %d, want 7", first)
	}
	got, err := decodeChunk(first, b)
	if err != nil {
		t.Fatal(err)
	}
	var want []chunkEntry
	for _, e := range events {
		want = append(want, chunkEntry{pos: e.pos, seq: e.seq, clientSeq: e.clientSeq, deviceID: e.deviceID})
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded %+v\nwant %+v", got, want)
	}
	if _, err := decodeChunk(first, b[:len(b)-1]); err == nil {
		t.Error("a chunk cut short decoded without an error")
	}
}

// FuzzDecodeChunk: a damaged chunk is an error, never a panic.
func FuzzDecodeChunk(f *testing.F) {
	_, b := encodeChunk([]pendingEvent{{pos: 3, seq: 1, clientSeq: 5, deviceID: "d"}, {pos: 8, seq: 2, clientSeq: 6, deviceID: "d"}})
	f.Add(int64(3), b)
	f.Add(int64(0), []byte{0, 0, 0, 2})
	f.Fuzz(func(t *testing.T, first int64, b []byte) {
		es, err := decodeChunk(first, b)
		if err == nil {
			for _, e := range es {
				_ = e.deviceID
			}
		}
	})
}
