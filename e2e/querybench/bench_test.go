// Package querybench measures `connaudit query` and `connaudit coverage` on
// a VictoriaLogs holding 1,000,000 records of realistic shape, the figures
// of README.md's Performance section. It is not part of `make test`:
//
//	make bench-query
//
// The records (recordgen, README's record schema) are 24 hours of connects
// from 480 pods (30 namespaces × 8 Deployments × 2 pods) on 20 nodes, each
// node with one agent instance numbering its records from 1: 60% to other
// pods (a few peers per workload, across namespaces too), 20% to Services,
// 15% to 2,000 external addresses, 5% to nodes and loopback; 92%
// established, the rest refused, timed out, unreachable or reset. They are
// posted as OTLP straight to VictoriaLogs (the collector passes OTLP through
// unchanged; going through it would only make loading slower).
//
// BenchmarkTrail300k (trail_test.go) measures hole finding and verify on
// one instance of 300,000 chained records.
package querybench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/connaudit/connaudit/internal/recordgen"
	"github.com/connaudit/connaudit/internal/teststack"
)

const (
	records    = 1_000_000
	namespaces = 30
	workloads  = 8 // Deployments per namespace
	replicas   = 2
	nodes      = 20
	externals  = 2000
	batch      = 20_000
)

type workload struct {
	ns, name string
	pods     []*recordgen.Pod
	port     int
	peers    []int // indexes of the workloads it talks to
}

func BenchmarkQuery1M(b *testing.B) {
	vl := teststack.StartVictoriaLogs(b)
	now := time.Now().Truncate(time.Second)
	loadStart := time.Now()
	ws := load(b, vl, now)
	b.Logf("loaded %d records in %v", records, time.Since(loadStart).Round(time.Millisecond))

	bin := teststack.Binary(b, "connaudit")
	pod := ws[3].pods[0]
	run := func(b *testing.B, args ...string) {
		args = append(args, "--server", vl.URL())
		for b.Loop() {
			cmd := exec.Command(bin, args...)
			cmd.Env = []string{"HOME=" + b.TempDir(), "PATH=" + os.Getenv("PATH")}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				b.Fatalf("connaudit %q: %v: %s", args, err, stderr.String())
			}
			if len(out) == 0 {
				b.Fatalf("connaudit %q printed nothing; stderr %s", args, stderr.String())
			}
		}
	}
	b.Run("query-pod", func(b *testing.B) { run(b, "query", "-n", pod.Namespace, "--pod", pod.Name, "--since", "24h") })
	b.Run("query-pod-nolimit", func(b *testing.B) {
		run(b, "query", "-n", pod.Namespace, "--pod", pod.Name, "--since", "24h", "--limit", "0", "-o", "json")
	})
	b.Run("query-summary-namespace", func(b *testing.B) { run(b, "query", "--summary", "-n", pod.Namespace, "--since", "24h") })
	b.Run("coverage", func(b *testing.B) { run(b, "coverage", "--since", "24h") })
}

