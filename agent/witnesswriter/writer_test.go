package witnesswriter

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/connaudit/connaudit/trail/chain"
	"github.com/connaudit/connaudit/trail/checkpoint"
	"github.com/connaudit/connaudit/trail/witness"
)

var leases = schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}

// store is an API server's Lease storage in memory, with resourceVersion
// conflicts, a write it can be told to refuse, and a gate that holds writes.
type store struct {
	mu      sync.Mutex
	lease   *coordinationv1.Lease
	version int
	refuse  error
	gate    chan struct{} // when set, writes wait on it
	writes  int
}

func (s *store) Namespace() string { return "connaudit" }

func (s *store) Get(_ context.Context, name string) (*coordinationv1.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lease == nil {
		return nil, apierrors.NewNotFound(leases, name)
	}
	return s.lease.DeepCopy(), nil
}

func (s *store) put(l *coordinationv1.Lease, create bool) (*coordinationv1.Lease, error) {
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuse != nil {
		return nil, s.refuse
	}
	switch {
	case create && s.lease != nil:
		return nil, apierrors.NewAlreadyExists(leases, l.Name)
	case !create && (s.lease == nil || s.lease.ResourceVersion != l.ResourceVersion):
		return nil, apierrors.NewConflict(leases, l.Name, errors.New("the object has been modified"))
	}
	s.version++
	s.writes++
	l = l.DeepCopy()
	l.ResourceVersion = string(rune('a' + s.version))
	s.lease = l
	return l.DeepCopy(), nil
}

func (s *store) Create(_ context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	return s.put(l, true)
}
func (s *store) Update(_ context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	return s.put(l, false)
}

func (s *store) witness(t *testing.T) witness.Witness {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lease == nil {
		t.Fatal("no Lease written")
	}
	w, err := witness.FromLease(s.lease)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func newWriter(t *testing.T, s *store, id string, cfg Config) (*Writer, Metrics) {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	cfg.Node, cfg.Instance = "node-1", witness.Instance{ID: id, Key: "a2V5", Heartbeat: time.Second}
	w, err := New(cfg, s, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return w, m
}

func cp(last uint64) checkpoint.Checkpoint {
	return checkpoint.Checkpoint{First: 1, Last: last, Head: chain.Link{byte(last)}}
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
	}
}

// Checkpointed never waits for the API server: with every write held, a
// thousand checkpoints are taken at once, and the newest is the one written.
func TestCheckpointedNeverBlocks(t *testing.T) {
	s := &store{gate: make(chan struct{})}
	w, _ := newWriter(t, s, "i-1", Config{MinInterval: time.Millisecond})
	w.Start()
	start := time.Now()
	for i := range 1000 {
		w.Checkpointed(cp(uint64(i+1)), "sig", time.Now())
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("1000 checkpoints took %s with the API server stuck", d)
	}
	close(s.gate)
	waitUntil(t, "checkpoint 1000 written", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.lease == nil {
			return false
		}
		wi, _ := witness.FromLease(s.lease)
		return wi.Current.Latest != nil && wi.Current.Latest.Last == 1000
	})
	if err := w.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.writes > 20 {
		t.Errorf("%d writes for 1000 checkpoints; want them coalesced", s.writes)
	}
}

// A refusal is counted, logged, retried, and Check names it once the
// witness is stale; once the API server accepts, Check is clear.
func TestRefusalIsCountedAndNamed(t *testing.T) {
	s := &store{refuse: apierrors.NewForbidden(leases, "connaudit-witness-node-1", errors.New(`User "x" cannot update resource "leases"`))}
	w, m := newWriter(t, s, "i-1", Config{MinInterval: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond, Stale: 20 * time.Millisecond})
	w.Start()
	defer w.Stop(context.Background())
	waitUntil(t, "two refusals counted", func() bool { return testutil.ToFloat64(m.Failures.WithLabelValues("forbidden")) >= 2 })
	waitUntil(t, "Check fails", func() bool { return w.Check() != nil })
	if err := w.Check(); !strings.Contains(err.Error(), "connaudit/connaudit-witness-node-1") || !strings.Contains(err.Error(), `cannot update resource "leases"`) {
		t.Errorf("Check: %v", err)
	}
	s.mu.Lock()
	s.refuse = nil
	s.mu.Unlock()
	waitUntil(t, "written after the refusal ends", func() bool { return w.Check() == nil && testutil.ToFloat64(m.Writes) >= 1 })
}

// A second instance moves the first into the history; the first, still
// writing (two agents overlapping), updates its history entry and does not
// take the witness back.
func TestInstancesTakeOver(t *testing.T) {
	s := &store{}
	w1, _ := newWriter(t, s, "i-1", Config{MinInterval: time.Millisecond})
	w1.Start()
	w1.Checkpointed(cp(5), "s", time.Now())
	waitUntil(t, "i-1 at 5", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.lease != nil && strings.Contains(s.lease.Annotations[witness.Annotation], `"seq_last":5`)
	})
	w2, _ := newWriter(t, s, "i-2", Config{MinInterval: time.Millisecond})
	w2.Start()
	waitUntil(t, "i-2 current", func() bool { return s.witness(t).Current.ID == "i-2" })
	w1.Checkpointed(cp(9), "s", time.Now())
	if err := w1.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = w2.Stop(context.Background())
	got := s.witness(t)
	if got.Current.ID != "i-2" || len(got.History) != 1 || got.History[0].ID != "i-1" || got.History[0].Latest.Last != 9 {
		t.Fatalf("witness %+v; want i-2 current and i-1 in the history at seq 9", got)
	}
}
