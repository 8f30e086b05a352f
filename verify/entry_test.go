package verify

import (
	"testing"
	"time"
	"unsafe"

	"github.com/connaudit/connaudit/trail"
)

// The verifier holds one entry per record of the largest instance in the
// window: its size is verify's memory per record.
func TestEntryStaysSmall(t *testing.T) {
	if size := unsafe.Sizeof(entry{}); size > 96 {
		t.Fatalf("an entry takes %d bytes, more than 96: verify's memory per record grows by a third", size)
	}
}

func TestEntryOfAnotherEventKeepsItsName(t *testing.T) {
	var c canonicalizer
	e, err := c.entry(map[string]string{"connaudit.seq": "7", "_time": "2026-12-08T02:00:00.123456789Z", "event_name": "some.other.event"})
	if err != nil {
		t.Fatal(err)
	}
	if e.event() != "some.other.event" || !e.time().Equal(time.Date(2026, 12, 8, 2, 0, 0, 123456789, time.UTC)) {
		t.Fatalf("entry: event %q at %v", e.event(), e.time())
	}
	e, err = c.entry(map[string]string{"connaudit.seq": "8", "_time": "2026-12-08T02:00:00Z", "event_name": string(trail.EventConnect)})
	if err != nil || e.event() != string(trail.EventConnect) || e.special != noSpecial {
		t.Fatalf("connect entry: %q, %v, special shared: %v", e.event(), err, e.special == noSpecial)
	}
}
