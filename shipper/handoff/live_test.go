package handoff

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func link(b byte) (l [32]byte) {
	for i := range l {
		l[i] = b
	}
	return l
}

// killedChild is the child process of TestLivePageOutlivesKill9: it keeps a
// live page, spools seqs 1..7, reads three events and spools one of them,
// says so, and waits to be killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("HANDOFF_KILLED_CHILD"); dir != "" {
		l, err := OpenLive(dir, "child-instance")
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		for seq := uint64(1); seq <= 7; seq++ {
			l.Spooled(seq, link(byte(seq)))
		}
		for range 3 {
			l.Read(time.Unix(1700000000, 0))
		}
		l.Done()
		fmt.Println("ready")
		time.Sleep(time.Minute)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// What a killed instance stored in its mapped page is what the next one
// reads: the last seq and chain value exactly, and the events it held.
func TestLivePageOutlivesKill9(t *testing.T) {
	dir := t.TempDir()
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "HANDOFF_KILLED_CHILD="+dir)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := out.Read(buf)
	if !strings.Contains(string(buf[:n]), "ready") {
		t.Fatalf("child: %q", buf[:n])
	}
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()

	prev, last, err := Previous(dir)
	want := Final{Instance: "child-instance", Seq: 7, Chain: fmt.Sprintf("%x", link(7)), Unspooled: 2, ReadAt: time.Unix(1700000000, 0)}
	if err != nil || last != want {
		t.Fatalf("after kill -9: %+v (%v), want %+v", last, err, want)
	}
	if *prev != (State{Instance: "child-instance", Seq: 7, Chain: want.Chain}) {
		t.Fatalf("previous %+v", *prev)
	}
}

// A write cut short in the inactive slot leaves the last whole one.
func TestLivePageKeepsTheLastWholeSlot(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenLive(dir, "i-1")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Spooled(41, link(41))
	l.Spooled(42, link(42))
	inactive := offSlots + int(l.mem[offSlot]^1)*slotSize
	copy(l.mem[inactive:], []byte{0xff, 0xff, 0xff, 0xff, 0xff}) // killed while writing seq 43
	f, ok, err := LoadLive(dir)
	if !ok || err != nil || f.Seq != 42 || f.Chain != fmt.Sprintf("%x", link(42)) {
		t.Fatalf("got %+v ok %v err %v, want seq 42", f, ok, err)
	}
}

// The live page names the predecessor when it spooled anything; else the
// synced chain head does. A damaged page is reported, and the chain head used.
func TestPreviousPrefersTheLivePage(t *testing.T) {
	dir := t.TempDir()
	if prev, last, err := Previous(dir); prev != nil || last != (Final{}) || err != nil {
		t.Fatalf("empty dir: %+v %+v %v", prev, last, err)
	}
	if err := Save(dir, State{Instance: "old", Seq: 10, Chain: "aa"}); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLive(dir, "new")
	if err != nil {
		t.Fatal(err)
	}
	if prev, _, _ := Previous(dir); prev == nil || prev.Instance != "old" {
		t.Fatalf("a live page with nothing spooled: previous %+v, want the chain head's", prev)
	}
	l.Spooled(3, link(3))
	l.Close()
	if prev, _, _ := Previous(dir); prev == nil || prev.Instance != "new" || prev.Seq != 3 {
		t.Fatalf("previous %+v, want new at seq 3", prev)
	}
	if err := os.WriteFile(filepath.Join(dir, LiveFileName), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if prev, _, err := Previous(dir); err == nil || prev == nil || prev.Instance != "old" {
		t.Fatalf("damaged page: previous %+v, err %v; want the chain head and an error", prev, err)
	}
	if _, err := OpenLive(dir, strings.Repeat("x", 65)); err == nil {
		t.Fatal("an instance id longer than the page's field was accepted")
	}
}
