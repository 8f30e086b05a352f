// Package process reads what a kernel event does not carry about the
// connecting process from /proc: its executable.
package process

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// userHZ is the unit of /proc/<pid>/stat's starttime on every Linux
// architecture the agent builds for.
const userHZ = 100

const tickNs = 1_000_000_000 / userHZ

// Executables resolves the executable path of the task that made a connect
// attempt, and only when /proc still describes that same task: the thread
// exists, started before the attempt, and has the attempt's comm. Otherwise
// (it exited, its tid now names a later task, or it exec'd another program)
// the path is left out rather than guessed. An exec into a program with the
// same 15-byte name is not detected.
//
// Reading a task's stat file costs microseconds, so one reading vouches for
// every attempt the task made before it: a tid is reused only after its task
// exits, so a task seen alive at time V that started before an attempt at
// T <= V is the task that made it.
type Executables struct {
	proc string

	mu    sync.Mutex
	max   int
	cache map[taskID]task
	stat  []byte
}

type taskID struct{ pid, tid uint32 }

type task struct {
	startTicks  uint64 // clock ticks since boot
	comm        string
	path        string
	validatedNs uint64 // CLOCK_BOOTTIME when the task was last seen alive
}

// NewExecutables reads the proc filesystem at proc (the host's /proc, which a
// DaemonSet mounts at /host/proc) and caches up to max tasks.
func NewExecutables(proc string, max int) *Executables {
	return &Executables{proc: proc, max: max, cache: make(map[taskID]task, max), stat: make([]byte, 1024)}
}

// Lookup returns the executable of task tid of process pid, which connected
// at atBootNs (CLOCK_BOOTTIME) with name comm, or "" when it cannot be trusted.
func (x *Executables) Lookup(pid, tid uint32, comm []byte, atBootNs uint64) string {
	x.mu.Lock()
	defer x.mu.Unlock()
	id := taskID{pid, tid}
	t, cached := x.cache[id]
	if cached && atBootNs <= t.validatedNs && t.comm == string(comm) {
		return t.trusted(atBootNs)
	}
	seen := bootNow()
	start, statComm, ok := x.readStat(pid, tid)
	if !ok {
		delete(x.cache, id)
		return ""
	}
	if !cached || t.startTicks != start || t.comm != string(statComm) {
		t = task{startTicks: start, comm: string(statComm)}
		path, err := os.Readlink(x.proc + "/" + strconv.FormatUint(uint64(pid), 10) + "/exe")
		if err != nil {
			return "" // exited meanwhile, a kernel thread, or no CAP_SYS_PTRACE for another user's process
		}
		t.path = strings.TrimSuffix(path, " (deleted)")
	}
	t.validatedNs = seen
	if len(x.cache) >= x.max {
		clear(x.cache) // a cheap bound: refilling costs one read per live task
	}
	x.cache[id] = t
	if t.comm != string(comm) {
		return ""
	}
	return t.trusted(atBootNs)
}

// trusted is the path when the task had started by atBootNs (to the tick).
func (t task) trusted(atBootNs uint64) string {
	if t.startTicks*tickNs > atBootNs+tickNs {
		return ""
	}
	return t.path
}

func bootNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return uint64(ts.Nano())
}

// readStat returns the starttime (clock ticks since boot) and comm of a
// /proc/<pid>/task/<tid>/stat file. comm aliases x.stat.
func (x *Executables) readStat(pid, tid uint32) (startTicks uint64, comm []byte, ok bool) {
	f, err := os.Open(x.proc + "/" + strconv.FormatUint(uint64(pid), 10) + "/task/" + strconv.FormatUint(uint64(tid), 10) + "/stat")
	if err != nil {
		return 0, nil, false
	}
	n, err := f.Read(x.stat)
	f.Close()
	if err != nil {
		return 0, nil, false
	}
	b := x.stat[:n]
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open || end+2 > len(b) {
		return 0, nil, false
	}
	comm = b[open+1 : end]
	fields := b[end+2:]
	// starttime is field 22 of the file; fields starts at field 3 (state).
	for i := 3; i < 22; i++ {
		sp := bytes.IndexByte(fields, ' ')
		if sp < 0 {
			return 0, nil, false
		}
		fields = fields[sp+1:]
	}
	for _, c := range fields {
		if c == ' ' {
			break
		}
		if c < '0' || c > '9' {
			return 0, nil, false
		}
		startTicks = startTicks*10 + uint64(c-'0')
	}
	return startTicks, comm, true
}
