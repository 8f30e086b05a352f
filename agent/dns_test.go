package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/dns"
	"github.com/connaudit/connaudit/dns/capture"
	"github.com/connaudit/connaudit/dns/limit"
	"github.com/connaudit/connaudit/dns/match"
	"github.com/connaudit/connaudit/k8s/cgroup"
	"github.com/connaudit/connaudit/shipper/handoff"
	"github.com/connaudit/connaudit/trail"
)

// fakePackets hands out queued packets, then deadline errors.
type fakePackets struct {
	mu    sync.Mutex
	queue []capture.Packet
	lost  uint64
}

func (f *fakePackets) SetDeadline(time.Time) {}
func (f *fakePackets) Read(p *capture.Packet) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queue) == 0 {
		return os.ErrDeadlineExceeded
	}
	*p, f.queue = f.queue[0], f.queue[1:]
	return nil
}
func (f *fakePackets) Wait(timeout time.Duration) error {
	if f.Buffered() == 0 {
		time.Sleep(min(timeout, time.Millisecond))
	}
	return nil
}
func (f *fakePackets) Buffered() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.queue)
}
func (f *fakePackets) Lost() (uint64, error) { return f.lost, nil }

func (f *fakePackets) push(p ...capture.Packet) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queue = append(f.queue, p...)
}

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

// queryMsg is the query dnsAnswer answers.
func queryMsg(t testing.TB, name string) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{RecursionDesired: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
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
		Queries: match.New(match.Config{Lifetime: 5 * time.Second, PerNetns: 16, Max: 64}),
		Limit:   limit.New(limit.Config{PerSecond: 1000, Burst: 1000, Netns: 16}),
		Metrics: NewDNSMetrics(reg, cache),
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)), DedupEntries: 2, StallAfter: time.Minute}
	return d, packets, sink
}

var testResolver = netip.MustParseAddr("198.51.100.1")

func packet(netns uint32, at uint64, payload []byte) capture.Packet {
	return capture.Packet{TimeNs: at, NetNS: netns, CgroupID: 7, Len: len(payload), Transport: capture.UDP,
		Server: testResolver, Client: netip.MustParseAddrPort("198.51.100.2:40000"), Payload: payload}
}

// query is the packet of the query that packet(netns, ...) answers.
func query(t testing.TB, netns uint32, at uint64, name string) capture.Packet {
	p := packet(netns, at, queryMsg(t, name))
	p.Query = true
	return p
}

// run runs d.Run until the test ends.
func run(t *testing.T, d *DNS) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

// A connect is not settled while answers from before it are queued; once
// Run has read them, they name it.
func TestQueuedAnswersNameTheConnectsAfterThem(t *testing.T) {
	d, packets, sink := testDNS(t)
	now := bootNs()
	ip := netip.MustParseAddr("203.0.113.80")
	packets.push(
		query(t, 1, now-2, "api.example.com."),
		packet(1, now, dnsAnswer(t, "api.example.com.", "203.0.113.80")),
		query(t, 1, now, "api.example.com."),
		packet(1, now+1, dnsAnswer(t, "api.example.com.", "203.0.113.80")), // the same answer: not written again
		packet(1, now+2, []byte("not dns")),
		query(t, 2, now, "other.example.com."),
		packet(2, now+3, dnsAnswer(t, "other.example.com.", "203.0.113.80")),
	)
	if d.Settled(now + 10) {
		t.Fatal("settled with answers from before the connect queued")
	}
	stop := run(t, d)
	waitSettled(t, d, now+10)
	name, _, _, resolver, ok := d.Lookup(1, ip, now+10)
	if !ok || name != "api.example.com" || resolver != testResolver {
		t.Fatalf("Lookup = %q from %s, %v, want api.example.com from %s", name, resolver, ok, testResolver)
	}
	if name, _, _, _, _ := d.Lookup(2, ip, now+10); name != "other.example.com" {
		t.Fatalf("netns 2 named %q", name)
	}
	stop()
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

// waitSettled waits, at most 10 s, until d has read what was queued by atBootNs.
func waitSettled(t *testing.T, d *DNS, atBootNs uint64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !d.Settled(atBootNs); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the DNS reader did not read what was queued")
		}
	}
}

