package bpf

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// EventLayout versions struct event, the ring buffer's record. Bump it when
// the layout changes: a new agent drains the ring buffer of a pinned capture
// with the same layout, and only counts the records of another.
const EventLayout = 1

// pinState is where this build's objects are pinned. The directory name
// carries the event layout and a hash of the eBPF object and the map sizes,
// so an agent only ever resumes objects identical to its own; other
// connaudit captures under Config.PinDir are taken over (see takeOver).
// Entries connaudit did not create are never touched.
type pinState struct {
	dir      string
	resumed  bool
	previous []string // other connaudit captures found beside ours, to take over
}

const bpffsRoot = "/sys/fs/bpf"

// ownPin matches the names of connaudit's pin directories: v<layout>-<hash>,
// or v-<hash> from before layouts were versioned (layout 1).
var ownPin = regexp.MustCompile(`^v([0-9]*)-[0-9a-f]{16}$`)

func preparePins(cfg Config, spec *ebpf.CollectionSpec) (*pinState, error) {
	if err := ensureBPFFS(cfg.PinDir); err != nil {
		return nil, err
	}
	// Before creating anything: on a host without bpffs at /sys/fs/bpf, a
	// hostPath of it is an empty directory of sysfs, where mkdir fails with
	// an error that says nothing of bpffs.
	if err := checkBPFFS(nearestExisting(cfg.PinDir)); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.PinDir, 0o700); err != nil {
		return nil, fmt.Errorf("create pin directory %s: %w", cfg.PinDir, err)
	}
	// The pins give whoever can open them the capture's maps; a directory
	// made by someone else (a kubelet hostPath makes 0755) is narrowed.
	if err := os.Chmod(cfg.PinDir, 0o700); err != nil {
		return nil, fmt.Errorf("restrict pin directory %s to its owner: %w", cfg.PinDir, err)
	}
	if err := checkBPFFS(cfg.PinDir); err != nil {
		return nil, err
	}
	p := &pinState{dir: filepath.Join(cfg.PinDir, pinName(cfg))}
	previous, err := ownPins(cfg.PinDir)
	if err != nil {
		return nil, err
	}
	for _, old := range previous {
		if old != p.dir {
			p.previous = append(p.previous, old)
		}
	}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pin directory %s: %w", p.dir, err)
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinByName
	}
	return p, nil
}

// checkBPFFS fails unless dir is on a bpffs, saying what to do.
func checkBPFFS(dir string) error {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return fmt.Errorf("CONNAUDIT_BPF_PIN_DIR: statfs %s: %w", dir, err)
	}
	if fs.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("CONNAUDIT_BPF_PIN_DIR: %s is not on a bpffs (filesystem magic %#x, not BPF_FS_MAGIC %#x): "+
			"mount bpffs on the host (mount -t bpf bpf /sys/fs/bpf; systemd does on most distributions) and, in a pod, "+
			"mount the host's /sys/fs/bpf (hostPath) and point CONNAUDIT_BPF_PIN_DIR below it; "+
			"or set CONNAUDIT_BPF_PIN_DIR empty to run without pinning (capture then stops while the agent restarts)",
			dir, uint64(fs.Type), uint64(unix.BPF_FS_MAGIC))
	}
	return nil
}

// nearestExisting returns dir, or its closest ancestor that exists.
func nearestExisting(dir string) string {
	dir = filepath.Clean(dir)
	for {
		if _, err := os.Stat(dir); err == nil || dir == filepath.Dir(dir) {
			return dir
		}
		dir = filepath.Dir(dir)
	}
}

// ownPins lists connaudit's pin directories in dir.
func ownPins(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read pin directory: %w", err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() && ownPin.MatchString(e.Name()) {
			dirs = append(dirs, filepath.Join(dir, e.Name()))
		}
	}
	return dirs, nil
}

