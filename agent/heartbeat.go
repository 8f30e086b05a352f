package agent

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connaudit/connaudit/shipper/handoff"
	"github.com/connaudit/connaudit/trail/chain"
)

// Checkpointer is the part of *shipper.Ledger the heartbeat drives.
type Checkpointer interface {
	// Checkpoint writes a signed connaudit.checkpoint record, even when
	// nothing happened since the last one.
	Checkpoint()
	// Head is the seq and chain value of the last spooled record.
	Head() (uint64, chain.Link)
}

// Heartbeat writes a checkpoint every Interval, so that an idle agent is
// seen alive and the newest records are sealed, and after each one saves
// the chain head in Dir for the next instance's start record.
type Heartbeat struct {
	Ledger   Checkpointer
	Interval time.Duration
	Dir      string // the spool directory
	Instance string
	Log      *slog.Logger

	stop context.CancelFunc
	wg   sync.WaitGroup
	last atomic.Int64 // unix nanoseconds of the last completed beat
}

// Overdue reports when the last beat completed, and whether the next ones
// are overdue by far: a ledger that does not take a checkpoint is wedged.
func (h *Heartbeat) Overdue(now time.Time) (time.Time, bool) {
	n := h.last.Load()
	if n == 0 {
		return time.Time{}, false
	}
	last := time.Unix(0, n)
	return last, now.Sub(last) > 3*h.Interval
}

// Save puts the chain head on disk for the next instance; a failure is
// logged only, as the trail itself is intact.
func (h *Heartbeat) Save() {
	seq, head := h.Ledger.Head()
	if seq == 0 {
		return
	}
	if err := handoff.Save(h.Dir, handoff.State{Instance: h.Instance, Seq: seq, Chain: head.String()}); err != nil {
		h.Log.Warn("the next agent instance will not name this one in its start record", "err", err)
	}
}

// Start runs the heartbeat until Stop.
func (h *Heartbeat) Start() {
	ctx, stop := context.WithCancel(context.Background())
	h.stop = stop
	h.last.Store(time.Now().UnixNano())
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(h.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				h.Ledger.Checkpoint()
				h.last.Store(time.Now().UnixNano())
				h.Save()
			}
		}
	}()
}

// Stop ends the heartbeat and returns once no checkpoint is being written,
// so that none follows the stop record.
func (h *Heartbeat) Stop() {
	if h.stop != nil {
		h.stop()
		h.wg.Wait()
	}
}
