package agent

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/dns"
	"github.com/connaudit/connaudit/dns/capture"
	"github.com/connaudit/connaudit/k8s"
	"github.com/connaudit/connaudit/shipper"
	"github.com/connaudit/connaudit/trail"
)

// DNSPackets is the kernel side of DNS capture (*capture.Capture).
type DNSPackets interface {
	SetDeadline(time.Time)
	Read(*capture.Packet) error
	Buffered() int
	Lost() (uint64, error)
}

// DNSMetrics count what DNS capture saw.
type DNSMetrics struct {
	Packets *prometheus.CounterVec // by result
	Evicted prometheus.CounterFunc
}

// Results of connaudit_dns_packets_total.
const (
	dnsAnswered  = "answer"    // an answer with addresses, cached
	dnsPartial   = "partial"   // cut off after some answers; those were cached
	dnsNoAddress = "no_answer" // a well-formed response without addresses (NXDOMAIN, a TCP continuation, ...)
	dnsMalformed = "malformed" // not a DNS response: counted and skipped
)

// NewDNSMetrics registers the DNS metrics with reg.
func NewDNSMetrics(reg prometheus.Registerer, cache *dns.Cache) *DNSMetrics {
	m := &DNSMetrics{
		Packets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "connaudit_dns_packets_total", Help: "DNS responses read from the kernel, by result.",
		}, []string{"result"}),
		Evicted: prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "connaudit_dns_cache_evictions_total", Help: "Addresses forgotten for lack of room before their TTL and grace ran out.",
		}, func() float64 { return float64(cache.Evicted()) }),
	}
	reg.MustRegister(m.Packets, m.Evicted)
	return m
}

// DNS reads the DNS answers the kernel caught, keeps their names per network
// namespace for the connects that follow, and writes each distinct answer to
// the trail once per TTL. Lookup first reads what the kernel already holds:
// an answer always reaches the ring buffer before the application that got
// it can connect, so a connect is never named later than its answer.
type DNS struct {
	Packets    DNSPackets
	Cache      *dns.Cache
	Trail      Trail
	Cgroups    Cgroups    // may be nil
	Kubernetes Kubernetes // may be nil
	Identities *IdentityEncoder
	Clock      *bpf.BootClock
	Metrics    *DNSMetrics
	// Lost is not read: the Trail counts losses in the metrics. It stays
	// until cmd/connaudit/dns.go, reworked on another branch, stops setting it.
	Lost *prometheus.CounterVec
	Log  *slog.Logger
	// DedupEntries bounds the answers remembered for deduplication.
	DedupEntries int
	// HoldTimeout is how long a dns.answer record may wait for its cgroup to
	// be walked or its pod to reach the cache; HoldMax how many may wait.
	// Names are cached at once, whatever waits.
	HoldTimeout time.Duration
	HoldMax     int

	mu       sync.Mutex // one reader of Packets at a time
	pkt      capture.Packet
	parser   dns.Parser
	answer   dns.Answer
	builder  shipper.DNSAnswerBuilder
	attrs    shipper.AttrList
	seed     maphash.Seed
	seen     map[dedupKey]uint64 // → CLOCK_BOOTTIME until which the same answer is not written again
	addrs    []netip.Addr
	reported uint64
	first    time.Time
	held     []heldAnswer
	// holdOverflow counts records written without waiting for their
	// receiver's identity because the hold queue was full, since overflowAt.
	holdOverflow uint64
	overflowAt   time.Time
}

// heldAnswer is a dns.answer record waiting for the identity of its receiver.
type heldAnswer struct {
	answer   dns.Answer // a copy: the parser reuses its own
	pkt      capture.Packet
	observed time.Time
	deadline time.Time
}

type dedupKey struct {
	netns uint32
	hash  uint64
}

const dnsDrainInterval = 50 * time.Millisecond

// Run reads answers until ctx is done, and reports kernel losses each second.
func (d *DNS) Run(ctx context.Context) {
	drain := time.NewTicker(dnsDrainInterval)
	defer drain.Stop()
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			d.mu.Lock()
			d.drain()
			d.retryHeld(time.Now(), true)
			d.pollLoss(time.Now())
			d.mu.Unlock()
			return
		case now := <-drain.C:
			d.mu.Lock()
			d.drain()
			d.retryHeld(now, false)
			d.mu.Unlock()
		case now := <-poll.C:
			d.Clock.Sync()
			d.mu.Lock()
			d.pollLoss(now)
			d.Cache.Expire(d.bootNow(now))
			d.mu.Unlock()
		}
	}
}

