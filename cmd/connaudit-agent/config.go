package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/k8s"
	"github.com/connaudit/connaudit/shipper"
	"github.com/connaudit/connaudit/shipper/otlp"
	"github.com/connaudit/connaudit/trail/checkpoint"
)

// agentConfig is everything the agent reads from CONNAUDIT_* variables. The
// standard OTEL_* variables configure the OTLP exporter and the resource.
type agentConfig struct {
	k8s.Config // CONNAUDIT_KUBERNETES, CONNAUDIT_NODE_NAME, CONNAUDIT_K8S_*

	Output      string     `envconfig:"OUTPUT" default:"otlp" desc:"otlp, or console to print records as JSON on stdout"`
	ClusterName string     `envconfig:"CLUSTER_NAME" desc:"k8s.cluster.name of the records"`
	ListenAddr  string     `envconfig:"LISTEN_ADDR" default:"127.0.0.1:9464" desc:"address of /metrics, /healthz and /readyz; empty disables"`
	PprofAddr   string     `envconfig:"PPROF_ADDR" desc:"loopback address of Go's /debug/pprof profiles; empty (the default) disables"`
	LogLevel    slog.Level `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`

	RingBufferBytes  int    `envconfig:"RING_BUFFER_BYTES" default:"16777216" desc:"kernel event ring buffer, a power of two"`
	HandshakeEntries int    `envconfig:"HANDSHAKE_ENTRIES" default:"65536" desc:"in-flight handshakes tracked; beyond it the oldest lose their identity"`
	BPFPinDir        string `envconfig:"BPF_PIN_DIR" default:"/sys/fs/bpf/connaudit" desc:"bpffs directory where capture is pinned so it survives agent restarts; empty: capture stops with the agent"`

	SpoolDir           string        `envconfig:"SPOOL_DIR" default:"/var/lib/connaudit/spool" desc:"records wait here until the collector accepts them"`
	SpoolMaxBytes      int64         `envconfig:"SPOOL_MAX_BYTES" default:"1073741824" desc:"bound on the spool; beyond it records are dropped and reported as loss"`
	SpoolFsyncInterval time.Duration `envconfig:"SPOOL_FSYNC_INTERVAL" default:"100ms" desc:"group commit interval; a machine crash loses at most this much"`

	ExportBatch        int           `envconfig:"EXPORT_BATCH" default:"2048" desc:"records per OTLP request, at most"`
	ExportMaxDelay     time.Duration `envconfig:"EXPORT_MAX_DELAY" default:"1s" desc:"longest a record waits in the spool for its batch to fill; 0 sends at once"`
	ExportMaxBackoff   time.Duration `envconfig:"EXPORT_MAX_BACKOFF" default:"5s" desc:"longest wait between export retries"`
	ExportTokenFile    string        `envconfig:"EXPORT_TOKEN_FILE" desc:"file holding a bearer token sent with every export (the agent's projected ServiceAccount token on a cluster), read again when it changes; empty: none"`
	ReadyExportFailure time.Duration `envconfig:"READY_EXPORT_FAILURE" default:"60s" desc:"/readyz fails once exports have failed for this long"`
	ShutdownGrace      time.Duration `envconfig:"SHUTDOWN_GRACE" default:"10s" desc:"time to flush the spool at SIGTERM; the rest stays spooled"`

	HeartbeatInterval time.Duration `envconfig:"HEARTBEAT_INTERVAL" default:"10s" desc:"a signed connaudit.checkpoint record at least this often, also when idle"`
	CheckpointRecords uint64        `envconfig:"CHECKPOINT_RECORDS" default:"1000" desc:"a signed connaudit.checkpoint record after this many records at most"`
	SigningKeyFile    string        `envconfig:"SIGNING_KEY_FILE" desc:"Ed25519 private key (PEM, PKCS #8) that signs checkpoints; empty: a key made at start"`
	WitnessNamespace  string        `envconfig:"WITNESS_NAMESPACE" default:"connaudit" desc:"namespace of the node's witness Lease (connaudit-witness-NODE), written when Kubernetes is on; empty: no witness"`

	DNS                string        `envconfig:"DNS" default:"on" desc:"on or off: name connects' peers from the DNS answers their network namespace received (needs CAP_NET_ADMIN)"`
	DNSRingBufferBytes int           `envconfig:"DNS_RING_BUFFER_BYTES" default:"4194304" desc:"kernel ring buffer for DNS answers, a power of two"`
	DNSCacheEntries    int           `envconfig:"DNS_CACHE_ENTRIES" default:"4096" desc:"addresses remembered per network namespace"`
	DNSGrace           time.Duration `envconfig:"DNS_GRACE" default:"5m" desc:"how long after its TTL an answer still names connects"`
	DNSMaxTTL          time.Duration `envconfig:"DNS_MAX_TTL" default:"1h" desc:"cap on the TTL an answer names addresses for"`
	DNSMaxWait         time.Duration `envconfig:"DNS_MAX_WAIT" default:"500ms" desc:"longest a connect is held for DNS answers still being read before it ships without a name; capture goes on meanwhile"`
	DNSAnswersPerSec   int           `envconfig:"DNS_ANSWERS_PER_SECOND" default:"1000" desc:"DNS answers read per network namespace and second (bursts of twice that); the excess is counted as loss and names nothing"`

	HoldQueue int `envconfig:"K8S_HOLD_QUEUE" default:"10000" desc:"events that may wait at once for their pod to reach the cache"`

	// A DaemonSet pod sees the host through mounts, not shared namespaces.
	HostProc   string `envconfig:"HOST_PROC" default:"/proc" desc:"the host's /proc (mounted read-only at /host/proc in a pod without hostPID): executable paths and the host's network namespace"`
	CgroupRoot string `envconfig:"CGROUP_ROOT" desc:"the host's cgroup v2 mount, or its whole cgroup filesystem on a hybrid host; empty: found in /proc/self/mountinfo"`
}

