package e2e

// Fault tests of issue 4: each takes a real component down (collector,
// agent, VictoriaLogs, the spool's disk, the spool's files), makes loopback
// connects, and ends by proving from VictoriaLogs that
//
//   - every connaudit.seq of every agent instance involved is present, except
//     for holes that a connaudit.loss record explains exactly (its
//     connaudit.lost.seq.first..last are all absent and its
//     connaudit.lost.count is their number), and
//   - every connect the test made to a port it owns is stored exactly once
//     (distinct by service.instance.id and connaudit.seq: replays after a
//     restart may store a record twice, and that is allowed).
//
// Every wait is bounded. Run them with
//
//	go test -count=1 -run Fault -v ./e2e/

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/connaudit/connaudit/internal/teststack"
	"github.com/connaudit/connaudit/k8s/cgroup"
	"github.com/connaudit/connaudit/shipper"
	"github.com/connaudit/connaudit/trail"
)

// arrivalTimeout bounds the wait for records once every component is up: the
// agent's export backoff is at most 500 ms in the tests, the collector's at
// most 10 s.
const arrivalTimeout = 2 * time.Minute

// TestFaultCollectorDown60s: the collector is stopped for 60 s while more than
// 20,000 connects happen; /readyz turns false once exports have failed for
// CONNAUDIT_READY_EXPORT_FAILURE, and true again after the collector returns;
// everything arrives.
func TestFaultCollectorDown60s(t *testing.T) {
	s := startStack(t, "CONNAUDIT_READY_EXPORT_FAILURE=5s")
	instance := s.instance(t)
	target := newConnectTarget(t)

	const (
		outage = 60 * time.Second
		want   = 24_000 // connects during the outage, spread over its first 45 s
		spread = 45 * time.Second
	)
	s.col.Stop()
	down := time.Now()

	var made atomic.Int64
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		const tick = 100 * time.Millisecond
		per := int(int64(want) * int64(tick) / int64(spread))
		next := time.Now()
		for made.Load() < want && time.Since(down) < outage-5*time.Second {
			n, _ := target.connect(min(per, want-int(made.Load())))
			made.Add(int64(n))
			next = next.Add(tick)
			time.Sleep(time.Until(next))
		}
	}()

	var notReadyAfter time.Duration
	for time.Since(down) < outage {
		if notReadyAfter == 0 && !s.agent.Ready() {
			notReadyAfter = time.Since(down)
		}
		time.Sleep(250 * time.Millisecond)
	}
	<-loadDone
	if notReadyAfter == 0 {
		t.Errorf("/readyz stayed 200 during a %v collector outage with CONNAUDIT_READY_EXPORT_FAILURE=5s", outage)
	} else {
		t.Logf("/readyz turned false %v after the collector stopped", notReadyAfter.Round(time.Millisecond))
	}
	if !s.agent.Healthy() {
		t.Errorf("/healthz failed during the collector outage")
	}
	n := made.Load()
	t.Logf("%d connects while the collector was down (%d failed)", n, target.failed.Load())
	if n < 20_000 {
		t.Fatalf("only %d connects made during the outage, want at least 20000", n)
	}

	s.col.Start()
	back := time.Now()
	if !pollUntil(time.Minute, s.agent.Ready) {
		t.Errorf("/readyz still failing %v after the collector returned", time.Minute)
	} else {
		t.Logf("/readyz 200 again %v after the collector returned", time.Since(back).Round(time.Millisecond))
	}

	waitConnects(t, s.vl, target.port, int(n), arrivalTimeout)
	t.Logf("all %d connects stored %v after the collector returned", n, time.Since(back).Round(time.Millisecond))
	m := metricsOf(t, s.agent)
	if m[`connaudit_export_retries_total`] == 0 {
		t.Errorf("connaudit_export_retries_total is 0 after a collector outage")
	}
	s.agent.Stop()
	tr := finalTrail(t, s.vl, instance)
	checkTrail(t, tr, instance, true)
	tr.wantConnects(t, target.port, int(n))
	wantNoSpoolLoss(t, m)
}

// TestFaultAgentKill9: the agent is killed with SIGKILL in the middle of a
// connect stream, the stream goes on while it is down, and it is restarted on
// the same spool and pinned capture. The first instance's spooled records are
// exported by the second, and the second drains what the pinned capture
// recorded while no agent ran.
func TestFaultAgentKill9(t *testing.T) {
	testAgentRestart(t, func(s *stack) { s.agent.Kill() }, func(s *stack) { s.agent.Start() }, "resumed")
}

