package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/connaudit/connaudit/internal/teststack"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// (100 on every Linux architecture Go supports).
const clockTicks = 100

// cpuTime is the user+sys time a process has used so far, from /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of pid %d: %w", pid, err)
	}
	// The command name may hold spaces; the fields after it do not.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// Field 14 (utime) and 15 (stime) of stat(5); fields[0] is field 3.
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// setAffinity moves every thread of pid to cpus (all CPUs when empty);
// threads created later inherit it.
func setAffinity(pid int, cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	if len(cpus) == 0 {
		for c := range numCPU() {
			set.Set(c)
		}
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return fmt.Errorf("list threads of pid %d: %w", pid, err)
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("pin thread %d of pid %d to CPUs %v: %w", tid, pid, cpus, err)
		}
	}
	return nil
}

// agentCounters are the agent's cumulative record counters.
type agentCounters struct {
	spooled, exported, lost, degraded float64
	waiting                           float64 // records in the spool, an earlier instance's too
}

func readAgent(a *teststack.Agent) (agentCounters, error) {
	text, err := a.Metrics()
	if err != nil {
		return agentCounters{}, fmt.Errorf("read agent metrics: %w", err)
	}
	var c agentCounters
	for _, line := range strings.Split(text, "\n") {
		name, value, ok := metricLine(line)
		if !ok {
			continue
		}
		switch {
		case name == "connaudit_records_spooled_total":
			c.spooled = value
		case name == "connaudit_records_exported_total":
			c.exported = value
		case name == "connaudit_spool_records":
			c.waiting = value
		case strings.HasPrefix(name, "connaudit_records_lost_total"):
			c.lost += value
		case strings.HasPrefix(name, "connaudit_records_degraded_total"):
			c.degraded += value
		}
	}
	return c, nil
}

func metricLine(line string) (string, float64, bool) {
	if line == "" || line[0] == '#' {
		return "", 0, false
	}
	i := strings.LastIndexByte(line, ' ')
	if i < 0 {
		return "", 0, false
	}
	v, err := strconv.ParseFloat(line[i+1:], 64)
	return line[:i], v, err == nil
}

// byteCounter is a TCP proxy on 127.0.0.1 that counts what clients send
// upstream: the agent's OTLP requests, compressed, with their HTTP framing.
type byteCounter struct {
	ln   net.Listener
	sent atomic.Int64
	wg   sync.WaitGroup
}

func newByteCounter(t testing.TB, upstream string) *byteCounter {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen for the counting proxy: %v", err)
	}
	p := &byteCounter{ln: ln}
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp4", upstream)
			if err != nil {
				down.Close()
				continue
			}
			p.wg.Add(2)
			go func() {
				defer p.wg.Done()
				_, _ = io.Copy(countingWriter{up, &p.sent}, down)
				_ = up.(*net.TCPConn).CloseWrite()
			}()
			go func() {
				defer p.wg.Done()
				_, _ = io.Copy(down, up)
				down.Close()
				up.Close()
			}()
		}
	}()
	return p
}

// Sent counts bytes as they are forwarded, not only when a connection ends.
func (p *byteCounter) Sent() int64 { return p.sent.Load() }

func (p *byteCounter) URL() string { return "http://" + p.ln.Addr().String() }

// countingWriter lets io.Copy count forwarded bytes as they flow.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// progStats sums bpf_stats of a set of programs.
type progStats struct {
	runtime time.Duration
	runs    uint64
}

// programsSince returns the programs loaded after id last whose names are in
// names (all programs when names is nil), and the highest id seen.
func programsSince(last ebpf.ProgramID, names map[string]bool) ([]*ebpf.Program, ebpf.ProgramID, error) {
	var progs []*ebpf.Program
	id := last
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return progs, id, nil
		}
		if err != nil {
			return progs, id, fmt.Errorf("list eBPF programs: %w", err)
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if errors.Is(err, os.ErrNotExist) {
			continue // unloaded meanwhile
		}
		if err != nil {
			return progs, id, fmt.Errorf("open eBPF program %d: %w", id, err)
		}
		info, err := p.Info()
		if err != nil || (names != nil && !names[info.Name]) {
			p.Close()
			continue
		}
		progs = append(progs, p)
	}
}

func lastProgramID() (ebpf.ProgramID, error) {
	_, id, err := programsSince(0, map[string]bool{})
	return id, err
}

func sumStats(progs []*ebpf.Program) (progStats, error) {
	var s progStats
	for _, p := range progs {
		st, err := p.Stats()
		if err != nil {
			return s, fmt.Errorf("read bpf_stats: %w", err)
		}
		s.runtime += st.Runtime
		s.runs += st.RunCount
	}
	return s, nil
}

func closeAll(progs []*ebpf.Program) {
	for _, p := range progs {
		p.Close()
	}
}

// machine describes this host for the report.
func machine() Machine {
	m := Machine{CPUs: numCPU()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		m.Kernel = strings.Join([]string{unix.ByteSliceToString(u.Sysname[:]), unix.ByteSliceToString(u.Release[:]),
			unix.ByteSliceToString(u.Version[:]), unix.ByteSliceToString(u.Machine[:])}, " ")
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(string(data), "MemTotal: %d kB", &kb)
		m.MemoryGiB = float64(kb) / (1 << 20)
	}
	return m
}

func numCPU() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0
	}
	return set.Count()
}

// repoDir is the repository root: the parent of this package's directory.
func repoDir(t testing.TB) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

// perProgram is bpf_stats of each program, by name.
func perProgram(progs []*ebpf.Program) map[string]progStats {
	out := map[string]progStats{}
	for _, p := range progs {
		info, err := p.Info()
		if err != nil {
			continue
		}
		st, err := p.Stats()
		if err != nil {
			continue
		}
		acc := out[info.Name]
		acc.runtime += st.Runtime
		acc.runs += st.RunCount
		out[info.Name] = acc
	}
	return out
}
