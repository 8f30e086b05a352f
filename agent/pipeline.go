// Package agent turns kernel connect events into audit records: it reads
// each event, holds it briefly while who made it is not known yet, adds the
// identity of both ends, and hands the record to the trail. It depends on
// its inputs only through the small interfaces below, so its decisions are
// unit-tested without a kernel or an API server.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/k8s"
	"github.com/connaudit/connaudit/k8s/cgroup"
	"github.com/connaudit/connaudit/shipper"
	"github.com/connaudit/connaudit/shipper/handoff"
	"github.com/connaudit/connaudit/trail"
)

// Events is the kernel side of capture (*bpf.Tracer).
type Events interface {
	SetDeadline(time.Time)
	Read(*bpf.Event) error
	// Detach stops new events; Buffered is what the ring buffer still holds.
	Detach() error
	Buffered() int
	Counters() (bpf.Counters, error)
	MarkReported(bpf.Counters) error
}

// Cgroups maps a cgroup id to its container (*cgroup.Resolver). Cached never
// blocks: a miss schedules a walk of the hierarchy off the event loop.
type Cgroups interface {
	Cached(id uint64) (cgroup.Info, bool)
}

// Kubernetes tells which pod made an attempt and what its peer is (*k8s.Enricher).
type Kubernetes interface {
	Source(podUID, containerID string, at time.Time) (*k8s.Workload, k8s.SourceStatus)
	Peer(addr netip.Addr, at time.Time) *k8s.Peer
}

// Executables names the program of the task that connected (*process.Executables).
type Executables interface {
	Lookup(pid, tid uint32, comm []byte, atBootNs uint64) string
}

// Names tells which name a connect's peer address was resolved from in its
// network namespace, at the connect's time, and by which resolver (*DNS).
// names lists every name the address had then, valid until the next call.
// Settled reports whether every DNS packet caught by then has been read, so
// that a miss is final; TimedOut counts a connect shipped unnamed before.
type Names interface {
	Lookup(netns uint32, ip netip.Addr, atBootNs uint64) (name string, names []string, age time.Duration, resolver netip.Addr, ok bool)
	Settled(atBootNs uint64) bool
	TimedOut()
}

// Trail numbers records and keeps them (*shipper.Ledger). Counts the agent
// keeps only in memory are handed over with Degrade: the ledger writes the
// report whenever the spool takes it. Counts the kernel keeps are offered
// with TryLose and TryDegrade, which write a report only if the spool takes
// it now, and say whether it did, so that a kernel count is marked reported
// only once it is in the trail.
type Trail interface {
	Emit(*shipper.Encoder)
	Lose(shipper.Loss)
	Degrade(shipper.Degraded)
	TryLose(shipper.Loss) bool
	TryDegrade(shipper.Degraded) bool
}

// Pipeline reads kernel events and turns each into a spooled record. It runs
// on one goroutine. Cgroups and Kubernetes may be nil.
type Pipeline struct {
	Events      Events
	Cgroups     Cgroups
	Kubernetes  Kubernetes
	Executables Executables
	Names       Names // nil when DNS capture is off
	Trail       Trail
	Identities  *IdentityEncoder
	Clock       *bpf.BootClock
	Metrics     *shipper.Metrics
	Log         *slog.Logger
	// Live counts the events read and not yet spooled, for the next
	// instance to report if this one is killed; nil keeps no count.
	Live *handoff.Live

	// HoldTimeout is how long an event may wait for its cgroup or pod to be
	// known; DNSWait for DNS answers from before it that are still being
	// read; HoldMax how many may wait at once.
	HoldTimeout time.Duration
	DNSWait     time.Duration
	HoldMax     int
	// HostNetNS is the inode of the node's network namespace.
	HostNetNS uint32
	// Reported are the kernel loss counters already reported, by this agent
	// or by the one whose pinned capture it took over.
	Reported bpf.Counters

	hold         holdQueue
	builder      shipper.ConnectBuilder
	extra        shipper.AttrList
	holdOverflow uint64    // shipped without waiting, not yet reported
	settledAt    time.Time // last poll that left no kernel loss unreported; zero before the first
	lastPoll     time.Time
	nextRetry    time.Time
}

