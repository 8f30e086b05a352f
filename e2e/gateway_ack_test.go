package e2e

// Fault tests of issue 20, item 2: the gateway either keeps what it accepted
// in an fsynced persistent queue (otel-collector/config.yaml) or holds each
// agent request until VictoriaLogs has accepted it (wait_for_result, in
// memory: otel-collector/config-ack.yaml). Both must lose nothing in these
// faults. Run them against either mode with
//
//	go test -count=1 -run 'Fault' -v ./e2e/
//	CONNAUDIT_TEST_COLLECTOR_CONFIG=otel-collector/config-ack.yaml go test -count=1 -run 'Fault' -v ./e2e/

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/connaudit/connaudit/internal/teststack"
)

// ackMode reports whether the collector under test acknowledges only after
// the backend accepted (wait_for_result), so it holds no records of its own.
func ackMode(t *testing.T) bool {
	t.Helper()
	root, err := os.Getwd() // ./e2e
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(root + "/../" + teststack.CollectorConfig())
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(data), "wait_for_result: true")
}

// waitHeld waits until the n records made while the backend is down are held
// somewhere durable: in the collector's persistent queue, or, for a gateway
// that acknowledges end to end, in the agent's spool, which the agent's
// failed (retried) exports show.
func waitHeld(t *testing.T, s *stack, n int, timeout time.Duration) {
	t.Helper()
	if !ackMode(t) {
		queued := waitQueue(t, s.col, n, timeout)
		t.Logf("collector queue holds %d records", queued)
		return
	}
	before := metricsOf(t, s.agent)[`connaudit_export_retries_total`]
	if !pollUntil(timeout, func() bool { return metricsOf(t, s.agent)[`connaudit_export_retries_total`] > before }) {
		t.Fatalf("the agent's exports did not fail in %v while the backend was down", timeout)
	}
	if q, err := s.col.QueueSize(t.Context()); err == nil {
		t.Logf("records wait in the agent's spool; collector holds %d in memory", q)
	}
}

// TestFaultCollectorKill9UnderLoad: the collector is killed with SIGKILL in
// the middle of a steady connect stream (about 2,000/s) while VictoriaLogs is
// up, so requests are in flight through it, and started again; every
// connect is stored.
func TestFaultCollectorKill9UnderLoad(t *testing.T) {
	s := startStack(t)
	instance := s.instance(t)
	target := newConnectTarget(t)

	var made atomic.Int64
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		const tick = 50 * time.Millisecond
		start := time.Now()
		next := start
		for i := 0; i < 240 && time.Since(start) < 30*time.Second; i++ { // 12 s at 100 per tick
			n, _ := target.connect(100)
			made.Add(int64(n))
			next = next.Add(tick)
			time.Sleep(time.Until(next))
		}
	}()
	time.Sleep(4 * time.Second)
	s.col.Kill()
	killedAt := made.Load()
	time.Sleep(2 * time.Second)
	s.col.Start()
	<-loadDone
	n := int(made.Load())
	t.Logf("collector killed after %d connects; %d connects in all", killedAt, n)
	if killedAt == 0 || int(killedAt) == n {
		t.Fatalf("the kill was not in the middle of the load (%d of %d connects before it)", killedAt, n)
	}
	endWithEveryConnect(t, s, instance, target.port, n)
}

// TestFaultVictoriaLogsHangs: VictoriaLogs stops answering (connections are
// accepted and never answered) for 40 s, four times the agent's request
// timeout, while connects go on (a burst of 5,000, then 500/s). Nothing is
// lost once it answers again. A
// gateway that acknowledges end to end must not pile up the requests the
// agent gave up on and sent again: its queue never holds more than two of
// the agent's requests (the agent exports one request of at most 2,048
// records at a time).
func TestFaultVictoriaLogsHangs(t *testing.T) {
	vl := teststack.StartVictoriaLogs(t)
	px := newHangProxy(t, strings.TrimPrefix(vl.URL(), "http://"))
	s := &stack{vl: vl}
	s.col = teststack.StartCollector(t, "http://"+px.addr)
	s.agent = teststack.StartAgent(t, s.col)
	instance := s.instance(t)
	target := newConnectTarget(t)
	ack := ackMode(t)

	n1, _ := target.connect(1000)
	waitConnects(t, vl, target.port, n1, arrivalTimeout)
	retries0 := metricsOf(t, s.agent)[`connaudit_export_retries_total`]

	px.hang(true)
	const outage = 40 * time.Second
	down := time.Now()
	// A burst first, so that the request the agent is stuck on is a full
	// one (2,048 records): were the gateway to keep each copy the agent
	// sends again after its 10 s timeout, four of them would be held.
	n2, _ := target.connect(5000)
	maxQueue, maxRSS := 0, 0
	for time.Since(down) < outage {
		if time.Since(down) < 30*time.Second {
			k, _ := target.connect(250)
			n2 += k
		}
		if q, err := s.col.QueueSize(t.Context()); err == nil {
			maxQueue = max(maxQueue, q)
		}
		maxRSS = max(maxRSS, rssKiB(s.col.PID()))
		time.Sleep(500 * time.Millisecond)
	}
	retries := metricsOf(t, s.agent)[`connaudit_export_retries_total`] - retries0
	t.Logf("backend hung %v: %d connects meanwhile, agent export retries %v, collector queue at most %d records, collector RSS at most %d KiB",
		outage, n2, retries, maxQueue, maxRSS)
	if ack {
		if retries == 0 {
			t.Errorf("the agent's exports never failed during a %v backend hang", outage)
		}
		if maxQueue > 2*2048 {
			t.Errorf("collector queue held %d records during the hang: requests pile up (want at most %d)", maxQueue, 2*2048)
		}
	}
	px.hang(false)
	n3, _ := target.connect(1000)
	endWithEveryConnect(t, s, instance, target.port, n1+n2+n3)
}

