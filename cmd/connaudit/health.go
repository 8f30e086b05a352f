package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/connaudit/connaudit/shipper"
)

// healthServer serves /metrics, /healthz (the process is alive), /readyz
// (capturing, and exports have not been failing for longer than maxFailure)
// and Go's /debug/pprof profiles.
type healthServer struct {
	addr       string
	srv        *http.Server
	ready      atomic.Bool
	exporter   *shipper.Exporter
	maxFailure time.Duration
	log        *slog.Logger
}

func newHealthServer(addr string, reg *prometheus.Registry, x *shipper.Exporter, maxFailure time.Duration, logger *slog.Logger) *healthServer {
	h := &healthServer{addr: addr, exporter: x, maxFailure: maxFailure, log: logger}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", h.readyz)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	h.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return h
}

func (h *healthServer) readyz(w http.ResponseWriter, _ *http.Request) {
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
	w.Write([]byte("ok\n"))
}

func (h *healthServer) setReady(v bool) { h.ready.Store(v) }

func (h *healthServer) start() {
	if h.addr == "" {
		return
	}
	l, err := net.Listen("tcp", h.addr)
	if err != nil {
		// Capture matters more than its health endpoint: carry on, loudly.
		h.log.Error("cannot serve /metrics, /healthz and /readyz", "addr", h.addr, "err", err)
		return
	}
	go h.srv.Serve(l)
}

func (h *healthServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = h.srv.Shutdown(ctx)
}
