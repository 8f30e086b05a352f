// Package bpf loads connaudit's eBPF programs, attaches them to stable
// tracepoints and decodes the connect attempts they report.
package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Config sizes the kernel-side buffers.
type Config struct {
	// RingBufferBytes is the size of the event ring buffer; a power of two, at least one page.
	RingBufferBytes int
	// HandshakeEntries bounds the in-flight handshake map (an LRU).
	HandshakeEntries int
	// PinDir is a bpffs directory where the programs' links and maps are
	// pinned, so that capture goes on while the agent is down and a restarted
	// agent drains what accumulated. Empty: nothing is pinned, and capture
	// stops with the process.
	PinDir string
	// ProbeReads loads the object built for kernels without bpf_rdonly_cast
	// (before Linux 6.2), which reads kernel memory with bpf_probe_read_kernel;
	// Load also chooses it on such kernels.
	ProbeReads bool
}

// Validate reports a configuration the kernel would refuse.
func (c Config) Validate() error {
	page := os.Getpagesize()
	if c.RingBufferBytes < page || c.RingBufferBytes&(c.RingBufferBytes-1) != 0 {
		return fmt.Errorf("ring buffer size %d must be a power of two and at least %d (one page)", c.RingBufferBytes, page)
	}
	if c.HandshakeEntries < 1 {
		return fmt.Errorf("handshake map size %d must be positive", c.HandshakeEntries)
	}
	return nil
}

// Counters are the kernel's loss counters, cumulative since the programs were loaded.
type Counters struct {
	RingBufferLost uint64 // events that found the ring buffer full
	HandshakeLost  uint64 // outcomes whose handshake had been evicted from the LRU map
}

// Tracer owns the loaded programs, their tracepoint links and the ring buffer reader.
type Tracer struct {
	objs      connectObjects
	links     []link.Link
	reader    *ringbuf.Reader
	record    ringbuf.Record
	deadline  time.Time
	pin       *pinState
	backlog   []*ringbuf.Reader // ring buffers of replaced captures, read first
	takeovers []Takeover
}

const btfPath = "/sys/kernel/btf/vmlinux"

// privileges is what capture needs, said the same way wherever it is missing.
const privileges = "run as root, or with CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN where kernel.perf_event_paranoid is 3)"

// Load checks the kernel's prerequisites, loads the programs and attaches them.
func Load(cfg Config) (*Tracer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(btfPath); err != nil {
		return nil, fmt.Errorf("kernel BTF not found at %s: connaudit needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (Linux 5.11 or newer): %w", btfPath, err)
	}
	// Kernels before 5.11 charge eBPF maps to RLIMIT_MEMLOCK. Without the
	// privilege to raise it, loading fails below with the clearer message.
	_ = rlimit.RemoveMemlock()
	if err := ensureTracefs(); err != nil {
		return nil, err
	}

	load := loadConnect
	if cfg.ProbeReads || !kernelHasRdonlyCast() {
		load = loadConnectProbeReads
	}
	spec, err := load()
	if err != nil {
		return nil, fmt.Errorf("parse embedded eBPF object: %w", err)
	}
	spec.Maps[connectMapEvents].MaxEntries = uint32(cfg.RingBufferBytes)
	spec.Maps[connectMapHandshakes].MaxEntries = uint32(cfg.HandshakeEntries)

	t := &Tracer{}
	var opts *ebpf.CollectionOptions
	if cfg.PinDir != "" {
		if t.pin, err = preparePins(cfg, spec); err != nil {
			return nil, err
		}
		opts = &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: t.pin.dir}}
	}
	if err := spec.LoadAndAssign(&t.objs, opts); err != nil {
		return nil, loadError(err)
	}
	if t.pin != nil {
		t.links = t.pin.resumeLinks()
	}
	if t.links == nil {
		if err := t.attach(); err != nil {
			t.Close()
			return nil, err
		}
	}
	if t.pin != nil {
		for _, old := range t.pin.previous {
			t.takeovers = append(t.takeovers, t.takeOver(old))
		}
	}

	t.reader, err = ringbuf.NewReader(t.objs.Events)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	return t, nil
}

// kernelHasRdonlyCast reports whether the kernel offers the bpf_rdonly_cast
// kfunc (Linux 6.2), through which the faster object reads the socket.
func kernelHasRdonlyCast() bool {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return false
	}
	var fn *btf.Func
	return spec.TypeByName("bpf_rdonly_cast", &fn) == nil
}

func loadError(err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("load eBPF programs: permission denied: %s: %w", privileges, err)
	}
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		return fmt.Errorf("load eBPF programs: the kernel's verifier refused them (Linux 5.11 or newer with BTF is required): %+v", verr)
	}
	return fmt.Errorf("load eBPF programs: %w", err)
}

var tracepoints = []struct {
	group, name, pin string
	raw              bool
}{
	// The state tracepoint first, so that no attempt starts before its outcome can be seen.
	{"sock", "inet_sock_set_state", "link_sock_set_state", true},
	{"syscalls", "sys_exit_connect", "link_exit_connect", false},
	{"syscalls", "sys_enter_connect", "link_enter_connect", false},
}

