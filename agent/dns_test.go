package agent

import (
	"io"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/dns"
	"github.com/connaudit/connaudit/dns/capture"
	"github.com/connaudit/connaudit/k8s/cgroup"
	"github.com/connaudit/connaudit/shipper"
	"github.com/connaudit/connaudit/trail"
)

// fakePackets hands out queued packets, then deadline errors.
type fakePackets struct {
	queue []capture.Packet
	lost  uint64
}

func (f *fakePackets) SetDeadline(time.Time) {}
func (f *fakePackets) Read(p *capture.Packet) error {
	if len(f.queue) == 0 {
		return os.ErrDeadlineExceeded
	}
	*p, f.queue = f.queue[0], f.queue[1:]
	return nil
}
func (f *fakePackets) Buffered() int         { return len(f.queue) }
func (f *fakePackets) Lost() (uint64, error) { return f.lost, nil }

func dnsAnswer(t *testing.T, name string, ips ...string) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{Response: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	_ = b.StartAnswers()
	for _, ip := range ips {
		_ = b.AResource(dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Class: dnsmessage.ClassINET, TTL: 30},
			dnsmessage.AResource{A: netip.MustParseAddr(ip).As4()})
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func testDNS(t *testing.T) (*DNS, *fakePackets, *fakeTrail) {
	packets, sink := &fakePackets{}, &fakeTrail{}
	cache := dns.NewCache(dns.CacheConfig{EntriesPerNetns: 16, Netns: 4, Grace: time.Second})
	reg := prometheus.NewRegistry()
	d := &DNS{Packets: packets, Cache: cache, Trail: sink, Identities: NewIdentityEncoder(nil), Clock: bpf.NewBootClock(),
		Metrics: NewDNSMetrics(reg, cache), Lost: shipper.NewMetrics(reg).Lost,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), DedupEntries: 2}
	return d, packets, sink
}

func packet(netns uint32, at uint64, payload []byte) capture.Packet {
	return capture.Packet{TimeNs: at, NetNS: netns, CgroupID: 7, Len: len(payload), Transport: capture.UDP,
		Server: netip.MustParseAddr("198.51.100.1"), Payload: payload}
}

func TestLookupReadsAnswersTheKernelAlreadyHas(t *testing.T) {
	d, packets, sink := testDNS(t)
	now := bootNs()
	ip := netip.MustParseAddr("203.0.113.80")
	packets.queue = append(packets.queue,
		packet(1, now, dnsAnswer(t, "api.example.com.", "203.0.113.80")),
		packet(1, now+1, dnsAnswer(t, "api.example.com.", "203.0.113.80")), // the same answer: not written again
		packet(1, now+2, []byte("not dns")),
		packet(2, now+3, dnsAnswer(t, "other.example.com.", "203.0.113.80")),
	)
	name, _, _, ok := d.Lookup(1, ip, now+10)
	if !ok || name != "api.example.com" {
		t.Fatalf("Lookup = %q %v, want api.example.com: the queued answer must be read first", name, ok)
	}
	if name, _, _, _ := d.Lookup(2, ip, now+10); name != "other.example.com" {
		t.Fatalf("netns 2 named %q", name)
	}
	if len(sink.records) != 2 || sink.records[0]["dns.question.name"] != "api.example.com" || sink.records[0]["dns.answers"] != "203.0.113.80" ||
		sink.records[1]["connaudit.netns"] != "2" {
		t.Fatalf("dns.answer records %v, want one per netns", sink.records)
	}
	if got := testutil.ToFloat64(d.Metrics.Packets.WithLabelValues(dnsMalformed)); got != 1 {
		t.Fatalf("malformed count %v, want 1", got)
	}
	if got := testing.AllocsPerRun(100, func() { d.Lookup(1, ip, now+10) }); got != 0 {
		t.Fatalf("Lookup with nothing queued allocates %v times", got)
	}
}

// handingOver is a ring buffer whose first Read has taken a packet out and
// not yet returned it: what Run's drain looks like to a concurrent Lookup.
type handingOver struct {
	*fakePackets
	taken, release chan struct{}
}

func (h *handingOver) Read(p *capture.Packet) error {
	if len(h.queue) > 0 && h.taken != nil {
		*p, h.queue = h.queue[0], h.queue[1:]
		close(h.taken)
		h.taken = nil
		<-h.release
		return nil
	}
	return h.fakePackets.Read(p)
}

