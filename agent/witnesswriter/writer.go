// Package witnesswriter keeps a node's witness (package trail/witness) up to
// date from the agent: at start it makes the agent's instance the current
// one (the one before moves into the history), and then writes the latest
// signed checkpoint at most every MinInterval. The ledger tells it of a
// checkpoint on the capture path; that call only stores the checkpoint, and
// the API server is written from a goroutine of its own, with retries, so
// that a slow or refusing API server never slows capture.
package witnesswriter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connaudit/connaudit/trail/checkpoint"
	"github.com/connaudit/connaudit/trail/witness"
)

// Store is where the witness Lease is kept (*k8s.Leases).
type Store interface {
	Namespace() string
	Get(ctx context.Context, name string) (*coordinationv1.Lease, error)
	Create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error)
	Update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error)
}

// Config is the instance the writer witnesses.
type Config struct {
	Node        string
	Instance    witness.Instance // ID, Key, Started, Heartbeat
	MinInterval time.Duration    // at most one write per interval (the heartbeat)
	MaxBackoff  time.Duration    // between retries of a failed write
	// Stale is how long the witness may go unwritten before Check fails
	// (0: three MinIntervals, at least a minute).
	Stale time.Duration
}

// Metrics count the writes.
type Metrics struct {
	Writes   prometheus.Counter
	Failures *prometheus.CounterVec // by reason: forbidden, conflict, unavailable, other
}

// NewMetrics registers the writer's metrics.
func NewMetrics(reg prometheus.Registerer) Metrics {
	m := Metrics{
		Writes: prometheus.NewCounter(prometheus.CounterOpts{Name: "connaudit_witness_writes_total",
			Help: "Writes of the node's witness Lease that the API server accepted."}),
		Failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "connaudit_witness_write_failures_total",
			Help: "Writes of the node's witness Lease that failed (they are retried), by reason."}, []string{"reason"}),
	}
	reg.MustRegister(m.Writes, m.Failures)
	return m
}

// Writer keeps one node's witness.
type Writer struct {
	cfg     Config
	name    string
	store   Store
	log     *slog.Logger
	metrics Metrics

	mu        sync.Mutex
	latest    *witness.Checkpoint // newest checkpoint told, not yet written
	lastWrite time.Time           // of an accepted write
	lastErr   error               // of the last attempt; nil once one succeeds
	begun     bool                // this instance is in the stored witness

	wake chan struct{}
	stop context.CancelFunc
	done chan struct{}
}

// New makes the writer of cfg.Node's witness; nothing is written before Start.
func New(cfg Config, store Store, metrics Metrics, log *slog.Logger) (*Writer, error) {
	name, err := witness.LeaseName(cfg.Node)
	if err != nil {
		return nil, err
	}
	if cfg.Instance.ID == "" || cfg.Instance.Key == "" {
		return nil, errors.New("witness writer: no instance id or key")
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = 10 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = cfg.MinInterval
	}
	if cfg.Stale <= 0 {
		cfg.Stale = max(3*cfg.MinInterval, time.Minute)
	}
	return &Writer{cfg: cfg, name: name, store: store, log: log.With("witness", store.Namespace()+"/"+name),
		metrics: metrics, wake: make(chan struct{}, 1)}, nil
}

// Checkpointed takes a checkpoint that reached the spool. It never blocks:
// it is called with the ledger locked.
func (w *Writer) Checkpointed(c checkpoint.Checkpoint, signature string, at time.Time) {
	w.mu.Lock()
	w.latest = &witness.Checkpoint{First: c.First, Last: c.Last, Count: c.Count, Head: c.Head.String(), Signature: signature, Time: at.UTC()}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Start writes the witness until Stop: first this instance as the current
// one, then each newest checkpoint, at most every MinInterval.
func (w *Writer) Start() {
	ctx, stop := context.WithCancel(context.Background())
	w.stop, w.done = stop, make(chan struct{})
	w.lastWrite = time.Now() // Check counts staleness from the start
	go func() {
		defer close(w.done)
		w.run(ctx)
	}()
}

func (w *Writer) run(ctx context.Context) {
	backoff := time.Second
	for {
		err := w.write(ctx)
		wait := w.cfg.MinInterval
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait = backoff/2 + rand.N(backoff/2+1) // jittered
			backoff = min(2*backoff, w.cfg.MaxBackoff)
		} else {
			backoff = time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err == nil && !w.pending() {
			// Nothing new: wait for the next checkpoint.
			select {
			case <-ctx.Done():
				return
			case <-w.wake:
			}
		}
	}
}

func (w *Writer) pending() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.latest != nil || !w.begun
}

