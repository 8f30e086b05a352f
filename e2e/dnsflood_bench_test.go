package e2e

import (
	"bufio"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/connaudit/connaudit/internal/netnstest"
	"github.com/connaudit/connaudit/internal/teststack"
)

// BenchmarkConnectToSpoolUnderDNSFlood measures, in one run, what a flood of
// DNS answers in one network namespace does to the connects of another: b.N
// lookups and connects at 500 a second without a flood, then b.N more while
// another namespace receives 10,000 answers a second. For each phase it
// reports the connect-to-spool latency (p50, p99, from the agent's
// connaudit_connect_to_spool_seconds histogram), the connects missing from
// VictoriaLogs and those stored without their name, and the ratios of the
// flooded phase to the quiet one. Run it with an explicit count:
//
//	go test -run '^$' -bench ConnectToSpoolUnderDNSFlood -benchtime 2000x ./e2e/
func BenchmarkConnectToSpoolUnderDNSFlood(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatal("needs root")
	}
	vl := teststack.StartVictoriaLogs(b)
	agent := teststack.StartAgent(b, teststack.StartCollector(b, vl.URL()))
	flood, victim := netnstest.New(b), netnstest.New(b)
	startResolver(b, victim, zone{"api.example.com": {"203.0.113.80"}})
	victim.AddHost(b, netip.MustParseAddr("203.0.113.80"))
	quietPort, floodPort := 8080, 8081
	victim.Server.Listen(b, "tcp", fmt.Sprintf("203.0.113.80:%d", quietPort))
	victim.Server.Listen(b, "tcp", fmt.Sprintf("203.0.113.80:%d", floodPort))
	victimNetns := netnsOf(b, victim.Client)
	vl.WaitFor(b, `event_name:="connaudit.agent.start"`, 1, time.Minute)

	results := map[string][2]float64{} // each phase's p50 and p99, in seconds
	phase := func(name string, port int) {
		before := spoolLatencies(b, agent)
		made := lookupAndConnect(b, victim.Client, port, b.N)
		stored, named := countNamed(b, vl, victimNetns, port, made)
		after := spoolLatencies(b, agent)
		d := after.minus(before)
		p50, p99 := d.quantile(0.5), d.quantile(0.99)
		b.ReportMetric(p50*1e6, name+"-p50-µs")
		b.ReportMetric(p99*1e6, name+"-p99-µs")
		b.ReportMetric(float64(made-stored), name+"-lost")
		b.ReportMetric(float64(stored-named), name+"-unnamed")
		results[name] = [2]float64{p50, p99}
	}
	b.ResetTimer()
	phase("quiet", quietPort)
	fl := startDNSFlood(b, flood, 10000, 10000*120)
	phase("flood", floodPort)
	sent := fl.end()
	b.StopTimer()
	b.ReportMetric(results["flood"][0]/results["quiet"][0], "p50-ratio")
	b.ReportMetric(results["flood"][1]/results["quiet"][1], "p99-ratio")
	b.ReportMetric(float64(sent), "flood-answers")
	b.ReportMetric(0, "ns/op")
}

// lookupAndConnect makes n lookups of api.example.com from ns, each followed
// by a connect to its address on port, 2 ms apart, and returns how many
// connects were made. Each lookup is a new UDP socket, as a stub resolver
// makes, so that its answer matches a query the socket sent.
func lookupAndConnect(b testing.TB, ns netnstest.NS, port, n int) int {
	b.Helper()
	made := 0
	err := ns.Do(func() error {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		deadline := time.Now().Add(time.Duration(n)*2*time.Millisecond + time.Minute)
		buf := make([]byte, 1500)
		for i := 0; i < n && time.Now().Before(deadline); i++ {
			<-tick.C
			dns, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netnstest.ServerV4, 53)))
			if err != nil {
				return err
			}
			dns.SetDeadline(time.Now().Add(2 * time.Second))
			_, err = dns.Write(query(uint16(i), "api.example.com."))
			if err == nil {
				_, err = dns.Read(buf)
			}
			dns.Close()
			if err != nil {
				return fmt.Errorf("lookup %d: %w", i, err)
			}
			c, err := net.DialTimeout("tcp4", fmt.Sprintf("203.0.113.80:%d", port), 2*time.Second)
			if err != nil {
				return fmt.Errorf("connect %d: %w", i, err)
			}
			c.Close()
			made++
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return made
}

// countNamed waits (up to three minutes) until made connects from netns to
// port are stored, and returns how many are, and how many of them carry the
// name looked up.
func countNamed(b testing.TB, vl *teststack.VictoriaLogs, netns uint32, port, made int) (stored, named int) {
	b.Helper()
	q := fmt.Sprintf(`event_name:="tcp.connect" connaudit.netns:=%d network.peer.port:=%d | stats by (server.address) count() n`, netns, port)
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		rows, err := vl.Query(b.Context(), q)
		if err != nil {
			continue
		}
		stored, named = 0, 0
		for _, r := range rows {
			n, _ := strconv.Atoi(r["n"])
			stored += n
			if r["server.address"] == "api.example.com" {
				named += n
			}
		}
		if stored >= made {
			break
		}
	}
	return stored, named
}

// histogram is a scrape of a Prometheus histogram: cumulative counts by
// upper bound, +Inf last.
type histogram struct {
	le     []float64
	counts []float64
}

// spoolLatencies scrapes the agent's connaudit_connect_to_spool_seconds.
func spoolLatencies(b *testing.B, agent *teststack.Agent) histogram {
	b.Helper()
	metrics, err := agent.Metrics()
	if err != nil {
		b.Fatal(err)
	}
	var h histogram
	sc := bufio.NewScanner(strings.NewReader(metrics))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), `connaudit_connect_to_spool_seconds_bucket{le="`)
		if !ok {
			continue
		}
		bound, count, ok := strings.Cut(line, `"} `)
		if !ok {
			b.Fatalf("bucket line %q", sc.Text())
		}
		le, err1 := strconv.ParseFloat(bound, 64)
		n, err2 := strconv.ParseFloat(count, 64)
		if err1 != nil || err2 != nil {
			b.Fatalf("bucket line %q", sc.Text())
		}
		h.le, h.counts = append(h.le, le), append(h.counts, n)
	}
	if len(h.le) == 0 || !sort.Float64sAreSorted(h.le) {
		b.Fatalf("no connaudit_connect_to_spool_seconds histogram in the agent's metrics:\n%s", metrics)
	}
	return h
}

func (h histogram) minus(o histogram) histogram {
	d := histogram{le: h.le, counts: make([]float64, len(h.counts))}
	for i := range h.counts {
		d.counts[i] = h.counts[i] - o.counts[i]
	}
	return d
}

// quantile interpolates linearly within the bucket that holds quantile q,
// as Prometheus' histogram_quantile does; NaN without observations.
func (h histogram) quantile(q float64) float64 {
	total := h.counts[len(h.counts)-1]
	if total == 0 {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for i, le := range h.le {
		if h.counts[i] >= rank {
			if math.IsInf(le, 1) {
				return lower
			}
			return lower + (le-lower)*(rank-below)/(h.counts[i]-below)
		}
		lower, below = le, h.counts[i]
	}
	return lower
}
