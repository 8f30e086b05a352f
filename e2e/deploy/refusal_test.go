package deploy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/connaudit/connaudit/internal/netnstest"
	"github.com/connaudit/connaudit/internal/teststack"
	"github.com/connaudit/connaudit/trail"
)

// refusingProxy stands in front of VictoriaLogs and answers 400, as
// VictoriaLogs does for a request it cannot take, to every request that
// carries marker; it forwards the others.
func refusingProxy(t *testing.T, backend, marker string) (addr string, refused *atomic.Int64) {
	t.Helper()
	target, err := url.Parse(backend)
	must(t, err, "parse %s", backend)
	forward := httputil.NewSingleHostReverseProxy(target)
	dec, err := zstd.NewReader(nil)
	must(t, err, "zstd reader")
	refused = &atomic.Int64{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		plain := body
		if r.Header.Get("Content-Encoding") == "zstd" {
			if plain, err = dec.DecodeAll(body, nil); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
		}
		if bytes.Contains(plain, []byte(marker)) {
			refused.Add(1)
			http.Error(w, "cannot parse the request", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		forward.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, refused
}

// A record that VictoriaLogs refuses for good, behind the shipped gateway,
// leaves a loss record that names its seq, and stops nothing else: the
// gateway acknowledges only what VictoriaLogs took, answers the agent with a
// permanent error, and the agent isolates the record and accounts for it.
func TestVictoriaLogsRefusalIsALossRecord(t *testing.T) {
	r := render(t, "k8s/deploy")
	config := writeFile(t, t.TempDir(), "config.yaml", r.configMapData(t, "connaudit-collector", "config.yaml"))
	vl := teststack.StartVictoriaLogs(t)
	const marker = "vlrefuses" // the executable name of the refused connect
	proxy, refused := refusingProxy(t, vl.URL(), marker)
	col, agentEnv := startGateway(t, proxy, []string{config})
	agent := teststack.StartAgent(t, col, append(agentEnv, "CONNAUDIT_KUBERNETES=off")...)

	listener := netnstest.Listen(t, "tcp4", "127.0.0.1:0")
	dial := func(n int) {
		for range n {
			conn, err := net.Dial("tcp4", listener.String())
			must(t, err, "connect")
			conn.Close()
		}
	}
	bash, err := exec.LookPath("bash")
	must(t, err, "bash")
	refusedBin := filepath.Join(t.TempDir(), marker)
	data, err := os.ReadFile(bash)
	must(t, err, "read bash")
	must(t, os.WriteFile(refusedBin, data, 0o755), "copy bash")

	const before, after = 20, 20
	dial(before)
	port := strconv.Itoa(int(listener.Port()))
	if out, err := exec.Command(refusedBin, "-c", "exec 3<>/dev/tcp/127.0.0.1/"+port).CombinedOutput(); err != nil {
		t.Fatalf("%s connect: %v\n%s", marker, err, out)
	}
	dial(after)

	peer := fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d`, listener.Port())
	vl.WaitFor(t, peer+` process.executable.name:!="`+marker+`"`, before+after, time.Minute)
	loss := vl.WaitFor(t, fmt.Sprintf(`event_name:=%q %s:=%q`, trail.EventLoss, trail.KeyLostReason, trail.LossRejected), 1, time.Minute)[0]
	first, last := loss[string(trail.KeyLostSeqFirst)], loss[string(trail.KeyLostSeqLast)]
	if first == "" || first != last || loss[string(trail.KeyLostCount)] != "1" {
		t.Fatalf("loss record %v: want one record lost, named by its seq", loss)
	}
	rows, err := vl.Query(t.Context(), fmt.Sprintf(`%s:=%s`, trail.KeySeq, first))
	must(t, err, "query seq %s", first)
	if len(rows) != 0 {
		t.Errorf("seq %s is both stored and reported lost: %v", first, rows)
	}
	seq, err := strconv.Atoi(first)
	must(t, err, "seq %q", first)
	for _, s := range []int{seq - 1, seq + 1} {
		rows, err := vl.Query(t.Context(), fmt.Sprintf(`%s:=%d`, trail.KeySeq, s))
		must(t, err, "query seq %d", s)
		if len(rows) != 1 {
			t.Errorf("seq %d beside the lost one: %d records stored, want 1", s, len(rows))
		}
	}
	if refused.Load() == 0 {
		t.Error("the proxy refused nothing: the marked connect never reached VictoriaLogs' door")
	}
	if !agent.Ready() {
		t.Errorf("the agent is not ready after the refusal: %s", agent.LogTail(2048))
	}
}
