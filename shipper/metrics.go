package shipper

import "github.com/prometheus/client_golang/prometheus"

// Loss reasons, as they appear in connaudit.lost.reason and in metrics.
const (
	LossRingBuffer   = "ring_buffer"   // the kernel found the event ring buffer full
	LossSpoolFull    = "spool_full"    // the spool was at CONNAUDIT_SPOOL_MAX_BYTES
	LossSpoolError   = "spool_error"   // the spool could not write (disk full, I/O error)
	LossSpoolCorrupt = "spool_corrupt" // unreadable spool data found at start
	LossRejected     = "rejected"      // the collector refused records (OTLP partial success, or refused for good)
	LossUndecodable  = "undecodable"   // a spooled record this version cannot decode
	// LossCaptureReplaced: pinned capture of an incompatible version was replaced; what it held is lost.
	LossCaptureReplaced = "capture_replaced"
)

// Reasons a record was shipped with less identity, as they appear in
// connaudit.degraded.reason and in metrics. Such records are not missing.
const (
	DegradedHandshakeMap = "handshake_map" // a handshake was evicted; its attempt was shipped without process identity
	DegradedHoldQueue    = "hold_queue"    // the hold queue was full; shipped without waiting for its pod
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
	}
	for _, r := range []string{LossRingBuffer, LossSpoolFull, LossSpoolError, LossSpoolCorrupt, LossRejected, LossUndecodable, LossCaptureReplaced} {
		m.Lost.WithLabelValues(r)
	}
	for _, r := range []string{DegradedHandshakeMap, DegradedHoldQueue} {
		m.Degraded.WithLabelValues(r)
	}
	reg.MustRegister(m.Captured, m.Spooled, m.Exported, m.Lost, m.Degraded, m.ExportRetries, m.ExportRestarts, m.AckErrors, m.ExportDuration)
	return m
}
