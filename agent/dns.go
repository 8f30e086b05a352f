package agent

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/dns"
	"github.com/connaudit/connaudit/dns/capture"
	"github.com/connaudit/connaudit/dns/limit"
	"github.com/connaudit/connaudit/dns/match"
	"github.com/connaudit/connaudit/k8s"
	"github.com/connaudit/connaudit/shipper"
	"github.com/connaudit/connaudit/shipper/handoff"
	"github.com/connaudit/connaudit/trail"
)

// DNSPackets is the kernel side of DNS capture (*capture.Capture).
type DNSPackets interface {
	SetDeadline(time.Time)
	Read(*capture.Packet) error
	// Wait blocks until a packet is buffered or timeout has passed.
	Wait(timeout time.Duration) error
	Buffered() int
	Lost() (uint64, error)
}

// DNSMetrics count what DNS capture saw.
type DNSMetrics struct {
	Packets        *prometheus.CounterVec // by result
	Evicted        prometheus.CounterFunc
	LookupTimeouts prometheus.Counter
}

// Results of connaudit_dns_packets_total.
const (
	dnsQuery       = "query"        // a query, remembered for its answer
	dnsAnswered    = "answer"       // an answer with addresses, cached
	dnsPartial     = "partial"      // cut off after some answers; those were cached
	dnsNoAddress   = "no_answer"    // a well-formed response without addresses (NXDOMAIN, a TCP continuation, ...)
	dnsMalformed   = "malformed"    // not a DNS message: counted and skipped
	dnsRateLimited = "rate_limited" // over its network namespace's budget: not read
	// An answer to no query of its socket ("unsolicited", "question_mismatch")
	// is counted under its match.Result.
)

// NewDNSMetrics registers the DNS metrics with reg.
func NewDNSMetrics(reg prometheus.Registerer, cache *dns.Cache) *DNSMetrics {
	m := &DNSMetrics{
		Packets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "connaudit_dns_packets_total", Help: "DNS queries and responses read from the kernel, by result.",
		}, []string{"result"}),
		Evicted: prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "connaudit_dns_cache_evictions_total", Help: "Addresses forgotten for lack of room before their TTL and grace ran out.",
		}, func() float64 { return float64(cache.Evicted()) }),
		LookupTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "connaudit_dns_lookup_timeouts_total", Help: "Connects shipped without a name while DNS answers from before them were still being read (CONNAUDIT_DNS_MAX_WAIT, or a full hold queue).",
		}),
	}
	reg.MustRegister(m.Packets, m.Evicted, m.LookupTimeouts)
	return m
}

// DNS reads the DNS queries and answers the kernel caught, on its own
// goroutine (Run). An answer names addresses only when it answers a query
// its socket sent (package match); its names are kept per network namespace
// for the connects that follow, and each distinct answer is written to the
// trail once per TTL. An answer that answered nothing is written as a
// dns.rejected record instead.
//
// A connect's Lookup never reads the ring buffer and never waits: an answer
// always reaches the ring buffer before the application that got it can
// connect, so while the reader has not handled everything that was there at
// the connect's time (Settled), the pipeline holds that one connect.
type DNS struct {
	Packets    DNSPackets
	Cache      *dns.Cache
	Queries    *match.Table
	Limit      *limit.PerNetns // answers read per network namespace
	Trail      Trail
	Cgroups    Cgroups    // may be nil
	Kubernetes Kubernetes // may be nil
	Identities *IdentityEncoder
	Clock      *bpf.BootClock
	Metrics    *DNSMetrics
	Log        *slog.Logger
	// DedupEntries bounds the answers remembered for deduplication.
	DedupEntries int
	// HoldTimeout is how long a dns.answer record may wait for its cgroup to
	// be walked or its pod to reach the cache; HoldMax how many may wait.
	// Names are cached at once, whatever waits.
	HoldTimeout time.Duration
	HoldMax     int
	// StallAfter: packets waiting this long with no progress make Stalled report.
	StallAfter time.Duration
	// Live counts the answers held for their receiver's identity, with the
	// pipeline's events, for the next instance to report if this one is
	// killed; nil keeps no count.
	Live *handoff.Live

	mu          sync.Mutex    // one reader of Packets at a time
	busy        atomic.Bool   // the reader may hold a packet it has not handled
	handledNs   atomic.Uint64 // CLOCK_BOOTTIME of the newest packet handled
	lastBatch   atomic.Int64  // wall time (UnixNano) the reader last finished a batch
	pkt         capture.Packet
	parser      dns.Parser
	answer      dns.Answer
	query       dns.Query
	builder     shipper.DNSAnswerBuilder
	attrs       shipper.AttrList
	seed        maphash.Seed
	seen        map[dedupKey]uint64 // → CLOCK_BOOTTIME until which the same answer is not written again
	addrs       []netip.Addr
	reported    uint64
	first       time.Time
	held        []heldAnswer
	limited     uint64 // answers over budget, not yet reported
	limitedFrom time.Time
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
	rejected string
}

