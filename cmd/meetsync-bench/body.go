package main

import (
	"strconv"
)

// eventGen writes the events of one client: its own device id and an
// increasing client_seq. The users [0, users) are partitioned among the
// clients (client c sends for users c, c+clients, c+2·clients, …), so every
// user has one device, as a real user mostly does, and the events of all
// clients together cover every user. Bodies are appended into a reused
// buffer so the client allocates little.
type eventGen struct {
	first, stride, owned int
	device               string
	seq                  int64
	scratch              []byte
}

func newEventGen(client, clients, users int) *eventGen {
	g := &eventGen{first: client % users, stride: clients, owned: 1, device: "bench-device-" + strconv.Itoa(client)}
	if client < users {
		g.owned = (users - client + clients - 1) / clients
	}
	return g
}

// appendEvent appends one meeting.status_changed event as JSON to b.
func (g *eventGen) appendEvent(b []byte) []byte {
	g.seq++
	return appendStatusEvent(b, g.user(g.seq), g.device, g.seq)
}

// appendStatusEvent appends the meeting.status_changed event of user's
// device with client_seq seq: in_meeting at odd seqs, idle at even ones.
func appendStatusEvent(b []byte, user int, device string, seq int64) []byte {
	status := "in_meeting"
	if seq%2 == 0 {
		status = "idle"
	}
	b = append(b, `{"type":"meeting.status_changed","user_id":"user-`...)
	b = strconv.AppendInt(b, int64(user), 10)
	b = append(b, `","device_id":"`...)
	b = append(b, device...)
	b = append(b, `","client_seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"data":{"status":"`...)
	b = append(b, status...)
	b = append(b, `","arg":0,"meeting_num":"81234567890"}}`...)
	return b
}

// user returns the user of the event with client_seq seq.
func (g *eventGen) user(seq int64) int {
	return g.first + int((seq-1)%int64(g.owned))*g.stride
}

// single returns a body holding one event. The slice is fresh: the HTTP
// transport may still hold the previous one.
func (g *eventGen) single() []byte {
	g.scratch = g.appendEvent(g.scratch[:0])
	return append(make([]byte, 0, len(g.scratch)), g.scratch...)
}

// batch returns a body {"events":[…]} holding n events.
func (g *eventGen) batch(n int) []byte {
	b := append(g.scratch[:0], `{"events":[`...)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = g.appendEvent(b)
	}
	b = append(b, "]}"...)
	g.scratch = b
	return append(make([]byte, 0, len(b)), b...)
}
