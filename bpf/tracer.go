// Package bpf loads connaudit's eBPF programs, attaches them to stable
// tracepoints and decodes the connect attempts they report.
package bpf

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
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
	objs   connectObjects
	links  []link.Link
	reader *ringbuf.Reader
	record ringbuf.Record
}

const btfPath = "/sys/kernel/btf/vmlinux"

// Load checks the kernel's prerequisites, loads the programs and attaches them.
func Load(cfg Config) (*Tracer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(btfPath); err != nil {
		return nil, fmt.Errorf("kernel BTF not found at %s: connaudit needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (Linux 5.8 or newer): %w", btfPath, err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise the memlock limit (run as root, or with CAP_SYS_RESOURCE): %w", err)
	}
	if err := ensureTracefs(); err != nil {
		return nil, err
	}

	spec, err := loadConnect()
	if err != nil {
		return nil, fmt.Errorf("parse embedded eBPF object: %w", err)
	}
	spec.Maps[connectMapEvents].MaxEntries = uint32(cfg.RingBufferBytes)
	spec.Maps[connectMapHandshakes].MaxEntries = uint32(cfg.HandshakeEntries)

	t := &Tracer{}
	if err := spec.LoadAndAssign(&t.objs, nil); err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("load eBPF programs: permission denied: run as root, or with CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN: %w", err)
		}
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load eBPF programs: the kernel's verifier refused them (Linux 5.8 or newer with BTF is required): %+v", verr)
		}
		return nil, fmt.Errorf("load eBPF programs: %w", err)
	}

	for _, tp := range []struct {
		group, name string
		prog        *ebpf.Program
	}{
		// The state tracepoint first, so that no attempt starts before its outcome can be seen.
		{"sock", "inet_sock_set_state", t.objs.SockSetState},
		{"syscalls", "sys_exit_connect", t.objs.ExitConnect},
		{"syscalls", "sys_enter_connect", t.objs.EnterConnect},
	} {
		l, err := link.Tracepoint(tp.group, tp.name, tp.prog, nil)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("attach tracepoint %s:%s: %w", tp.group, tp.name, err)
		}
		t.links = append(t.links, l)
	}

	t.reader, err = ringbuf.NewReader(t.objs.Events)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	return t, nil
}

// ensureTracefs mounts tracefs when nothing has; the tracepoint links need it.
func ensureTracefs() error {
	for _, dir := range []string{"/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"} {
		if _, err := os.Stat(dir); err == nil {
			return nil
		}
	}
	if err := unix.Mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
		return fmt.Errorf("tracefs is not mounted and mounting it at /sys/kernel/tracing failed (mount it, or run privileged): %w", err)
	}
	return nil
}

// Read blocks until the next event and decodes it into ev. It returns
// os.ErrDeadlineExceeded after SetDeadline's time and os.ErrClosed after Close.
func (t *Tracer) Read(ev *Event) error {
	if err := t.reader.ReadInto(&t.record); err != nil {
		return err
	}
	return Decode(t.record.RawSample, ev)
}

// SetDeadline makes a blocked Read return at time d.
func (t *Tracer) SetDeadline(d time.Time) { t.reader.SetDeadline(d) }

// Buffered is the number of bytes waiting in the ring buffer.
func (t *Tracer) Buffered() int { return t.reader.AvailableBytes() }

// Counters reads the kernel's loss counters.
func (t *Tracer) Counters() (Counters, error) {
	var c Counters
	for key, dst := range map[uint32]*uint64{0: &c.RingBufferLost, 1: &c.HandshakeLost} {
		if err := t.objs.Counters.Lookup(key, dst); err != nil {
			return c, fmt.Errorf("read loss counter %d: %w", key, err)
		}
	}
	return c, nil
}

// Detach stops capture; events already in the ring buffer can still be read.
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
	if t.reader != nil {
		errs = append(errs, t.reader.Close())
	}
	errs = append(errs, t.objs.Close())
	return errors.Join(errs...)
}
