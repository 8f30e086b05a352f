package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBadConfigurationNamesTheVariable(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"CONNAUDIT_OUTPUT": "kafka"}, "CONNAUDIT_OUTPUT"},
		{map[string]string{"CONNAUDIT_RING_BUFFER_BYTES": "1000"}, "CONNAUDIT_RING_BUFFER_BYTES"},
		{map[string]string{"CONNAUDIT_RING_BUFFER_BYTES": "lots"}, "CONNAUDIT_RING_BUFFER_BYTES"},
		{map[string]string{"CONNAUDIT_HANDSHAKE_ENTRIES": "0"}, "CONNAUDIT_HANDSHAKE_ENTRIES"},
		{map[string]string{"CONNAUDIT_SPOOL_MAX_BYTES": "1024"}, "CONNAUDIT_SPOOL_MAX_BYTES"},
		{map[string]string{"CONNAUDIT_SPOOL_DIR": ""}, "CONNAUDIT_SPOOL_DIR"},
		{map[string]string{"CONNAUDIT_SPOOL_FSYNC_INTERVAL": "soon"}, "CONNAUDIT_SPOOL_FSYNC_INTERVAL"},
		{map[string]string{"CONNAUDIT_EXPORT_MAX_BACKOFF": "0s"}, "CONNAUDIT_EXPORT_MAX_BACKOFF"},
		{map[string]string{"CONNAUDIT_EXPORT_BATCH": "0"}, "CONNAUDIT_EXPORT_BATCH"},
		{map[string]string{"CONNAUDIT_LOG_LEVEL": "chatty"}, "CONNAUDIT_LOG_LEVEL"},
		{map[string]string{"CONNAUDIT_LISTEN_ADDR": "9464"}, "CONNAUDIT_LISTEN_ADDR"},
		{map[string]string{"CONNAUDIT_EXPORT_TOKEN_FILE": "/nonexistent/token"}, "CONNAUDIT_EXPORT_TOKEN_FILE"},
		{map[string]string{"CONNAUDIT_LISTEN_ADDR": "127.0.0.1:metrics"}, "CONNAUDIT_LISTEN_ADDR"},
		{map[string]string{"CONNAUDIT_KUBERNETES": "maybe"}, "CONNAUDIT_KUBERNETES"},
		{map[string]string{"CONNAUDIT_KUBERNETES": "on", "CONNAUDIT_NODE_NAME": ""}, "CONNAUDIT_NODE_NAME"},
		{map[string]string{"CONNAUDIT_K8S_HOLD_QUEUE": "-1"}, "CONNAUDIT_K8S_HOLD_QUEUE"},
		{map[string]string{"CONNAUDIT_HOST_PROC": ""}, "CONNAUDIT_HOST_PROC"},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{map[string]string{"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "carrier-pigeon"}, "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"},
		{map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, "OTEL_EXPORTER_OTLP_COMPRESSION"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"}, "OTEL_EXPORTER_OTLP_TIMEOUT"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem"}, "OTEL_EXPORTER_OTLP_CERTIFICATE"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := loadConfig()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v: error %v, want one naming %s", tc.env, err, tc.want)
			}
		})
	}
}

func TestDefaultConfigurationIsValid(t *testing.T) {
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.SpoolDir != "/var/lib/connaudit/spool" || c.Output != "otlp" || c.RingBufferBytes != 1<<24 {
		t.Errorf("defaults: %+v", c)
	}
}

// The real binary stops at start, before touching the kernel, and says why.
func TestAgentRefusesBadConfiguration(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "connaudit-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v: %s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "CONNAUDIT_SPOOL_MAX_BYTES=12")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("the agent started with CONNAUDIT_SPOOL_MAX_BYTES=12")
	}
	if !strings.Contains(string(out), "CONNAUDIT_SPOOL_MAX_BYTES=12") {
		t.Fatalf("message %q does not name the variable", out)
	}
}

// Without privileges the agent says what it needs.
func TestAgentWithoutPrivilegesSaysWhatItNeeds(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root, to drop to an unprivileged user")
	}
	dir, err := os.MkdirTemp("", "connaudit-unprivileged-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "connaudit-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v: %s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "HOME="+dir, "CONNAUDIT_KUBERNETES=off",
		"CONNAUDIT_SPOOL_DIR="+filepath.Join(dir, "spool"), "CONNAUDIT_BPF_PIN_DIR=", "CONNAUDIT_LISTEN_ADDR=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("the agent started without privileges")
	}
	if !strings.Contains(string(out), "run as root") {
		t.Fatalf("message %q does not say what is needed", out)
	}
	t.Logf("%s", out)
}

// A CONNAUDIT_CGROUP_ROOT that is no cgroup hierarchy stops the agent, naming
// the variable, even with Kubernetes enrichment off.
func TestAgentRefusesABadCgroupRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root, to get as far as the cgroup resolver")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "connaudit-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v: %s", err, out)
	}
	missing := filepath.Join(dir, "no-cgroup-here")
	// An agent that ignored the variable would run on: stop it.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), "CONNAUDIT_KUBERNETES=off", "CONNAUDIT_DNS=off", "CONNAUDIT_OUTPUT=console",
		"CONNAUDIT_SPOOL_DIR="+filepath.Join(dir, "spool"), "CONNAUDIT_BPF_PIN_DIR=", "CONNAUDIT_LISTEN_ADDR=",
		"CONNAUDIT_CGROUP_ROOT="+missing)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("the agent started with a CONNAUDIT_CGROUP_ROOT that does not exist")
	}
	if !strings.Contains(string(out), "CONNAUDIT_CGROUP_ROOT="+missing) {
		t.Fatalf("message %q does not name the variable", out)
	}
}