type dedupKey struct {
	netns uint32
	hash  uint64
}

const (
	dnsWaitInterval = 50 * time.Millisecond
	// dnsBatch bounds the packets read between two looks at held records and losses.
	dnsBatch = 256
	// maxDedupTTL bounds how long an answer suppresses its duplicates.
	maxDedupTTL = 3600
)

// Run reads packets until ctx is done, and reports kernel losses each second.
func (d *DNS) Run(ctx context.Context) {
	lastPoll := time.Now()
	d.lastBatch.Store(lastPoll.UnixNano())
	for ctx.Err() == nil {
		more := d.drain(dnsBatch)
		now := time.Now()
		d.mu.Lock()
		d.retryHeld(now, false)
		if now.Sub(lastPoll) >= time.Second {
			lastPoll = now
			d.Clock.Sync()
			d.pollLoss(now)
			d.Cache.Expire(d.bootNow(now))
		}
		d.mu.Unlock()
		if !more {
			if err := d.Packets.Wait(dnsWaitInterval); err != nil {
				d.Log.Error("wait for DNS packets", "err", err)
				time.Sleep(dnsWaitInterval)
			}
		}
	}
	d.drain(-1)
	d.mu.Lock()
	d.retryHeld(time.Now(), true)
	d.pollLoss(time.Now())
	d.mu.Unlock()
}

// Lookup names ip as netns saw it at atBootNs; see dns.Cache.Lookup. It
// never waits: a connect whose answer may still be unread is held by the
// pipeline (Settled) instead.
func (d *DNS) Lookup(netns uint32, ip netip.Addr, atBootNs uint64) (string, []string, time.Duration, netip.Addr, bool) {
	return d.Cache.Lookup(netns, ip, atBootNs)
}

// Settled reports whether the reader has handled every packet the kernel
// had queued by the connect at atBootNs, so that a miss in the cache is final.
// Ask before Lookup: what the reader handled by then is in the cache.
func (d *DNS) Settled(atBootNs uint64) bool {
	return d.handledNs.Load() > atBootNs || (d.Packets.Buffered() == 0 && !d.busy.Load())
}

// TimedOut counts a connect shipped without a name while answers from
// before it were still being read.
func (d *DNS) TimedOut() { d.Metrics.LookupTimeouts.Inc() }

// Stalled reports an error when packets have waited in the ring buffer for
// longer than StallAfter without the reader finishing a batch.
func (d *DNS) Stalled() error {
	last := d.lastBatch.Load()
	if last == 0 || d.Packets.Buffered() == 0 {
		return nil
	}
	if since := time.Since(time.Unix(0, last)); since > d.StallAfter {
		return fmt.Errorf("DNS pipeline stalled: %d bytes waiting in its ring buffer, no progress for %s", d.Packets.Buffered(), since.Round(time.Millisecond))
	}
	return nil
}

// drain handles up to n packets (all, when n < 0) that the ring buffer
// holds, and reports whether it stopped with more waiting.
func (d *DNS) drain(n int) (more bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seen == nil {
		d.seed = maphash.MakeSeed()
		d.seen = make(map[dedupKey]uint64)
		d.first = time.Now()
	}
	d.busy.Store(true)
	defer func() {
		d.busy.Store(false)
		d.lastBatch.Store(time.Now().UnixNano())
	}()
	d.Packets.SetDeadline(time.Now().Add(-time.Second))
	for i := 0; n < 0 || i < n; i++ {
		err := d.Packets.Read(&d.pkt)
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, os.ErrClosed) {
			return false
		}
		if err != nil {
			d.Metrics.Packets.WithLabelValues(dnsMalformed).Inc()
			d.Log.Warn("undecodable DNS packet record from the kernel", "err", err)
			continue
		}
		d.handle(&d.pkt, time.Now())
		if d.pkt.TimeNs > d.handledNs.Load() {
			d.handledNs.Store(d.pkt.TimeNs)
		}
	}
	return true
}

func (d *DNS) key(p *capture.Packet, id uint16) match.Key {
	return match.Key{NetNS: p.NetNS, Transport: p.Transport, ID: id, Client: p.Client, Server: p.Server}
}

