package bpf

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"syscall"
	"unsafe"
)

// Outcome is how a connect attempt ended.
type Outcome uint8

const (
	Established Outcome = iota + 1
	Refused             // the peer answered the SYN with a RST
	Timeout             // no answer to the SYN retries
	Unreachable         // ICMP host or network unreachable
	Reset               // the handshake was reset
	Aborted             // the application closed the socket during the handshake
	Error               // any other failure, or a synchronous one; see Errno
)

var outcomeNames = [...]string{
	Established: "established",
	Refused:     "refused",
	Timeout:     "timeout",
	Unreachable: "unreachable",
	Reset:       "reset",
	Aborted:     "aborted",
	Error:       "error",
}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) && outcomeNames[o] != "" {
		return outcomeNames[o]
	}
	return "unknown"
}

// Kernel-side outcome codes and flags: enum outcome and enum flags of
// connect.c (bpf2go cannot generate them: the compiled object's BTF has no
// enum types). TestKernelEnumsMatchConnectC keeps them equal.
const (
	kernelEstablished = 1
	kernelClosed      = 2
	kernelSyncError   = 3

	flagIdentityLost = 1
)

// EventSize is the size of struct event in connect.c.
const EventSize = int(unsafe.Sizeof(connectEvent{}))

// Offsets of struct event's fields, from the type bpf2go generated from the
// compiled object's BTF: C and Go share one layout, and a change to
// struct event that is regenerated changes these with it.
const (
	offStartNs  = unsafe.Offsetof(connectEvent{}.StartNs)
	offEndNs    = unsafe.Offsetof(connectEvent{}.EndNs)
	offCgroupID = unsafe.Offsetof(connectEvent{}.CgroupId)
	offTgid     = unsafe.Offsetof(connectEvent{}.Tgid)
	offTid      = unsafe.Offsetof(connectEvent{}.Tid)
	offPtgid    = unsafe.Offsetof(connectEvent{}.Ptgid)
	offUID      = unsafe.Offsetof(connectEvent{}.Uid)
	offGID      = unsafe.Offsetof(connectEvent{}.Gid)
	offMntNS    = unsafe.Offsetof(connectEvent{}.Mntns)
	offNetNS    = unsafe.Offsetof(connectEvent{}.Netns)
	offErr      = unsafe.Offsetof(connectEvent{}.Err)
	offSport    = unsafe.Offsetof(connectEvent{}.Sport)
	offDport    = unsafe.Offsetof(connectEvent{}.Dport)
	offFamily   = unsafe.Offsetof(connectEvent{}.Family)
	offOutcome  = unsafe.Offsetof(connectEvent{}.Outcome)
	offFlags    = unsafe.Offsetof(connectEvent{}.Flags)
	offSaddr    = unsafe.Offsetof(connectEvent{}.Saddr)
	offDaddr    = unsafe.Offsetof(connectEvent{}.Daddr)
	offComm     = unsafe.Offsetof(connectEvent{}.Comm)
)

// Event is one connect attempt whose outcome is known.
type Event struct {
	StartNs  uint64 // CLOCK_BOOTTIME when connect() was entered
	EndNs    uint64 // CLOCK_BOOTTIME when the outcome was known
	CgroupID uint64 // cgroup v2 id of the connecting task

	PID, TID, PPID uint32
	UID, GID       uint32
	MntNS, NetNS   uint32

	Errno   syscall.Errno // 0 when established
	Outcome Outcome

	// IdentityLost is set when the outcome arrived for a handshake that was
	// no longer tracked: the process fields and StartNs are unknown.
	IdentityLost bool

	Local, Peer netip.AddrPort
	comm        [16]byte
}

// Comm is the task's command name, as the kernel reported it.
func (e *Event) Comm() []byte {
	for i, c := range e.comm {
		if c == 0 {
			return e.comm[:i]
		}
	}
	return e.comm[:]
}

// SetComm sets the command name; for tests and fuzzing.
func (e *Event) SetComm(s string) {
	e.comm = [16]byte{}
	copy(e.comm[:15], s)
}

var errShortEvent = errors.New("event record shorter than struct event")

// Decode parses one ring buffer record into ev without allocating.
func Decode(raw []byte, ev *Event) error {
	if len(raw) < EventSize {
		return errShortEvent
	}
	le := binary.LittleEndian
	ev.StartNs = le.Uint64(raw[offStartNs:])
	ev.EndNs = le.Uint64(raw[offEndNs:])
	ev.CgroupID = le.Uint64(raw[offCgroupID:])
	ev.PID = le.Uint32(raw[offTgid:])
	ev.TID = le.Uint32(raw[offTid:])
	ev.PPID = le.Uint32(raw[offPtgid:])
	ev.UID = le.Uint32(raw[offUID:])
	ev.GID = le.Uint32(raw[offGID:])
	ev.MntNS = le.Uint32(raw[offMntNS:])
	ev.NetNS = le.Uint32(raw[offNetNS:])
	errno := int32(le.Uint32(raw[offErr:]))
	if errno < 0 {
		errno = -errno
	}
	ev.Errno = syscall.Errno(errno)
	sport := le.Uint16(raw[offSport:])
	dport := le.Uint16(raw[offDport:])
	family := le.Uint16(raw[offFamily:])
	ev.Outcome = classify(raw[offOutcome], ev.Errno)
	ev.IdentityLost = raw[offFlags]&flagIdentityLost != 0
	ev.Local = netip.AddrPortFrom(addr(family, raw[offSaddr:offSaddr+16]), sport)
	ev.Peer = netip.AddrPortFrom(addr(family, raw[offDaddr:offDaddr+16]), dport)
	copy(ev.comm[:], raw[offComm:offComm+16])
	return nil
}

func addr(family uint16, b []byte) netip.Addr {
	if family == syscall.AF_INET {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	// An IPv4-mapped peer of a dual-stack socket is an IPv4 connection.
	return netip.AddrFrom16([16]byte(b[:16])).Unmap()
}

func classify(kernelOutcome uint8, errno syscall.Errno) Outcome {
	switch kernelOutcome {
	case kernelEstablished:
		return Established
	case kernelClosed:
		switch errno {
		case 0:
			return Aborted
		case syscall.ECONNREFUSED:
			return Refused
		case syscall.ETIMEDOUT:
			return Timeout
		case syscall.EHOSTUNREACH, syscall.ENETUNREACH:
			return Unreachable
		case syscall.ECONNRESET:
			return Reset
		}
	}
	return Error
}
