package bpf

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// pinState is where this build's objects are pinned. The directory name is a
// hash of the eBPF object and the map sizes, so an agent only ever resumes
// objects it is compatible with; anything else under Config.PinDir belongs to
// another version and is replaced.
type pinState struct {
	dir      string
	resumed  bool
	replaced []string
}

const bpffsRoot = "/sys/fs/bpf"

func preparePins(cfg Config, spec *ebpf.CollectionSpec) (*pinState, error) {
	if err := ensureBPFFS(cfg.PinDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.PinDir, 0o700); err != nil {
		return nil, fmt.Errorf("create pin directory %s: %w", cfg.PinDir, err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(cfg.PinDir, &fs); err != nil || fs.Type != unix.BPF_FS_MAGIC {
		return nil, fmt.Errorf("pin directory %s is not on a bpffs: mount one (mount -t bpf bpf /sys/fs/bpf) or leave CONNAUDIT_BPF_PIN_DIR empty", cfg.PinDir)
	}
	p := &pinState{dir: filepath.Join(cfg.PinDir, pinName(cfg))}
	entries, err := os.ReadDir(cfg.PinDir)
	if err != nil {
		return nil, fmt.Errorf("read pin directory: %w", err)
	}
	for _, e := range entries {
		old := filepath.Join(cfg.PinDir, e.Name())
		if old == p.dir {
			continue
		}
		// Unpinning detaches the old programs once no process holds them.
		if err := os.RemoveAll(old); err != nil {
			return nil, fmt.Errorf("remove incompatible pinned capture %s: %w", old, err)
		}
		p.replaced = append(p.replaced, old)
	}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pin directory %s: %w", p.dir, err)
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinByName
	}
	return p, nil
}

// ensureBPFFS mounts bpffs at /sys/fs/bpf when the pin directory is under it
// and nothing is mounted there yet, as on hosts where systemd does not.
func ensureBPFFS(pinDir string) error {
	if !strings.HasPrefix(filepath.Clean(pinDir)+"/", bpffsRoot+"/") {
		return nil
	}
	var fs unix.Statfs_t
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
	var sizes [16]byte
	binary.LittleEndian.PutUint64(sizes[:], uint64(cfg.RingBufferBytes))
	binary.LittleEndian.PutUint64(sizes[8:], uint64(cfg.HandshakeEntries))
	h.Write(sizes[:])
	return "v-" + hex.EncodeToString(h.Sum(nil)[:8])
}

// Unpin removes everything pinned under dir, which stops capture that no
// process holds any more.
func Unpin(dir string) error {
	if dir == "" {
		return errors.New("no pin directory given")
	}
	return os.RemoveAll(dir)
}
