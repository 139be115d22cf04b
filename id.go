package meetsync

import (
	crand "crypto/rand"
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// crockford is the alphabet of ids: sortable, no ambiguous letters.
const crockford = "0123456789abcdefghjkmnpqrstvwxyz"

var idRand = struct {
	sync.Mutex
	r *rand.ChaCha8
}{r: newChaCha()}

func newChaCha() *rand.ChaCha8 {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		panic(err)
	}
	return rand.NewChaCha8(seed)
}

// NewID returns a new opaque id with a type prefix ("evt" → "evt_…"): 48
// bits of milliseconds then 80 random bits, 26 characters of Crockford
// base32, so ids sort roughly by creation time.
func NewID(prefix string) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	idRand.Lock()
	idRand.r.Read(b[6:])
	idRand.Unlock()
	out := make([]byte, 0, len(prefix)+27)
	out = append(out, prefix...)
	out = append(out, '_')
	// 128 bits → 26 base32 digits (the first holds 3 bits).
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	var d [26]byte
	for i := 25; i >= 0; i-- {
		d[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(append(out, d[:]...))
}

// IsID reports whether s has the form of an id NewID(prefix) makes.
func IsID(s, prefix string) bool {
	rest, ok := strings.CutPrefix(s, prefix+"_")
	if !ok || len(rest) != 26 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if strings.IndexByte(crockford, rest[i]) < 0 {
			return false
		}
	}
	return true
}
