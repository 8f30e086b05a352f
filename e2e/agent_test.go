// Package e2e runs the real pipeline: the kernel's eBPF, the connaudit agent
// binary, our collector and VictoriaLogs.
package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/connaudit/connaudit/internal/netnstest"
	"github.com/connaudit/connaudit/internal/teststack"
)

type stack struct {
	vl    *teststack.VictoriaLogs
	col   *teststack.Collector
	agent *teststack.Agent
}

func startStack(t *testing.T, agentEnv ...string) *stack {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the end-to-end tests load eBPF programs and need root")
	}
	s := &stack{vl: teststack.StartVictoriaLogs(t)}
	s.col = teststack.StartCollector(t, s.vl.URL())
	s.agent = teststack.StartAgent(t, s.col, agentEnv...)
	return s
}

// instance is the service.instance.id of the agent's first start record.
func (s *stack) instance(t *testing.T) string {
	t.Helper()
	rows := s.vl.WaitFor(t, `event_name:="connaudit.agent.start"`, 1, time.Minute)
	sort.Slice(rows, func(i, j int) bool { return rows[i]["_time"] < rows[j]["_time"] })
	return rows[0]["service.instance.id"]
}

// checkSeq asserts that the instance's records carry connaudit.seq 1..n with
// no hole, whatever duplicates a replay produced, and returns n.
func checkSeq(t *testing.T, vl *teststack.VictoriaLogs, instance string) int {
	t.Helper()
	rows, err := vl.Query(t.Context(), fmt.Sprintf(`service.instance.id:=%q`, instance))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	maxSeq := 0
	for _, r := range rows {
		n, err := strconv.Atoi(r["connaudit.seq"])
		if err != nil {
			t.Fatalf("record without connaudit.seq: %v", r)
		}
		seen[n] = true
		maxSeq = max(maxSeq, n)
	}
	var missing []int
	for i := 1; i <= maxSeq; i++ {
		if !seen[i] {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("instance %s: %d of %d sequence numbers missing, first %v", instance, len(missing), maxSeq, missing[:min(10, len(missing))])
	}
	return maxSeq
}

// listen serves a loopback address until the test ends.
func listen(t *testing.T, network, addr string) *net.TCPAddr {
	return net.TCPAddrFromAddrPort(netnstest.Listen(t, network, addr))
}

// freePort returns a port where nothing listens.
func freePort(t *testing.T, network, addr string) int {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestRecordSchemaInVictoriaLogs(t *testing.T) {
	s := startStack(t)
	instance := s.instance(t)

	v4 := listen(t, "tcp4", "127.0.0.1:0")
	conn, err := net.Dial("tcp4", v4.String())
	if err != nil {
		t.Fatal(err)
	}
	local := conn.LocalAddr().(*net.TCPAddr)
	conn.Close()

	closedPort := freePort(t, "tcp6", "[::1]:0")
	if _, err := net.Dial("tcp6", fmt.Sprintf("[::1]:%d", closedPort)); err == nil {
		t.Fatal("connect to a closed port succeeded")
	}

	child := exec.Command("/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/"+strconv.Itoa(v4.Port))
	child.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := child.CombinedOutput(); err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}

	// The peer port too: the test's own connects (readiness probes) may reuse
	// the local port.
	est := s.vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" network.local.port:=%d network.peer.port:=%d`, local.Port, v4.Port), 1, time.Minute)[0]
	t.Logf("record: %v", est)
	want := map[string]string{
		"_msg":                    fmt.Sprintf("e2e.test (pid %d) -> 127.0.0.1:%d established in ", os.Getpid(), v4.Port),
		"severity_text":           "INFO",
		"network.transport":       "tcp",
		"network.type":            "ipv4",
		"network.local.address":   "127.0.0.1",
		"network.local.port":      strconv.Itoa(local.Port),
		"network.peer.address":    "127.0.0.1",
		"network.peer.port":       strconv.Itoa(v4.Port),
		"server.address":          "127.0.0.1",
		"server.port":             strconv.Itoa(v4.Port),
		"connaudit.outcome":       "established",
		"process.pid":             strconv.Itoa(os.Getpid()),
		"process.parent_pid":      strconv.Itoa(os.Getppid()),
		"process.executable.name": "e2e.test",
		"process.user.id":         "0",
		"service.name":            "connaudit",
		"service.instance.id":     instance,
		"k8s.node.name":           "test-node",
		"k8s.cluster.name":        "test-cluster",
	}
	for k, v := range want {
		if got := est[k]; got != v && !(k == "_msg" && strings.HasPrefix(got, v)) {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	// VictoriaLogs keeps no observed timestamp; the shipper tests check it.
	for _, k := range []string{"thread.id", "process.executable.path", "connaudit.netns", "connaudit.seq", "connaudit.connect.duration", "service.version", "host.name"} {
		if est[k] == "" {
			t.Errorf("%s missing", k)
		}
	}
	if _, ok := est["error.type"]; ok {
		t.Errorf("error.type on an established record")
	}

	refused := s.vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d network.type:="ipv6"`, closedPort), 1, time.Minute)[0]
	for k, v := range map[string]string{"connaudit.outcome": "refused", "error.type": "ECONNREFUSED", "severity_text": "WARN", "network.peer.address": "::1"} {
		if refused[k] != v {
			t.Errorf("refused record: %s = %q, want %q", k, refused[k], v)
		}
	}

	// The child has exited before its record is built, so /proc has no executable path for it: best effort.
	kid := s.vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d process.executable.name:="bash"`, v4.Port), 1, time.Minute)[0]
	for k, v := range map[string]string{"process.pid": strconv.Itoa(child.Process.Pid), "process.parent_pid": strconv.Itoa(os.Getpid()), "process.user.id": "65534"} {
		if kid[k] != v {
			t.Errorf("child record: %s = %q, want %q", k, kid[k], v)
		}
	}

	s.agent.Stop()
	s.vl.WaitFor(t, fmt.Sprintf(`event_name:="connaudit.agent.stop" service.instance.id:=%q`, instance), 1, time.Minute)
	n := checkSeq(t, s.vl, instance)
	t.Logf("instance %s: connaudit.seq 1..%d, no holes", instance, n)
}

// CONNAUDIT_OUTPUT=console prints the records on stdout: no collector needed.
func TestConsoleOutput(t *testing.T) {
	bin := teststack.Binary(t, "connaudit-agent")
	peer := listen(t, "tcp4", "127.0.0.1:0")
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "CONNAUDIT_OUTPUT=console", "CONNAUDIT_SPOOL_DIR="+t.TempDir(),
		"CONNAUDIT_BPF_PIN_DIR=", "CONNAUDIT_LISTEN_ADDR=", "CONNAUDIT_KUBERNETES=off")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &syncWriter{w: &stdout}, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	want := fmt.Sprintf("127.0.0.1:%d established", peer.Port) // the end of the record's body
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(cmd.Stdout.(*syncWriter).String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no record of the connect on stdout; stderr:\n%s", stderr.String())
		}
		if c, err := net.Dial("tcp4", peer.String()); err == nil {
			c.Close()
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("agent exit: %v\n%s", err, stderr.String())
	}
	if out := cmd.Stdout.(*syncWriter).String(); !strings.Contains(out, `"eventName":"tcp.connect"`) || !strings.Contains(out, "connaudit.agent.stop") {
		t.Errorf("stdout lacks the tcp.connect event name or the stop record:\n%.2000s", out)
	}
}

// OTEL_EXPORTER_OTLP_PROTOCOL=grpc: the agent sends its spooled requests
// over OTLP/gRPC, gzipped, to the collector, which stores them.
func TestAgentExportsOverGRPC(t *testing.T) {
	vl := teststack.StartVictoriaLogs(t)
	col := teststack.StartCollector(t, vl.URL())
	teststack.StartAgent(t, col, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+col.GRPCEndpoint())
	target := newConnectTarget(t)
	if made, _ := target.connect(50); made != 50 {
		t.Fatalf("made %d connects of 50", made)
	}
	waitConnects(t, vl, target.port, 50, arrivalTimeout)
}

// syncWriter lets the test read what a child process writes meanwhile.
type syncWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}