// TestFaultAgentKill9WhileHolding: the agent is killed while it holds
// connects it has read from the kernel (their cgroup is outside the
// CONNAUDIT_CGROUP_ROOT it walks, so they wait for it): the next instance
// reports them in an agent_killed loss record, and names the exact last seq
// of the killed one in its start record, not the last heartbeat's.
func TestFaultAgentKill9WhileHolding(t *testing.T) {
	root, err := cgroup.FindV2Mount()
	if err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(root, fmt.Sprintf("connaudit-kill9-%d", os.Getpid()))
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(sub) })
	// A heartbeat far off: the chain head it saves would name the start record only.
	s := startStack(t, "CONNAUDIT_CGROUP_ROOT="+sub, "CONNAUDIT_K8S_HOLD_TIMEOUT=10m", "CONNAUDIT_HEARTBEAT_INTERVAL=10m")
	first := s.instance(t)
	target := newConnectTarget(t)
	// Connects from inside the root it walks are spooled at once, after the
	// heartbeat saved the chain head at the start record.
	const spooled = 5
	cg, err := os.Open(sub)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	for range spooled {
		curl := exec.Command("curl", "-s", "-o", "/dev/null", "--max-time", "5", fmt.Sprintf("http://127.0.0.1:%d/", target.port))
		curl.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
		if out, err := curl.CombinedOutput(); err != nil && !strings.Contains(err.Error(), "exit status 52") && !strings.Contains(err.Error(), "exit status 56") {
			t.Fatalf("curl in %s: %v: %s", sub, err, out)
		}
	}
	s.vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d process.executable.name:="curl"`, target.port), spooled, arrivalTimeout)
	const held = 200
	if made, failed := target.connect(held); made != held {
		t.Fatalf("%d of %d connects made (%d failed)", made, held, failed)
	}
	if !pollUntil(time.Minute, func() bool { return metricValue(t, s, "connaudit_events_unspooled") >= held }) {
		t.Fatalf("the agent holds %d events, want at least %d", metricValue(t, s, "connaudit_events_unspooled"), held)
	}
	s.agent.Kill()
	s.agent.Start()
	second := otherInstance(t, s.vl, first)

	losses := s.vl.WaitFor(t, fmt.Sprintf(`event_name:="connaudit.loss" connaudit.lost.reason:="agent_killed" service.instance.id:=%q`, second), 1, arrivalTimeout)
	lost, _ := strconv.Atoi(losses[0]["connaudit.lost.count"])
	if lost < held || !strings.Contains(losses[0]["_msg"]+losses[0]["connaudit.lost.detail"], first) {
		t.Fatalf("agent_killed loss record %v: want a count of at least %d, naming instance %s", losses[0], held, first)
	}
	if rows, err := s.vl.Query(t.Context(), fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d process.pid:=%d`, target.port, os.Getpid())); err != nil || len(rows) != 0 {
		t.Fatalf("%d of the held connects are stored (%v): they were held when the agent was killed", len(rows), err)
	}
	start := s.vl.WaitFor(t, fmt.Sprintf(`event_name:="connaudit.agent.start" service.instance.id:=%q`, second), 1, arrivalTimeout)[0]
	var lastSeq string
	if !pollUntil(arrivalTimeout, func() bool {
		rows, err := s.vl.Query(t.Context(), fmt.Sprintf(`service.instance.id:=%q | stats max(connaudit.seq) as last`, first))
		if err == nil && len(rows) == 1 {
			lastSeq = rows[0]["last"]
		}
		return lastSeq == start["connaudit.previous.seq"]
	}) || lastSeq == "1" {
		t.Fatalf("the second start record names %s up to seq %s; the killed instance's last stored seq is %s (after its start record, seq 1, it spooled %d connects)",
			start["connaudit.previous.instance.id"], start["connaudit.previous.seq"], lastSeq, spooled)
	}
	t.Logf("%d connects held at the kill, %d reported lost; the next instance names %s up to seq %s", held, lost, first, lastSeq)
}

// TestFaultAgentUpgrade: the agent is stopped and a build whose eBPF capture
// differs starts in its place, as a rolling upgrade does, under load. It takes
// the pinned capture over and drains what the old ring buffer held, so every
// connect is stored; one made in the instant both captures ran may be
// stored twice.
func TestFaultAgentUpgrade(t *testing.T) {
	upgraded := filepath.Join(t.TempDir(), "connaudit-agent")
	build := exec.Command("go", "build", "-ldflags", "-X github.com/connaudit/connaudit/bpf.pinSalt=upgrade -X main.version=upgrade", "-o", upgraded, "../cmd/connaudit-agent")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the upgraded agent: %v: %s", err, out)
	}
	testAgentRestart(t, func(s *stack) { s.agent.Stop() }, func(s *stack) { s.agent.StartBinary(upgraded) }, "taken_over")
}

