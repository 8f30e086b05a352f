package bpf

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// BootClock converts the kernel's CLOCK_BOOTTIME stamps to wall-clock time.
// Sync re-reads the offset, so that wall-clock steps (NTP) are followed.
type BootClock struct{ offsetNs atomic.Int64 }

// NewBootClock returns a clock whose offset is read now.
func NewBootClock() *BootClock {
	c := &BootClock{}
	c.Sync()
	return c
}

// Sync measures realtime - boottime.
func (c *BootClock) Sync() {
	var boot unix.Timespec
	real := time.Now().UnixNano()
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot); err != nil {
		return // CLOCK_BOOTTIME exists since Linux 2.6.39; keep the last offset
	}
	c.offsetNs.Store(real - boot.Nano())
}

// Wall converts a CLOCK_BOOTTIME stamp.
func (c *BootClock) Wall(bootNs uint64) time.Time {
	return time.Unix(0, int64(bootNs)+c.offsetNs.Load())
}
