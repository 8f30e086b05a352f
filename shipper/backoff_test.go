package shipper

import (
	"testing"
	"time"
)

// Every wait lies within the randomization factor of the nominal backoff,
// never above the maximum, and the nominal backoff doubles up to it.
func TestBackoffJitterStaysWithinItsBounds(t *testing.T) {
	for _, r := range []float64{0, 0.25, 0.5, 0.999999} {
		b := newBackoff(100*time.Millisecond, 2*time.Second)
		b.rand = func() float64 { return r }
		nominal := 100 * time.Millisecond
		for i := 0; i < 8; i++ {
			got := b.next()
			lo := time.Duration(float64(nominal) * (1 - backoffJitter))
			hi := min(time.Duration(float64(nominal)*(1+backoffJitter)), 2*time.Second)
			if got < lo || got > hi {
				t.Fatalf("r=%v try %d: waited %v, want within [%v, %v]", r, i, got, lo, hi)
			}
			nominal = min(nominal*2, 2*time.Second)
		}
	}
}

// Two agents that fail at the same instant do not retry at the same instant.
func TestBackoffSpreadsRetries(t *testing.T) {
	seen := map[time.Duration]bool{}
	for i := 0; i < 50; i++ {
		b := newBackoff(time.Second, time.Minute)
		seen[b.next()] = true
	}
	if len(seen) < 40 {
		t.Fatalf("50 agents drew only %d distinct first waits", len(seen))
	}
}

func TestBackoffResetStartsOver(t *testing.T) {
	b := newBackoff(100*time.Millisecond, time.Second)
	b.rand = func() float64 { return 0.5 } // no jitter
	b.next()
	b.next()
	b.reset()
	if got := b.next(); got != 100*time.Millisecond {
		t.Fatalf("after reset waited %v, want 100ms", got)
	}
}
