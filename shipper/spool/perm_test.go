package spool

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// Records name processes, pods and peers, so only the spool's owner may read
// them: the directory is 0700, even when someone else made it 0755 (as a
// kubelet hostPath DirectoryOrCreate does), and every file is 0600.
func TestSpoolIsOwnerOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s, _, err := Open(dir, Options{MaxBytes: 1 << 20, SegmentBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 200; i++ { // several segments
		if err := s.Append([]byte("a record of about sixty bytes, to roll the 4 KiB segments")); err != nil {
			t.Fatal(err)
		}
	}
	b, err := s.Next(context.Background(), 10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(b); err != nil { // writes the cursor file
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}

	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o700 {
		t.Errorf("spool directory mode %o; want 700", perm)
	}
	files := 0
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files++
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s: mode %o; want 600", filepath.Base(path), perm)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 3 { // lock, cursor, segments
		t.Fatalf("only %d files in the spool; the test wrote too little to check", files)
	}
}
