package shipper

import (
	"github.com/connaudit/connaudit/trail"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the agent's Prometheus counters for capture and delivery.
type Metrics struct {
	Captured       prometheus.Counter
	Spooled        prometheus.Counter
	Exported       prometheus.Counter
	Lost           *prometheus.CounterVec
	Degraded       *prometheus.CounterVec
	ExportRetries  prometheus.Counter
	ExportRestarts prometheus.Counter
	AckErrors      prometheus.Counter
	ExportDuration prometheus.Histogram
	// ConnectToSpool is the time from a connect attempt's outcome in the
	// kernel to its record in the spool: what holding for identity and DNS
	// answers, and any backlog, add before a record is durable.
	ConnectToSpool prometheus.Histogram
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Captured: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "connaudit_events_captured_total", Help: "Connect attempts read from the kernel.",
		}),
		Spooled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "connaudit_records_spooled_total", Help: "Records appended to the spool.",
		}),
		Exported: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "connaudit_records_exported_total", Help: "Records the collector accepted.",
		}),
		Lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "connaudit_records_lost_total", Help: "Records or identities lost, by reason.",
		}, []string{"reason"}),
		Degraded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "connaudit_records_degraded_total", Help: "Records shipped with less identity than they should have had, by reason.",
		}, []string{"reason"}),
		ExportRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "connaudit_export_retries_total", Help: "Export attempts that failed and were retried.",
		}),
		ExportRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "connaudit_export_restarts_total", Help: "Times the export loop failed and was restarted.",
		}),
		AckErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "connaudit_spool_ack_errors_total", Help: "Acknowledgements whose segment removal or cursor write failed (retried).",
		}),
		ExportDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "connaudit_export_duration_seconds", Help: "Time to export one batch, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		ConnectToSpool: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "connaudit_connect_to_spool_seconds", Help: "Time from a connect attempt's outcome in the kernel to its record in the spool.",
			// Factor 1.5 from 50µs to 10s, so that quantiles read from the
			// buckets are within half a bucket of the truth.
			Buckets: prometheus.ExponentialBucketsRange(50e-6, 10, 31),
		}),
	}
	for _, r := range trail.LossReasons {
		m.Lost.WithLabelValues(string(r))
	}
	for _, r := range trail.DegradedReasons {
		m.Degraded.WithLabelValues(string(r))
	}
	reg.MustRegister(m.Captured, m.Spooled, m.Exported, m.Lost, m.Degraded, m.ExportRetries, m.ExportRestarts, m.AckErrors, m.ExportDuration, m.ConnectToSpool)
	return m
}
