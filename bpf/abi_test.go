package bpf

import (
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"unsafe"
)

// Decode reads what the kernel writes: a struct event laid out as the type
// bpf2go generated from the compiled object's BTF. The test fills that
// generated type field by field and decodes its bytes.
func TestDecodeMatchesTheGeneratedEventLayout(t *testing.T) {
	if unsafe.Sizeof(connectEvent{}) != 112 || EventSize != 112 {
		t.Fatalf("struct event is %d bytes (EventSize %d); a layout change needs EventLayout bumped in pin.go", unsafe.Sizeof(connectEvent{}), EventSize)
	}
	ce := connectEvent{
		StartNs: 1001, EndNs: 2002, CgroupId: 3003,
		Tgid: 11, Tid: 12, Ptgid: 13, Uid: 14, Gid: 15, Mntns: 16, Netns: 17,
		Err: -int32(syscall.ECONNREFUSED), Sport: 40000, Dport: 443, Family: syscall.AF_INET6,
		Outcome: kernelClosed, Flags: flagIdentityLost,
	}
	ce.Saddr = netip.MustParseAddr("2001:db8::1").As16()
	ce.Daddr = netip.MustParseAddr("2001:db8::2").As16()
	for i, c := range "curl" {
		ce.Comm[i] = int8(c)
	}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&ce)), unsafe.Sizeof(ce))

	var ev Event
	if err := Decode(raw, &ev); err != nil {
		t.Fatal(err)
	}
	want := Event{StartNs: 1001, EndNs: 2002, CgroupID: 3003, PID: 11, TID: 12, PPID: 13, UID: 14, GID: 15, MntNS: 16, NetNS: 17,
		Errno: syscall.ECONNREFUSED, Outcome: Refused, IdentityLost: true,
		Local: netip.MustParseAddrPort("[2001:db8::1]:40000"), Peer: netip.MustParseAddrPort("[2001:db8::2]:443")}
	want.SetComm("curl")
	if ev != want {
		t.Fatalf("decoded %+v\nwant    %+v", ev, want)
	}
}

// The enums bpf2go cannot generate (the object's BTF has no enum types)
// are checked against connect.c itself.
func TestKernelEnumsMatchConnectC(t *testing.T) {
	src, err := os.ReadFile("connect.c")
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]uint64{}
	for _, m := range regexp.MustCompile(`(?m)^\s*([A-Z_]+) = (\d+),`).FindAllStringSubmatch(string(src), -1) {
		v, _ := strconv.ParseUint(m[2], 10, 64)
		values[m[1]] = v
	}
	for name, goValue := range map[string]uint64{
		"OUTCOME_ESTABLISHED":        kernelEstablished,
		"OUTCOME_CLOSED":             kernelClosed,
		"OUTCOME_SYNC_ERROR":         kernelSyncError,
		"FLAG_IDENTITY_LOST":         flagIdentityLost,
		"COUNTER_RINGBUF_LOST":       uint64(slotRingBufferLost),
		"COUNTER_HANDSHAKE_LOST":     uint64(slotHandshakeLost),
		"COUNTER_RINGBUF_REPORTED":   uint64(slotRingBufferReported),
		"COUNTER_HANDSHAKE_REPORTED": uint64(slotHandshakeReported),
	} {
		c, ok := values[name]
		if !ok {
			t.Errorf("connect.c no longer defines %s", name)
		} else if c != goValue {
			t.Errorf("%s is %d in connect.c, %d in Go", name, c, goValue)
		}
	}
	if n := values["COUNTER_MAX"]; n != 4 {
		t.Errorf("connect.c has %d counters; unreported (pin.go) reads 4", n)
	}
}