// testAgentRestart makes connects all along while the agent goes down and a
// new one starts, then checks both instances' trails and that every connect
// is stored. how tells what the second instance's start record must say:
// "resumed" (the same capture) or "taken_over" (another build's).
func testAgentRestart(t *testing.T, down, up func(*stack), how string) {
	s := startStack(t)
	first := s.instance(t)
	target := newConnectTarget(t)

	var made atomic.Int64
	stop := make(chan struct{})
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			select {
			case <-stop:
				return
			default:
			}
			n, _ := target.connect(20)
			made.Add(int64(n))
			time.Sleep(2 * time.Millisecond)
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-streamDone
	}()
	// Each phase lasts until enough connects happened in it, however slow
	// the machine is.
	waitMade := func(atLeast int64) int64 {
		t.Helper()
		if !pollUntil(time.Minute, func() bool { return made.Load() >= atLeast }) {
			t.Fatalf("only %d connects after a minute, want %d", made.Load(), atLeast)
		}
		return made.Load()
	}

	waitConnects(t, s.vl, target.port, int(waitMade(500)), arrivalTimeout) // the first instance has stored some
	down(s)
	stopped := made.Load()
	atRestart := waitMade(stopped + 500) // connects while no agent ran
	up(s)
	waitMade(made.Load() + 500)
	close(stop)
	<-streamDone
	n := made.Load()
	t.Logf("%d connects: %d before the agent went down, %d..%d while no agent ran (%d failed)",
		n, stopped, stopped, atRestart, target.failed.Load())

	second := otherInstance(t, s.vl, first)
	// kill -9 loses what the agent held: events read from the ring buffer
	// and not yet spooled (held for a DNS answer, or in hand). The next
	// instance counts them (and writes an agent_killed loss record) before
	// it reads any event; only a kill between the read of one event and its
	// count goes uncounted.
	held := 0
	if how == "resumed" {
		held = int(metricsOf(t, s.agent)[`connaudit_records_lost_total{reason="agent_killed"}`])
	}
	waitConnects(t, s.vl, target.port, int(n)-held-1, arrivalTimeout)
	m := metricsOf(t, s.agent)
	s.agent.Stop()
	tr := finalTrail(t, s.vl, second, first)
	start := tr.agentStart(second)
	switch how {
	case "resumed":
		if start["connaudit.capture.resumed"] != "true" {
			t.Errorf("second instance: connaudit.capture.resumed = %q, want true", start["connaudit.capture.resumed"])
		}
	case "taken_over":
		if start["connaudit.capture.taken_over"] != "1" || start["connaudit.capture.resumed"] != "false" {
			t.Errorf("second instance: taken_over %q, resumed %q: want 1 capture taken over", start["connaudit.capture.taken_over"], start["connaudit.capture.resumed"])
		}
	}
	checkTrail(t, tr, first, how == "taken_over")
	checkTrail(t, tr, second, true)
	if how == "resumed" {
		if got := tr.connectsOf("", target.port); got < int(n)-held-1 || got > int(n) {
			t.Errorf("%d distinct connect records stored for %d connects: want all but the %d the killed agent held, and at most one more in hand at the kill", got, n, held)
		}
	} else if got := tr.connectsOf("", target.port); got < int(n) || got > int(n)+20 {
		t.Errorf("%d connect records stored for %d connects: want every one, at most a few twice", got, n)
	}
	if tr.connectsOf(first, target.port) == 0 || tr.connectsOf(second, target.port) == 0 {
		t.Errorf("first instance stored %d connects, second %d: want both to have stored some",
			tr.connectsOf(first, target.port), tr.connectsOf(second, target.port))
	}
	t.Logf("first instance %s stored %d of the connects, second %s %d",
		first, tr.connectsOf(first, target.port), second, tr.connectsOf(second, target.port))
	wantNoSpoolLoss(t, m)
}

// TestFaultCollectorKill9: the collector is killed with SIGKILL while its
// persistent queue holds records (VictoriaLogs is down, so nothing drains;
// with a gateway that acknowledges end to end, the agent's spool holds them),
// then VictoriaLogs and the collector come back.
func TestFaultCollectorKill9(t *testing.T) {
	s := startStack(t)
	instance := s.instance(t)
	target := newConnectTarget(t)

	s.vl.Stop()
	n, _ := target.connect(5000)
	waitHeld(t, s, n, 60*time.Second)
	time.Sleep(3 * time.Second) // kill it while its exporter retries a batch
	s.col.Kill()

	// The agent keeps records while the collector is dead.
	k, _ := target.connect(1000)
	n += k
	time.Sleep(2 * time.Second)
	s.vl.Start()
	s.col.Start()

	endWithEveryConnect(t, s, instance, target.port, n)
}

// TestFaultVictoriaLogsDown: VictoriaLogs stops while records flow and comes
// back; the collector's queue (or, with a gateway that acknowledges end to
// end, the agent's spool) holds them meanwhile.
func TestFaultVictoriaLogsDown(t *testing.T) {
	s := startStack(t)
	instance := s.instance(t)
	target := newConnectTarget(t)

	n1, _ := target.connect(1000)
	s.vl.Stop()
	n2, _ := target.connect(5000)
	waitHeld(t, s, n2, 60*time.Second)
	time.Sleep(3 * time.Second)
	s.vl.Start()
	n3, _ := target.connect(1000)
	n := n1 + n2 + n3

	endWithEveryConnect(t, s, instance, target.port, n)
}

// endWithEveryConnect waits for the n connects to port, stops the agent, and
// checks the instance's whole trail: every seq there, no spool loss.
func endWithEveryConnect(t *testing.T, s *stack, instance string, port, n int) {
	t.Helper()
	waitConnects(t, s.vl, port, n, arrivalTimeout)
	m := metricsOf(t, s.agent)
	s.agent.Stop()
	tr := finalTrail(t, s.vl, instance)
	checkTrail(t, tr, instance, true)
	tr.wantConnects(t, port, n)
	wantNoSpoolLoss(t, m)
}

// TestFaultSpoolDiskFull: the spool lives on a 2 MiB tmpfs and the collector
// is down, so the spool cannot drain. Connects go on until the spool refuses
// records: the agent stays up, and once the collector returns the spool
// drains, new records are accepted and a connaudit.loss record accounts for
// exactly the sequence numbers dropped.
//
//   - disk_full: CONNAUDIT_SPOOL_MAX_BYTES (8 MiB) is larger than the disk, so
//     the disk refuses the writes (ENOSPC): reason spool_error.
//   - disk_full_default_max: the same with the default 1 GiB bound, whose
//     16 MiB segments are larger than the whole disk: once drained, the
//     spool's only segment is its active one, and the spool must give that
//     space back for new records to fit.
//   - max_bytes: CONNAUDIT_SPOOL_MAX_BYTES=1048576 is reached first: reason spool_full.
func TestFaultSpoolDiskFull(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxBytes string
		reason   string
	}{
		{"disk_full", "8388608", string(trail.LossSpoolError)},
		{"disk_full_default_max", "1073741824", string(trail.LossSpoolError)},
		{"max_bytes", "1048576", string(trail.LossSpoolFull)},
	} {
		t.Run(tc.name, func(t *testing.T) { testSpoolFull(t, tc.maxBytes, tc.reason) })
	}
}

