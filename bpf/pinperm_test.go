package bpf_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/connaudit/connaudit/bpf"
)

// Whoever can open a pinned map can read or fill the capture, so the pin
// directory is the owner's only, even when someone else made it 0755 (as a
// kubelet hostPath DirectoryOrCreate does).
func TestPinsAreOwnerOnly(t *testing.T) {
	pinDir := fmt.Sprintf("/sys/fs/bpf/connaudit-permtest-%d", os.Getpid())
	if err := os.Mkdir(pinDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pinDir) })
	tr, err := bpf.Load(bpf.Config{RingBufferBytes: 1 << 20, HandshakeEntries: 1024, PinDir: pinDir})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	dirs := 0
	err = filepath.WalkDir(pinDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		dirs++
		if perm := info.Mode().Perm(); perm != 0o700 {
			t.Errorf("%s: mode %o; want 700", path, perm)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if dirs < 2 {
		t.Fatalf("%d directories under %s; want the pin directory and the capture's", dirs, pinDir)
	}
}

// A pin directory that is not on a bpffs (a host without bpffs at
// /sys/fs/bpf, whose hostPath is then an empty directory) stops the agent
// with an error that names the variable, the filesystem and what to do,
// before anything is created there.
func TestPinDirNotOnBPFFS(t *testing.T) {
	hostBPF := t.TempDir() // tmpfs or ext4, as sysfs would be: anything but bpffs
	pinDir := filepath.Join(hostBPF, "connaudit")
	_, err := bpf.Load(bpf.Config{RingBufferBytes: 1 << 20, HandshakeEntries: 1024, PinDir: pinDir})
	if err == nil {
		t.Fatal("Load pinned in a directory that is not on a bpffs")
	}
	for _, want := range []string{"CONNAUDIT_BPF_PIN_DIR", hostBPF + " is not on a bpffs", "BPF_FS_MAGIC 0xcafe4a11", "mount -t bpf bpf /sys/fs/bpf", "empty to run without pinning"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if _, err := os.Stat(pinDir); !os.IsNotExist(err) {
		t.Errorf("%s was created: %v", pinDir, err)
	}
}