const (
	pollInterval  = time.Second
	holdRetryTick = 100 * time.Millisecond
)

// Run handles events until ctx is done, then drains what the ring buffer
// holds. Pinned capture goes on in the kernel, and what arrives after the
// drain waits for the next agent.
func (p *Pipeline) Run(ctx context.Context) error {
	p.hold.max = p.HoldMax
	p.lastPoll = time.Now()
	var ev bpf.Event
	for ctx.Err() == nil {
		wake := p.lastPoll.Add(pollInterval)
		if p.hold.len() > 0 && p.nextRetry.Before(wake) {
			wake = p.nextRetry
		}
		p.Events.SetDeadline(wake)
		err := p.Events.Read(&ev)
		switch {
		case err == nil:
			now := time.Now()
			p.Live.Read(now)
			p.handle(&ev, now, false)
		case errors.Is(err, os.ErrDeadlineExceeded):
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
		now := time.Now()
		if p.hold.len() > 0 && !now.Before(p.nextRetry) {
			p.retryHeld(now, false)
		}
		if now.Sub(p.lastPoll) >= pollInterval {
			p.poll(now)
		}
	}
	if err := p.Events.Detach(); err != nil {
		p.Log.Warn("detach tracepoints", "err", err)
	}
	for left := p.Events.Buffered(); left > 0; left -= bpf.EventSize + 8 {
		p.Events.SetDeadline(time.Now())
		if err := p.Events.Read(&ev); err != nil {
			break
		}
		now := time.Now()
		p.Live.Read(now)
		p.handle(&ev, now, true)
	}
	p.retryHeld(time.Now(), true)
	p.poll(time.Now())
	return nil
}

// handle ships one event, or holds it while its cgroup or pod is about to be
// known. final ships it with whatever is known.
func (p *Pipeline) handle(ev *bpf.Event, observed time.Time, final bool) {
	if !final {
		p.Metrics.Captured.Inc()
	}
	start, end := p.times(ev)
	src := shipper.Source{Resource: p.Identities.node}
	p.extra.Reset()
	if !ev.IdentityLost && !p.identify(ev, start, observed, final, &src) {
		return // held
	}
	if p.Kubernetes != nil {
		p.extra.Append(p.Identities.peer(p.Kubernetes.Peer(ev.Peer.Addr(), start))...)
	}
	if p.Names != nil && !p.name(ev, start, observed, final, &src) {
		return // held
	}
	src.Attrs = p.extra.KeyValues()
	p.Trail.Emit(p.builder.Build(ev, start, end, observed, &src))
	p.Live.Done()
	p.Metrics.ConnectToSpool.Observe(time.Since(end).Seconds())
}

// name sets the name the peer address was resolved from, when known. It
// returns false when it held the event because its answer may still be unread.
func (p *Pipeline) name(ev *bpf.Event, start, observed time.Time, final bool, src *shipper.Source) bool {
	at := nameTime(ev)
	settled := p.Names.Settled(at)
	name, names, age, resolver, ok := p.Names.Lookup(ev.NetNS, ev.Peer.Addr(), at)
	if !ok && !settled {
		if !final && p.DNSWait > 0 && p.holdEvent(ev, observed, p.DNSWait) {
			return false
		}
		p.Names.TimedOut()
	}
	if !ok {
		return true
	}
	src.ServerName = name
	if len(names) > 1 {
		p.extra.StringList(trail.KeyDNSNames, names)
	}
	p.extra.Float(trail.KeyDNSAge, age.Seconds())
	p.extra.Addr(trail.KeyDNSResolver, resolver)
	if p.Kubernetes != nil {
		if cluster, known := isClusterDNS(p.Kubernetes.Peer(resolver, start)); known {
			p.extra.Bool(trail.KeyDNSCluster, cluster)
		}
	}
	return true
}

// isClusterDNS reports whether a resolver is the cluster DNS Service; known
// is false while the caches cannot tell.
func isClusterDNS(resolver *k8s.Peer) (cluster, known bool) {
	if resolver == nil || resolver.Kind == trail.PeerUnknown {
		return false, false
	}
	return resolver.Kind == trail.PeerService && resolver.Namespace == trail.ClusterDNSService[0] && resolver.Name == trail.ClusterDNSService[1], true
}

// nameTime is when ev's peer address had to be known to its application.
func nameTime(ev *bpf.Event) uint64 {
	if ev.StartNs == 0 {
		return ev.EndNs
	}
	return ev.StartNs
}

// identify fills in who made the attempt. It returns false when it held the
// event to wait for its cgroup or pod.
func (p *Pipeline) identify(ev *bpf.Event, start, observed time.Time, final bool, src *shipper.Source) bool {
	src.ExecutablePath = p.Executables.Lookup(ev.PID, ev.TID, ev.Comm(), ev.StartNs)
	var container cgroup.Container
	if p.Cgroups != nil {
		info, known := p.Cgroups.Cached(ev.CgroupID)
		if !known {
			// A new cgroup that the resolver has not walked yet, or one
			// outside its view: never guess "host".
			if !final && p.holdForIdentity(ev, observed) {
				return false
			}
			if p.Kubernetes != nil {
				p.extra.String(trail.KeySourceKind, string(trail.SourceUnknown))
			}
			return true
		}
		container = info.Container
		src.ContainerID = container.ContainerID
	}
	if p.Kubernetes == nil {
		return true
	}
	w, status := p.Kubernetes.Source(container.PodUID, container.ContainerID, start)
	if status == k8s.SourceContainerPending {
		// Wait for the container's name; when the time is up (or the hold
		// queue is full) the pod's identity with container.id will do.
		if !final && p.holdForIdentity(ev, observed) {
			return false
		}
		status = k8s.SourceResolved
	}
	switch status {
	case k8s.SourceResolved:
		src.Resource = p.Identities.workload(w)
		src.ContainerID = "" // the resource names it
		p.extra.String(trail.KeySourceKind, string(trail.SourcePod))
	case k8s.SourceHost:
		p.extra.String(trail.KeySourceKind, string(trail.SourceHost))
		p.extra.Bool(trail.KeyHostNetwork, ev.NetNS == p.HostNetNS)
	case k8s.SourcePending:
		switch {
		case final:
			p.unresolvedPod(container, trail.EnrichmentPendingTimeout)
		case p.holdForIdentity(ev, observed):
			return false
		default:
			p.unresolvedPod(container, trail.EnrichmentHoldQueueFull)
		}
	case k8s.SourceUnavailable:
		p.unresolvedPod(container, trail.EnrichmentUnavailable)
	}
	return true
}

// holdForIdentity holds ev until its cgroup or pod is known or HoldTimeout
// passes; false when the hold queue is full, and the event ships now with
// what is known, counted for a degraded report.
func (p *Pipeline) holdForIdentity(ev *bpf.Event, observed time.Time) bool {
	if p.holdEvent(ev, observed, p.HoldTimeout) {
		return true
	}
	p.holdOverflow++
	return false
}

// holdEvent holds ev until what it waits for is known or wait passes; false
// when the hold queue is full.
func (p *Pipeline) holdEvent(ev *bpf.Event, observed time.Time, wait time.Duration) bool {
	if p.hold.len() == 0 {
		p.nextRetry = observed.Add(holdRetryTick)
	}
	return p.hold.push(ev, observed, observed.Add(wait))
}

// times converts the event's kernel stamps to wall-clock times; an event
// without a start (its identity was lost) starts when it ended.
func (p *Pipeline) times(ev *bpf.Event) (start, end time.Time) {
	end = p.Clock.Wall(ev.EndNs)
	if ev.StartNs == 0 {
		return end, end
	}
	return p.Clock.Wall(ev.StartNs), end
}

func (p *Pipeline) unresolvedPod(c cgroup.Container, why trail.Enrichment) {
	p.extra.String(trail.KeyEnrichment, string(why))
	if c.PodUID != "" {
		p.extra.String(trail.KeySourceKind, string(trail.SourcePod))
		p.extra.String(trail.KeyK8sPodUID, c.PodUID)
	} else {
		p.extra.String(trail.KeySourceKind, string(trail.SourceUnknown))
	}
}

// retryHeld ships the held events whose identity is now known or whose time
// is up; all ships every one.
func (p *Pipeline) retryHeld(now time.Time, all bool) {
	p.nextRetry = now.Add(holdRetryTick)
	p.hold.drain(func(h *heldEvent) bool {
		if !all && now.Before(h.deadline) && p.pending(&h.ev) {
			return false
		}
		p.handle(&h.ev, h.observed, true)
		return true
	})
}

// pending reports whether ev is still waiting for its cgroup or pod, or for
// DNS answers being read.
func (p *Pipeline) pending(ev *bpf.Event) bool {
	if p.Names != nil && !p.Names.Settled(nameTime(ev)) {
		return true
	}
	var c cgroup.Container
	if p.Cgroups != nil {
		info, known := p.Cgroups.Cached(ev.CgroupID)
		if !known {
			return true
		}
		c = info.Container
	}
	if p.Kubernetes == nil {
		return false
	}
	start, _ := p.times(ev)
	_, status := p.Kubernetes.Source(c.PodUID, c.ContainerID, start)
	return status == k8s.SourcePending || status == k8s.SourceContainerPending
}

// poll reports what the kernel counted as lost since the last report, and
// follows wall-clock steps. A count is marked reported only once the trail
// took its record, so a full spool delays a report but never loses it.
func (p *Pipeline) poll(now time.Time) {
	p.Clock.Sync()
	// A kernel loss happened after the last poll that found none unreported;
	// before the first such poll it may even predate this agent (pinned
	// capture runs while no agent does), so its start is not known.
	first := p.settledAt
	if p.holdOverflow > 0 {
		p.Log.Warn("enrichment hold queue full: records shipped without waiting for their identity", "count", p.holdOverflow)
		p.Trail.Degrade(shipper.Degraded{Reason: trail.DegradedHoldQueue, Count: p.holdOverflow, First: p.lastPoll, Last: now,
			Detail: "records shipped without waiting for their pod to reach the cache; they carry connaudit.k8s.enrichment=hold_queue_full"})
		p.holdOverflow = 0
	}
	c, err := p.Events.Counters()
	if err != nil {
		p.Log.Error("read kernel loss counters", "err", err)
		return
	}
	reported := p.Reported
	if d := c.RingBufferLost - p.Reported.RingBufferLost; d > 0 {
		p.Log.Error("ring buffer full: connect attempts lost", "count", d)
		if p.Trail.TryLose(shipper.Loss{Reason: trail.LossRingBuffer, Count: d, First: first, Last: now,
			Detail: "the kernel found the event ring buffer full (raise CONNAUDIT_RING_BUFFER_BYTES)"}) {
			reported.RingBufferLost = c.RingBufferLost
		}
	}
	if d := c.HandshakeLost - p.Reported.HandshakeLost; d > 0 {
		p.Log.Warn("handshake map evictions: attempts shipped without process identity", "count", d)
		if p.Trail.TryDegrade(shipper.Degraded{Reason: trail.DegradedHandshakeMap, Count: d, First: first, Last: now,
			Detail: "in-flight handshakes evicted; their attempts carry connaudit.identity.lost (raise CONNAUDIT_HANDSHAKE_ENTRIES)"}) {
			reported.HandshakeLost = c.HandshakeLost
		}
	}
	if reported != p.Reported {
		if err := p.Events.MarkReported(reported); err != nil {
			p.Log.Error("store reported loss counters; a restarted agent may report these losses again", "err", err)
		}
		p.Reported = reported
	}
	if reported == c {
		p.settledAt = now
	}
	p.lastPoll = now
}