func testSpoolFull(t *testing.T, maxBytes, reason string) {
	mnt := mountTmpfs(t, "2m")
	s := startStack(t,
		"CONNAUDIT_SPOOL_DIR="+filepath.Join(mnt, "spool"),
		"CONNAUDIT_SPOOL_MAX_BYTES="+maxBytes,
		"CONNAUDIT_READY_EXPORT_FAILURE=10m", // /readyz then tells whether capture runs
	)
	instance := s.instance(t)
	before := newConnectTarget(t)
	after := newConnectTarget(t)

	s.col.Stop()
	made, batches := 0, 0
	lostMetric := `connaudit_records_lost_total{reason="` + reason + `"}`
	for ; batches < 100; batches++ {
		n, _ := before.connect(500)
		made += n
		if metricsOf(t, s.agent)[lostMetric] > 0 {
			break
		}
	}
	m := metricsOf(t, s.agent)
	if m[lostMetric] == 0 {
		t.Fatalf("spool never refused a record after %d connects; metrics:\n%s", made, lossLines(mustMetrics(t, s.agent)))
	}
	// Keep going while it is full: these are dropped and counted.
	n, _ := before.connect(1000)
	made += n
	time.Sleep(500 * time.Millisecond)
	t.Logf("spool refusing records (%s) after ~%d connects; %s = %v", reason, made, lostMetric, metricsOf(t, s.agent)[lostMetric])
	if !s.agent.Running() {
		t.Fatalf("agent exited with a full spool: %v", s.agent.ExitErr())
	}
	if !s.agent.Healthy() || !s.agent.Ready() {
		t.Errorf("agent with a full spool: /healthz ok=%v /readyz ok=%v, want both", s.agent.Healthy(), s.agent.Ready())
	}

	// Space returns: the collector accepts, the spool drains.
	s.col.Start()
	drained := pollUntil(arrivalTimeout, func() bool {
		m := metricsOf(t, s.agent)
		return m["connaudit_records_exported_total"] >= m["connaudit_records_spooled_total"]
	})
	if !drained {
		t.Errorf("spool did not drain within %v; metrics:\n%s", arrivalTimeout, lossLines(mustMetrics(t, s.agent)))
	}

	// New records are accepted again: once all of them are stored, the
	// agent has read them, and none may have been refused.
	lostBefore := metricsOf(t, s.agent)[lostMetric]
	k, _ := after.connect(500)
	waitConnects(t, s.vl, after.port, k, arrivalTimeout)
	m = metricsOf(t, s.agent)
	if d := m[lostMetric] - lostBefore; d > 0 {
		t.Fatalf("the spool still refuses records after the collector returned and it drained: %v more lost (%s) "+
			"for %d new connects; spool directory:\n%s\nmetrics:\n%s",
			d, reason, k, listDir(filepath.Join(mnt, "spool")), lossLines(mustMetrics(t, s.agent)))
	}
	s.agent.Stop()
	tr := finalTrail(t, s.vl, instance)
	losses := checkTrail(t, tr, instance, true)
	tr.wantConnects(t, after.port, k)

	var lostSeqs float64
	for _, l := range losses {
		if l.reason == string(trail.LossSpoolError) || l.reason == string(trail.LossSpoolFull) {
			lostSeqs += float64(l.count)
			t.Logf("loss record seq %d: %d records, seq %d..%d, reason %s", l.seq, l.count, l.first, l.last, l.reason)
		}
	}
	if lostSeqs == 0 {
		t.Errorf("no connaudit.loss record with reason %s and a seq range", reason)
	}
	spoolLost := m[`connaudit_records_lost_total{reason="spool_full"}`] + m[`connaudit_records_lost_total{reason="spool_error"}`]
	if spoolLost != lostSeqs {
		t.Errorf("metrics count %v records lost by the spool, loss records account for %v", spoolLost, lostSeqs)
	}
	stored := tr.connectsOf(instance, before.port)
	t.Logf("of %d connects while the spool was full, %d stored and the rest within the %v lost seqs", made, stored, lostSeqs)
	if stored >= made {
		t.Errorf("all %d connects stored, yet the spool reported loss", made)
	}
}