func pinLayout(dir string) int {
	m := ownPin.FindStringSubmatch(filepath.Base(dir))
	if m == nil || m[1] == "" {
		return 1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// ensureBPFFS mounts bpffs at /sys/fs/bpf when the pin directory is under it
// and nothing is mounted there yet, as on hosts where systemd does not.
// A pin directory that is itself on a bpffs needs nothing, as in a pod that
// mounts only its own directory of the host's bpffs at /sys/fs/bpf/connaudit,
// where /sys/fs/bpf is no bpffs and the agent may not mount one.
func ensureBPFFS(pinDir string) error {
	if !strings.HasPrefix(filepath.Clean(pinDir)+"/", bpffsRoot+"/") {
		return nil
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(pinDir, &fs); err == nil && fs.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := unix.Statfs(bpffsRoot, &fs); err == nil && fs.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := unix.Mount("bpf", bpffsRoot, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("bpffs is not mounted at %s and mounting it failed (mount it, run privileged, or leave CONNAUDIT_BPF_PIN_DIR empty): %w", bpffsRoot, err)
	}
	return nil
}

// resumeLinks opens the pinned links of an earlier agent. It returns nil, and
// removes partial leftovers, unless all of them are there.
func (p *pinState) resumeLinks() []link.Link {
	var links []link.Link
	for _, tp := range tracepoints {
		l, err := link.LoadPinnedLink(filepath.Join(p.dir, tp.pin), nil)
		if err != nil {
			for _, l := range links {
				l.Close()
			}
			for _, tp := range tracepoints {
				_ = os.Remove(filepath.Join(p.dir, tp.pin))
			}
			return nil
		}
		links = append(links, l)
	}
	p.resumed = true
	return links
}

func pinName(cfg Config) string {
	h := sha256.New()
	h.Write(_ConnectBytes)
	h.Write([]byte(pinSalt))
	var sizes [16]byte
	binary.LittleEndian.PutUint64(sizes[:], uint64(cfg.RingBufferBytes))
	binary.LittleEndian.PutUint64(sizes[8:], uint64(cfg.HandshakeEntries))
	h.Write(sizes[:])
	return "v" + strconv.Itoa(EventLayout) + "-" + hex.EncodeToString(h.Sum(nil)[:8])
}

// pinSalt is mixed into the pin name. Tests set it with -ldflags to build two
// agents whose captures differ, as an upgrade's do.
var pinSalt = ""

// Takeover is what became of a pinned capture of another connaudit build or
// size that this one replaced.
type Takeover struct {
	Dir string
	// Drained: the capture's events have the same layout; Read delivers
	// what its ring buffer held before this tracer's own events.
	Drained bool
	// Unreadable counts the records of a ring buffer of another layout:
	// attempts that are lost.
	Unreadable uint64
	// Unreported are the capture's losses its agents had not reported yet.
	Unreported Counters
}

// takeOver retires a previous capture after this tracer's programs are
// attached, so that no attempt goes unseen in between: its links are
// removed, which detaches its programs, and its ring buffer is kept for Read
// to drain (or counted, when its layout differs). An attempt made in the
// instant both captures ran may be recorded twice.
func (t *Tracer) takeOver(dir string) Takeover {
	tk := Takeover{Dir: dir}
	for _, tp := range tracepoints {
		if l, err := link.LoadPinnedLink(filepath.Join(dir, tp.pin), nil); err == nil {
			_ = l.Unpin()
			l.Close()
		}
	}
	if counters, err := ebpf.LoadPinnedMap(filepath.Join(dir, "counters"), nil); err == nil {
		tk.Unreported = unreported(counters)
		counters.Close()
	}
	events, err := ebpf.LoadPinnedMap(filepath.Join(dir, "events"), nil)
	if err == nil {
		if r, err := ringbuf.NewReader(events); err == nil {
			if pinLayout(dir) == EventLayout {
				t.backlog = append(t.backlog, r)
				tk.Drained = true
			} else {
				tk.Unreadable = countRecords(r)
				r.Close()
			}
		}
		events.Close() // the reader holds its own reference
	}
	// Whatever could not be opened is gone with the directory.
	_ = os.RemoveAll(dir)
	return tk
}

func unreported(counters *ebpf.Map) Counters {
	var v [4]uint64
	for slot := range v {
		_ = counters.Lookup(uint32(slot), &v[slot])
	}
	since := func(total, reported uint64) uint64 {
		if total < reported {
			return 0
		}
		return total - reported
	}
	return Counters{RingBufferLost: since(v[slotRingBufferLost], v[slotRingBufferReported]),
		HandshakeLost: since(v[slotHandshakeLost], v[slotHandshakeReported])}
}

func countRecords(r *ringbuf.Reader) uint64 {
	var n uint64
	var rec ringbuf.Record
	for {
		r.SetDeadline(time.Now())
		if err := r.ReadInto(&rec); err != nil {
			return n
		}
		n++
	}
}

// Unpin removes the captures connaudit pinned under dir, which stops capture
// that no process holds any more. It refuses a dir that is not on a bpffs and
// never touches entries that connaudit did not create. It returns how many
// pinned captures it removed.
func Unpin(dir string) (int, error) {
	if dir == "" {
		return 0, errors.New("no pin directory given")
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err := checkBPFFS(dir); err != nil {
		return 0, err
	}
	pins, err := ownPins(dir)
	if err != nil {
		return 0, err
	}
	for i, p := range pins {
		if err := os.RemoveAll(p); err != nil {
			return i, fmt.Errorf("remove %s: %w", p, err)
		}
	}
	// A directory of connaudit's own goes too once empty; a shared one such
	// as /sys/fs/bpf stays.
	if strings.HasPrefix(filepath.Base(dir), "connaudit") {
		_ = unix.Rmdir(dir)
	}
	return len(pins), nil
}
