package ports

import (
	"fmt"
	"net"
	"testing"
)

func TestFreePortsAreDistinctBindableAndOutsideTheEphemeralRange(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p, err := Free()
		if err != nil {
			t.Fatal(err)
		}
		if p < first || p > last || seen[p] {
			t.Fatalf("port %d: want a new one in %d-%d", p, first, last)
		}
		seen[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		l.Close()
	}
}

func TestFreeSkipsAPortInUse(t *testing.T) {
	// Hold every port but one of a fresh process's range, as a crowded host would.
	mu.Lock()
	saved := given
	given = map[int]bool{}
	for p := first; p <= last; p++ {
		given[p] = true
	}
	mu.Unlock()
	defer func() { mu.Lock(); given = saved; mu.Unlock() }()

	var held, open int
	for p := first; p <= last && (held == 0 || open == 0); p++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		if held == 0 {
			held = p
			defer l.Close()
		} else {
			open = p
			l.Close()
		}
	}
	mu.Lock()
	delete(given, held)
	delete(given, open)
	mu.Unlock()
	p, err := Free()
	if err != nil || p != open {
		t.Fatalf("Free = %d, %v; want %d (%d is taken)", p, err, open, held)
	}
}
