// Package k8s tells who is on each end of a connection: the process, its
// container and pod, and what the peer address belongs to.
package k8s

import (
	"os"
	"strconv"
	"strings"
	"sync"
)

// ExePaths resolves a pid's executable path from /proc, best effort: a process
// that has already exited has none. Results are cached per (pid, comm), so a
// busy process costs one readlink, and a reused pid with another name does not
// inherit a stale path.
type ExePaths struct {
	mu    sync.Mutex
	max   int
	cache map[uint32]exeEntry
	proc  string
}

type exeEntry struct {
	comm string
	path string
}

// NewExePaths caches up to max processes.
func NewExePaths(max int) *ExePaths {
	return &ExePaths{max: max, cache: make(map[uint32]exeEntry, max), proc: "/proc"}
}

// Lookup returns the executable of pid, or "" when it cannot be read.
func (x *ExePaths) Lookup(pid uint32, comm []byte) string {
	x.mu.Lock()
	defer x.mu.Unlock()
	if e, ok := x.cache[pid]; ok && e.comm == string(comm) {
		return e.path
	}
	path, err := os.Readlink(x.proc + "/" + strconv.FormatUint(uint64(pid), 10) + "/exe")
	if err != nil {
		return "" // exited, or a kernel thread; not cached, a later event may succeed
	}
	path = strings.ToValidUTF8(strings.TrimSuffix(path, " (deleted)"), "\uFFFD")
	if len(x.cache) >= x.max {
		clear(x.cache) // a cheap bound: refilling costs one readlink per live process
	}
	x.cache[pid] = exeEntry{comm: string(comm), path: path}
	return path
}
