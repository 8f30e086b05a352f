package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/log"

	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/k8s"
	"github.com/connaudit/connaudit/k8s/cgroup"
	"github.com/connaudit/connaudit/shipper"
	"github.com/connaudit/connaudit/shipper/spool"
)

func runAgent(ctx context.Context) error {
	cfg, err := loadConfig()
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))

	reg := prometheus.NewRegistry()
	metrics := shipper.NewMetrics(reg)
	hostname, _ := os.Hostname()
	instanceID := newInstanceID()
	resource, err := shipper.AgentResource{
		Version: version, InstanceID: instanceID, HostName: hostname,
		NodeName: cfg.NodeName, ClusterName: cfg.ClusterName,
	}.Encode(ctx)
	if err != nil {
		return err
	}

	sp, recovery, err := spool.Open(cfg.SpoolDir, spool.Options{MaxBytes: cfg.SpoolMaxBytes, FsyncInterval: cfg.SpoolFsyncInterval})
	if err != nil {
		return fmt.Errorf("open spool (CONNAUDIT_SPOOL_DIR=%s): %w", cfg.SpoolDir, err)
	}
	defer sp.Close()
	sh := shipper.New(sp, resource, metrics, logger)
	if len(recovery.Problems) > 0 {
		logger.Warn("spool repaired at start", "recovered_records", recovery.Records, "problems", recovery.Problems)
	}
	if recovery.CorruptBytes > 0 {
		logger.Error("spool held unreadable records; reported as loss", "bytes", recovery.CorruptBytes)
		metrics.Lost.WithLabelValues(shipper.LossSpoolCorrupt).Inc()
		sh.EmitLoss(shipper.Loss{Reason: shipper.LossSpoolCorrupt, Bytes: recovery.CorruptBytes, Detail: "unreadable records in the spool at start"})
	}

	sdkExporter, err := shipper.NewSDKExporter(ctx, cfg.Output, os.Stdout)
	if err != nil {
		return fmt.Errorf("create exporter: %w", err)
	}
	exporter := shipper.NewExporter(shipper.ExportConfig{
		BatchRecords: cfg.ExportBatch, BatchBytes: 4 << 20, MaxBackoff: cfg.ExportMaxBackoff, Version: version,
	}, sp, sdkExporter, sh, metrics, logger)

	tracer, err := bpf.Load(cfg.capture())
	if err != nil {
		return err
	}
	defer tracer.Close()

	cgroups, err := cgroup.NewResolver(cgroup.ResolverOptions{})
	if err != nil {
		logger.Warn("cgroup v2 not found: records will carry no container.id", "err", err)
	}

	p := pipeline{tracer: tracer, shipper: sh, metrics: metrics, log: logger,
		clock: bpf.NewBootClock(), exe: k8s.NewExePaths(4096), cgroups: cgroups, resource: resource}
	if p.counters, err = tracer.Reported(); err != nil {
		return err
	}

	exportCtx, stopExport := context.WithCancel(context.Background())
	exportDone := make(chan error, 1)
	go func() { exportDone <- exporter.Run(exportCtx) }()

	health := newHealthServer(cfg.ListenAddr, reg, exporter, cfg.ReadyExportFailure, logger)
	health.start()
	defer health.stop()

	sh.EmitAgentEvent(shipper.EventAgentStart, "connaudit agent "+version+" started capturing", log.SeverityInfo, func(a *shipper.AttrList) {
		a.String("connaudit.spool.dir", cfg.SpoolDir)
		a.Bool("connaudit.capture.resumed", tracer.Resumed())
	})
	for _, old := range tracer.Replaced() {
		logger.Warn("replaced pinned capture of another version or size: attempts it held are lost", "pinned", old)
		metrics.Lost.WithLabelValues(shipper.LossCaptureReplaced).Inc()
		sh.EmitLoss(shipper.Loss{Reason: shipper.LossCaptureReplaced, Detail: "pinned capture " + old + " was incompatible with this agent and was replaced; events it held are lost"})
	}
	logger.Info("capturing TCP connect attempts", "version", version, "instance", instanceID, "output", cfg.Output)
	health.setReady(true)

	captureErr := p.run(ctx)
	if tracer.Resumed() || cfg.BPFPinDir != "" {
		logger.Info("capture goes on in the kernel while no agent runs; the next agent drains it (`connaudit unpin` stops it)", "pinned", cfg.BPFPinDir)
	}

	health.setReady(false)
	sh.EmitAgentEvent(shipper.EventAgentStop, "connaudit agent stopped capturing", log.SeverityInfo, nil)
	flushed := waitForFlush(sp, exportDone, cfg.ShutdownGrace)
	stopExport()
	if err := <-exportDone; err != nil {
		captureErr = errors.Join(captureErr, err)
	}
	_ = sdkExporter.Shutdown(context.Background())
	stats := sp.Stats()
	logger.Info("stopped", "flushed", flushed, "left_in_spool", stats.Records, "last_seq", sh.LastSeq())
	return captureErr
}

