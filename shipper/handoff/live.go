package handoff

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// LiveFileName is the page the running instance keeps mapped beside the
// spool (see Live); the spool ignores it.
const LiveFileName = "live.state"

// The page: a magic, the instance, the index of the slot that holds the last
// spooled seq and chain value (written into the other slot, then switched,
// so that a kill in the middle of a write leaves the previous one whole),
// and the count of events read from the kernel and not yet spooled.
const (
	liveMagic     = "CAUDLIV1"
	liveSize      = 4096
	offInstance   = 8   // 64 bytes, NUL-padded
	offSlot       = 72  // uint32
	offUnspooled  = 80  // uint64
	offReadAt     = 88  // int64, unix nanoseconds of the last read
	offSlots      = 128 // two slots of 64 bytes: seq uint64, chain [32]byte
	slotSize      = 64
	maxInstance   = 64
	chainLinkSize = 32
)

// Live is a page in the spool directory that the running instance keeps
// mapped and updates with plain stores: its last spooled seq and chain
// value, and how many events it has read from the kernel and not yet
// spooled: connect attempts held for their pod or a DNS answer, or in
// hand, and DNS answers held for their receiver's pod. Stores into
// a shared file mapping are in the page cache at once, so the next instance
// reads them after a kill -9 of this one. A machine crash can lose them:
// the chain head that Save syncs at every heartbeat covers that. The
// methods of a nil *Live do nothing.
type Live struct {
	f   *os.File
	mem []byte
}

// Final is what an instance's page says of it.
type Final struct {
	Instance  string
	Seq       uint64 // the last seq it spooled; 0 for none
	Chain     string // that record's connaudit.chain, hex
	Unspooled uint64 // connect events and DNS answers it had read and not spooled
	ReadAt    time.Time
}

// LoadLive reads the page an earlier instance left in dir; ok is false when
// there is none.
func LoadLive(dir string) (f Final, ok bool, err error) {
	path := filepath.Join(dir, LiveFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, false, nil
	}
	if err != nil {
		return f, false, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) != liveSize || string(b[:8]) != liveMagic {
		return f, false, fmt.Errorf("%s is damaged (%d bytes)", path, len(b))
	}
	instance := b[offInstance : offInstance+maxInstance]
	for i, c := range instance {
		if c == 0 {
			instance = instance[:i]
			break
		}
	}
	slot := binary.LittleEndian.Uint32(b[offSlot:]) & 1
	s := b[offSlots+slot*slotSize:]
	f = Final{
		Instance:  string(instance),
		Seq:       binary.LittleEndian.Uint64(s),
		Chain:     fmt.Sprintf("%x", s[8:8+chainLinkSize]),
		Unspooled: binary.LittleEndian.Uint64(b[offUnspooled:]),
	}
	if t := int64(binary.LittleEndian.Uint64(b[offReadAt:])); t != 0 {
		f.ReadAt = time.Unix(0, t)
	}
	if f.Instance == "" {
		return Final{}, false, fmt.Errorf("%s names no instance", path)
	}
	return f, true, nil
}

// OpenLive makes a new page for instance in dir, in place of the one an
// earlier instance left: read that first with LoadLive.
func OpenLive(dir, instance string) (*Live, error) {
	if len(instance) > maxInstance {
		return nil, fmt.Errorf("instance id %q is longer than %d bytes", instance, maxInstance)
	}
	page := make([]byte, liveSize)
	copy(page, liveMagic)
	copy(page[offInstance:], instance)
	path := filepath.Join(dir, LiveFileName)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, page, 0o600); err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, liveSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("map %s: %w", path, err)
	}
	return &Live{f: f, mem: mem}, nil
}

func (l *Live) u64(off int) *uint64 { return (*uint64)(unsafe.Pointer(&l.mem[off])) }
func (l *Live) u32(off int) *uint32 { return (*uint32)(unsafe.Pointer(&l.mem[off])) }

// Spooled records seq, whose chain value is link, as the last spooled. One
// goroutine at a time (the ledger's) may call it.
func (l *Live) Spooled(seq uint64, link [chainLinkSize]byte) {
	if l == nil {
		return
	}
	next := atomic.LoadUint32(l.u32(offSlot)) ^ 1
	s := offSlots + int(next)*slotSize
	atomic.StoreUint64(l.u64(s), seq)
	copy(l.mem[s+8:s+8+chainLinkSize], link[:])
	atomic.StoreUint32(l.u32(offSlot), next)
}

// Read counts an event read from the kernel at t, not yet spooled.
func (l *Live) Read(t time.Time) {
	if l == nil {
		return
	}
	atomic.AddUint64(l.u64(offUnspooled), 1)
	atomic.StoreUint64(l.u64(offReadAt), uint64(t.UnixNano()))
}

// Done counts an event spooled (or accounted for otherwise).
func (l *Live) Done() {
	if l == nil {
		return
	}
	atomic.AddUint64(l.u64(offUnspooled), ^uint64(0))
}

// Unspooled is the count of events read and not yet spooled.
func (l *Live) Unspooled() uint64 {
	if l == nil {
		return 0
	}
	return atomic.LoadUint64(l.u64(offUnspooled))
}

// Close unmaps the page; it stays on disk for the next instance.
func (l *Live) Close() error {
	if l == nil {
		return nil
	}
	err := unix.Munmap(l.mem)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Previous is what the instance that ran in dir before this one left: its
// chain head (exact from its live page, even after a kill -9; else the last
// one it saved, a lower bound) and, when it ended without spooling every
// connect event it had read, how many. prev is nil when no instance left a
// trace. An unreadable file is reported in err, and the other one used.
func Previous(dir string) (prev *State, last Final, err error) {
	saved, savedOK, savedErr := Load(dir)
	last, liveOK, liveErr := LoadLive(dir)
	switch {
	case liveOK && last.Seq > 0:
		prev = &State{Instance: last.Instance, Seq: last.Seq, Chain: last.Chain}
	case savedOK:
		prev = &saved
	}
	if !liveOK {
		last = Final{}
	}
	return prev, last, errors.Join(savedErr, liveErr)
}