// rssKiB is the resident size of process pid, 0 if unknown.
func rssKiB(pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return n
		}
	}
	return 0
}

// hangProxy forwards TCP connections on a loopback port to a backend; while
// hanging, it accepts connections, reads and discards what they send, and
// never answers, like a backend that stopped responding.
type hangProxy struct {
	addr    string
	backend string
	mu      sync.Mutex
	hanging bool
	conns   map[net.Conn]struct{}
}

func newHangProxy(t *testing.T, backend string) *hangProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &hangProxy{addr: ln.Addr().String(), backend: backend, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() {
		ln.Close()
		p.closeAll()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

// hang switches hanging on or off and closes every open connection, so that
// kept-alive connections follow the switch.
func (p *hangProxy) hang(on bool) {
	p.mu.Lock()
	p.hanging = on
	p.mu.Unlock()
	p.closeAll()
}

func (p *hangProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *hangProxy) track(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
}

func (p *hangProxy) serve(c net.Conn) {
	p.mu.Lock()
	hanging := p.hanging
	p.mu.Unlock()
	if hanging {
		p.track(c)
		_, _ = io.Copy(io.Discard, c)
		c.Close()
		return
	}
	b, err := net.Dial("tcp", p.backend)
	if err != nil {
		c.Close()
		return
	}
	p.track(c, b)
	go func() {
		_, _ = io.Copy(b, c)
		b.Close()
	}()
	_, _ = io.Copy(c, b)
	c.Close()
}

// BenchmarkAgentDrain measures the end-to-end rate at which one agent
// empties a backlog of 200,000 spooled connect records through the
// collector into VictoriaLogs: the collector is stopped while the connects
// are made, then started, and the clock runs from its start until every
// record is stored. The agent exports one request at a time, so with a
// gateway that acknowledges end to end this rate is bound by the round trip
// through VictoriaLogs. CONNAUDIT_EXPORT_BATCH is the agent's request size
// (BENCH_EXPORT_BATCH, default its own 2,048). It runs once whatever b.N is:
//
//	go test -run '^$' -bench AgentDrain -benchtime 1x ./e2e/
func BenchmarkAgentDrain(b *testing.B) {
	const records = 200_000
	var env []string
	if v := os.Getenv("BENCH_EXPORT_BATCH"); v != "" {
		env = append(env, "CONNAUDIT_EXPORT_BATCH="+v)
	}
	vl := teststack.StartVictoriaLogs(b)
	col := teststack.StartCollector(b, vl.URL())
	agent := teststack.StartAgent(b, col, env...)
	vl.WaitFor(b, `event_name:="connaudit.agent.start"`, 1, time.Minute)

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	target := &connectTarget{port: port, sa: &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}}

	col.Stop()
	// 10,000 connects/s, well below what the agent captures without loss.
	made := 0
	next := time.Now()
	for start := next; made < records && time.Since(start) < 2*time.Minute; {
		n, _ := target.connect(100)
		made += n
		next = next.Add(10 * time.Millisecond)
		time.Sleep(time.Until(next))
	}
	time.Sleep(3 * time.Second) // the agent spools the last of them
	b.ResetTimer()
	col.Start()
	start := time.Now()
	q := fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d | stats count() as n`, port)
	got := 0
	ok := pollUntil(5*time.Minute, func() bool {
		rows, err := vl.Query(b.Context(), q)
		if err == nil && len(rows) == 1 {
			got, _ = strconv.Atoi(rows[0]["n"])
		}
		return got >= made
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if !ok {
		b.Fatalf("%d of %d records stored after %v", got, made, elapsed)
	}
	_ = agent
	b.ReportMetric(float64(made)/elapsed.Seconds(), "records/s")
	b.ReportMetric(elapsed.Seconds(), "s")
	b.Logf("%s: %d records drained in %v (%.0f records/s)", teststack.CollectorConfig(), made, elapsed.Round(time.Millisecond), float64(made)/elapsed.Seconds())
}
