package e2e

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/connaudit/connaudit/internal/netnstest"
	"github.com/connaudit/connaudit/internal/teststack"
)

// BenchmarkConnectsIntoCollector makes b.N loopback connects as fast as two
// goroutines can, with the whole pipeline running, and waits until every
// attempt is stored in VictoriaLogs. It reports the connect rate the pipeline
// sustained and fails if any record was lost. Run it with an explicit count:
//
//	go test -run '^$' -bench ConnectsIntoCollector -benchtime 200000x ./e2e/
func BenchmarkConnectsIntoCollector(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatal("needs root")
	}
	vl := teststack.StartVictoriaLogs(b)
	col := teststack.StartCollector(b, vl.URL())
	agent := teststack.StartAgent(b, col)

	port, made, failed, elapsed := connectLoad(b)

	stored := waitStored(b, vl, port, made)
	metrics, _ := agent.Metrics()
	b.ReportMetric(float64(made)/elapsed.Seconds(), "connects/s")
	b.ReportMetric(float64(stored), "stored")
	b.ReportMetric(0, "ns/op")
	if stored != made {
		b.Fatalf("%d connects made (%d failed), %d records stored; agent metrics:\n%s", made, failed, stored, lossLines(metrics))
	}
}

func lossLines(metrics string) string {
	var out []string
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "connaudit_") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// BenchmarkConnectsBaseline is the same load with no agent running: the
// ratio of the two connects/s figures is what capture costs the workload.
func BenchmarkConnectsBaseline(b *testing.B) {
	_, made, failed, elapsed := connectLoad(b)
	if failed > 0 {
		b.Fatalf("%d connects failed", failed)
	}
	b.ReportMetric(float64(made)/elapsed.Seconds(), "connects/s")
	b.ReportMetric(0, "ns/op")
}

// connectLoad makes b.N loopback connects from two goroutines, bounded in time.
func connectLoad(b *testing.B) (port int, made, failed int64, elapsed time.Duration) {
	port = int(netnstest.Listen(b, "tcp4", "127.0.0.1:0").Port())
	sa := &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}

	const workers = 2
	var next, failures atomic.Int64
	deadline := time.Now().Add(5 * time.Minute) // every load loop is bounded in time too
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) && time.Now().Before(deadline) {
				fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
				if err != nil {
					failures.Add(1)
					continue
				}
				// RST on close: no TIME_WAIT, so the ephemeral ports last.
				_ = syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
				if err := syscall.Connect(fd, sa); err != nil {
					failures.Add(1)
				}
				syscall.Close(fd)
			}
		}()
	}
	wg.Wait()
	elapsed = time.Since(start)
	b.StopTimer()
	return port, min(int64(b.N), next.Load()-workers), failures.Load(), elapsed
}

// BenchmarkBacklogDrain measures what the pipeline sustains without a load
// generator competing for the CPU: b.N connects accumulate in the pinned ring
// buffer while the agent is down, then a new agent drains them through the
// collector into VictoriaLogs. b.N must fit the ring buffer (about 140,000
// events in the default 16 MiB).
//
//	go test -run '^$' -bench BacklogDrain -benchtime 100000x ./e2e/
func BenchmarkBacklogDrain(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatal("needs root")
	}
	vl := teststack.StartVictoriaLogs(b)
	col := teststack.StartCollector(b, vl.URL())
	agent := teststack.StartAgent(b, col)
	agent.Kill()
	port, made, failed, _ := connectLoad(b)
	if failed > 0 {
		b.Fatalf("%d connects failed", failed)
	}

	start := time.Now()
	agent.Start()
	exportedIn := waitExported(b, agent, made)
	stored := waitStored(b, vl, port, made)
	elapsed := time.Since(start)
	b.ReportMetric(float64(made)/exportedIn.Seconds(), "exported/s")
	b.ReportMetric(float64(made)/elapsed.Seconds(), "stored/s")
	b.ReportMetric(0, "ns/op")
	if stored != made {
		metrics, _ := agent.Metrics()
		b.Fatalf("%d connects made, %d records stored; agent metrics:\n%s", made, stored, lossLines(metrics))
	}
}

// waitExported polls the agent's metrics until the collector has accepted at
// least want records, and returns how long that took from now.
func waitExported(b *testing.B, agent *teststack.Agent, want int64) time.Duration {
	start := time.Now()
	for deadline := start.Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		metrics, err := agent.Metrics()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(metrics, "\n") {
			var n float64
			if _, err := fmt.Sscanf(line, "connaudit_records_exported_total %g", &n); err == nil && int64(n) >= want {
				return time.Since(start)
			}
		}
	}
	b.Fatalf("the collector did not accept %d records within three minutes", want)
	return 0
}

// waitStored polls VictoriaLogs until want records to port are stored, for at most three minutes.
func waitStored(b *testing.B, vl *teststack.VictoriaLogs, port int, want int64) int64 {
	query := fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d | count()`, port)
	var stored int64
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		rows, err := vl.Query(b.Context(), query)
		if err == nil && len(rows) == 1 {
			fmt.Sscan(rows[0]["count(*)"], &stored)
		}
		if stored >= want {
			break
		}
	}
	return stored
}