// handle takes one packet. The caller holds mu.
func (d *DNS) handle(p *capture.Packet, observed time.Time) {
	tcp := p.Transport == capture.TCP
	if p.Query {
		if err := d.parser.ParseQuery(p.Payload, tcp, &d.query); err != nil {
			d.Metrics.Packets.WithLabelValues(dnsMalformed).Inc()
			return
		}
		d.Metrics.Packets.WithLabelValues(dnsQuery).Inc()
		d.Queries.Query(d.key(p, d.query.ID), d.query.Type, d.query.Question, p.TimeNs)
		return
	}
	if !d.Limit.Allow(p.NetNS, p.TimeNs) {
		d.Metrics.Packets.WithLabelValues(dnsRateLimited).Inc()
		if d.limited == 0 {
			d.limitedFrom = observed
		}
		d.limited++
		return
	}
	err := d.parser.Parse(p.Payload, tcp, &d.answer)
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
	}
	rejected := ""
	if r := d.Queries.Answer(d.key(p, d.answer.ID), d.answer.Type, d.answer.Question, p.TimeNs); r != match.Matched {
		rejected = r.String()
		d.Metrics.Packets.WithLabelValues(rejected).Inc()
	} else if d.answer.Partial {
		d.Metrics.Packets.WithLabelValues(dnsPartial).Inc()
	} else {
		d.Metrics.Packets.WithLabelValues(dnsAnswered).Inc()
	}
	if rejected == "" {
		d.Cache.Add(p.NetNS, &d.answer, p.TimeNs, p.Server)
	}
	if d.duplicate(p, rejected != "") {
		return
	}
	if d.identityPending(p.CgroupID, d.Clock.Wall(p.TimeNs)) {
		if len(d.held) < d.HoldMax {
			h := heldAnswer{pkt: *p, observed: observed, deadline: observed.Add(d.HoldTimeout), answer: d.answer}
			h.pkt.Payload = nil
			h.answer.Aliases = slices.Clone(d.answer.Aliases)
			h.answer.Addrs = slices.Clone(d.answer.Addrs)
			h.rejected = rejected
			d.held = append(d.held, h)
			d.Live.Read(observed)
			return
		}
		if d.holdOverflow == 0 {
			d.overflowAt = observed
		}
		d.holdOverflow++
	}
	d.emit(p, &d.answer, observed, rejected)
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
	return status == k8s.SourcePending || status == k8s.SourceContainerPending
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
		d.emit(&h.pkt, &h.answer, h.observed, h.rejected)
		d.Live.Done()
	}
	clear(d.held[len(kept):])
	d.held = kept
}

func (d *DNS) emit(p *capture.Packet, a *dns.Answer, observed time.Time, rejected string) {
	d.Trail.Emit(d.builder.Build(&shipper.DNSAnswer{
		Answer: a, Received: d.Clock.Wall(p.TimeNs), Observed: observed, Rejected: rejected,
		NetNS: p.NetNS, CgroupID: p.CgroupID, TCP: p.Transport == capture.TCP, Resolver: p.Server.String(),
		Resource: d.resource(p.CgroupID, d.Clock.Wall(p.TimeNs)), Attrs: d.attrs.KeyValues(),
	}))
}

// duplicate reports whether netns got the same question and addresses, with
// the same verdict, within the answer's TTL (at most maxDedupTTL); otherwise
// it remembers this one until then.
func (d *DNS) duplicate(p *capture.Packet, rejected bool) bool {
	d.addrs = d.addrs[:0]
	ttl := ^uint32(0)
	for _, a := range d.answer.Addrs {
		d.addrs = append(d.addrs, a.IP)
		ttl = min(ttl, a.TTL)
	}
	slices.SortFunc(d.addrs, netip.Addr.Compare)
	ttl = min(ttl, maxDedupTTL)
	var h maphash.Hash
	h.SetSeed(d.seed)
	if rejected {
		h.WriteByte(1)
	}
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
func (d *DNS) resource(cgroupID uint64, at time.Time) *shipper.Resource {
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
	case k8s.SourceResolved, k8s.SourceContainerPending:
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
	if d.limited > 0 {
		d.Trail.Lose(shipper.Loss{Reason: trail.LossDNSRateLimited, Count: d.limited, First: d.limitedFrom, Last: now,
			Detail: "network namespaces received DNS answers faster than their budget: these answers were not read, and name nothing (CONNAUDIT_DNS_ANSWERS_PER_SECOND)"})
		d.limited = 0
	}
}

func (d *DNS) bootNow(now time.Time) uint64 {
	return uint64(now.UnixNano() - d.Clock.Wall(0).UnixNano())
}