func (t *Tracer) attach() error {
	progs := []*ebpf.Program{t.objs.SockSetState, t.objs.ExitConnect, t.objs.EnterConnect}
	for i, tp := range tracepoints {
		var l link.Link
		var err error
		if tp.raw {
			l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp.name, Program: progs[i]})
		} else {
			l, err = link.Tracepoint(tp.group, tp.name, progs[i], nil)
		}
		if err != nil {
			return fmt.Errorf("attach tracepoint %s:%s: %w", tp.group, tp.name, err)
		}
		t.links = append(t.links, l)
		if t.pin != nil {
			if err := l.Pin(filepath.Join(t.pin.dir, tp.pin)); err != nil {
				return fmt.Errorf("pin link of %s:%s in %s: %w", tp.group, tp.name, t.pin.dir, err)
			}
		}
	}
	return nil
}

// ensureTracefs mounts tracefs when nothing has; the tracepoint links need it.
func ensureTracefs() error {
	for _, dir := range []string{"/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"} {
		if _, err := os.Stat(dir); err == nil {
			return nil
		}
	}
	if err := unix.Mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
		return fmt.Errorf("tracefs is not readable at /sys/kernel/tracing and mounting it failed "+
			"(in a pod, mount the host's /sys/kernel/tracing there read-only; else run as root): %w", err)
	}
	return nil
}

// Resumed reports whether capture went on from pinned programs of an earlier
// agent: the ring buffer may hold what happened while no agent ran.
func (t *Tracer) Resumed() bool { return t.pin != nil && t.pin.resumed }

// Takeovers lists the pinned captures of other connaudit builds or sizes
// that Load replaced, and what became of what they held.
func (t *Tracer) Takeovers() []Takeover { return t.takeovers }

// readerPoll is the period at which Read drains the ring buffer: connect.c
// submits records without waking the reader (a wakeup costs the kernel more
// than the rest of the event), unless the buffer is an eighth full. A
// record thus waits at most readerPoll to be read.
const readerPoll = 10 * time.Millisecond

// Read blocks until the next event and decodes it into ev: first what the
// ring buffers of replaced captures held, then this capture's. It returns
// os.ErrDeadlineExceeded after SetDeadline's time and os.ErrClosed after Close.
func (t *Tracer) Read(ev *Event) error {
	for len(t.backlog) > 0 {
		r := t.backlog[0]
		r.SetDeadline(time.Now())
		if err := r.ReadInto(&t.record); err == nil {
			return Decode(t.record.RawSample, ev)
		}
		r.Close() // drained: its programs were detached before it was read
		t.backlog = t.backlog[1:]
	}
	for {
		wait := time.Now().Add(readerPoll)
		if !t.deadline.IsZero() && t.deadline.Before(wait) {
			wait = t.deadline
		}
		t.reader.SetDeadline(wait)
		// Without a wakeup the reader waits until wait, then reads what
		// arrived meanwhile; it reports the deadline once it is drained.
		err := t.reader.ReadInto(&t.record)
		if err == nil {
			return Decode(t.record.RawSample, ev)
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		if !t.deadline.IsZero() && !time.Now().Before(t.deadline) {
			return err
		}
	}
}

// SetDeadline makes Read return at time d; the zero time means no deadline.
// Call it from the goroutine that reads.
func (t *Tracer) SetDeadline(d time.Time) { t.deadline = d }

// Buffered is the number of bytes waiting in the ring buffers.
func (t *Tracer) Buffered() int {
	n := t.reader.AvailableBytes()
	for _, r := range t.backlog {
		n += r.AvailableBytes()
	}
	return n
}

// Counter slots, as in connect.c.
const (
	slotRingBufferLost uint32 = iota
	slotHandshakeLost
	slotRingBufferReported
	slotHandshakeReported
)

// Counters reads the kernel's loss counters.
func (t *Tracer) Counters() (Counters, error) {
	return t.readCounters(slotRingBufferLost, slotHandshakeLost)
}

// Reported reads what MarkReported last stored: with pinned maps, what an
// earlier agent already reported.
func (t *Tracer) Reported() (Counters, error) {
	return t.readCounters(slotRingBufferReported, slotHandshakeReported)
}

// MarkReported stores the counters whose losses are now on record.
func (t *Tracer) MarkReported(c Counters) error {
	if err := t.objs.Counters.Put(slotRingBufferReported, c.RingBufferLost); err != nil {
		return fmt.Errorf("store reported ring buffer losses: %w", err)
	}
	if err := t.objs.Counters.Put(slotHandshakeReported, c.HandshakeLost); err != nil {
		return fmt.Errorf("store reported handshake losses: %w", err)
	}
	return nil
}

func (t *Tracer) readCounters(ring, handshake uint32) (Counters, error) {
	var c Counters
	if err := t.objs.Counters.Lookup(ring, &c.RingBufferLost); err != nil {
		return c, fmt.Errorf("read loss counter %d: %w", ring, err)
	}
	if err := t.objs.Counters.Lookup(handshake, &c.HandshakeLost); err != nil {
		return c, fmt.Errorf("read loss counter %d: %w", handshake, err)
	}
	return c, nil
}

// Detach stops this process's hold on the tracepoints; events already in the
// ring buffer can still be read. Pinned links stay attached: capture goes on.
func (t *Tracer) Detach() error {
	var errs []error
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	t.links = nil
	return errors.Join(errs...)
}

// Close detaches the programs and releases the kernel objects.
func (t *Tracer) Close() error {
	errs := []error{t.Detach()}
	for _, r := range t.backlog {
		errs = append(errs, r.Close())
	}
	if t.reader != nil {
		errs = append(errs, t.reader.Close())
	}
	errs = append(errs, t.objs.Close())
	return errors.Join(errs...)
}