// Lookup names ip as netns saw it at atBootNs; see dns.Cache.Lookup.
// It takes mu even when the ring buffer looks empty: Run may have read the
// connect's answer from it and not yet cached it.
func (d *DNS) Lookup(netns uint32, ip netip.Addr, atBootNs uint64) (string, []string, time.Duration, bool) {
	d.mu.Lock()
	if d.Packets.Buffered() > 0 {
		d.drain()
	}
	d.mu.Unlock()
	return d.Cache.Lookup(netns, ip, atBootNs)
}

// drain handles every packet the ring buffer holds. The caller holds mu.
func (d *DNS) drain() {
	if d.seen == nil {
		d.seed = maphash.MakeSeed()
		d.seen = make(map[dedupKey]uint64)
		d.first = time.Now()
	}
	d.Packets.SetDeadline(time.Now().Add(-time.Second))
	for {
		err := d.Packets.Read(&d.pkt)
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, os.ErrClosed) {
			return
		}
		if err != nil {
			d.Metrics.Packets.WithLabelValues(dnsMalformed).Inc()
			d.Log.Warn("undecodable DNS packet record from the kernel", "err", err)
			continue
		}
		d.handle(&d.pkt, time.Now())
	}
}

func (d *DNS) handle(p *capture.Packet, observed time.Time) {
	err := d.parser.Parse(p.Payload, p.Transport == capture.TCP, &d.answer)
	if p.Truncated() && err == nil {
		d.answer.Partial = true
	}
	switch {
	case errors.Is(err, dns.ErrNotAnswer):
		d.Metrics.Packets.WithLabelValues(dnsNoAddress).Inc()
		return
	case err != nil:
		d.Metrics.Packets.WithLabelValues(dnsMalformed).Inc()
		d.Log.Debug("malformed DNS response skipped", "netns", p.NetNS, "server", p.Server, "err", err)
		return
	case d.answer.Partial:
		d.Metrics.Packets.WithLabelValues(dnsPartial).Inc()
	default:
		d.Metrics.Packets.WithLabelValues(dnsAnswered).Inc()
	}
	d.Cache.Add(p.NetNS, &d.answer, p.TimeNs)
	if d.duplicate(p) {
		return
	}
	if d.identityPending(p.CgroupID, d.Clock.Wall(p.TimeNs)) {
		if len(d.held) < d.HoldMax {
			h := heldAnswer{pkt: *p, observed: observed, deadline: observed.Add(d.HoldTimeout), answer: d.answer}
			h.pkt.Payload = nil
			h.answer.Aliases = slices.Clone(d.answer.Aliases)
			h.answer.Addrs = slices.Clone(d.answer.Addrs)
			d.held = append(d.held, h)
			return
		}
		if d.holdOverflow == 0 {
			d.overflowAt = observed
		}
		d.holdOverflow++
	}
	d.emit(p, &d.answer, observed)
}

// identityPending reports whether the receiver's cgroup or pod is about to be known.
func (d *DNS) identityPending(cgroupID uint64, at time.Time) bool {
	if d.Cgroups == nil {
		return false
	}
	info, known := d.Cgroups.Cached(cgroupID)
	if !known {
		return true
	}
	if d.Kubernetes == nil {
		return false
	}
	_, status := d.Kubernetes.Source(info.Container.PodUID, info.Container.ContainerID, at)
	return status == k8s.SourcePending
}

// retryHeld writes the held records whose identity is known or whose time is
// up; all writes every one. The caller holds mu.
func (d *DNS) retryHeld(now time.Time, all bool) {
	kept := d.held[:0]
	for i := range d.held {
		h := &d.held[i]
		if !all && now.Before(h.deadline) && d.identityPending(h.pkt.CgroupID, d.Clock.Wall(h.pkt.TimeNs)) {
			kept = append(kept, *h)
			continue
		}
		d.emit(&h.pkt, &h.answer, h.observed)
	}
	clear(d.held[len(kept):])
	d.held = kept
}

func (d *DNS) emit(p *capture.Packet, a *dns.Answer, observed time.Time) {
	d.Trail.Emit(d.builder.Build(&shipper.DNSAnswer{
		Answer: a, Received: d.Clock.Wall(p.TimeNs), Observed: observed,
		NetNS: p.NetNS, CgroupID: p.CgroupID, TCP: p.Transport == capture.TCP, Resolver: p.Server.String(),
		Resource: d.resource(p.CgroupID, d.Clock.Wall(p.TimeNs)), Attrs: d.attrs.Bytes(),
	}))
}

