package bpf

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"testing"
)

func rawEvent(outcome uint8, errno int32, family uint16) []byte {
	raw := make([]byte, EventSize)
	le := binary.LittleEndian
	le.PutUint64(raw[0:], 100)
	le.PutUint64(raw[8:], 200)
	le.PutUint32(raw[24:], 42)
	le.PutUint32(raw[52:], uint32(errno))
	le.PutUint16(raw[56:], 5555)
	le.PutUint16(raw[58:], 80)
	le.PutUint16(raw[60:], family)
	raw[62] = outcome
	copy(raw[96:], "curl\x00garbage")
	return raw
}

func TestDecodeClassifiesOutcomes(t *testing.T) {
	for _, tc := range []struct {
		kernel uint8
		errno  syscall.Errno
		want   Outcome
	}{
		{kernelEstablished, 0, Established},
		{kernelClosed, 0, Aborted},
		{kernelClosed, syscall.ECONNREFUSED, Refused},
		{kernelClosed, syscall.ETIMEDOUT, Timeout},
		{kernelClosed, syscall.EHOSTUNREACH, Unreachable},
		{kernelClosed, syscall.ENETUNREACH, Unreachable},
		{kernelClosed, syscall.ECONNRESET, Reset},
		{kernelClosed, syscall.EACCES, Error},
		{kernelSyncError, syscall.ENETUNREACH, Error},
		{kernelSyncError, syscall.EADDRNOTAVAIL, Error},
	} {
		var ev Event
		if err := Decode(rawEvent(tc.kernel, int32(tc.errno), syscall.AF_INET), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Outcome != tc.want || ev.Errno != tc.errno {
			t.Errorf("kernel outcome %d errno %v: got %s/%v, want %s", tc.kernel, tc.errno, ev.Outcome, ev.Errno, tc.want)
		}
	}
}

func TestDecodeFields(t *testing.T) {
	raw := rawEvent(kernelEstablished, 0, syscall.AF_INET6)
	mapped := netip.MustParseAddr("::ffff:198.51.100.7").As16()
	copy(raw[80:96], mapped[:])
	var ev Event
	if err := Decode(raw, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Peer != netip.MustParseAddrPort("198.51.100.7:80") {
		t.Errorf("peer %s: want the mapped address unmapped", ev.Peer)
	}
	if string(ev.Comm()) != "curl" || ev.PID != 42 || ev.StartNs != 100 || ev.EndNs != 200 || ev.Local.Port() != 5555 {
		t.Errorf("decoded %+v comm %q", ev, ev.Comm())
	}
	if err := Decode(raw[:EventSize-1], &ev); err == nil {
		t.Error("short record decoded without error")
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	raw := rawEvent(kernelClosed, int32(syscall.ECONNREFUSED), syscall.AF_INET6)
	var ev Event
	if n := testing.AllocsPerRun(100, func() { _ = Decode(raw, &ev) }); n != 0 {
		t.Fatalf("Decode allocates %.0f times per event", n)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(rawEvent(kernelEstablished, 0, syscall.AF_INET))
	f.Add(rawEvent(kernelClosed, int32(syscall.ECONNREFUSED), syscall.AF_INET6))
	f.Add(rawEvent(kernelSyncError, -22, 0))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var ev Event
		err := Decode(raw, &ev)
		if (err == nil) != (len(raw) >= EventSize) {
			t.Fatalf("len %d: err %v", len(raw), err)
		}
		if err != nil {
			return
		}
		if ev.Outcome.String() == "unknown" || !ev.Peer.IsValid() || !ev.Local.IsValid() || len(ev.Comm()) > 16 {
			t.Fatalf("malformed event %+v", ev)
		}
		if ev.Errno < 0 {
			t.Fatalf("negative errno %d", ev.Errno)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	raw := rawEvent(kernelEstablished, 0, syscall.AF_INET6)
	var ev Event
	b.ReportAllocs()
	for b.Loop() {
		_ = Decode(raw, &ev)
	}
}
