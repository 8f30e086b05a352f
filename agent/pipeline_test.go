package agent

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"

	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/k8s"
	"github.com/connaudit/connaudit/k8s/cgroup"
	"github.com/connaudit/connaudit/shipper"
	"github.com/connaudit/connaudit/trail"
)

func bootNs() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return uint64(ts.Nano())
}

// fakeEvents hands out queued events, then deadline errors.
type fakeEvents struct {
	mu       sync.Mutex
	queue    []bpf.Event
	counters bpf.Counters
	marked   []bpf.Counters
	detached bool
}

func (f *fakeEvents) SetDeadline(time.Time) {}
func (f *fakeEvents) Read(ev *bpf.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queue) == 0 {
		f.mu.Unlock()
		time.Sleep(time.Millisecond)
		f.mu.Lock()
		return os.ErrDeadlineExceeded
	}
	*ev, f.queue = f.queue[0], f.queue[1:]
	return nil
}
func (f *fakeEvents) Detach() error { f.mu.Lock(); f.detached = true; f.mu.Unlock(); return nil }
func (f *fakeEvents) Buffered() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.queue) * (bpf.EventSize + 8)
}
func (f *fakeEvents) Counters() (bpf.Counters, error) { return f.counters, nil }
func (f *fakeEvents) MarkReported(c bpf.Counters) error {
	f.marked = append(f.marked, c)
	return nil
}

type fakeCgroups map[uint64]cgroup.Info

func (f fakeCgroups) Cached(id uint64) (cgroup.Info, bool) { i, ok := f[id]; return i, ok }

// fakeKubernetes knows the pods in pods, and in noContainer those whose
// status does not list the container yet; others are pending, or host when
// their UID is empty. Addresses in peers are those peers, others external.
type fakeKubernetes struct {
	pods, noContainer map[string]*k8s.Workload
	peers             map[netip.Addr]*k8s.Peer
}

func (f *fakeKubernetes) Source(podUID, _ string, _ time.Time) (*k8s.Workload, k8s.SourceStatus) {
	if podUID == "" {
		return nil, k8s.SourceHost
	}
	if w, ok := f.pods[podUID]; ok {
		return w, k8s.SourceResolved
	}
	if w, ok := f.noContainer[podUID]; ok {
		return w, k8s.SourceContainerPending
	}
	return nil, k8s.SourcePending
}
func (f *fakeKubernetes) Peer(a netip.Addr, _ time.Time) *k8s.Peer {
	if p, ok := f.peers[a]; ok {
		return p
	}
	return &k8s.Peer{Kind: trail.PeerExternal, Attrs: []attribute.KeyValue{attribute.String("connaudit.peer.kind", "external")}}
}

type noExecutables struct{}

func (noExecutables) Lookup(uint32, uint32, []byte, uint64) string { return "" }

// fakeTrail decodes what it is given; TryLose and TryDegrade refuse while refuse is set.
type fakeTrail struct {
	records  []map[string]string
	losses   []shipper.Loss
	degraded []shipper.Degraded
	refuse   bool
}

