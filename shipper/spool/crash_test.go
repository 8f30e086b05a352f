package spool

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

const killChildEnv = "SPOOL_KILL_CHILD_DIR"

// TestKillDuringAppend SIGKILLs a process that is appending and checks that
// every record whose Append had returned is recovered, in order.
func TestKillDuringAppend(t *testing.T) {
	if dir := os.Getenv(killChildEnv); dir != "" {
		killChild(dir)
		return
	}
	dir := t.TempDir()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var stderr bytes.Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillDuringAppend$")
	cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
	cmd.ExtraFiles = []*os.File{w} // fd 3: the child reports each returned Append
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()

	// Let it append for a while, across several segments, then kill it.
	returned := -1
	var report [8]byte
	deadline := time.Now().Add(10 * time.Second)
	for returned < 30000 && time.Now().Before(deadline) {
		if _, err := io.ReadFull(r, report[:]); err != nil {
			cmd.Wait()
			t.Fatalf("child stopped early: %v\n%s", err, stderr.String())
		}
		returned = int(le.Uint64(report[:]))
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(r)
	for ; len(rest) >= 8; rest = rest[8:] {
		returned = int(le.Uint64(rest))
	}
	cmd.Wait()

	s, rec := openT(t, dir, Options{SegmentBytes: 64 << 10})
	got := collect(t, s, 1000)
	if len(got) <= returned {
		t.Fatalf("recovered %d records, but Append had returned for %d", len(got), returned+1)
	}
	wantIndexes(t, got, seq(0, len(got)))
	// A kill can interrupt the pwrite of the record being appended (the
	// kernel checks for fatal signals between pages): at most that one
	// frame is a torn tail.
	if rec.Records != len(got) || rec.CorruptBytes > int64(frameHeaderSize+300) {
		t.Fatalf("Recovery = %+v for %d records", rec, len(got))
	}
	t.Logf("killed after %d returned appends; recovered %d records, %+v", returned+1, len(got), rec)
}

func killChild(dir string) {
	s, _, err := Open(dir, Options{SegmentBytes: 64 << 10, FsyncInterval: time.Hour})
	if err != nil {
		os.Stderr.WriteString(err.Error())
		os.Exit(2)
	}
	report := os.NewFile(3, "report")
	var b [8]byte
	for i := 0; i < 10_000_000; i++ {
		if err := s.Append(payloadFor(i)); err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(2)
		}
		le.PutUint64(b[:], uint64(i))
		if _, err := report.Write(b[:]); err != nil {
			os.Exit(3)
		}
	}
	os.Exit(0)
}
