package agent

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/k8s/cgroup"
	"github.com/connaudit/connaudit/process"
	"github.com/connaudit/connaudit/shipper"
	"github.com/connaudit/connaudit/shipper/spool"
)

// BenchmarkHandle is the agent's per-event path after the ring buffer, with
// the real lookups and no Kubernetes: cgroup and executable lookups, record
// encoding and the spool append (a write to the page cache).
func BenchmarkHandle(b *testing.B) {
	sp, _, err := spool.Open(b.TempDir(), spool.Options{FsyncInterval: 100 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	cgroups, err := cgroup.NewResolver(cgroup.ResolverOptions{})
	if err != nil {
		b.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	metrics := shipper.NewMetrics(prometheus.NewRegistry())
	attrs, err := shipper.AgentResource{Version: "bench", InstanceID: "i", HostName: "h"}.Attributes(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	enc := NewIdentityEncoder(attrs)
	p := &Pipeline{Trail: shipper.New(sp, enc.Node(), metrics, logger), Metrics: metrics, Log: logger,
		Clock: bpf.NewBootClock(), Executables: process.NewExecutables("/proc", 4096), Cgroups: cgroups, Identities: enc}

	comm, _ := os.ReadFile("/proc/self/comm")
	now := time.Now()
	boot := bootNs()
	ev := bpf.Event{StartNs: boot, EndNs: boot + 1000, CgroupID: 1, PID: uint32(os.Getpid()), TID: uint32(os.Getpid()),
		Outcome: bpf.Established, Local: netip.MustParseAddrPort("10.0.0.1:40000"), Peer: netip.MustParseAddrPort("10.0.0.2:443")}
	ev.SetComm(string(comm[:len(comm)-1]))

	// Drain the spool as the exporter would, so it never fills.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			batch, err := sp.Next(ctx, 4096, 0)
			if err != nil {
				return
			}
			sp.Ack(batch)
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		p.handle(&ev, now, false)
	}
}
