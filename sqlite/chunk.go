package sqlite

import (
	"encoding/binary"
	"errors"
)

// A user chunk is one row of user_chunks: a run of a user's events, in
// position order, written at once by the materializer (one row per user
// and round instead of one index entry per event). Its entries are
// packed: for each event, as unsigned varints, its position less the
// previous one's (the first: less first_pos), its seq less the previous
// one's (the first: the seq itself), its client_seq, and its device: 0
// followed by the length and bytes of a device id not seen before in the
// chunk, or the 1-based number of one seen before.

// chunkEntry is one event of a user chunk.
type chunkEntry struct {
	pos, seq, clientSeq int64
	deviceID            string
}

// maxChunkEntries is the most events one chunk holds.
const maxChunkEntries = 256

var errBadChunk = errors.New("sqlite: a user_chunks row is malformed")

// encodeChunk packs events (in position order, at most maxChunkEntries)
// and returns the chunk's first position and its entries.
func encodeChunk(events []pendingEvent) (int64, []byte) {
	first := events[0].pos
	b := make([]byte, 0, 8*len(events)+16)
	prevPos, prevSeq := first, int64(0)
	var devices []string
	for _, e := range events {
		b = binary.AppendUvarint(b, uint64(e.pos-prevPos))
		b = binary.AppendUvarint(b, uint64(e.seq-prevSeq))
		b = binary.AppendUvarint(b, uint64(e.clientSeq))
		prevPos, prevSeq = e.pos, e.seq
		n := 0
		for i, d := range devices {
			if d == e.deviceID {
				n = i + 1
				break
			}
		}
		b = binary.AppendUvarint(b, uint64(n))
		if n == 0 {
			devices = append(devices, e.deviceID)
			b = binary.AppendUvarint(b, uint64(len(e.deviceID)))
			b = append(b, e.deviceID...)
		}
	}
	return first, b
}

// decodeChunk unpacks a chunk's entries.
func decodeChunk(first int64, b []byte) ([]chunkEntry, error) {
	var out []chunkEntry
	var devices []string
	pos, seq := first, int64(0)
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	for len(b) > 0 {
		dp, ok1 := next()
		ds, ok2 := next()
		cs, ok3 := next()
		dev, ok4 := next()
		if !ok1 || !ok2 || !ok3 || !ok4 {
			return nil, errBadChunk
		}
		pos, seq = pos+int64(dp), seq+int64(ds)
		e := chunkEntry{pos: pos, seq: seq, clientSeq: int64(cs)}
		switch {
		case dev == 0:
			l, ok := next()
			if !ok || l > uint64(len(b)) {
				return nil, errBadChunk
			}
			e.deviceID = string(b[:l])
			b = b[l:]
			devices = append(devices, e.deviceID)
		case dev <= uint64(len(devices)):
			e.deviceID = devices[dev-1]
		default:
			return nil, errBadChunk
		}
		out = append(out, e)
	}
	return out, nil
}
