package agent

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ExportStatus is what readiness needs to know of the exporter (*shipper.Exporter).
type ExportStatus interface {
	Running() bool
	FailingSince() time.Time
}

// HealthServer serves /metrics, /healthz (the process is alive, and its
// heartbeat not overdue) and /readyz (capturing, the export loop runs,
// exports have not been failing for longer than maxFailure, and every added
// check passes).
type HealthServer struct {
	addr       string
	srv        *http.Server
	ready      atomic.Bool
	exporter   ExportStatus
	maxFailure time.Duration
	log        *slog.Logger
	checksMu   sync.Mutex
	checks     []func() error
	heartbeat  atomic.Pointer[Heartbeat]
}

// WatchHeartbeat makes /healthz fail while hb's beats are overdue: the
// agent is wedged, and its trail says nothing of the node.
func (h *HealthServer) WatchHeartbeat(hb *Heartbeat) { h.heartbeat.Store(hb) }

func (h *HealthServer) healthz(w http.ResponseWriter, _ *http.Request) {
	if hb := h.heartbeat.Load(); hb != nil {
		if last, overdue := hb.Overdue(time.Now()); overdue {
			http.Error(w, "heartbeat overdue: the last checkpoint was written at "+last.UTC().Format(time.RFC3339)+"\n", http.StatusServiceUnavailable)
			return
		}
	}
	w.Write([]byte("ok\n"))
}

// NewHealthServer serves on addr once started; an empty addr serves nothing.
func NewHealthServer(addr string, reg *prometheus.Registry, x ExportStatus, maxFailure time.Duration, logger *slog.Logger) *HealthServer {
	h := &HealthServer{addr: addr, exporter: x, maxFailure: maxFailure, log: logger}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", h.healthz)
	mux.HandleFunc("/readyz", h.readyz)
	h.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return h
}

func (h *HealthServer) readyz(w http.ResponseWriter, _ *http.Request) {
	if !h.ready.Load() {
		http.Error(w, "not capturing\n", http.StatusServiceUnavailable)
		return
	}
	if !h.exporter.Running() {
		http.Error(w, "export loop not running (restarting after an error; see the agent log)\n", http.StatusServiceUnavailable)
		return
	}
	if since := h.exporter.FailingSince(); !since.IsZero() && time.Since(since) > h.maxFailure {
		http.Error(w, "exports failing since "+since.UTC().Format(time.RFC3339)+"\n", http.StatusServiceUnavailable)
		return
	}
	h.checksMu.Lock()
	checks := h.checks
	h.checksMu.Unlock()
	for _, check := range checks {
		if err := check(); err != nil {
			http.Error(w, err.Error()+"\n", http.StatusServiceUnavailable)
			return
		}
	}
	w.Write([]byte("ok\n"))
}

// AddCheck makes /readyz fail while check returns an error (its text).
func (h *HealthServer) AddCheck(check func() error) {
	h.checksMu.Lock()
	defer h.checksMu.Unlock()
	h.checks = append(h.checks, check)
}

// SetReady tells whether capture runs.
func (h *HealthServer) SetReady(v bool) { h.ready.Store(v) }

// Start serves in the background. Capture matters more than its health
// endpoint: a listen error is logged, loudly, and capture carries on.
func (h *HealthServer) Start() {
	serve(h.addr, h.srv, "/metrics, /healthz and /readyz (CONNAUDIT_LISTEN_ADDR)", h.log)
}

// Stop stops serving.
func (h *HealthServer) Stop() { shutdown(h.srv) }

// ProfileServer serves Go's /debug/pprof profiles on its own address, so
// that opening /metrics to Prometheus never opens profiling to the network.
type ProfileServer struct {
	addr string
	srv  *http.Server
	log  *slog.Logger
}

// NewProfileServer serves pprof on addr, which must be a loopback address;
// empty serves nothing.
func NewProfileServer(addr string, logger *slog.Logger) *ProfileServer {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return &ProfileServer{addr: addr, log: logger, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
}

// Start serves in the background.
func (p *ProfileServer) Start() { serve(p.addr, p.srv, "/debug/pprof (CONNAUDIT_PPROF_ADDR)", p.log) }

// Stop stops serving.
func (p *ProfileServer) Stop() { shutdown(p.srv) }

func serve(addr string, srv *http.Server, what string, logger *slog.Logger) {
	if addr == "" {
		return
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		logger.Error("cannot serve "+what, "addr", addr, "err", err)
		return
	}
	go srv.Serve(l)
}

func shutdown(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}
