package bpf

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/connaudit/connaudit/bench/loadgen"
)

// BenchmarkKernelPerConnect reports the programs' own run time (bpf_stats)
// per loopback connect, as figure 2 of the performance report counts it:
// every run of the three programs, over the connects made. Each connect is
// one b.N; the load is the report's (bench/loadgen: 127.0.0.1, closed with
// RST), bounded to 50,000 connects and 30 seconds. The programs see every
// connect on the host, so run it on a quiet machine (make bench does).
//
// "typed" is the object Load picks from Linux 6.2, "probe_reads" the one for
// older kernels.
func BenchmarkKernelPerConnect(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("loads eBPF programs: needs root")
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enable bpf_stats: %v", err)
	}
	defer stats.Close()
	b.Run("typed", func(b *testing.B) { benchmarkKernelPerConnect(b, false) })
	b.Run("probe_reads", func(b *testing.B) { benchmarkKernelPerConnect(b, true) })
}

func benchmarkKernelPerConnect(b *testing.B, probeReads bool) {
	tr, err := Load(Config{RingBufferBytes: 1 << 24, HandshakeEntries: 65536, ProbeReads: probeReads})
	if err != nil {
		b.Fatal(err)
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		var ev Event
		for {
			if err := tr.Read(&ev); errors.Is(err, os.ErrClosed) {
				return
			}
		}
	}()
	defer func() { tr.Close(); <-drained }()

	progs := []struct {
		name string
		prog *ebpf.Program
	}{
		{"enter_connect", tr.objs.EnterConnect},
		{"exit_connect", tr.objs.ExitConnect},
		{"sock_set_state", tr.objs.SockSetState},
	}
	before := make([]*ebpf.ProgramStats, len(progs))
	for i, p := range progs {
		if before[i], err = p.prog.Stats(); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	res, err := loadgen.Run(context.Background(), loadgen.Config{Count: min(b.N, 50000), Duration: 30 * time.Second})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if res.Made == 0 || res.Failed > 0 {
		b.Fatalf("%d of %d loopback connects failed", res.Failed, res.Made)
	}
	connects := float64(res.Made)
	var total time.Duration
	for i, p := range progs {
		after, err := p.prog.Stats()
		if err != nil {
			b.Fatal(err)
		}
		runs := after.RunCount - before[i].RunCount
		runtime := after.Runtime - before[i].Runtime
		total += runtime
		b.ReportMetric(float64(runs)/connects, p.name+"-runs/connect")
		if runs > 0 {
			b.ReportMetric(float64(runtime.Nanoseconds())/float64(runs), p.name+"-ns/run")
		}
	}
	b.ReportMetric(float64(total.Nanoseconds())/connects, "kernel-ns/connect")
}
