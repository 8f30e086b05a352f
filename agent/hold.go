package agent

import (
	"time"

	"github.com/connaudit/connaudit/bpf"
)

// holdQueue keeps, in arrival order, events whose pod the cache does not know
// yet. It is bounded: an event that finds it full is shipped at once.
type holdQueue struct {
	events []heldEvent
	max    int
}

type heldEvent struct {
	ev       bpf.Event
	observed time.Time
	deadline time.Time
}

func (q *holdQueue) len() int { return len(q.events) }

// push holds a copy of ev; false when the queue is full.
func (q *holdQueue) push(ev *bpf.Event, observed, deadline time.Time) bool {
	if len(q.events) >= q.max {
		return false
	}
	q.events = append(q.events, heldEvent{ev: *ev, observed: observed, deadline: deadline})
	return true
}

// drain calls ship for each held event and keeps those it returns false for.
func (q *holdQueue) drain(ship func(*heldEvent) bool) {
	kept := q.events[:0]
	for i := range q.events {
		if !ship(&q.events[i]) {
			kept = append(kept, q.events[i])
		}
	}
	clear(q.events[len(kept):])
	q.events = kept
}