// TestFaultCorruptSpool: the agent spools with the collector down and stops;
// its spool files are then damaged (garbage over two records in the middle of
// the oldest segment, a torn tail in the newest, and a segment file of a
// newer format version). The restarted agent does not crash, exports every
// record that survived, reports connaudit.loss with reason spool_corrupt, and
// captures on.
func TestFaultCorruptSpool(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the end-to-end tests load eBPF programs and need root")
	}
	vl := teststack.StartVictoriaLogs(t)
	col := teststack.StartCollector(t, vl.URL())
	col.Stop()
	agent := teststack.StartAgent(t, col,
		"CONNAUDIT_SHUTDOWN_GRACE=1s",
		// 2 MiB segments; room for what other processes connect meanwhile.
		"CONNAUDIT_SPOOL_MAX_BYTES=16777216",
	)
	target := newConnectTarget(t)
	made, _ := target.connect(8000)
	agent.Stop() // it reads what the ring buffer holds before it exits

	segs := readSpool(t, agent.SpoolDir)
	var frames []spoolFrame
	for _, sg := range segs {
		frames = append(frames, sg.frames...)
	}
	instance := frames[0].instance
	seqs := map[uint64]bool{}
	for _, f := range frames {
		if f.instance != instance {
			t.Fatalf("spool holds records of two instances, %s and %s", instance, f.instance)
		}
		seqs[f.seq] = true
	}
	for i := uint64(1); i <= uint64(len(seqs)); i++ {
		if !seqs[i] {
			t.Fatalf("intact spool of a stopped agent lacks seq %d of 1..%d", i, len(frames))
		}
	}
	var withData []*spoolSegment
	for i := range segs {
		if len(segs[i].frames) > 0 {
			withData = append(withData, &segs[i])
		}
	}
	if len(withData) < 2 {
		t.Fatalf("want at least two segments with records, got %d", len(withData))
	}
	t.Logf("spool: %d records of instance %s in %d segments", len(frames), instance, len(withData))

	damaged := map[uint64]bool{}
	// 1. Garbage over the end of one record and the start of the next, in
	// the middle of the oldest segment.
	oldest := withData[0]
	k := len(oldest.frames) / 2
	fa, fb := oldest.frames[k], oldest.frames[k+1]
	garbage := make([]byte, int(fb.off-fa.off))
	rng := rand.New(rand.NewPCG(4, 2))
	for i := range garbage {
		garbage[i] = byte(rng.UintN(256))
	}
	writeAt(t, oldest.path, fa.off+5, garbage)
	damaged[fa.seq], damaged[fb.seq] = true, true
	// 2. A torn tail: the newest segment ends in the middle of its last record.
	newest := withData[len(withData)-1]
	last := newest.frames[len(newest.frames)-1]
	if err := os.Truncate(newest.path, last.off+spoolFrameHeader+(last.end-last.off-spoolFrameHeader)/2); err != nil {
		t.Fatal(err)
	}
	damaged[last.seq] = true
	// 3. A segment written by a newer version: a valid header of format
	// version 2, then data this build cannot read.
	newerName := fmt.Sprintf("%020d.seg", segs[len(segs)-1].num+1)
	newer := make([]byte, 16, 16+4096)
	copy(newer, "cnaspseg")
	binary.LittleEndian.PutUint32(newer[8:], 2)
	binary.LittleEndian.PutUint32(newer[12:], crc32.Checksum(newer[:12], crc32.MakeTable(crc32.Castagnoli)))
	for range 4096 {
		newer = append(newer, byte(rng.UintN(256)))
	}
	if err := os.WriteFile(filepath.Join(agent.SpoolDir, newerName), newer, 0o640); err != nil {
		t.Fatal(err)
	}
	lostConnects := 0
	for _, f := range frames {
		if damaged[f.seq] && f.peerPort == target.port {
			lostConnects++
		}
	}
	t.Logf("damaged seqs %v (%d of them connects to the test port); added %s", slices.Sorted(maps.Keys(damaged)), lostConnects, newerName)

	col.Start()
	agent.Start()
	if !agent.Running() {
		t.Fatalf("agent exited on a corrupt spool: %v", agent.ExitErr())
	}
	// It captures on after recovery.
	fresh := newConnectTarget(t)
	k2, _ := fresh.connect(300)
	waitConnects(t, vl, fresh.port, k2, arrivalTimeout)
	waitConnects(t, vl, target.port, made-lostConnects, arrivalTimeout)
	second := otherInstance(t, vl, instance)
	m := metricsOf(t, agent)
	agent.Stop()

	tr := finalTrail(t, vl, second)
	// Instance 1: exactly the records that survived the damage are present.
	var missing, resurrected []uint64
	for seq := range seqs {
		_, ok := tr.recs[recKey{instance, int(seq)}]
		switch {
		case damaged[seq] && ok:
			resurrected = append(resurrected, seq)
		case !damaged[seq] && !ok:
			missing = append(missing, seq)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		t.Errorf("%d valid spooled records of instance %s never arrived, first %v", len(missing), instance, missing[:min(10, len(missing))])
	}
	if len(resurrected) > 0 {
		t.Errorf("damaged records %v arrived anyway: the damage did not hit them", resurrected)
	}
	for key := range tr.recs {
		if key.instance == instance && !seqs[uint64(key.seq)] {
			t.Errorf("instance %s: seq %d stored but it was not in the spool", instance, key.seq)
		}
	}
	tr.wantConnects(t, target.port, made-lostConnects)
	tr.wantConnects(t, fresh.port, k2)

	losses := checkTrail(t, tr, second, true)
	var corrupt []lossRecord
	for _, l := range losses {
		if l.reason == string(trail.LossSpoolCorrupt) {
			corrupt = append(corrupt, l)
		}
	}
	if len(corrupt) == 0 {
		t.Errorf("no connaudit.loss record with reason spool_corrupt from instance %s", second)
	}
	for _, l := range corrupt {
		if l.bytes <= 0 {
			t.Errorf("spool_corrupt loss record without connaudit.lost.bytes: %q", l.body)
		}
	}
	if _, err := os.Stat(filepath.Join(agent.SpoolDir, newerName+".unsupported")); err != nil {
		t.Errorf("the newer-version segment was not set aside: %v", err)
	}
	if m[`connaudit_records_lost_total{reason="spool_corrupt"}`] == 0 {
		t.Errorf("connaudit_records_lost_total{reason=\"spool_corrupt\"} is 0")
	}
}

