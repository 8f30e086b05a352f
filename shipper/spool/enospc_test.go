package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mountTmpfs mounts a tmpfs of the given size (e.g. "1m") for the test.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("mounting a tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return dir
}

// fillUntilENOSPC appends records from i on until the disk refuses one, and
// checks that the spool then keeps refusing cleanly. It returns the index of
// the first refused record.
func fillUntilENOSPC(t *testing.T, s *Spool, dir string, i int) int {
	t.Helper()
	for ; ; i++ {
		err := s.Append(payloadFor(i))
		if err == nil {
			continue
		}
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Append(%d) = %v, want an error wrapping ENOSPC", i, err)
		}
		break
	}
	checkAccounting(t, s, dir) // the failed write was cut back
	for k := 0; k < 3; k++ {
		if err := s.Append(payloadFor(i)); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Append on a full disk = %v, want ENOSPC", err)
		}
		checkAccounting(t, s, dir)
	}
	return i
}

func TestENOSPC(t *testing.T) {
	for _, interval := range []time.Duration{0, 10 * time.Millisecond} {
		t.Run(fmt.Sprint("fsync=", interval), func(t *testing.T) {
			mnt := mountTmpfs(t, "1m")
			filler := filepath.Join(mnt, "filler")
			if err := os.WriteFile(filler, make([]byte, 600<<10), 0o600); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(mnt, "spool")
			opts := Options{MaxBytes: 64 << 20, SegmentBytes: 64 << 10, FsyncInterval: interval}
			s, _ := openT(t, dir, opts)

			// Fill the disk; everything accepted reads back intact.
			n := fillUntilENOSPC(t, s, dir, 0)
			if n < 100 {
				t.Fatalf("only %d records fit", n)
			}
			b, err := s.Next(context.Background(), n+10, 0)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, p := range b.Records {
				got = append(got, indexOf(t, p))
			}
			wantIndexes(t, got, seq(0, n))

			// Space returns (another file is deleted): Append works again.
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			appendN(t, s, n, n+100)

			// Fill again, then free space by acknowledging.
			m := fillUntilENOSPC(t, s, dir, n+100)
			wantIndexes(t, collect(t, s, 500), seq(0, m))
			s.Sync() // closes deleted segments' files; may report an earlier failed cursor write
			if err := s.Sync(); err != nil {
				t.Fatalf("Sync after freeing space: %v", err)
			}
			appendN(t, s, m, m+100)
			checkAccounting(t, s, dir)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s, rec := openT(t, dir, opts)
			wantRecovery(t, rec, 100, 0, 0)
			wantIndexes(t, collect(t, s, 500), seq(m, m+100))
		})
	}
}

// A disk filled by the active segment alone frees up once its records are
// acknowledged: the spool moves to a new segment.
func TestENOSPCInTheActiveSegmentRecovers(t *testing.T) {
	dir := mountTmpfs(t, "1m")
	s, _, err := Open(dir, Options{MaxBytes: 64 << 20, SegmentBytes: 16 << 20, FsyncInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	accepted := fillUntilENOSPC(t, s, dir, 0)
	for s.Stats().Records > 0 {
		b, err := s.Next(context.Background(), 4096, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Ack(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Append(make([]byte, 300)); err != nil {
		t.Fatalf("after acknowledging all %d records, Append still fails: %v", accepted, err)
	}
	if st := s.Stats(); st.Records != 1 || st.Segments != 1 {
		t.Fatalf("stats %+v: want one record in one segment", st)
	}
}
