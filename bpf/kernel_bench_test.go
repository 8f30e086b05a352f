package bpf

import (
	"context"
	"errors"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/connaudit/connaudit/bench/loadgen"
)

// BenchmarkKernelPerConnect reports the programs' own run time (bpf_stats)
// per loopback connect, as figure 2 of the performance report counts it:
// every run of the programs, over the connects made. Each connect is one
// b.N; the load is the report's (bench/loadgen: 127.0.0.1, closed with RST),
// bounded to 50,000 connects and 30 seconds, at saturation or, with
// CONNAUDIT_BENCH_RATE=n, at n connects per second. The programs see every
// connect on the host, so run it on a quiet machine (make bench does).
//
// "typed" is the object Load picks from Linux 6.2, "probe_reads" the one for
// older kernels. "sockops" and "cgroup_connect+sockops" are the experimental
// variants of sockops.c (issue 20, item 4; README.md, Performance), which
// the agent does not use ("sockops_skstorage" keeps its attempts in socket
// storage instead of an LRU hash); "sockops_empty" is a sock_ops program that does
// nothing, the floor of any sock_ops design.
func BenchmarkKernelPerConnect(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("loads eBPF programs: needs root")
	}
	rate := 0
	if s := os.Getenv("CONNAUDIT_BENCH_RATE"); s != "" {
		var err error
		if rate, err = strconv.Atoi(s); err != nil || rate < 0 {
			b.Fatalf("CONNAUDIT_BENCH_RATE=%q: want connects per second", s)
		}
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enable bpf_stats: %v", err)
	}
	defer stats.Close()
	b.Run("typed", func(b *testing.B) { benchmarkKernelPerConnect(b, rate, false) })
	b.Run("probe_reads", func(b *testing.B) { benchmarkKernelPerConnect(b, rate, true) })
	for _, variant := range []string{AltSockops, AltSockopsSkStorage, AltConnectSockops, AltSockopsEmpty} {
		b.Run(variant, func(b *testing.B) { benchmarkAltPerConnect(b, rate, variant) })
	}
}

type namedProgram struct {
	name string
	prog *ebpf.Program
}

func benchmarkKernelPerConnect(b *testing.B, rate int, probeReads bool) {
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

	measureKernelPerConnect(b, rate, []namedProgram{
		{"enter_connect", tr.objs.EnterConnect},
		{"exit_connect", tr.objs.ExitConnect},
		{"sock_set_state", tr.objs.SockSetState},
	})
}

func benchmarkAltPerConnect(b *testing.B, rate int, variant string) {
	a, err := LoadAlt(variant, 1<<24)
	if err != nil {
		b.Fatal(err)
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		var ev Event
		for {
			if err := a.Read(&ev); errors.Is(err, os.ErrClosed) {
				return
			}
		}
	}()
	defer func() { a.Close(); <-drained }()

	var progs []namedProgram
	for _, p := range altPrograms[variant] {
		progs = append(progs, namedProgram{p.name, a.Progs[p.name]})
	}
	measureKernelPerConnect(b, rate, progs)
}

// measureKernelPerConnect makes the load and reports the attached programs'
// runs and run time over the connects made.
func measureKernelPerConnect(b *testing.B, rate int, progs []namedProgram) {
	before := make([]*ebpf.ProgramStats, len(progs))
	for i, p := range progs {
		var err error
		if before[i], err = p.prog.Stats(); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	res, err := loadgen.Run(context.Background(), loadgen.Config{Rate: rate, Count: min(b.N, 50000), Duration: 30 * time.Second})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if res.Made == 0 || res.Failed > 0 {
		b.Fatalf("%d of %d loopback connects failed", res.Failed, res.Made)
	}
	connects := float64(res.Made)
	var total time.Duration
	var runs uint64
	for i, p := range progs {
		after, err := p.prog.Stats()
		if err != nil {
			b.Fatal(err)
		}
		n := after.RunCount - before[i].RunCount
		runtime := after.Runtime - before[i].Runtime
		total += runtime
		runs += n
		b.ReportMetric(float64(n)/connects, p.name+"-runs/connect")
		if n > 0 {
			b.ReportMetric(float64(runtime.Nanoseconds())/float64(n), p.name+"-ns/run")
		}
	}
	b.ReportMetric(float64(runs)/connects, "runs/connect")
	b.ReportMetric(float64(total.Nanoseconds())/connects, "kernel-ns/connect")
	b.ReportMetric(res.Rate, "connects/s")
}
