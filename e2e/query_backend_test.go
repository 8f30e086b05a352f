package e2e

import (
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connaudit/connaudit/internal/teststack"
)

// testQueryCluster: the same answers through a VictoriaLogs cluster front
// end (the same binary with -storageNode, as vlselect) over the fixture's
// VictoriaLogs as its storage node.
func testQueryCluster(t *testing.T, f *qFixture) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(teststack.Binary(t, "victoria-logs"), "-storageNode="+strings.TrimPrefix(f.vl.URL(), "http://"),
		"-httpListenAddr="+addr, "-storageDataPath="+t.TempDir(), "-loggerLevel=WARN")
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &syncWriter{w: &log}, &syncWriter{w: &log}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	front := "http://" + addr
	if !pollUntil(30*time.Second, func() bool {
		resp, err := http.Get(front + "/health")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	}) {
		t.Fatalf("VictoriaLogs front end not healthy: %s", log.String())
	}
	for _, args := range [][]string{
		{"query", "-o", "json"},
		{"query", "-n", "shop", "-l", "app notin (db)", "--outcome", "failed", "-o", "wide"},
		{"query", "--summary"},
		{"coverage"},
	} {
		direct := runConnaudit(t, nil, append(append(args, "--server", f.vl.URL()), qMainWindow...)...)
		viaFront := runConnaudit(t, nil, append(append(args, "--server", front), qMainWindow...)...)
		if viaFront.code != 0 || viaFront.stdout != direct.stdout || viaFront.stdout == "" {
			t.Errorf("%q through the cluster front end: exit %d, stderr %q\n--- got\n%s\n--- want (direct)\n%s",
				args, viaFront.code, viaFront.stderr, viaFront.stdout, direct.stdout)
		}
	}
}

// testQueryAuthProxy: a backend behind an HTTPS proxy that wants a header
// is reached with --server-ca and --header, or with CONNAUDIT_QUERY_URL and
// CONNAUDIT_QUERY_HEADERS; without the header the proxy's refusal is shown.
func testQueryAuthProxy(t *testing.T, f *qFixture) {
	target, err := url.Parse(f.vl.URL())
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" || r.Header.Get("X-Scope") != "audit" {
			http.Error(w, "missing credentials", http.StatusUnauthorized)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	proxy.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	proxy.StartTLS()
	t.Cleanup(proxy.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	cert := proxy.TLS.Certificates[0].Certificate[0]
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert}), 0o600); err != nil {
		t.Fatal(err)
	}

	want := runConnaudit(t, nil, append([]string{"query", "--server", f.vl.URL()}, qMainWindow...)...).stdout
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"flags", nil, []string{"--server", proxy.URL, "--server-ca", caFile, "--header", "Authorization: Bearer s3cret", "--header", "X-Scope: audit"}},
		{"environment", []string{"CONNAUDIT_QUERY_URL=" + proxy.URL, "CONNAUDIT_QUERY_HEADERS=Authorization=Bearer s3cret,X-Scope=audit"}, []string{"--server-ca", caFile}},
		{"insecure", nil, []string{"--server", proxy.URL, "--server-insecure-skip-tls-verify", "--header", "Authorization: Bearer s3cret", "--header", "X-Scope=audit"}},
	} {
		res := runConnaudit(t, tc.env, append(append([]string{"query"}, tc.args...), qMainWindow...)...)
		if res.code != 0 || res.stdout != want {
			t.Errorf("%s: exit %d, stderr %q, stdout:\n%s", tc.name, res.code, res.stderr, res.stdout)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--server", proxy.URL, "--server-ca", caFile}, "401 Unauthorized: missing credentials"},
		{[]string{"--server", proxy.URL, "--header", "Authorization: Bearer s3cret"}, "certificate"},
		{[]string{"--server", proxy.URL, "--header", "nocolon"}, `--header "nocolon"`},
		{[]string{"--server", proxy.URL, "--server-ca", "/nonexistent.pem"}, "--server-ca"},
		{[]string{"--server", "ftp://x"}, `VictoriaLogs URL "ftp://x"`},
	} {
		res := runConnaudit(t, nil, append(append([]string{"query"}, tc.args...), qMainWindow...)...)
		if res.code == 0 || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want an error containing %q", tc.args, res.code, res.stderr, tc.want)
		}
	}
}
