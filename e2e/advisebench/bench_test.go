// Package advisebench measures `connaudit advise networkpolicy` and `advise
// check` on a VictoriaLogs holding 1,000,000 records of realistic shape. It
// is not part of `make test`:
//
//	make bench-advise
//
// The records (recordgen, README's record schema) are 24 hours of connects
// from 480 pods (30 namespaces × 8 Deployments × 2 pods) on 20 nodes: 65% to
// pods of a few peer workloads (across namespaces too), 30% to 2,000
// external addresses, 5% to loopback; 92% established. They are posted as
// OTLP straight to VictoriaLogs. No API server is given, so nothing needs
// one (Services are the query benchmark's business).
package advisebench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connaudit/connaudit/internal/recordgen"
	"github.com/connaudit/connaudit/internal/teststack"
)

const (
	records    = 1_000_000
	namespaces = 30
	workloads  = 8
	replicas   = 2
	nodes      = 20
	externals  = 2000
	batch      = 20_000
)

func BenchmarkAdvise1M(b *testing.B) {
	vl := teststack.StartVictoriaLogs(b)
	loadStart := time.Now()
	load(b, vl, time.Now().Truncate(time.Second))
	b.Logf("loaded %d records in %v", records, time.Since(loadStart).Round(time.Millisecond))

	bin := teststack.Binary(b, "connaudit")
	connaudit := func(b *testing.B, args ...string) []byte {
		cmd := exec.Command(bin, append(args, "--server", vl.URL())...)
		cmd.Env = []string{"HOME=" + b.TempDir(), "PATH=" + os.Getenv("PATH"), "KUBECONFIG=/nonexistent"}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("connaudit %q: %v: %s", args, err, stderr.String())
		}
		return out
	}
	advise := []string{"advise", "networkpolicy", "-n", "team-03", "--since", "24h"}
	policy := filepath.Join(b.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, connaudit(b, advise...), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Run("networkpolicy-namespace", func(b *testing.B) {
		for b.Loop() {
			connaudit(b, advise...)
		}
	})
	b.Run("check-namespace", func(b *testing.B) {
		for b.Loop() {
			connaudit(b, "advise", "check", "-f", policy, "--since", "24h")
		}
	})
}

type workload struct {
	ns, name string
	pods     []*recordgen.Pod
	port     int
	peers    []*workload
}

func load(b *testing.B, vl *teststack.VictoriaLogs, now time.Time) {
	rng := rand.New(rand.NewPCG(3, 4))
	var ws []*workload
	for n := range namespaces {
		for w := range workloads {
			wl := &workload{ns: fmt.Sprintf("team-%02d", n), name: fmt.Sprintf("svc-%d", w), port: 8000 + w}
			for r := range replicas {
				hash := fmt.Sprintf("6c9f%02d", w)
				wl.pods = append(wl.pods, &recordgen.Pod{Namespace: wl.ns, Name: fmt.Sprintf("%s-%s-%c", wl.name, hash, 'a'+r),
					UID: fmt.Sprintf("uid-%d-%d-%d", n, w, r), Container: "app",
					Labels: map[string]string{"app": wl.name, "team": wl.ns, "pod-template-hash": hash},
					Owners: recordgen.Attrs("k8s.deployment.name", wl.name, "k8s.replicaset.name", wl.name+"-"+hash)})
			}
			ws = append(ws, wl)
		}
	}
	for _, wl := range ws {
		for range 4 {
			wl.peers = append(wl.peers, ws[rng.IntN(len(ws))])
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
	for i := range records {
		wi := rng.IntN(len(ws))
		wl := ws[wi]
		p := rng.IntN(len(wl.pods))
		c := recordgen.Conn{SrcAddr: fmt.Sprintf("10.%d.%d.%d", 1+wi/250, wi%250, 10+p), SrcPort: 32768 + rng.IntN(28000),
			Outcome: "established", Duration: 0.0002 + rng.Float64()*0.002}
		switch r := rng.IntN(100); {
		case r < 65:
			peer := wl.peers[rng.IntN(len(wl.peers))]
			pp := rng.IntN(len(peer.pods))
			c.DstAddr, c.DstPort = fmt.Sprintf("10.200.%d.%d", len(peer.ns)+int(peer.name[4]), 10+pp), peer.port
			c.Peer = recordgen.Attrs("connaudit.peer.kind", "pod", "connaudit.peer.k8s.namespace.name", peer.ns,
				"connaudit.peer.k8s.pod.name", peer.pods[pp].Name,
				"connaudit.peer.k8s.workload.kind", "deployment", "connaudit.peer.k8s.workload.name", peer.name,
				"connaudit.peer.k8s.pod.label.app", peer.name, "connaudit.peer.k8s.pod.label.team", peer.ns,
				"connaudit.peer.k8s.pod.label.pod-template-hash", peer.pods[pp].Labels["pod-template-hash"])
		case r < 95:
			e := rng.IntN(externals)
			c.DstAddr, c.DstPort = fmt.Sprintf("203.0.%d.%d", e/250, e%250), []int{443, 443, 443, 80, 5432}[e%5]
			c.Peer = recordgen.Attrs("connaudit.peer.kind", "external")
		default:
			c.DstAddr, c.DstPort = "127.0.0.1", 15000
			c.Peer = recordgen.Attrs("connaudit.peer.kind", "loopback")
		}
		if rng.IntN(100) >= 92 {
			c.Outcome, c.ErrType = "refused", "ECONNREFUSED"
		}
		ag := agents[(wi*replicas+p)%nodes]
		recs = append(recs, ag.Connect(from.Add(time.Duration(i)*step), recordgen.Source{Pod: wl.pods[p], Comm: wl.name, PID: 1000 + p, PPID: 1, UID: 1000}, c))
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
}