// handingOver is a ring buffer whose first Read has taken a packet out and
// not yet returned it: what Run's drain looks like to a concurrent connect.
type handingOver struct {
	*fakePackets
	taken, release chan struct{}
}

func (h *handingOver) Read(p *capture.Packet) error {
	if h.taken != nil && h.Buffered() > 0 {
		_ = h.fakePackets.Read(p)
		close(h.taken)
		h.taken = nil
		<-h.release
		return nil
	}
	return h.fakePackets.Read(p)
}

// An answer taken out of the ring buffer but not yet cached keeps connects
// after it unsettled; a reader stuck there shows in Stalled.
func TestNotSettledWhileAnAnswerIsBeingHandled(t *testing.T) {
	d, packets, _ := testDNS(t)
	d.StallAfter = 100 * time.Millisecond
	now := bootNs()
	d.handle(ptr(query(t, 1, now-1, "api.example.com.")), time.Now())
	packets.push(packet(1, now, dnsAnswer(t, "api.example.com.", "203.0.113.80")))
	h := &handingOver{fakePackets: packets, taken: make(chan struct{}), release: make(chan struct{})}
	d.Packets = h
	taken := h.taken
	d.lastBatch.Store(time.Now().UnixNano())
	drained := make(chan struct{})
	go func() { d.drain(-1); close(drained) }()
	<-taken // the ring buffer is empty now, the answer not yet cached
	if d.Settled(now + 10) {
		t.Fatal("settled while the answer from before the connect is being handled")
	}
	packets.push(packet(1, now+1, []byte("more")))
	if err := d.Stalled(); err != nil {
		t.Fatalf("stalled too early: %v", err)
	}
	time.Sleep(d.StallAfter + 10*time.Millisecond)
	if err := d.Stalled(); err == nil {
		t.Fatal("a reader stuck with a packet is not reported")
	}
	close(h.release)
	<-drained
	if !d.Settled(now + 10) {
		t.Fatal("not settled after the reader handled everything")
	}
	if name, _, _, _, _ := d.Lookup(1, netip.MustParseAddr("203.0.113.80"), now+10); name != "api.example.com" {
		t.Fatalf("Lookup after the drain = %q, want api.example.com", name)
	}
}

func ptr[T any](v T) *T { return &v }

// An answer names nothing unless its socket sent the query it answers: to
// that server, with that id and question. Those that do not are counted
// and written as dns.rejected records.
func TestAnswersToNoQueryNameNothing(t *testing.T) {
	d, packets, sink := testDNS(t)
	now := bootNs()
	ip := netip.MustParseAddr("203.0.113.80")
	forgedServer := packet(1, now+2, dnsAnswer(t, "api.example.com.", "203.0.113.80"))
	forgedServer.Server = netip.MustParseAddr("127.0.0.1")
	packets.push(
		packet(1, now, dnsAnswer(t, "api.github.com.", "203.0.113.80")), // no query at all
		query(t, 1, now+1, "api.example.com."),
		forgedServer,                                                      // from another server than the one asked
		packet(1, now+3, dnsAnswer(t, "www.google.com.", "203.0.113.80")), // another question
	)
	d.drain(-1)
	if name, _, _, _, ok := d.Lookup(1, ip, now+10); ok {
		t.Fatalf("named %q by an answer to no query", name)
	}
	if u, m := testutil.ToFloat64(d.Metrics.Packets.WithLabelValues("unsolicited")), testutil.ToFloat64(d.Metrics.Packets.WithLabelValues("question_mismatch")); u != 2 || m != 1 {
		t.Fatalf("unsolicited %v, mismatched %v; want 2 and 1", u, m)
	}
	if len(sink.records) != 3 {
		t.Fatalf("records %v, want 3 dns.rejected", sink.records)
	}
	for _, r := range sink.records {
		if r["event_name"] != string(trail.EventDNSRejected) || r["connaudit.dns.rejected"] == "" || r["dns.answers"] != "203.0.113.80" {
			t.Errorf("record %v, want a dns.rejected record with its reason and addresses", r)
		}
	}
	// The real answer, still awaited, names the address.
	packets.push(packet(1, now+4, dnsAnswer(t, "api.example.com.", "203.0.113.80")))
	d.drain(-1)
	if name, _, _, _, _ := d.Lookup(1, ip, now+10); name != "api.example.com" {
		t.Fatalf("the matching answer named %q", name)
	}
}

