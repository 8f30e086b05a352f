package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/k8s"
	"github.com/connaudit/connaudit/k8s/cgroup"
	"github.com/connaudit/connaudit/shipper"
)

// pipeline reads kernel events, learns who is on each end, and turns each
// event into a spooled record. It runs on one goroutine.
type pipeline struct {
	tracer   *bpf.Tracer
	shipper  *shipper.Shipper
	metrics  *shipper.Metrics
	log      *slog.Logger
	clock    *bpf.BootClock
	exe      *k8s.ExePaths
	cgroups  *cgroup.Resolver // nil without cgroup v2
	enricher *k8s.Enricher    // nil when Kubernetes enrichment is off
	encoder  *identityEncoder
	hold     holdQueue

	holdTimeout time.Duration
	hostNetNS   uint32 // the agent's own network namespace: the host's, in a DaemonSet with hostNetwork

	builder      shipper.ConnectBuilder
	extra        shipper.AttrList
	counters     bpf.Counters
	holdOverflow uint64 // since the last poll
	lastPoll     time.Time
}

const (
	pollInterval  = time.Second
	holdRetryTick = 100 * time.Millisecond
)

func (p *pipeline) run(ctx context.Context) error {
	p.lastPoll = time.Now()
	var ev bpf.Event
	for ctx.Err() == nil {
		wake := p.lastPoll.Add(pollInterval)
		if retry := time.Now().Add(holdRetryTick); p.hold.len() > 0 && retry.Before(wake) {
			wake = retry
		}
		p.tracer.SetDeadline(wake)
		err := p.tracer.Read(&ev)
		switch {
		case err == nil:
			p.handle(&ev, time.Now(), false)
		case errors.Is(err, os.ErrDeadlineExceeded):
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
		now := time.Now()
		if p.hold.len() > 0 {
			p.retryHeld(now, false)
		}
		if now.Sub(p.lastPoll) >= pollInterval {
			p.poll(now)
		}
	}
	// Read what is in the ring buffer now. Pinned capture goes on, and what
	// arrives from here on waits for the next agent.
	if err := p.tracer.Detach(); err != nil {
		p.log.Warn("detach tracepoints", "err", err)
	}
	for left := p.tracer.Buffered(); left > 0; left -= bpf.EventSize + 8 {
		p.tracer.SetDeadline(time.Now())
		if err := p.tracer.Read(&ev); err != nil {
			break
		}
		p.handle(&ev, time.Now(), true)
	}
	p.retryHeld(time.Now(), true)
	p.poll(time.Now())
	return nil
}

// Values of connaudit.k8s.enrichment, set when a record lacks the identity
// Kubernetes would have given it.
const (
	enrichmentUnavailable = "unavailable"     // the API server was never reached, or is unreachable now
	enrichmentTimedOut    = "pending_timeout" // the pod did not reach the cache within CONNAUDIT_K8S_HOLD_TIMEOUT
	enrichmentHoldFull    = "hold_queue_full" // no room to wait for the pod
)

// handle ships one event, or holds it while its pod is about to reach the
// cache. final ships it with whatever is known.
func (p *pipeline) handle(ev *bpf.Event, observed time.Time, final bool) {
	if !final {
		p.metrics.Captured.Inc()
	}
	start, end := p.times(ev)
	var container cgroup.Container
	src := shipper.Source{Resource: p.encoder.node}
	p.extra.Reset()
	if !ev.IdentityLost {
		src.ExecutablePath = p.exe.Lookup(ev.PID, ev.Comm())
		if p.cgroups != nil {
			if info, ok := p.cgroups.Lookup(ev.CgroupID); ok {
				container = info.Container
			}
		}
		src.ContainerID = container.ContainerID
	}
	if p.enricher != nil {
		if !ev.IdentityLost {
			w, status := p.enricher.Source(container.PodUID, container.ContainerID, start)
			switch status {
			case k8s.SourceResolved:
				src.Resource = p.encoder.workload(w)
				src.ContainerID = "" // the resource names it
				p.extra.String("connaudit.source.kind", "pod")
			case k8s.SourceHost:
				p.extra.String("connaudit.source.kind", "host")
				p.extra.Bool("connaudit.host_network", ev.NetNS == p.hostNetNS)
			case k8s.SourcePending:
				if !final {
					if p.hold.push(ev, observed, observed.Add(p.holdTimeout)) {
						return
					}
					p.holdOverflow++
					p.metrics.Lost.WithLabelValues(shipper.LossHoldQueue).Inc()
					p.unresolvedPod(container, enrichmentHoldFull)
				} else {
					p.unresolvedPod(container, enrichmentTimedOut)
				}
			case k8s.SourceUnavailable:
				p.unresolvedPod(container, enrichmentUnavailable)
			}
		}
		p.extra.Raw(p.encoder.peer(p.enricher.Peer(ev.Peer.Addr(), start)))
	}
	src.Attrs = p.extra.Bytes()
	p.shipper.Emit(p.builder.Build(ev, start, end, observed, &src))
}

// times converts the event's kernel stamps to wall-clock times; an event
// without a start (its identity was lost) starts when it ended.
func (p *pipeline) times(ev *bpf.Event) (start, end time.Time) {
	end = p.clock.Wall(ev.EndNs)
	if ev.StartNs == 0 {
		return end, end
	}
	return p.clock.Wall(ev.StartNs), end
}

func (p *pipeline) unresolvedPod(c cgroup.Container, why string) {
	p.extra.String("connaudit.k8s.enrichment", why)
	if c.PodUID != "" {
		p.extra.String("connaudit.source.kind", "pod")
		p.extra.String("k8s.pod.uid", c.PodUID)
	} else {
		p.extra.String("connaudit.source.kind", "unknown")
	}
}

// retryHeld ships the held events whose pod is now known or whose time is up.
func (p *pipeline) retryHeld(now time.Time, all bool) {
	p.hold.drain(func(h *heldEvent) bool {
		if !all && now.Before(h.deadline) {
			info, _ := p.cgroups.Lookup(h.ev.CgroupID)
			start, _ := p.times(&h.ev)
			if _, status := p.enricher.Source(info.Container.PodUID, info.Container.ContainerID, start); status == k8s.SourcePending {
				return false
			}
		}
		p.handle(&h.ev, h.observed, true)
		return true
	})
}

// poll reports what the kernel counted as lost since the last poll, and
// follows wall-clock steps.
func (p *pipeline) poll(now time.Time) {
	p.clock.Sync()
	if p.holdOverflow > 0 {
		p.log.Warn("enrichment hold queue full: records shipped without waiting for their pod", "count", p.holdOverflow)
		p.shipper.EmitLoss(shipper.Loss{Reason: shipper.LossHoldQueue, Count: p.holdOverflow, First: p.lastPoll, Last: now,
			Detail: "records shipped without waiting for their pod to reach the cache; they carry connaudit.k8s.enrichment=hold_queue_full"})
		p.holdOverflow = 0
	}
	c, err := p.tracer.Counters()
	if err != nil {
		p.log.Error("read kernel loss counters", "err", err)
		return
	}
	if d := c.RingBufferLost - p.counters.RingBufferLost; d > 0 {
		p.log.Error("ring buffer full: connect attempts lost", "count", d)
		p.metrics.Lost.WithLabelValues(shipper.LossRingBuffer).Add(float64(d))
		p.shipper.EmitLoss(shipper.Loss{Reason: shipper.LossRingBuffer, Count: d, First: p.lastPoll, Last: now,
			Detail: "the kernel found the event ring buffer full (raise CONNAUDIT_RING_BUFFER_BYTES)"})
	}
	if d := c.HandshakeLost - p.counters.HandshakeLost; d > 0 {
		p.log.Warn("handshake map evictions: attempts shipped without process identity", "count", d)
		p.metrics.Lost.WithLabelValues(shipper.LossHandshakeMap).Add(float64(d))
		p.shipper.EmitLoss(shipper.Loss{Reason: shipper.LossHandshakeMap, Count: d, First: p.lastPoll, Last: now,
			Detail: "in-flight handshakes evicted; their attempts carry connaudit.identity.lost (raise CONNAUDIT_HANDSHAKE_ENTRIES)"})
	}
	if c != p.counters {
		if err := p.tracer.MarkReported(c); err != nil {
			p.log.Error("store reported loss counters; a restarted agent may report these losses again", "err", err)
		}
	}
	p.counters = c
	p.lastPoll = now
}
