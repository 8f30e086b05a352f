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
// T <= V is the task that made it. Later attempts are vouched for by a
// cheaper sighting: an O_PATH descriptor of the task's /proc directory,
// opened once, is bound to that task (not to its tid), and a lookup through
// it fails once the task has been reaped.
type Executables struct {
	proc string

	mu     sync.Mutex
	max    int
	cache  map[taskID]task
	stat   []byte
	dirFDs int // open task.dir descriptors, at most maxDirFDs
}

// maxDirFDs bounds the descriptors the cache holds, well inside the usual
// RLIMIT_NOFILE; beyond it tasks are vouched for by their stat file.
const maxDirFDs = 1024

type taskID struct{ pid, tid uint32 }

type task struct {
	startTicks  uint64 // clock ticks since boot
	comm        string
	path        string
	validatedNs uint64 // CLOCK_BOOTTIME when the task was last seen alive
	dir         int    // O_PATH descriptor of the task's /proc directory, -1 for none
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
	if cached && t.dir >= 0 && t.comm == string(comm) && x.alive(t.dir) {
		t.validatedNs = seen
		x.cache[id] = t
		return t.trusted(atBootNs)
	}
	start, statComm, ok := x.readStat(pid, tid)
	if !ok {
		x.forget(id)
		return ""
	}
	if !cached || t.startTicks != start || t.comm != string(statComm) {
		x.forget(id)
		t = task{startTicks: start, comm: string(statComm), dir: -1}
		path, err := os.Readlink(x.proc + "/" + strconv.FormatUint(uint64(pid), 10) + "/exe")
		if err != nil {
			return "" // exited meanwhile, a kernel thread, or no CAP_SYS_PTRACE for another user's process
		}
		t.path = strings.TrimSuffix(path, " (deleted)")
		t.dir = x.openDir(pid, tid, start)
	}
	t.validatedNs = seen
	if _, ok := x.cache[id]; !ok && len(x.cache) >= x.max {
		x.clear() // a cheap bound: refilling costs one read per live task
	}
	x.cache[id] = t
	if t.comm != string(comm) {
		return ""
	}
	return t.trusted(atBootNs)
}

// openDir opens the /proc directory of task tid, and keeps it only if it is
// still the task that started at start: its stat file was read before.
func (x *Executables) openDir(pid, tid uint32, start uint64) int {
	if x.dirFDs >= maxDirFDs {
		return -1
	}
	dir, err := unix.Open(x.proc+"/"+strconv.FormatUint(uint64(pid), 10)+"/task/"+strconv.FormatUint(uint64(tid), 10),
		unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	if again, _, ok := x.readStat(pid, tid); !ok || again != start {
		unix.Close(dir) // the tid names a later task already
		return -1
	}
	x.dirFDs++
	return dir
}

// alive reports whether the task of dir has not been reaped.
func (x *Executables) alive(dir int) bool {
	var st unix.Stat_t
	return unix.Fstatat(dir, "stat", &st, 0) == nil
}

func (x *Executables) forget(id taskID) {
	if t, ok := x.cache[id]; ok {
		x.closeDir(t)
		delete(x.cache, id)
	}
}

func (x *Executables) clear() {
	for _, t := range x.cache {
		x.closeDir(t)
	}
	clear(x.cache)
}

func (x *Executables) closeDir(t task) {
	if t.dir >= 0 {
		unix.Close(t.dir)
		x.dirFDs--
	}
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