// ---- connect load ----

// connectTarget is a loopback listener whose port identifies the test's
// connects in VictoriaLogs.
type connectTarget struct {
	port   int
	sa     *syscall.SockaddrInet4
	failed atomic.Int64
	mu     sync.Mutex // one connect loop at a time
}

func newConnectTarget(t *testing.T) *connectTarget {
	addr := listen(t, "tcp4", "127.0.0.1:0")
	return &connectTarget{port: addr.Port, sa: &syscall.SockaddrInet4{Port: addr.Port, Addr: [4]byte{127, 0, 0, 1}}}
}

// connect makes n blocking connects and closes each with an RST (SO_LINGER
// 0: no TIME_WAIT, so ephemeral ports last). It returns how many connect
// calls were made (each is one attempt the agent must record, whatever its
// outcome) and how many of them failed.
func (c *connectTarget) connect(n int) (made, failed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for range n {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			continue
		}
		_ = syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
		made++
		if err := syscall.Connect(fd, c.sa); err != nil {
			failed++
			c.failed.Add(1)
		}
		syscall.Close(fd)
	}
	return made, failed
}

// ---- VictoriaLogs trail ----

type recKey struct {
	instance string
	seq      int
}

// trail is every record of the agents in a VictoriaLogs, one per
// (service.instance.id, connaudit.seq).
type vlTrail struct {
	recs map[recKey]map[string]string
	dups int
	rows int
	pid  string
}

var trailFields = []string{
	"service.instance.id", "connaudit.seq", "event_name", "_msg",
	"network.peer.address", "network.peer.port", "network.local.port", "process.pid",
	"connaudit.lost.count", "connaudit.lost.bytes", "connaudit.lost.reason", "connaudit.lost.seq.first", "connaudit.lost.seq.last",
	"connaudit.capture.resumed", "connaudit.capture.taken_over",
}

// finalTrail waits for the connaudit.agent.stop record of instance (which
// must have been stopped with SIGTERM), then for the trails of instance and
// of the others named to be whole, and returns the trail. The collector delivers batches out of
// order (several consumers; a batch that failed waits out its retry backoff
// while later ones pass), so a record can reach VictoriaLogs after the stop
// record: the trail is judged once it stops changing or is complete, within
// arrivalTimeout. A record that is really lost still fails checkTrail then.
func finalTrail(t *testing.T, vl *teststack.VictoriaLogs, instance string, others ...string) *vlTrail {
	t.Helper()
	vl.WaitFor(t, fmt.Sprintf(`event_name:="connaudit.agent.stop" service.instance.id:=%q`, instance), 1, arrivalTimeout)
	var tr *vlTrail
	pollUntil(arrivalTimeout, func() bool {
		tr = fetchTrail(t, vl)
		for _, id := range append([]string{instance}, others...) {
			if len(auditTrail(tr, id).missing) > 0 {
				return false
			}
		}
		return true
	})
	t.Logf("trail: %d rows, %d distinct records, %d duplicates from replays", tr.rows, len(tr.recs), tr.dups)
	return tr
}

func fetchTrail(t *testing.T, vl *teststack.VictoriaLogs) *vlTrail {
	t.Helper()
	rows, err := vl.Query(t.Context(), `service.name:="connaudit" | fields `+strings.Join(trailFields, ", "))
	if err != nil {
		t.Fatal(err)
	}
	tr := &vlTrail{recs: map[recKey]map[string]string{}, rows: len(rows), pid: strconv.Itoa(os.Getpid())}
	for _, r := range rows {
		seq, err := strconv.Atoi(r["connaudit.seq"])
		if err != nil || r["service.instance.id"] == "" {
			t.Errorf("record without connaudit.seq or service.instance.id: %v", r)
			continue
		}
		key := recKey{r["service.instance.id"], seq}
		if prev, ok := tr.recs[key]; ok {
			tr.dups++
			for _, f := range []string{"event_name", "network.peer.port", "network.local.port", "connaudit.lost.reason"} {
				if prev[f] != r[f] {
					t.Errorf("instance %s seq %d names two different records: %s %q and %q", key.instance, seq, f, prev[f], r[f])
				}
			}
			continue
		}
		tr.recs[key] = r
	}
	return tr
}

// connectsOf counts the distinct tcp.connect records of this test process to
// 127.0.0.1:port; instance "" counts every instance.
func (tr *vlTrail) connectsOf(instance string, port int) int {
	p := strconv.Itoa(port)
	n := 0
	for key, r := range tr.recs {
		if (instance == "" || key.instance == instance) && r["event_name"] == string(trail.EventConnect) &&
			r["network.peer.port"] == p && r["network.peer.address"] == "127.0.0.1" && r["process.pid"] == tr.pid {
			n++
		}
	}
	return n
}

func (tr *vlTrail) wantConnects(t *testing.T, port, want int) {
	t.Helper()
	if got := tr.connectsOf("", port); got != want {
		t.Errorf("port %d: %d distinct connect records stored, want exactly %d (one per connect made)", port, got, want)
	}
}

func (tr *vlTrail) agentStart(instance string) map[string]string {
	for key, r := range tr.recs {
		if key.instance == instance && r["event_name"] == string(trail.EventAgentStart) {
			return r
		}
	}
	return nil
}

type lossRecord struct {
	seq, count  int
	reason      string
	first, last int // 0: the loss consumed no sequence numbers
	bytes       int // connaudit.lost.bytes, for spool damage
	body        string
}