// Over its budget, a network namespace loses answers, counted as loss;
// another namespace keeps its names.
func TestRateLimitLosesAnswersOfOneNetns(t *testing.T) {
	d, packets, sink := testDNS(t)
	d.Limit = limit.New(limit.Config{PerSecond: 1, Burst: 2, Netns: 16})
	d.DedupEntries = 100
	now := bootNs()
	for i := range 5 {
		name := fmt.Sprintf("n%d.example.com.", i)
		packets.push(query(t, 1, now, name), packet(1, now+uint64(i), dnsAnswer(t, name, fmt.Sprintf("203.0.113.%d", i))))
	}
	packets.push(query(t, 2, now, "b.example.com."), packet(2, now+9, dnsAnswer(t, "b.example.com.", "203.0.113.9")))
	d.drain(-1)
	if name, _, _, _, _ := d.Lookup(2, netip.MustParseAddr("203.0.113.9"), now+10); name != "b.example.com" {
		t.Fatalf("netns 2 named %q", name)
	}
	if _, _, _, _, ok := d.Lookup(1, netip.MustParseAddr("203.0.113.4"), now+10); ok {
		t.Fatal("an answer over budget named its address")
	}
	d.pollLoss(time.Now())
	if len(sink.losses) != 1 || sink.losses[0].Reason != trail.LossDNSRateLimited || sink.losses[0].Count != 3 {
		t.Fatalf("losses %+v, want 3 rate-limited answers", sink.losses)
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
	packets.push(query(t, 1, now-1, "new.example.com."), packet(1, now, dnsAnswer(t, "new.example.com.", "203.0.113.7")))
	d.drain(-1)
	if name, _, _, _, _ := d.Lookup(1, netip.MustParseAddr("203.0.113.7"), now+1); name != "new.example.com" {
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

// A held answer is counted in the live page while it waits, so that a
// kill -9 then is reported by the next instance (agent_killed).
func TestHeldAnswerIsCountedUntilWritten(t *testing.T) {
	d, packets, sink := testDNS(t)
	dir := t.TempDir()
	live, err := handoff.OpenLive(dir, "instance-a")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { live.Close() })
	cgroups := fakeCgroups{}
	d.Cgroups, d.HoldTimeout, d.HoldMax, d.Live = cgroups, time.Minute, 10, live
	now := bootNs()
	packets.push(query(t, 1, now-1, "held.example.com."), packet(1, now, dnsAnswer(t, "held.example.com.", "203.0.113.7")))
	d.drain(-1)
	if last, ok, err := handoff.LoadLive(dir); err != nil || !ok || last.Unspooled != 1 {
		t.Fatalf("page of the instance holding an answer: %+v, %v, %v; want 1 unspooled", last, ok, err)
	}
	cgroups[7] = cgroup.Info{Container: cgroup.Container{ContainerID: containerID}}
	d.retryHeld(time.Now(), false)
	if len(sink.records) != 1 {
		t.Fatalf("records %v, want the held answer written", sink.records)
	}
	if last, _, err := handoff.LoadLive(dir); err != nil || last.Unspooled != 0 {
		t.Fatalf("page after the answer was written: %+v, %v; want 0 unspooled", last, err)
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
	d.drain(-1)
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
