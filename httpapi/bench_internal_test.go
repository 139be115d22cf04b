package httpapi

import (
	"net/http"
	"testing"

	"github.com/meetsync/meetsync"
)

// discardWriter is a ResponseWriter that drops the body.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkIngestResponse encodes the response to a batch of 100 events.
func BenchmarkIngestResponse(b *testing.B) {
	results := make([]meetsync.EventResult, 100)
	for i := range results {
		results[i] = meetsync.EventResult{ID: meetsync.NewID("evt"), Seq: int64(1000 + i), Stale: i%7 == 0}
	}
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		writeIngestResponse(w, results)
	}
}
