package e2e

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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

	query := fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d | count()`, port)
	var stored int64
	waitUntil := time.Now().Add(3 * time.Minute)
	for time.Now().Before(waitUntil) {
		rows, err := vl.Query(b.Context(), query)
		if err == nil && len(rows) == 1 {
			fmt.Sscan(rows[0]["count(*)"], &stored)
		}
		if stored >= made {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
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
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port = l.Addr().(*net.TCPAddr).Port
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