func loadConfig() (agentConfig, error) {
	var c agentConfig
	if err := envconfig.Process("connaudit", &c); err != nil {
		return c, err
	}
	return c, c.validate()
}

func (c agentConfig) validate() error {
	if err := c.Config.Validate(); err != nil {
		return err
	}
	if c.HoldQueue < 0 {
		return fmt.Errorf("CONNAUDIT_K8S_HOLD_QUEUE=%d: must not be negative", c.HoldQueue)
	}
	if c.Output != shipper.OutputOTLP && c.Output != shipper.OutputConsole {
		return fmt.Errorf("CONNAUDIT_OUTPUT=%q: use otlp or console", c.Output)
	}
	if err := c.capture().Validate(); err != nil {
		return fmt.Errorf("CONNAUDIT_RING_BUFFER_BYTES / CONNAUDIT_HANDSHAKE_ENTRIES: %w", err)
	}
	if c.HostProc == "" {
		return fmt.Errorf("CONNAUDIT_HOST_PROC is empty: give the host's /proc (/proc, or /host/proc in a pod)")
	}
	if c.DNS != "on" && c.DNS != "off" {
		return fmt.Errorf("CONNAUDIT_DNS=%q: use on or off", c.DNS)
	}
	if c.DNSRingBufferBytes < 4096 || c.DNSRingBufferBytes&(c.DNSRingBufferBytes-1) != 0 {
		return fmt.Errorf("CONNAUDIT_DNS_RING_BUFFER_BYTES=%d: want a power of two, at least 4096", c.DNSRingBufferBytes)
	}
	if c.DNSCacheEntries < 1 {
		return fmt.Errorf("CONNAUDIT_DNS_CACHE_ENTRIES=%d: want at least 1", c.DNSCacheEntries)
	}
	if c.DNSGrace < 0 {
		return fmt.Errorf("CONNAUDIT_DNS_GRACE=%s: must not be negative", c.DNSGrace)
	}
	if c.DNSMaxTTL < time.Second {
		return fmt.Errorf("CONNAUDIT_DNS_MAX_TTL=%s: want at least 1s", c.DNSMaxTTL)
	}
	if c.DNSMaxWait < 0 || c.DNSMaxWait > 5*time.Second {
		return fmt.Errorf("CONNAUDIT_DNS_MAX_WAIT=%s: want 0 to 5s", c.DNSMaxWait)
	}
	if c.DNSAnswersPerSec < 1 {
		return fmt.Errorf("CONNAUDIT_DNS_ANSWERS_PER_SECOND=%d: want at least 1", c.DNSAnswersPerSec)
	}
	if c.SpoolDir == "" {
		return fmt.Errorf("CONNAUDIT_SPOOL_DIR is empty: give a directory on local disk")
	}
	if c.SpoolMaxBytes < 1<<20 {
		return fmt.Errorf("CONNAUDIT_SPOOL_MAX_BYTES=%d: want at least 1048576 (1 MiB)", c.SpoolMaxBytes)
	}
	for name, d := range map[string]time.Duration{
		"CONNAUDIT_EXPORT_MAX_BACKOFF":   c.ExportMaxBackoff,
		"CONNAUDIT_READY_EXPORT_FAILURE": c.ReadyExportFailure,
	} {
		if d <= 0 {
			return fmt.Errorf("%s=%s: want a positive duration such as 5s", name, d)
		}
	}
	for name, d := range map[string]time.Duration{
		"CONNAUDIT_SPOOL_FSYNC_INTERVAL": c.SpoolFsyncInterval,
		"CONNAUDIT_SHUTDOWN_GRACE":       c.ShutdownGrace,
		"CONNAUDIT_EXPORT_MAX_DELAY":     c.ExportMaxDelay,
	} {
		if d < 0 {
			return fmt.Errorf("%s=%s: must not be negative", name, d)
		}
	}
	if c.HeartbeatInterval < 100*time.Millisecond {
		return fmt.Errorf("CONNAUDIT_HEARTBEAT_INTERVAL=%s: want at least 100ms", c.HeartbeatInterval)
	}
	if c.CheckpointRecords < 1 {
		return fmt.Errorf("CONNAUDIT_CHECKPOINT_RECORDS=%d: want at least 1", c.CheckpointRecords)
	}
	if c.SigningKeyFile != "" {
		if _, err := checkpoint.LoadPrivateKey(c.SigningKeyFile); err != nil {
			return fmt.Errorf("CONNAUDIT_SIGNING_KEY_FILE: %w", err)
		}
	}
	if err := checkHostPort(c.ListenAddr); err != nil {
		return fmt.Errorf("CONNAUDIT_LISTEN_ADDR=%q: %w", c.ListenAddr, err)
	}
	if err := checkLoopback(c.PprofAddr); err != nil {
		return fmt.Errorf("CONNAUDIT_PPROF_ADDR=%q: %w", c.PprofAddr, err)
	}
	if c.ExportBatch < 1 {
		return fmt.Errorf("CONNAUDIT_EXPORT_BATCH=%d: want at least 1", c.ExportBatch)
	}
	if c.Output == shipper.OutputOTLP {
		if c.ExportTokenFile != "" {
			if _, err := otlp.NewTokenFile(c.ExportTokenFile); err != nil {
				return fmt.Errorf("CONNAUDIT_EXPORT_TOKEN_FILE: %w", err)
			}
		}
		return shipper.ValidateOTLPEnv()
	}
	return nil
}