func TestLookupWaitsForTheAnswerRunIsHandling(t *testing.T) {
	d, packets, _ := testDNS(t)
	now := bootNs()
	packets.queue = append(packets.queue, packet(1, now, dnsAnswer(t, "api.example.com.", "203.0.113.80")))
	h := &handingOver{fakePackets: packets, taken: make(chan struct{}), release: make(chan struct{})}
	d.Packets = h
	taken := h.taken
	go func() {
		d.mu.Lock()
		d.drain()
		d.mu.Unlock()
	}()
	<-taken // the ring buffer is empty now, the answer not yet cached
	named := make(chan string, 1)
	go func() {
		name, _, _, _ := d.Lookup(1, netip.MustParseAddr("203.0.113.80"), now+10)
		named <- name
	}()
	time.Sleep(50 * time.Millisecond) // give a Lookup that does not wait the time to miss
	close(h.release)
	if name := <-named; name != "api.example.com" {
		t.Fatalf("Lookup during Run's drain = %q, want api.example.com", name)
	}
}

func TestDNSLossIsReportedOnceAndRetried(t *testing.T) {
	d, packets, sink := testDNS(t)
	packets.lost = 5
	sink.refuse = true
	d.pollLoss(time.Now())
	sink.refuse = false
	d.pollLoss(time.Now())
	d.pollLoss(time.Now())
	if len(sink.losses) != 1 || sink.losses[0].Count != 5 || sink.losses[0].Reason != trail.LossDNSRingBuffer {
		t.Fatalf("losses %+v, want one of 5", sink.losses)
	}
	packets.lost = 7
	d.pollLoss(time.Now())
	if len(sink.losses) != 2 || sink.losses[1].Count != 2 {
		t.Fatalf("losses %+v, want a second one of 2", sink.losses)
	}
}

func TestAnswerWaitsForItsCgroupButNamesAtOnce(t *testing.T) {
	d, packets, sink := testDNS(t)
	cgroups := fakeCgroups{}
	d.Cgroups, d.HoldTimeout, d.HoldMax = cgroups, time.Minute, 10
	now := bootNs()
	packets.queue = append(packets.queue, packet(1, now, dnsAnswer(t, "new.example.com.", "203.0.113.7")))
	if name, _, _, _ := d.Lookup(1, netip.MustParseAddr("203.0.113.7"), now+1); name != "new.example.com" {
		t.Fatalf("named %q while the record waits", name)
	}
	d.retryHeld(time.Now(), false)
	if len(sink.records) != 0 {
		t.Fatalf("written before its cgroup was known: %v", sink.records)
	}
	cgroups[7] = cgroup.Info{Container: cgroup.Container{ContainerID: containerID}}
	d.retryHeld(time.Now(), false)
	if len(sink.records) != 1 || sink.records[0]["container.id"] != containerID || sink.records[0]["dns.question.name"] != "new.example.com" {
		t.Fatalf("records %v, want one naming container %s", sink.records, containerID)
	}
}

// An answer that finds the hold queue full is written at once and counted
// as degraded, as a connect would be.
func TestDNSHoldQueueOverflowIsReportedAsDegraded(t *testing.T) {
	d, packets, sink := testDNS(t)
	d.Cgroups, d.HoldTimeout, d.HoldMax = fakeCgroups{}, time.Minute, 1
	now := bootNs()
	packets.queue = append(packets.queue,
		packet(1, now, dnsAnswer(t, "one.example.com.", "203.0.113.7")),
		packet(1, now+1, dnsAnswer(t, "two.example.com.", "203.0.113.8")))
	d.mu.Lock()
	d.drain()
	d.mu.Unlock()
	if len(d.held) != 1 || len(sink.records) != 1 || sink.records[0]["dns.question.name"] != "two.example.com" {
		t.Fatalf("held %d, written %v: want one held and the other written at once", len(d.held), sink.records)
	}
	d.pollLoss(time.Now())
	if len(sink.degraded) != 1 || sink.degraded[0].Reason != trail.DegradedHoldQueue || sink.degraded[0].Count != 1 {
		t.Fatalf("degraded %+v: want one hold_queue report of 1", sink.degraded)
	}
	d.pollLoss(time.Now())
	if len(sink.degraded) != 1 {
		t.Fatal("the same overflow was reported twice")
	}
}