// trailAudit is what auditTrail found in one instance's records.
type trailAudit struct {
	present   map[int]bool
	maxSeq    int
	stopSeq   int
	losses    []lossRecord // by seq
	explained map[int]bool
	missing   []int    // seqs neither stored nor explained by a loss record
	problems  []string // loss records that do not add up
}

// auditTrail checks that instance's records carry every connaudit.seq from
// 1 to the highest stored, except for ranges a connaudit.loss record of the
// same instance explains exactly: connaudit.lost.count equals
// lost.seq.last-lost.seq.first+1 and none of those seqs is stored.
func auditTrail(tr *vlTrail, instance string) trailAudit {
	a := trailAudit{present: map[int]bool{}, explained: map[int]bool{}}
	for key, r := range tr.recs {
		if key.instance != instance {
			continue
		}
		a.present[key.seq] = true
		a.maxSeq = max(a.maxSeq, key.seq)
		switch r["event_name"] {
		case string(trail.EventAgentStop):
			a.stopSeq = key.seq
		case string(trail.EventLoss):
			l := lossRecord{seq: key.seq, reason: r["connaudit.lost.reason"], body: r["_msg"]}
			l.bytes, _ = strconv.Atoi(r["connaudit.lost.bytes"])
			var err error
			if l.count, err = strconv.Atoi(r["connaudit.lost.count"]); err != nil {
				a.problems = append(a.problems, fmt.Sprintf("loss record seq %d without connaudit.lost.count: %v", key.seq, r))
			}
			if r["connaudit.lost.seq.first"] != "" || r["connaudit.lost.seq.last"] != "" {
				l.first, err = strconv.Atoi(r["connaudit.lost.seq.first"])
				if err == nil {
					l.last, err = strconv.Atoi(r["connaudit.lost.seq.last"])
				}
				if err != nil || l.first < 1 || l.last < l.first {
					a.problems = append(a.problems, fmt.Sprintf("loss record seq %d has a bad seq range: %v", key.seq, r))
					l.first, l.last = 0, 0
				}
			}
			a.losses = append(a.losses, l)
		}
	}
	sort.Slice(a.losses, func(i, j int) bool { return a.losses[i].seq < a.losses[j].seq })
	for _, l := range a.losses {
		if l.first == 0 {
			continue
		}
		if l.count != l.last-l.first+1 {
			a.problems = append(a.problems, fmt.Sprintf("loss record seq %d says %d lost but covers seq %d..%d (%d)", l.seq, l.count, l.first, l.last, l.last-l.first+1))
		}
		if l.first >= l.seq {
			a.problems = append(a.problems, fmt.Sprintf("loss record seq %d reports seqs %d..%d that come after it", l.seq, l.first, l.last))
		}
		for s := l.first; s <= l.last; s++ {
			if a.present[s] {
				a.problems = append(a.problems, fmt.Sprintf("seq %d is stored, yet loss record seq %d reports it lost", s, l.seq))
				break
			}
			if a.explained[s] {
				a.problems = append(a.problems, fmt.Sprintf("seq %d reported lost twice", s))
				break
			}
			a.explained[s] = true
		}
	}
	for s := 1; s <= a.maxSeq; s++ {
		if !a.present[s] && !a.explained[s] {
			a.missing = append(a.missing, s)
		}
	}
	return a
}

// checkTrail asserts what auditTrail checks. With stopped, the instance must
// have ended with a connaudit.agent.stop record. It returns the instance's
// loss records.
func checkTrail(t *testing.T, tr *vlTrail, instance string, stopped bool) []lossRecord {
	t.Helper()
	a := auditTrail(tr, instance)
	if len(a.present) == 0 {
		t.Errorf("instance %s: no records stored", instance)
		return nil
	}
	if stopped && a.stopSeq == 0 {
		t.Errorf("instance %s: no connaudit.agent.stop record", instance)
	}
	for _, l := range a.losses {
		t.Logf("instance %s: loss record seq %d: reason %s, count %d, seq range %d..%d, bytes %d: %q", instance, l.seq, l.reason, l.count, l.first, l.last, l.bytes, l.body)
	}
	for _, p := range a.problems {
		t.Errorf("instance %s: %s", instance, p)
	}
	if len(a.missing) > 0 {
		t.Errorf("instance %s: %d of seq 1..%d missing with no loss record explaining them, first %v", instance, len(a.missing), a.maxSeq, a.missing[:min(10, len(a.missing))])
	} else {
		t.Logf("instance %s: seq 1..%d complete (%d stored, %d explained by %d loss record(s))", instance, a.maxSeq, len(a.present), len(a.explained), len(a.losses))
	}
	return a.losses
}

// otherInstance returns the service.instance.id of the agent start that is
// not first.
func otherInstance(t *testing.T, vl *teststack.VictoriaLogs, first string) string {
	t.Helper()
	rows := vl.WaitFor(t, `event_name:="connaudit.agent.start"`, 2, arrivalTimeout)
	for _, r := range rows {
		if id := r["service.instance.id"]; id != first {
			return id
		}
	}
	t.Fatalf("no agent start other than %s: %v", first, rows)
	return ""
}

