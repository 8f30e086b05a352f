package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connaudit/connaudit/agent"
	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/caps"
	"github.com/connaudit/connaudit/dns"
	"github.com/connaudit/connaudit/dns/capture"
	"github.com/connaudit/connaudit/k8s/cgroup"
)

// startDNS starts DNS capture as configured. It returns nil when DNS is off
// or cannot run here (no cgroup v2, no CAP_NET_ADMIN): connect capture goes
// on without names. stop releases the kernel objects once nothing looks up.
func startDNS(ctx context.Context, cfg agentConfig, p *agent.Pipeline, identities *agent.IdentityEncoder,
	reg prometheus.Registerer, lost *prometheus.CounterVec, logger *slog.Logger) (names *agent.DNS, stop func()) {
	if cfg.DNS == "off" {
		logger.Info("DNS capture is off: server.address is the peer address", "CONNAUDIT_DNS", cfg.DNS)
		return nil, func() {}
	}
	err := caps.Require([]caps.Need{caps.DNS})
	var root string
	if err == nil {
		// The host's hierarchy, as for the cgroup resolver: the agent's own
		// cgroup namespace would show only its own cgroup.
		root, err = cgroup.V2Root(cfg.CgroupRoot)
	}
	if err == nil {
		var c *capture.Capture
		if c, err = capture.Load(capture.Config{RingBufferBytes: cfg.DNSRingBufferBytes, CgroupRoot: root}); err == nil {
			cache := dns.NewCache(dns.CacheConfig{EntriesPerNetns: cfg.DNSCacheEntries, Netns: 4096, Grace: cfg.DNSGrace})
			d := &agent.DNS{Packets: c, Cache: cache, Trail: p.Trail, Cgroups: p.Cgroups, Kubernetes: p.Kubernetes,
				Identities: identities, Clock: bpf.NewBootClock(), Metrics: agent.NewDNSMetrics(reg, cache), Lost: lost,
				Log: logger.With("component", "dns"), DedupEntries: 65536,
				HoldTimeout: cfg.HoldTimeout, HoldMax: 1024}
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { d.Run(runCtx); close(done) }()
			logger.Info("capturing DNS answers", "cgroup", root)
			return d, func() { cancel(); <-done; c.Close() }
		}
	}
	logger.Warn("DNS capture disabled: connects are recorded without names (set CONNAUDIT_DNS=off to silence this)", "err", err)
	return nil, func() {}
}

var _ agent.Names = (*agent.DNS)(nil)