// signingKey is the key that signs checkpoints: the configured one, else a
// new one whose public half only the start record tells.
func (c agentConfig) signingKey() (ed25519.PrivateKey, error) {
	if c.SigningKeyFile != "" {
		k, err := checkpoint.LoadPrivateKey(c.SigningKeyFile)
		if err != nil {
			return nil, fmt.Errorf("CONNAUDIT_SIGNING_KEY_FILE: %w", err)
		}
		return k, nil
	}
	_, k, err := ed25519.GenerateKey(rand.Reader)
	return k, err
}

func (c agentConfig) capture() bpf.Config {
	return bpf.Config{RingBufferBytes: c.RingBufferBytes, HandshakeEntries: c.HandshakeEntries, PinDir: c.BPFPinDir}
}

// checkHostPort accepts an empty address or HOST:PORT with a port number.
func checkHostPort(addr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want HOST:PORT, e.g. 127.0.0.1:9464 or :9464: %w", err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q: want a number from 0 to 65535", port)
	}
	return nil
}

// checkLoopback accepts an empty address or a host:port on a loopback IP.
func checkLoopback(addr string) error {
	if err := checkHostPort(addr); err != nil || addr == "" {
		return err
	}
	host, _, _ := net.SplitHostPort(addr)
	if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
		return fmt.Errorf("profiles are served on loopback only: use 127.0.0.1:PORT or [::1]:PORT")
	}
	return nil
}