// waitConnects waits until VictoriaLogs holds at least want distinct connect
// records of this process to 127.0.0.1:port.
func waitConnects(t *testing.T, vl *teststack.VictoriaLogs, port, want int, timeout time.Duration) {
	t.Helper()
	q := fmt.Sprintf(`event_name:="tcp.connect" network.peer.address:="127.0.0.1" network.peer.port:=%d process.pid:=%d | stats count_uniq(service.instance.id, connaudit.seq) as n`, port, os.Getpid())
	got := -1
	ok := pollUntil(timeout, func() bool {
		rows, err := vl.Query(t.Context(), q)
		if err == nil && len(rows) == 1 {
			got, _ = strconv.Atoi(rows[0]["n"])
		}
		return got >= want
	})
	if !ok {
		t.Fatalf("port %d: %d distinct connect records stored after %v, want %d", port, got, timeout, want)
	}
}

// waitQueue waits until the collector's persistent queue holds at least want
// records, and fails if it never holds any.
func waitQueue(t *testing.T, col *teststack.Collector, want int, timeout time.Duration) int {
	t.Helper()
	size := 0
	pollUntil(timeout, func() bool {
		if n, err := col.QueueSize(t.Context()); err == nil {
			size = n
		}
		return size >= want
	})
	if size == 0 {
		t.Fatalf("collector queue still empty after %v", timeout)
	}
	return size
}

// ---- agent metrics ----

func mustMetrics(t *testing.T, a *teststack.Agent) string {
	t.Helper()
	text, err := a.Metrics()
	if err != nil {
		t.Fatalf("agent metrics: %v", err)
	}
	return text
}

// metricsOf parses the agent's connaudit_* samples: "name{labels}" -> value.
func metricsOf(t *testing.T, a *teststack.Agent) map[string]float64 {
	t.Helper()
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(mustMetrics(t, a)))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "connaudit_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

func wantNoSpoolLoss(t *testing.T, m map[string]float64) {
	t.Helper()
	for _, r := range []string{string(trail.LossSpoolFull), string(trail.LossSpoolError), string(trail.LossSpoolCorrupt), string(trail.LossRejected), string(trail.LossUndecodable), string(trail.LossRingBuffer)} {
		if v := m[`connaudit_records_lost_total{reason="`+r+`"}`]; v != 0 {
			t.Errorf("connaudit_records_lost_total{reason=%q} = %v, want 0", r, v)
		}
	}
}

// ---- spool files (format version 1, see shipper/spool/format.go) ----

const (
	spoolHeader      = 16 // "cnaspseg" | version u32 | crc32c u32
	spoolFrameHeader = 12 // length u32 | crc32c(payload) u32 | crc32c(previous 8) u32
)

type spoolSegment struct {
	path   string
	num    uint64
	frames []spoolFrame
}

type spoolFrame struct {
	off, end int64
	seq      uint64
	instance string
	peerPort int
}

// readSpool decodes every segment in dir, which must be intact.
func readSpool(t *testing.T, dir string) []spoolSegment {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	le := binary.LittleEndian
	var segs []spoolSegment
	for _, path := range names {
		num, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(path), ".seg"), 10, 64)
		if err != nil {
			t.Fatalf("segment name %s: %v", path, err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) < spoolHeader || !bytes.Equal(data[:8], []byte("cnaspseg")) || le.Uint32(data[8:]) != 1 {
			t.Fatalf("%s: not a version 1 segment", path)
		}
		sg := spoolSegment{path: path, num: num}
		var rec shipper.Record
		for off := int64(spoolHeader); off < int64(len(data)); {
			h := data[off:]
			if len(h) < spoolFrameHeader || le.Uint32(h[8:]) != crc32.Checksum(h[:8], castagnoli) {
				t.Fatalf("%s: bad frame header at %d", path, off)
			}
			n := int64(le.Uint32(h))
			if int64(len(h)) < spoolFrameHeader+n {
				t.Fatalf("%s: short frame at %d", path, off)
			}
			payload := h[spoolFrameHeader : spoolFrameHeader+n]
			if crc32.Checksum(payload, castagnoli) != le.Uint32(h[4:]) {
				t.Fatalf("%s: bad payload checksum at %d", path, off)
			}
			if err := shipper.Decode(payload, &rec); err != nil {
				t.Fatalf("%s: record at %d: %v", path, off, err)
			}
			f := spoolFrame{off: off, end: off + spoolFrameHeader + n, seq: rec.Seq}
			for _, kv := range rec.Resource {
				if kv.Key == "service.instance.id" {
					f.instance = kv.Value.AsString()
				}
			}
			if rec.EventName == string(trail.EventConnect) {
				for _, kv := range rec.Attrs {
					if kv.Key == "network.peer.port" {
						f.peerPort = int(kv.Value.AsInt64())
					}
				}
			}
			sg.frames = append(sg.frames, f)
			off = f.end
		}
		segs = append(segs, sg)
	}
	if len(segs) == 0 {
		t.Fatalf("no segments in %s", dir)
	}
	return segs
}

// listDir describes the files of dir, one "name size" per line.
func listDir(dir string) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range entries {
		if info, err := e.Info(); err == nil {
			fmt.Fprintf(&b, "  %s %d\n", e.Name(), info.Size())
		}
	}
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) == nil {
		fmt.Fprintf(&b, "  (filesystem: %d of %d bytes free)", st.Bavail*uint64(st.Bsize), st.Blocks*uint64(st.Bsize))
	}
	return b.String()
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// ---- misc ----

// mountTmpfs mounts a tmpfs of size (e.g. "2m") and unmounts it when the test
// ends, after the processes that use it have stopped.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// pollUntil calls cond every 250 ms until it returns true or timeout passes.
func pollUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(250 * time.Millisecond)
	}
}
