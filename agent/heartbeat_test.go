package agent

import (
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/connaudit/connaudit/shipper/handoff"
	"github.com/connaudit/connaudit/trail/chain"
)

type fakeCheckpointer struct {
	mu  sync.Mutex
	n   uint64
	got chan struct{}
}

func (f *fakeCheckpointer) Checkpoint() {
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
	select {
	case f.got <- struct{}{}:
	default:
	}
}

func (f *fakeCheckpointer) Head() (uint64, chain.Link) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n, chain.Link{byte(f.n)}
}

func TestHeartbeatCheckpointsAndSavesTheHead(t *testing.T) {
	dir := t.TempDir()
	f := &fakeCheckpointer{got: make(chan struct{}, 1)}
	h := &Heartbeat{Ledger: f, Interval: time.Millisecond, Dir: dir, Instance: "i-1", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	h.Start()
	<-f.got
	<-f.got
	h.Stop()
	f.mu.Lock()
	n := f.n
	f.mu.Unlock()
	h.Save()
	s, ok, err := handoff.Load(dir)
	if !ok || err != nil {
		t.Fatalf("no state: %v", err)
	}
	if s.Instance != "i-1" || s.Seq != n || s.Chain != (chain.Link{byte(n)}).String() {
		t.Errorf("state %+v after %d checkpoints", s, n)
	}
	// Stopped: no checkpoint follows.
	time.Sleep(5 * time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n != n {
		t.Errorf("a checkpoint after Stop")
	}
}
