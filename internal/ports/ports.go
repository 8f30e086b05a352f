// Package ports picks TCP ports on 127.0.0.1 for the test components.
//
// A port the kernel hands out for ":0" lies in the ephemeral range, where
// any outgoing connection may take it as its source port: a component
// restarted on its old port (a collector or API server brought back in a
// fault test) then fails with "address already in use". These ports lie
// below the ephemeral range, where only an explicit bind takes a port.
package ports

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
)

// The range ports are picked from, below Linux's default ephemeral range
// (32768-60999) and the benchmarks' profiling ports (20000-29999).
const (
	first = 10000
	last  = 19999
)

var (
	mu    sync.Mutex
	given = map[int]bool{} // never handed out twice by one process
)

// Free returns a port on 127.0.0.1 where nothing listened a moment ago.
func Free() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	start := first + rand.IntN(last-first+1)
	for i := 0; i <= last-first; i++ {
		port := first + (start-first+i)%(last-first+1)
		if given[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		given[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("no free port in 127.0.0.1:%d-%d", first, last)
}