// load posts the records and returns the workloads.
func load(b *testing.B, vl *teststack.VictoriaLogs, now time.Time) []*workload {
	rng := rand.New(rand.NewPCG(1, 2))
	var ws []*workload
	for n := range namespaces {
		for w := range workloads {
			wl := &workload{ns: fmt.Sprintf("team-%02d", n), name: fmt.Sprintf("svc-%d", w), port: 8000 + w}
			for r := range replicas {
				name := fmt.Sprintf("%s-6c9f%02d-%c%c%c", wl.name, w, 'a'+r, 'k'+rng.IntN(10), 'p'+rng.IntN(10))
				wl.pods = append(wl.pods, &recordgen.Pod{Namespace: wl.ns, Name: name, UID: fmt.Sprintf("uid-%d-%d-%d", n, w, r), Container: "app",
					Labels: map[string]string{"app": wl.name, "team": wl.ns, "tier": []string{"frontend", "backend"}[w%2], "pod-template-hash": fmt.Sprintf("6c9f%02d", w)},
					Owners: recordgen.Attrs("k8s.deployment.name", wl.name, "k8s.replicaset.name", fmt.Sprintf("%s-6c9f%02d", wl.name, w))})
			}
			ws = append(ws, wl)
		}
	}
	for _, wl := range ws {
		for range 4 {
			wl.peers = append(wl.peers, rng.IntN(len(ws)))
		}
	}
	agents := make([]*recordgen.Agent, nodes)
	var recs []recordgen.Record
	from := now.Add(-24 * time.Hour)
	for i := range agents {
		agents[i] = recordgen.NewAgent(fmt.Sprintf("node-%02d", i), fmt.Sprintf("instance-%02d", i))
		recs = append(recs, agents[i].Start(from.Add(-time.Hour), false))
	}
	flush := func() {
		if err := recordgen.Post(context.Background(), vl.URL()+"/insert/opentelemetry/v1/logs", recs); err != nil {
			b.Fatal(err)
		}
		recs = recs[:0]
	}
	step := 24 * time.Hour / records
	outcomes := []struct{ outcome, err string }{{"refused", "ECONNREFUSED"}, {"timeout", "ETIMEDOUT"}, {"unreachable", "EHOSTUNREACH"}, {"reset", "ECONNRESET"}}
	for i := range records {
		wl := ws[rng.IntN(len(ws))]
		p := rng.IntN(len(wl.pods))
		pod := wl.pods[p]
		ag := agents[(int(pod.UID[len(pod.UID)-1])+len(wl.name)*7+len(wl.ns))%nodes]
		c := recordgen.Conn{SrcAddr: fmt.Sprintf("10.%d.%d.%d", 1+p, len(ws)%250, 10), SrcPort: 32768 + rng.IntN(28000),
			Outcome: "established", Duration: 0.0002 + rng.Float64()*0.002}
		switch r := rng.IntN(100); {
		case r < 60:
			peer := ws[wl.peers[rng.IntN(len(wl.peers))]]
			c.DstAddr, c.DstPort = fmt.Sprintf("10.200.%d.%d", rng.IntN(250), 1+rng.IntN(2)), peer.port
			c.Peer = recordgen.Attrs("connaudit.peer.kind", "pod", "connaudit.peer.k8s.namespace.name", peer.ns,
				"connaudit.peer.k8s.pod.name", peer.pods[rng.IntN(len(peer.pods))].Name,
				"connaudit.peer.k8s.workload.kind", "deployment", "connaudit.peer.k8s.workload.name", peer.name,
				"connaudit.peer.k8s.pod.label.app", peer.name)
		case r < 80:
			peer := ws[wl.peers[rng.IntN(len(wl.peers))]]
			c.DstAddr, c.DstPort = fmt.Sprintf("10.96.%d.%d", rng.IntN(4), 10+wl.peers[0]%200), 80
			c.Peer = recordgen.Attrs("connaudit.peer.kind", "service", "connaudit.peer.k8s.namespace.name", peer.ns, "connaudit.peer.k8s.service.name", peer.name)
		case r < 95:
			e := rng.IntN(externals)
			c.DstAddr, c.DstPort = fmt.Sprintf("203.0.%d.%d", e/250, e%250), []int{443, 443, 443, 80, 5432}[e%5]
			c.Peer = recordgen.Attrs("connaudit.peer.kind", "external")
		default:
			c.DstAddr, c.DstPort = "127.0.0.1", 15000
			c.Peer = recordgen.Attrs("connaudit.peer.kind", "loopback")
		}
		if rng.IntN(100) >= 92 {
			o := outcomes[rng.IntN(len(outcomes))]
			c.Outcome, c.ErrType = o.outcome, o.err
		}
		recs = append(recs, ag.Connect(from.Add(time.Duration(i)*step), recordgen.Source{Pod: pod, Comm: wl.name, PID: 1000 + p, PPID: 1, UID: 1000}, c))
		if len(recs) == batch {
			flush()
		}
	}
	flush()
	resp, err := http.Get(vl.URL() + "/internal/force_flush")
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	return ws
}