// waitForFlush waits until the exporter has emptied the spool, it failed, or grace passed.
func waitForFlush(sp *spool.Spool, exportDone chan error, grace time.Duration) bool {
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if sp.Stats().Records == 0 {
			return true
		}
		select {
		case err := <-exportDone:
			exportDone <- err
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return sp.Stats().Records == 0
}

func newInstanceID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// pipeline reads kernel events and turns each into a spooled record.
type pipeline struct {
	tracer   *bpf.Tracer
	shipper  *shipper.Shipper
	metrics  *shipper.Metrics
	log      *slog.Logger
	clock    *bpf.BootClock
	exe      *k8s.ExePaths
	cgroups  *cgroup.Resolver
	resource []byte

	builder  shipper.ConnectBuilder
	counters bpf.Counters
	lastPoll time.Time
}

const pollInterval = time.Second

func (p *pipeline) run(ctx context.Context) error {
	p.lastPoll = time.Now()
	var ev bpf.Event
	for ctx.Err() == nil {
		p.tracer.SetDeadline(p.lastPoll.Add(pollInterval))
		err := p.tracer.Read(&ev)
		switch {
		case err == nil:
			p.handle(&ev, time.Now())
		case errors.Is(err, os.ErrDeadlineExceeded):
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
		if now := time.Now(); now.Sub(p.lastPoll) >= pollInterval {
			p.poll(now)
		}
	}
	// Read what is in the ring buffer now. Pinned capture goes on, and what
	// arrives from here on waits for the next agent.
	if err := p.tracer.Detach(); err != nil {
		p.log.Warn("detach tracepoints", "err", err)
	}
	for left := p.tracer.Buffered(); left > 0; left -= bpf.EventSize + 8 {
		p.tracer.SetDeadline(time.Now())
		if err := p.tracer.Read(&ev); err != nil {
			break
		}
		p.handle(&ev, time.Now())
	}
	p.poll(time.Now())
	return nil
}

func (p *pipeline) handle(ev *bpf.Event, observed time.Time) {
	p.metrics.Captured.Inc()
	src := shipper.Source{Resource: p.resource}
	if !ev.IdentityLost {
		src.ExecutablePath = p.exe.Lookup(ev.PID, ev.Comm())
		if p.cgroups != nil {
			if info, ok := p.cgroups.Lookup(ev.CgroupID); ok {
				src.ContainerID = info.Container.ContainerID
			}
		}
	}
	end := p.clock.Wall(ev.EndNs)
	start := end
	if ev.StartNs != 0 {
		start = p.clock.Wall(ev.StartNs)
	}
	p.shipper.Emit(p.builder.Build(ev, start, end, observed, &src))
}

// poll reports what the kernel counted as lost since the last poll, and
// follows wall-clock steps.
func (p *pipeline) poll(now time.Time) {
	p.clock.Sync()
	c, err := p.tracer.Counters()
	if err != nil {
		p.log.Error("read kernel loss counters", "err", err)
		return
	}
	if d := c.RingBufferLost - p.counters.RingBufferLost; d > 0 {
		p.log.Error("ring buffer full: connect attempts lost", "count", d)
		p.metrics.Lost.WithLabelValues(shipper.LossRingBuffer).Add(float64(d))
		p.shipper.EmitLoss(shipper.Loss{Reason: shipper.LossRingBuffer, Count: d, First: p.lastPoll, Last: now,
			Detail: "the kernel found the event ring buffer full (raise CONNAUDIT_RING_BUFFER_BYTES)"})
	}
	if d := c.HandshakeLost - p.counters.HandshakeLost; d > 0 {
		p.log.Warn("handshake map evictions: attempts shipped without process identity", "count", d)
		p.metrics.Lost.WithLabelValues(shipper.LossHandshakeMap).Add(float64(d))
		p.shipper.EmitLoss(shipper.Loss{Reason: shipper.LossHandshakeMap, Count: d, First: p.lastPoll, Last: now,
			Detail: "in-flight handshakes evicted; their attempts carry connaudit.identity.lost (raise CONNAUDIT_HANDSHAKE_ENTRIES)"})
	}
	if c != p.counters {
		if err := p.tracer.MarkReported(c); err != nil {
			p.log.Error("store reported loss counters; a restarted agent may report these losses again", "err", err)
		}
	}
	p.counters = c
	p.lastPoll = now
}
