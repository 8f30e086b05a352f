package agent

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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

// A ledger that does not take checkpoints (wedged) makes the heartbeat
// overdue, which /healthz reports.
type stuckCheckpointer struct{ release chan struct{} }

func (s stuckCheckpointer) Checkpoint()                { <-s.release }
func (s stuckCheckpointer) Head() (uint64, chain.Link) { return 0, chain.Link{} }

func TestHealthzFailsWhileTheHeartbeatIsOverdue(t *testing.T) {
	stuck := stuckCheckpointer{release: make(chan struct{})}
	h := &Heartbeat{Ledger: stuck, Interval: time.Millisecond, Dir: t.TempDir(), Instance: "i-1", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv := NewHealthServer("", prometheus.NewRegistry(), nil, time.Minute, h.Log)
	get := func() int {
		rec := httptest.NewRecorder()
		srv.healthz(rec, httptest.NewRequest("GET", "/healthz", nil))
		return rec.Code
	}
	srv.WatchHeartbeat(h)
	if code := get(); code != 200 {
		t.Fatalf("before the heartbeat starts: %d", code)
	}
	h.Start()
	defer func() { close(stuck.release); h.Stop() }()
	last, _ := h.Overdue(time.Now())
	if _, overdue := h.Overdue(last.Add(time.Millisecond)); overdue {
		t.Error("overdue one interval after a beat")
	}
	if _, overdue := h.Overdue(last.Add(time.Second)); !overdue {
		t.Error("not overdue long after the last beat")
	}
	for get() == 200 {
		time.Sleep(time.Millisecond)
	}
}