// Stop ends the writes, then writes what is pending once more (the final
// checkpoint, which the stop record follows), within ctx.
func (w *Writer) Stop(ctx context.Context) error {
	if w.stop == nil {
		return nil
	}
	w.stop()
	<-w.done
	if !w.pending() {
		return nil
	}
	return w.write(ctx)
}

// Check reports what the witness lacks once its writes have failed for
// longer than Stale (a short API server outage is retried unseen; the log
// names every new error at once). It names the Lease and the API server's
// answer: an RBAC refusal names the verb and resource, an admission refusal
// the policy's message.
func (w *Writer) Check() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lastErr == nil {
		return nil
	}
	if time.Since(w.lastWrite) > w.cfg.Stale {
		return fmt.Errorf("witness Lease %s/%s not written since %s: %w", w.store.Namespace(), w.name,
			w.lastWrite.UTC().Format(time.RFC3339), w.lastErr)
	}
	return nil
}

// write makes one attempt to put the pending state in the Lease; a
// conflict (someone else wrote it since it was read) is read again and
// retried at once, a few times.
func (w *Writer) write(ctx context.Context) error {
	w.mu.Lock()
	latest := w.latest
	w.mu.Unlock()
	var err error
	for range 4 {
		err = w.tryWrite(ctx, latest)
		if !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
			break
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.metrics.Writes.Inc()
		if w.latest == latest {
			w.latest = nil
		}
		if !w.begun {
			w.log.Info("witness written: this instance is the node's current one")
		}
		if w.lastErr != nil {
			w.log.Info("witness written again")
		}
		w.begun, w.lastErr, w.lastWrite = true, nil, time.Now()
		return nil
	}
	w.metrics.Failures.WithLabelValues(reason(err)).Inc()
	if w.lastErr == nil || w.lastErr.Error() != err.Error() {
		w.log.Warn("cannot write the node's witness; retrying (verify will find the trail witnessed up to the last checkpoint written)", "err", err, "reason", reason(err))
	}
	w.lastErr = err
	return err
}

func (w *Writer) tryWrite(ctx context.Context, latest *witness.Checkpoint) error {
	lease, err := w.store.Get(ctx, w.name)
	create := apierrors.IsNotFound(err)
	if err != nil && !create {
		return fmt.Errorf("get lease %s: %w", w.name, err)
	}
	var wit witness.Witness
	if create {
		lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: w.name, Namespace: w.store.Namespace()}}
	} else if wit, err = witness.FromLease(lease); err != nil && lease.Annotations[witness.Annotation] != "" {
		w.log.Warn("the node's witness cannot be read; writing it anew (its history is lost)", "err", err)
		wit = witness.Witness{}
	}
	w.merge(&wit, latest)
	if err := wit.ApplyTo(lease); err != nil {
		return err
	}
	if create {
		_, err = w.store.Create(ctx, lease)
		if err != nil {
			return fmt.Errorf("create lease %s: %w", w.name, err)
		}
		return nil
	}
	if _, err = w.store.Update(ctx, lease); err != nil {
		return fmt.Errorf("update lease %s: %w", w.name, err)
	}
	return nil
}

// merge puts this instance and its latest checkpoint into the stored
// witness. An instance that a newer one has moved into the history (two
// agents overlapping on the node) updates its history entry and does not
// take the witness back.
func (w *Writer) merge(wit *witness.Witness, latest *witness.Checkpoint) {
	id := w.cfg.Instance.ID
	set := func(in *witness.Instance) {
		if latest != nil && (in.Latest == nil || latest.Last >= in.Latest.Last) {
			in.Latest = latest
		}
	}
	if wit.Current.ID == id {
		set(&wit.Current)
		return
	}
	for i := range wit.History {
		if wit.History[i].ID == id {
			set(&wit.History[i])
			return
		}
	}
	in := w.cfg.Instance
	set(&in)
	wit.Begin(w.cfg.Node, in)
}

// reason classifies a failed write for the metric.
func reason(err error) string {
	switch {
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err), apierrors.IsInvalid(err):
		return "forbidden"
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		return "conflict"
	case apierrors.IsServiceUnavailable(err), apierrors.IsTimeout(err), apierrors.IsServerTimeout(err), apierrors.IsTooManyRequests(err),
		errors.Is(err, context.DeadlineExceeded):
		return "unavailable"
	}
	return "other"
}