// duplicate reports whether netns got the same question and addresses within
// the answer's TTL; otherwise it remembers this one until its TTL runs out.
func (d *DNS) duplicate(p *capture.Packet) bool {
	d.addrs = d.addrs[:0]
	ttl := ^uint32(0)
	for _, a := range d.answer.Addrs {
		d.addrs = append(d.addrs, a.IP)
		ttl = min(ttl, a.TTL)
	}
	slices.SortFunc(d.addrs, netip.Addr.Compare)
	var h maphash.Hash
	h.SetSeed(d.seed)
	h.WriteString(d.answer.Question)
	for _, a := range d.addrs {
		b := a.As16()
		h.Write(b[:])
	}
	key := dedupKey{netns: p.NetNS, hash: h.Sum64()}
	if until, ok := d.seen[key]; ok && p.TimeNs <= until {
		return true
	}
	if len(d.seen) >= d.DedupEntries {
		for k, until := range d.seen {
			if until < p.TimeNs {
				delete(d.seen, k)
			}
		}
		if len(d.seen) >= d.DedupEntries {
			clear(d.seen) // bounded: at worst an answer is written once more
		}
	}
	d.seen[key] = p.TimeNs + uint64(max(ttl, 1))*uint64(time.Second)
	return false
}

// resource is the pod of the receiving socket's cgroup when it is known now,
// else the node's; d.attrs gets what tells the two apart. DNS answers are
// not held for their pod to reach the cache.
func (d *DNS) resource(cgroupID uint64, at time.Time) []byte {
	d.attrs.Reset()
	if d.Cgroups == nil {
		return d.Identities.Node()
	}
	info, known := d.Cgroups.Cached(cgroupID)
	if !known {
		d.attrs.String(trail.KeySourceKind, string(trail.SourceUnknown))
		return d.Identities.Node()
	}
	c := info.Container
	if d.Kubernetes == nil {
		if c.ContainerID != "" {
			d.attrs.String(trail.KeyContainerID, c.ContainerID)
		}
		return d.Identities.Node()
	}
	w, status := d.Kubernetes.Source(c.PodUID, c.ContainerID, at)
	switch status {
	case k8s.SourceResolved:
		d.attrs.String(trail.KeySourceKind, string(trail.SourcePod))
		return d.Identities.workload(w)
	case k8s.SourceHost:
		d.attrs.String(trail.KeySourceKind, string(trail.SourceHost))
	default:
		d.attrs.String(trail.KeySourceKind, string(trail.SourcePod))
		d.attrs.String(trail.KeyK8sPodUID, c.PodUID)
		if c.ContainerID != "" {
			d.attrs.String(trail.KeyContainerID, c.ContainerID)
		}
	}
	return d.Identities.Node()
}

// pollLoss reports packets the kernel could not put into the ring buffer,
// and records written without waiting for their identity. The caller holds mu.
func (d *DNS) pollLoss(now time.Time) {
	if d.holdOverflow > 0 {
		d.Log.Warn("DNS hold queue full: answers written without waiting for their receiver's identity", "count", d.holdOverflow)
		d.Trail.Degrade(shipper.Degraded{Reason: trail.DegradedHoldQueue, Count: d.holdOverflow, First: d.overflowAt, Last: now,
			Detail: "dns.answer records written without waiting for their receiver's cgroup or pod to be known"})
		d.holdOverflow = 0
	}
	lost, err := d.Packets.Lost()
	if err != nil {
		d.Log.Error("read DNS loss counter", "err", err)
		return
	}
	if n := lost - d.reported; n > 0 {
		d.Log.Error("DNS ring buffer full: answers lost", "count", n)
		if d.Trail.TryLose(shipper.Loss{Reason: trail.LossDNSRingBuffer, Count: n, First: d.first, Last: now,
			Detail: "the kernel found the DNS ring buffer full: these answers are missing, and connects to their addresses carry no name (raise CONNAUDIT_DNS_RING_BUFFER_BYTES)"}) {
			d.reported = lost
		}
	}
	if d.reported == lost {
		d.first = now
	}
}

func (d *DNS) bootNow(now time.Time) uint64 {
	return uint64(now.UnixNano() - d.Clock.Wall(0).UnixNano())
}
