package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	"github.com/connaudit/connaudit/agent"
	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/caps"
	"github.com/connaudit/connaudit/k8s"
	"github.com/connaudit/connaudit/k8s/cgroup"
	"github.com/connaudit/connaudit/process"
	"github.com/connaudit/connaudit/shipper"
	"github.com/connaudit/connaudit/shipper/handoff"
	"github.com/connaudit/connaudit/shipper/spool"
)

func runAgent(ctx context.Context) error {
	cfg, err := loadConfig()
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if err := caps.Require(caps.Agent); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	metrics := shipper.NewMetrics(reg)
	hostname, _ := os.Hostname()
	instanceID := newInstanceID()
	resourceAttrs, err := shipper.AgentResource{
		Version: version, InstanceID: instanceID, HostName: hostname,
		NodeName: cfg.NodeName, ClusterName: cfg.ClusterName,
	}.Attributes(ctx)
	if err != nil {
		return err
	}
	identities := agent.NewIdentityEncoder(resourceAttrs)
	enricher, err := startEnricher(ctx, cfg.Config, logger)
	if err != nil {
		return err
	}

	sp, recovery, err := spool.Open(cfg.SpoolDir, spool.Options{MaxBytes: cfg.SpoolMaxBytes, FsyncInterval: cfg.SpoolFsyncInterval})
	if err != nil {
		return fmt.Errorf("open spool (CONNAUDIT_SPOOL_DIR=%s): %w", cfg.SpoolDir, err)
	}
	defer sp.Close()
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "connaudit_spool_bytes", Help: "Bytes of spool files on disk."},
			func() float64 { return float64(sp.Stats().Bytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "connaudit_spool_records", Help: "Records waiting in the spool."},
			func() float64 { return float64(sp.Stats().Records) }),
	)
	ledger := shipper.NewLedger(sp, identities.Node(), metrics, logger)
	key, err := cfg.signingKey()
	if err != nil {
		return err
	}
	wit, err := newWitness(cfg, instanceID, key, reg, logger)
	if err != nil {
		return err
	}
	cpCfg := shipper.CheckpointConfig{Instance: instanceID, Key: key, Records: cfg.CheckpointRecords}
	if wit != nil {
		cpCfg.Witness = wit.Checkpointed
	}
	ledger.EnableCheckpoints(cpCfg)
	lineage := agent.Lineage{Heartbeat: cfg.HeartbeatInterval}
	prev, last, err := handoff.Previous(cfg.SpoolDir)
	if err != nil {
		logger.Warn("what the previous instance left in the spool directory is damaged", "err", err)
	}
	lineage.Previous = prev
	live, err := handoff.OpenLive(cfg.SpoolDir, instanceID)
	if err != nil {
		return fmt.Errorf("CONNAUDIT_SPOOL_DIR=%s: %w", cfg.SpoolDir, err)
	}
	defer live.Close()
	ledger.KeepLive(live)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "connaudit_events_unspooled",
		Help: "Connect events read from the kernel and not yet spooled (held for their pod or a DNS answer)."},
		func() float64 { return float64(live.Unspooled()) }))
	heartbeat := &agent.Heartbeat{Ledger: ledger, Interval: cfg.HeartbeatInterval, Dir: cfg.SpoolDir, Instance: instanceID, Log: logger}
	agent.ReportSpoolDamage(ledger, recovery, logger)

	sender, err := shipper.NewSender(ctx, cfg.Output, cfg.ExportTokenFile, os.Stdout)
	if err != nil {
		return fmt.Errorf("create exporter: %w", err)
	}
	exporter := shipper.NewExporter(shipper.ExportConfig{
		BatchRecords: cfg.ExportBatch, BatchBytes: 1 << 20, MaxDelay: cfg.ExportMaxDelay, MaxBackoff: cfg.ExportMaxBackoff, Version: version,
	}, sp, sender, ledger, metrics, logger)

	captureStart := time.Now()
	tracer, err := bpf.Load(cfg.capture())
	if err != nil {
		return err
	}
	defer tracer.Close()

	hostNetNS, err := process.HostNetNS(cfg.HostProc)
	if err != nil {
		return err
	}
	p := &agent.Pipeline{Events: tracer, Trail: ledger, Identities: identities, Metrics: metrics, Log: logger,
		Clock: bpf.NewBootClock(), Executables: process.NewExecutables(cfg.HostProc, 4096), Live: live,
		HoldTimeout: cfg.HoldTimeout, HoldMax: cfg.HoldQueue, HostNetNS: hostNetNS}
	cgroups, err := cgroup.NewResolver(cgroup.ResolverOptions{Root: cfg.CgroupRoot})
	switch {
	case err == nil:
		p.Cgroups = cgroups
		go cgroups.RunRescans(ctx)
	case cfg.CgroupRoot != "":
		return fmt.Errorf("CONNAUDIT_CGROUP_ROOT=%s: %w (point it at the host's cgroup v2 mount, or its whole cgroup filesystem on a hybrid host, or leave it empty to find it in /proc/self/mountinfo)", cfg.CgroupRoot, err)
	case enricher != nil:
		return fmt.Errorf("Kubernetes enrichment needs cgroup v2 to tell pods apart (mount it, or set CONNAUDIT_KUBERNETES=off): %w", err)
	default:
		logger.Warn("cgroup v2 not found: records will carry no container.id", "err", err)
	}
	if enricher != nil {
		p.Kubernetes = enricher
	}
	dnsNames, stopDNS := startDNS(ctx, cfg, p, agent.NewIdentityEncoder(resourceAttrs), reg, logger)
	defer stopDNS()
	if dnsNames != nil {
		p.Names, p.DNSWait = dnsNames, cfg.DNSMaxWait
	}
	if p.Reported, err = tracer.Reported(); err != nil {
		return err
	}

	delivery := agent.StartDelivery(exporter, sp)

	health := agent.NewHealthServer(cfg.ListenAddr, reg, exporter, cfg.ReadyExportFailure, logger)
	if dnsNames != nil {
		health.AddCheck(dnsNames.Stalled)
	}
	if wit != nil {
		if os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
			// In a pod, where k8s/deploy grants the writes, a witness that
			// cannot be written is a misconfiguration /readyz shows. From
			// a kubeconfig (`make run` on a developer's machine) the log
			// and the metric say it.
			health.AddCheck(wit.Check)
		}
		wit.Start()
	}
	health.Start()
	defer health.Stop()
	profiles := agent.NewProfileServer(cfg.PprofAddr, logger)
	profiles.Start()
	defer profiles.Stop()

	agent.RecordStart(ledger, tracer, version, cfg.SpoolDir, lineage, captureStart, logger)
	agent.ReportUnspooled(ledger, last, logger)
	heartbeat.Save()
	heartbeat.Start()
	health.WatchHeartbeat(heartbeat)
	logger.Info("capturing TCP connect attempts", "version", version, "instance", instanceID, "output", cfg.Output)
	health.SetReady(true)

	captureErr := p.Run(ctx)
	if cfg.BPFPinDir != "" {
		logger.Info("capture goes on in the kernel while no agent runs; the next agent drains it (`connaudit-agent unpin` stops it)", "pinned", cfg.BPFPinDir)
	}

	health.SetReady(false)
	heartbeat.Stop()
	flushed := delivery.Finish(ledger, cfg.ShutdownGrace)
	heartbeat.Save()
	if wit != nil {
		// The final checkpoint, which the stop record follows.
		wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := wit.Stop(wctx); err != nil {
			logger.Warn("the node's witness does not hold this instance's final checkpoint", "err", err)
		}
		cancel()
	}
	_ = sender.Shutdown(context.Background())
	stats := sp.Stats()
	logger.Info("stopped", "flushed", flushed, "left_in_spool", stats.Records, "last_seq", ledger.LastSeq())
	return captureErr
}

// startEnricher starts Kubernetes enrichment as configured; nil when it is off.
// An API server that is unreachable does not stop the agent: records flow
// unenriched until it answers.
func startEnricher(ctx context.Context, cfg k8s.Config, logger *slog.Logger) (*k8s.Enricher, error) {
	rest, ok, err := k8s.LoadClientConfig(cfg.Mode)
	if err != nil {
		return nil, err
	}
	if !ok {
		logger.Info("Kubernetes enrichment is off", "CONNAUDIT_KUBERNETES", cfg.Mode)
		return nil, nil
	}
	if cfg.NodeName == "" {
		return nil, fmt.Errorf("Kubernetes enrichment needs CONNAUDIT_NODE_NAME (spec.nodeName through the downward API), or set CONNAUDIT_KUBERNETES=off")
	}
	klog.SetSlogLogger(logger.With("component", "client-go"))
	api, err := k8s.NewAPI(rest)
	if err != nil {
		return nil, fmt.Errorf("create Kubernetes client: %w", err)
	}
	e := k8s.NewEnricher(cfg, api, logger)
	go e.Run(ctx)
	return e, nil
}

func newInstanceID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
