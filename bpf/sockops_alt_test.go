package bpf

// The experimental captures of sockops.c (issue 20, item 4), loaded only by
// tests and benchmarks: the agent keeps the tracepoints of connect.c.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
)

// The variants of sockops.c, by the names the benchmark reports.
const (
	AltSockops        = "sockops"                // sock_ops alone
	AltConnectSockops = "cgroup_connect+sockops" // cgroup/connect4+6 for the start, sock_ops for the outcome
	// AltSockopsEmpty is a reference, not a capture: a sock_ops program
	// that returns at once, the floor of any sock_ops design.
	AltSockopsEmpty = "sockops_empty"
	// AltSockopsSkStorage is AltSockops keeping the attempt in socket
	// storage instead of an LRU hash (sockops.c built with -DCONNAUDIT_SK_STORAGE).
	AltSockopsSkStorage = "sockops_skstorage"
)

// altPrograms is what each variant attaches, the outcome's hook first, so
// that no attempt starts before its outcome can be seen.
var altPrograms = map[string][]struct {
	name   string
	attach ebpf.AttachType
}{
	AltSockops: {
		{sockopsProgSockopsOnly, ebpf.AttachCGroupSockOps},
	},
	AltSockopsSkStorage: {
		{sockopsProgSockopsOnly, ebpf.AttachCGroupSockOps},
	},
	AltSockopsEmpty: {
		{sockopsProgSockopsEmpty, ebpf.AttachCGroupSockOps},
	},
	AltConnectSockops: {
		{sockopsProgSockopsState, ebpf.AttachCGroupSockOps},
		{sockopsProgConnect4, ebpf.AttachCGroupInet4Connect},
		{sockopsProgConnect6, ebpf.AttachCGroupInet6Connect},
	},
}

// Alt is one variant of sockops.c, loaded and attached to the root of the
// cgroup v2 hierarchy.
type Alt struct {
	coll   *ebpf.Collection
	links  []link.Link
	reader *ringbuf.Reader
	record ringbuf.Record
	// Progs are the variant's programs by name, for bpf_stats.
	Progs map[string]*ebpf.Program
}

// cgroup2Root is where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup on
// a pure v2 host, /sys/fs/cgroup/unified on this hybrid one.
func cgroup2Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID parent major:minor root mountpoint options ... - fstype source superoptions
		fields := strings.Fields(sc.Text())
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && fields[3] == "/" {
				return fields[4], nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no cgroup2 hierarchy is mounted")
}

// LoadAlt loads the variant's programs alone (a verifier refusal of one
// variant does not hide the other) and attaches them.
func LoadAlt(variant string, ringBufferBytes int) (*Alt, error) {
	progs, ok := altPrograms[variant]
	if !ok {
		return nil, fmt.Errorf("no variant %q", variant)
	}
	load := loadSockops
	if variant == AltSockopsSkStorage {
		load = loadSockopsSkStorage
	}
	spec, err := load()
	if err != nil {
		return nil, err
	}
	spec.Maps[sockopsMapEvents].MaxEntries = uint32(ringBufferBytes)
	keep := map[string]bool{}
	for _, p := range progs {
		keep[p.name] = true
	}
	for name := range spec.Programs {
		if !keep[name] {
			delete(spec.Programs, name)
		}
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load %s: %+v", variant, verr)
		}
		return nil, fmt.Errorf("load %s: %w", variant, err)
	}
	a := &Alt{coll: coll, Progs: coll.Programs}
	root, err := cgroup2Root()
	if err != nil {
		a.Close()
		return nil, err
	}
	for _, p := range progs {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: root, Attach: p.attach, Program: coll.Programs[p.name]})
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("attach %s to cgroup %s as %s: %w", p.name, root, p.attach, err)
		}
		a.links = append(a.links, l)
	}
	if a.reader, err = ringbuf.NewReader(coll.Maps[sockopsMapEvents]); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// Read decodes the next event, draining the ring buffer every readerPoll as
// Tracer.Read does (the programs do not wake the reader either).
func (a *Alt) Read(ev *Event) error {
	for {
		a.reader.SetDeadline(time.Now().Add(readerPoll))
		err := a.reader.ReadInto(&a.record)
		if err == nil {
			return Decode(a.record.RawSample, ev)
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
	}
}

// Counters reads the variant's loss counters (slots as in connect.c).
func (a *Alt) Counters() (Counters, error) {
	var c Counters
	m := a.coll.Maps[sockopsMapCounters]
	if err := m.Lookup(slotRingBufferLost, &c.RingBufferLost); err != nil {
		return c, err
	}
	err := m.Lookup(slotHandshakeLost, &c.HandshakeLost)
	return c, err
}

// Close detaches the programs and releases them.
func (a *Alt) Close() error {
	var errs []error
	for _, l := range a.links {
		errs = append(errs, l.Close())
	}
	if a.reader != nil {
		errs = append(errs, a.reader.Close())
	}
	a.coll.Close()
	return errors.Join(errs...)
}

// sockops.c's struct event is connect.c's, so Decode reads both.
var _ = [1]struct{}{}[unsafe.Sizeof(sockopsEvent{})-unsafe.Sizeof(connectEvent{})]
