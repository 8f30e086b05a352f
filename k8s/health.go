package k8s

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// apiHealth follows whether the informers reach the API server, from the
// outcome of every list and watch call they make. The API server is down
// while any informer's last call failed: they all talk to the same server, so
// the first failure speaks for all. It logs one warning when an outage starts
// and one line when every informer is back.
type apiHealth struct {
	log    *slog.Logger
	now    func() time.Time
	synced func() bool
	down   atomic.Bool

	mu      sync.Mutex
	failing map[*watched]bool
	since   time.Time // start of the current outage
}

func newAPIHealth(log *slog.Logger, now func() time.Time, synced func() bool) *apiHealth {
	return &apiHealth{log: log, now: now, synced: synced, failing: make(map[*watched]bool)}
}

// report records the outcome of a list or watch call of w.
func (h *apiHealth) report(ctx context.Context, w *watched, err error) {
	if ctx.Err() != nil {
		return // the informer is stopping
	}
	if err != nil && (apierrors.IsResourceExpired(err) || apierrors.IsGone(err)) {
		return // the informer relists; the API server answered
	}
	if err == nil && !w.failing.Load() {
		return // the common case takes no lock
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		w.failing.Store(false)
		delete(h.failing, w)
		if len(h.failing) == 0 {
			h.down.Store(false)
			h.log.Info("Kubernetes API server reachable again: enrichment is up to date",
				"outage", h.now().Sub(h.since).Round(time.Millisecond).String())
		}
		return
	}
	if w.failing.Load() {
		h.log.Debug("Kubernetes API call failed again", "resource", w.name, "err", err)
		return
	}
	w.failing.Store(true)
	h.failing[w] = true
	if len(h.failing) > 1 {
		return // already reported for this outage
	}
	h.down.Store(true)
	h.since = h.now()
	problem := "Kubernetes API server unreachable"
	if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		problem = "Kubernetes API server refuses the agent's requests (check its credentials and RBAC)"
	}
	if h.synced() {
		h.log.Warn(problem+": enrichment answers from its cache, and pods, Services and nodes "+
			"that appear meanwhile stay unknown; retrying in the background",
			"resource", w.name, "err", err)
	} else {
		h.log.Warn(problem+": records carry no pod or peer identity until it answers; "+
			"capture goes on, retrying in the background",
			"resource", w.name, "err", err)
	}
}
