package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connaudit/connaudit/agent"
	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/caps"
	"github.com/connaudit/connaudit/dns"
	"github.com/connaudit/connaudit/dns/capture"
	"github.com/connaudit/connaudit/dns/limit"
	"github.com/connaudit/connaudit/dns/match"
	"github.com/connaudit/connaudit/k8s/cgroup"
)

// startDNS starts DNS capture as configured. It returns nil when DNS is off
// or cannot run here (no cgroup v2, no CAP_NET_ADMIN): connect capture goes
// on without names. stop releases the kernel objects once nothing looks up.
func startDNS(ctx context.Context, cfg agentConfig, p *agent.Pipeline, identities *agent.IdentityEncoder,
	reg prometheus.Registerer, logger *slog.Logger) (names *agent.DNS, stop func()) {
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
			d := newDNS(cfg, c, p, identities, reg, logger)
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

// newDNS sizes DNS handling: a query waits 5 s for its answer (the
// resolver libraries' own timeout), at most 256 per network namespace.
func newDNS(cfg agentConfig, c *capture.Capture, p *agent.Pipeline, identities *agent.IdentityEncoder,
	reg prometheus.Registerer, logger *slog.Logger) *agent.DNS {
	cache := dns.NewCache(dns.CacheConfig{EntriesPerNetns: cfg.DNSCacheEntries, Netns: 4096, Grace: cfg.DNSGrace, MaxTTL: cfg.DNSMaxTTL})
	return &agent.DNS{Packets: c, Cache: cache, Trail: p.Trail, Cgroups: p.Cgroups, Kubernetes: p.Kubernetes,
		Queries:    match.New(match.Config{Lifetime: 5 * time.Second, PerNetns: 256, Max: 65536}),
		Limit:      limit.New(limit.Config{PerSecond: float64(cfg.DNSAnswersPerSec), Burst: 2 * float64(cfg.DNSAnswersPerSec), Netns: 4096}),
		Identities: identities, Clock: bpf.NewBootClock(), Metrics: agent.NewDNSMetrics(reg, cache),
		Log: logger.With("component", "dns"), DedupEntries: 65536,
		HoldTimeout: cfg.HoldTimeout, HoldMax: 1024, StallAfter: 10 * time.Second, Live: p.Live}
}

var _ agent.Names = (*agent.DNS)(nil)