func (f *fakeTrail) Emit(e *shipper.Encoder) {
	var r shipper.Record
	if err := shipper.Decode(e.Payload(), &r); err != nil {
		panic(err)
	}
	m := map[string]string{"event_name": r.EventName}
	for _, kv := range append(r.Resource, r.Attrs...) {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	f.records = append(f.records, m)
}
func (f *fakeTrail) TryLose(l shipper.Loss) bool {
	if f.refuse {
		return false
	}
	f.losses = append(f.losses, l)
	return true
}
func (f *fakeTrail) Lose(l shipper.Loss)        { f.losses = append(f.losses, l) }
func (f *fakeTrail) Degrade(d shipper.Degraded) { f.degraded = append(f.degraded, d) }
func (f *fakeTrail) TryDegrade(d shipper.Degraded) bool {
	if f.refuse {
		return false
	}
	f.degraded = append(f.degraded, d)
	return true
}

const (
	podCgroup   = 100
	hostCgroup  = 1
	podUID      = "0f8e1c8a-1111-2222-3333-444455556666"
	containerID = "c0ffee"
)

func testPipeline(t *testing.T) (*Pipeline, *fakeEvents, fakeCgroups, *fakeKubernetes, *fakeTrail) {
	t.Helper()
	attrs := map[attribute.Key]attribute.Value{"service.name": attribute.StringValue("connaudit")}
	events, sink := &fakeEvents{}, &fakeTrail{}
	cgroups := fakeCgroups{hostCgroup: {ID: hostCgroup, Path: "/"}}
	kube := &fakeKubernetes{pods: map[string]*k8s.Workload{}}
	p := &Pipeline{Events: events, Cgroups: cgroups, Kubernetes: kube, Executables: noExecutables{}, Trail: sink,
		Identities: NewIdentityEncoder(attrs), Clock: bpf.NewBootClock(),
		Metrics: shipper.NewMetrics(prometheus.NewRegistry()), Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		HoldTimeout: time.Second, HoldMax: 2}
	p.hold.max = p.HoldMax
	return p, events, cgroups, kube, sink
}

func event(cgroupID uint64) bpf.Event {
	now := bootNs()
	ev := bpf.Event{StartNs: now, EndNs: now + 1000, CgroupID: cgroupID, PID: 42, TID: 42, Outcome: bpf.Established,
		Local: netip.MustParseAddrPort("10.0.0.1:40000"), Peer: netip.MustParseAddrPort("198.51.100.7:443")}
	ev.SetComm("curl")
	return ev
}

func podWorkload() *k8s.Workload {
	return &k8s.Workload{Namespace: "shop", PodName: "web-1", PodUID: podUID, ContainerID: containerID,
		Attrs: []attribute.KeyValue{attribute.String("k8s.pod.name", "web-1"), attribute.String("k8s.namespace.name", "shop")}}
}

// An event whose pod the cache does not know yet waits, and ships with the
// pod's identity once the pod arrives.
func TestHeldEventShipsWhenItsPodArrives(t *testing.T) {
	p, _, cgroups, kube, sink := testPipeline(t)
	cgroups[podCgroup] = cgroup.Info{ID: podCgroup, Container: cgroup.Container{PodUID: podUID, ContainerID: containerID}}
	ev := event(podCgroup)
	now := time.Now()
	p.handle(&ev, now, false)
	if len(sink.records) != 0 || p.hold.len() != 1 {
		t.Fatalf("%d records shipped, %d held: want the event held", len(sink.records), p.hold.len())
	}
	p.retryHeld(now.Add(holdRetryTick), false)
	if len(sink.records) != 0 {
		t.Fatal("shipped while the pod is still unknown")
	}
	kube.pods[podUID] = podWorkload()
	p.retryHeld(now.Add(2*holdRetryTick), false)
	if len(sink.records) != 1 {
		t.Fatalf("%d records after the pod arrived, want 1", len(sink.records))
	}
	if r := sink.records[0]; r["k8s.pod.name"] != "web-1" || r["connaudit.source.kind"] != "pod" {
		t.Errorf("record %v: want pod web-1", r)
	}
}

// A container that connects before the kubelet reported it (seen on a real
// node: a client's first connect lacked k8s.container.name) waits for its
// name, and ships with the pod's identity alone if the name never comes.
func TestEventOfUnreportedContainerWaitsForItsName(t *testing.T) {
	p, _, cgroups, kube, sink := testPipeline(t)
	kube.noContainer = map[string]*k8s.Workload{}
	cgroups[podCgroup] = cgroup.Info{ID: podCgroup, Container: cgroup.Container{PodUID: podUID, ContainerID: containerID}}
	kube.noContainer[podUID] = podWorkload()
	now := time.Now()
	first, second := event(podCgroup), event(podCgroup)
	p.handle(&first, now, false)
	p.handle(&second, now, false)
	if len(sink.records) != 0 || p.hold.len() != 2 {
		t.Fatalf("%d records shipped, %d held: want both held", len(sink.records), p.hold.len())
	}
	named := podWorkload()
	named.ContainerName = "app"
	named.Attrs = append(named.Attrs, attribute.String("k8s.container.name", "app"))
	kube.pods[podUID] = named
	p.retryHeld(now.Add(holdRetryTick), false)
	if len(sink.records) != 2 {
		t.Fatalf("%d records once the container was reported, want 2", len(sink.records))
	}
	for _, r := range sink.records {
		if r["k8s.container.name"] != "app" || r["k8s.pod.name"] != "web-1" {
			t.Errorf("record %v: want container app of pod web-1", r)
		}
	}

	delete(kube.pods, podUID)
	late := event(podCgroup)
	p.handle(&late, now, false)
	p.retryHeld(now.Add(p.HoldTimeout), false)
	if len(sink.records) != 3 {
		t.Fatalf("%d records at the deadline, want 3", len(sink.records))
	}
	if r := sink.records[2]; r["k8s.pod.name"] != "web-1" || r["connaudit.source.kind"] != "pod" || r["connaudit.k8s.enrichment"] != "" {
		t.Errorf("record %v at the deadline: want pod web-1, unmarked", r)
	}
}

// A pod that never arrives: the event ships at its deadline, marked.
func TestHeldEventShipsMarkedAtItsDeadline(t *testing.T) {
	p, _, cgroups, _, sink := testPipeline(t)
	cgroups[podCgroup] = cgroup.Info{ID: podCgroup, Container: cgroup.Container{PodUID: podUID, ContainerID: containerID}}
	ev := event(podCgroup)
	now := time.Now()
	p.handle(&ev, now, false)
	p.retryHeld(now.Add(p.HoldTimeout), false)
	if len(sink.records) != 1 {
		t.Fatalf("%d records at the deadline, want 1", len(sink.records))
	}
	r := sink.records[0]
	if r["connaudit.k8s.enrichment"] != "pending_timeout" || r["k8s.pod.uid"] != podUID || r["connaudit.source.kind"] != "pod" {
		t.Errorf("record %v: want pending_timeout with the pod UID the cgroup told", r)
	}
}

// A full hold queue ships at once, and the poll reports it as degraded, not lost.
func TestFullHoldQueueShipsAtOnceAndIsReportedAsDegraded(t *testing.T) {
	p, _, cgroups, _, sink := testPipeline(t)
	cgroups[podCgroup] = cgroup.Info{ID: podCgroup, Container: cgroup.Container{PodUID: podUID, ContainerID: containerID}}
	now := time.Now()
	for i := 0; i < 3; i++ {
		ev := event(podCgroup)
		p.handle(&ev, now, false)
	}
	if p.hold.len() != 2 || len(sink.records) != 1 || sink.records[0]["connaudit.k8s.enrichment"] != "hold_queue_full" {
		t.Fatalf("held %d, shipped %v: want 2 held and 1 shipped marked hold_queue_full", p.hold.len(), sink.records)
	}
	p.poll(now)
	if len(sink.degraded) != 1 || sink.degraded[0].Reason != trail.DegradedHoldQueue || sink.degraded[0].Count != 1 || len(sink.losses) != 0 {
		t.Fatalf("degraded %v, losses %v: want one hold_queue degraded report of 1 and no loss", sink.degraded, sink.losses)
	}
}

// fakeNames names 198.51.100.7 api.example.com once settled; until then
// the DNS reader has not caught up with the connect.
type fakeNames struct {
	settled, named bool
	timedOut       int
}

func (f *fakeNames) Lookup(uint32, netip.Addr, uint64) (string, []string, time.Duration, netip.Addr, bool) {
	if !f.named {
		return "", nil, 0, netip.Addr{}, false
	}
	return "api.example.com", []string{"api.example.com"}, time.Second, netip.MustParseAddr("198.51.100.53"), true
}
func (f *fakeNames) Settled(uint64) bool { return f.settled }
func (f *fakeNames) TimedOut()           { f.timedOut++ }

// A connect whose answer the DNS reader may not have read yet is held, not
// waited for: capture goes on, and the connect ships named once the reader
// has caught up, or unnamed and counted when DNSWait runs out.
func TestConnectIsHeldForDNSStillBeingRead(t *testing.T) {
	p, _, _, _, sink := testPipeline(t)
	names := &fakeNames{}
	p.Names, p.DNSWait = names, 500*time.Millisecond
	now := time.Now()
	ev := event(hostCgroup)
	p.handle(&ev, now, false)
	if len(sink.records) != 0 || p.hold.len() != 1 {
		t.Fatalf("%d records shipped, %d held: want the connect held for DNS", len(sink.records), p.hold.len())
	}
	p.retryHeld(now.Add(holdRetryTick), false)
	if len(sink.records) != 0 {
		t.Fatal("shipped while DNS was still being read")
	}
	names.settled, names.named = true, true
	p.retryHeld(now.Add(2*holdRetryTick), false)
	if len(sink.records) != 1 || sink.records[0]["server.address"] != "api.example.com" || sink.records[0]["connaudit.dns.resolver"] != "198.51.100.53" {
		t.Fatalf("records %v, want one named api.example.com by 198.51.100.53", sink.records)
	}

	names.settled, names.named = false, false
	late := event(hostCgroup)
	p.handle(&late, now, false)
	p.retryHeld(now.Add(p.DNSWait), false)
	if len(sink.records) != 2 || sink.records[1]["server.address"] != "198.51.100.7" || names.timedOut != 1 {
		t.Fatalf("records %v, %d timeouts: want the second shipped unnamed at its deadline and counted", sink.records, names.timedOut)
	}

	// Settled with no name: a final miss, not a timeout; a name already in
	// the cache needs no wait.
	names.settled = true
	miss := event(hostCgroup)
	p.handle(&miss, now, false)
	names.settled, names.named = false, true
	hit := event(hostCgroup)
	p.handle(&hit, now, false)
	if len(sink.records) != 4 || sink.records[3]["server.address"] != "api.example.com" || names.timedOut != 1 || p.hold.len() != 0 {
		t.Fatalf("records %v, %d timeouts, %d held: want both shipped at once", sink.records, names.timedOut, p.hold.len())
	}
}

// fixedName names every address name from resolver.
type fixedName struct {
	name     string
	resolver netip.Addr
}

func (f fixedName) Lookup(uint32, netip.Addr, uint64) (string, []string, time.Duration, netip.Addr, bool) {
	return f.name, []string{f.name}, time.Second, f.resolver, true
}
func (fixedName) Settled(uint64) bool { return true }
func (fixedName) TimedOut()           {}

// A name from the kube-dns Service is the cluster DNS's; one from any other
// resolver (the node's, or one a pod runs) is not; while the caches cannot
// tell, the record does not say.
func TestConnectSaysWhetherTheClusterDNSNamedIt(t *testing.T) {
	p, _, _, kube, sink := testPipeline(t)
	kubeDNS, other, unsynced := netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("198.51.100.53"), netip.MustParseAddr("10.96.0.11")
	kube.peers = map[netip.Addr]*k8s.Peer{
		kubeDNS:  {Kind: trail.PeerService, Namespace: "kube-system", Name: "kube-dns"},
		unsynced: {Kind: trail.PeerUnknown},
	}
	for _, resolver := range []netip.Addr{kubeDNS, other, unsynced} {
		p.Names = fixedName{"api.example.com", resolver}
		ev := event(hostCgroup)
		p.handle(&ev, time.Now(), false)
	}
	want := []string{"true", "false", ""}
	if len(sink.records) != len(want) {
		t.Fatalf("%d records, want %d", len(sink.records), len(want))
	}
	for i, r := range sink.records {
		if r["connaudit.dns.cluster"] != want[i] || r["server.address"] != "api.example.com" {
			t.Errorf("record %d named by %s: connaudit.dns.cluster %q, want %q", i, r["connaudit.dns.resolver"], r["connaudit.dns.cluster"], want[i])
		}
	}
}

// A full hold queue ships a connect waiting for DNS at once, unnamed and
// counted as a DNS timeout, not as an enrichment hold overflow.
func TestFullHoldQueueShipsConnectUnnamed(t *testing.T) {
	p, _, _, _, sink := testPipeline(t)
	names := &fakeNames{}
	p.Names, p.DNSWait = names, time.Second
	now := time.Now()
	for range 3 {
		ev := event(hostCgroup)
		p.handle(&ev, now, false)
	}
	if p.hold.len() != 2 || len(sink.records) != 1 || names.timedOut != 1 {
		t.Fatalf("held %d, shipped %d, %d timeouts: want 2 held, 1 shipped and counted", p.hold.len(), len(sink.records), names.timedOut)
	}
	p.poll(now)
	if len(sink.degraded) != 0 {
		t.Fatalf("degraded %v: a connect shipped unnamed is no enrichment overflow", sink.degraded)
	}
}

// A cgroup the resolver has not seen is never taken for the host: the event
// waits for the walk, and ships as unknown if the cgroup never shows up.
func TestUnknownCgroupIsNeverHost(t *testing.T) {
	p, _, cgroups, kube, sink := testPipeline(t)
	now := time.Now()
	late, never := event(podCgroup), event(999)
	p.handle(&late, now, false)
	p.handle(&never, now, false)
	if p.hold.len() != 2 {
		t.Fatalf("%d held, want both events waiting for their cgroup", p.hold.len())
	}
	cgroups[podCgroup] = cgroup.Info{ID: podCgroup, Container: cgroup.Container{PodUID: podUID, ContainerID: containerID}}
	kube.pods[podUID] = podWorkload()
	p.retryHeld(now.Add(holdRetryTick), false)
	p.retryHeld(now.Add(p.HoldTimeout), false)
	if len(sink.records) != 2 {
		t.Fatalf("%d records, want 2", len(sink.records))
	}
	if r := sink.records[0]; r["k8s.pod.name"] != "web-1" {
		t.Errorf("event whose cgroup showed up late: %v, want pod web-1", r)
	}
	if r := sink.records[1]; r["connaudit.source.kind"] != "unknown" || r["connaudit.cgroup.id"] != "999" {
		t.Errorf("event whose cgroup never showed up: %v, want source.kind unknown with its cgroup id", r)
	}
	host := event(hostCgroup)
	p.handle(&host, now, false)
	if r := sink.records[2]; r["connaudit.source.kind"] != "host" {
		t.Errorf("host process: %v, want source.kind host", r)
	}
}

// A kernel loss is marked reported only once the sink took its record.
func TestKernelLossIsReportedUntilTheTrailTakesIt(t *testing.T) {
	p, events, _, _, sink := testPipeline(t)
	events.counters = bpf.Counters{RingBufferLost: 5, HandshakeLost: 2}
	sink.refuse = true
	p.poll(time.Now())
	if len(events.marked) != 0 {
		t.Fatalf("marked %v reported while the sink refused the report", events.marked)
	}
	sink.refuse = false
	events.counters.RingBufferLost = 7
	p.poll(time.Now())
	if len(sink.losses) != 1 || sink.losses[0].Count != 7 || sink.losses[0].Reason != trail.LossRingBuffer {
		t.Fatalf("losses %+v: want one ring_buffer loss of 7", sink.losses)
	}
	if !sink.losses[0].First.IsZero() {
		t.Error("the first poll's loss has a start time, yet it may have happened before the agent started")
	}
	if len(sink.degraded) != 1 || sink.degraded[0].Count != 2 {
		t.Fatalf("degraded %+v: want handshake_map of 2", sink.degraded)
	}
	if len(events.marked) != 1 || events.marked[0] != (bpf.Counters{RingBufferLost: 7, HandshakeLost: 2}) {
		t.Fatalf("marked %v, want {7 2}", events.marked)
	}
	p.poll(time.Now())
	if len(sink.losses) != 1 {
		t.Fatal("the same loss was reported twice")
	}
}

// At shutdown, what the ring buffer still holds and every held event ship.
func TestShutdownDrainsRingBufferAndHoldQueue(t *testing.T) {
	p, events, cgroups, _, sink := testPipeline(t)
	cgroups[podCgroup] = cgroup.Info{ID: podCgroup, Container: cgroup.Container{PodUID: podUID, ContainerID: containerID}}
	p.HoldMax = 10
	for i := 0; i < 4; i++ {
		events.queue = append(events.queue, event(hostCgroup), event(podCgroup))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // stop at once: everything is handled by the drain
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if !events.detached {
		t.Error("capture not detached before the drain")
	}
	if len(sink.records) != 8 || p.hold.len() != 0 {
		t.Fatalf("%d records shipped, %d still held: want all 8 shipped", len(sink.records), p.hold.len())
	}
	timedOut := 0
	for _, r := range sink.records {
		if r["connaudit.k8s.enrichment"] == "pending_timeout" {
			timedOut++
		}
	}
	if timedOut != 4 {
		t.Errorf("%d records marked pending_timeout, want the 4 whose pod was unknown", timedOut)
	}
}
