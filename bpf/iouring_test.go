package bpf_test

import (
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/internal/netnstest"
)

// Connects issued through io_uring never enter connect(2). Those that reach
// SYN_SENT are recorded from the state tracepoint, with the process that
// submitted them; README says what is not (failures before SYN_SENT).
func TestIOURingConnectIsRecorded(t *testing.T) {
	c := startCapture(t, testConfig)
	open := netnstest.Listen(t, "tcp4", "127.0.0.1:0")
	closed := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(freeTCPPort(t)))

	if res := ioURingConnect(t, open); res != 0 {
		t.Fatalf("io_uring connect to %s: %v", open, syscall.Errno(-res))
	}
	ev := c.next(open, 5*time.Second)
	assertOutcome(t, ev, bpf.Established)
	if ev.PID != uint32(os.Getpid()) || ev.StartNs == 0 || ev.IdentityLost {
		t.Errorf("pid %d start %d identity lost %v: want this process, with a start time", ev.PID, ev.StartNs, ev.IdentityLost)
	}

	if res := ioURingConnect(t, closed); syscall.Errno(-res) != unix.ECONNREFUSED {
		t.Fatalf("io_uring connect to closed %s: %d, want ECONNREFUSED", closed, res)
	}
	assertOutcome(t, c.next(closed, 5*time.Second), bpf.Refused, unix.ECONNREFUSED)
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*unix.SockaddrInet4).Port
}

// The io_uring ABI, as much as one IORING_OP_CONNECT needs.
type ioSQRingOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type ioCQRingOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, CQEs, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type ioURingParams struct {
	SQEntries, CQEntries, Flags, SQThreadCPU, SQThreadIdle, Features, WQFd uint32
	Resv                                                                   [3]uint32
	SQOff                                                                  ioSQRingOffsets
	CQOff                                                                  ioCQRingOffsets
}

type ioURingSQE struct {
	Opcode, Flags uint8
	IOPrio        uint16
	Fd            int32
	Off, Addr     uint64
	Len, OpFlags  uint32
	UserData      uint64
	Pad           [3]uint64
}

type ioURingCQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

const (
	ioringOpConnect      = 16
	ioringEnterGetEvents = 1
	ioringOffSQRing      = 0
	ioringOffCQRing      = 0x8000000
	ioringOffSQEs        = 0x10000000
)

// ioURingConnect connects a new blocking socket to peer through a fresh
// io_uring and returns the completion's result (0, or -errno).
func ioURingConnect(t *testing.T, peer netip.AddrPort) int32 {
	t.Helper()
	var p ioURingParams
	rfd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		t.Fatalf("io_uring_setup: %v", errno)
	}
	ring := int(rfd)
	defer unix.Close(ring)
	mmap := func(off int64, size uint32) []byte {
		b, err := unix.Mmap(ring, off, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			t.Fatalf("mmap io_uring: %v", err)
		}
		t.Cleanup(func() { unix.Munmap(b) })
		return b
	}
	sq := mmap(ioringOffSQRing, p.SQOff.Array+p.SQEntries*4)
	cq := mmap(ioringOffCQRing, p.CQOff.CQEs+p.CQEntries*uint32(unsafe.Sizeof(ioURingCQE{})))
	sqes := mmap(ioringOffSQEs, p.SQEntries*uint32(unsafe.Sizeof(ioURingSQE{})))

	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: peer.Addr().As4()}
	port := (*[2]byte)(unsafe.Pointer(&sa.Port))
	port[0], port[1] = byte(peer.Port()>>8), byte(peer.Port())

	*(*ioURingSQE)(unsafe.Pointer(&sqes[0])) = ioURingSQE{Opcode: ioringOpConnect, Fd: int32(fd),
		Addr: uint64(uintptr(unsafe.Pointer(&sa))), Off: uint64(unsafe.Sizeof(sa)), UserData: 1}
	tail := (*uint32)(unsafe.Pointer(&sq[p.SQOff.Tail]))
	mask := *(*uint32)(unsafe.Pointer(&sq[p.SQOff.RingMask]))
	(*[1 << 16]uint32)(unsafe.Pointer(&sq[p.SQOff.Array]))[*tail&mask] = 0
	atomic.AddUint32(tail, 1)
	if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(ring), 1, 1, ioringEnterGetEvents, 0, 0); errno != 0 {
		t.Fatalf("io_uring_enter: %v", errno)
	}
	runtime.KeepAlive(&sa)
	head := atomic.LoadUint32((*uint32)(unsafe.Pointer(&cq[p.CQOff.Head])))
	cqMask := *(*uint32)(unsafe.Pointer(&cq[p.CQOff.RingMask]))
	cqe := (*ioURingCQE)(unsafe.Pointer(&cq[p.CQOff.CQEs+(head&cqMask)*uint32(unsafe.Sizeof(ioURingCQE{}))]))
	return cqe.Res
}
