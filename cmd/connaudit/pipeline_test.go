package main

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
	"github.com/connaudit/connaudit/k8s"
	"github.com/connaudit/connaudit/k8s/cgroup"
	"github.com/connaudit/connaudit/shipper"
	"github.com/connaudit/connaudit/shipper/spool"
)

// BenchmarkHandle is the agent's per-event path after the ring buffer: cgroup
// and executable lookups, record encoding and the spool append (a write to
// the page cache).
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
	enc := newIdentityEncoder(attrs)
	p := pipeline{shipper: shipper.New(sp, enc.node, metrics, logger), metrics: metrics, log: logger,
		clock: bpf.NewBootClock(), exe: k8s.NewExePaths(4096), cgroups: cgroups, encoder: enc}

	ev := bpf.Event{StartNs: 1, EndNs: 2, CgroupID: 1, PID: uint32(os.Getpid()), TID: uint32(os.Getpid()),
		Outcome: bpf.Established, Local: netip.MustParseAddrPort("10.0.0.1:40000"), Peer: netip.MustParseAddrPort("10.0.0.2:443")}
	ev.SetComm("bench")

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
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		p.handle(&ev, now, false)
	}
}
