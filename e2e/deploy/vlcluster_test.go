package deploy

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/connaudit/connaudit/internal/netnstest"
	"github.com/connaudit/connaudit/internal/teststack"
)

// The victorialogs-cluster overlay for real: the real victoria-logs binary
// with the overlay's own arguments as two storage nodes behind insert and
// select front ends, the gateway with the base's rendered configuration
// writing to vlinsert, and records read back through vlselect with LogsQL
// over HTTP. Only the VL-Stream-Fields attributes make the stream.
func TestVictoriaLogsClusterMode(t *testing.T) {
	r := render(t, "k8s/deploy/overlays/victorialogs-cluster")
	specs := r.podSpecs()
	storage := r.statefulSet(t, "vlstorage")
	var storageArgs [][]string
	for i := 0; i < int(*storage.Spec.Replicas); i++ {
		storageArgs = append(storageArgs, storage.Spec.Template.Spec.Containers[0].Args)
	}
	vc := teststack.StartVictoriaLogsCluster(t, storageArgs,
		specs["Deployment/vlinsert"].Containers[0].Args, specs["Deployment/vlselect"].Containers[0].Args)

	config := writeFile(t, t.TempDir(), "config.yaml", r.configMapData(t, "connaudit-collector", "config.yaml"))
	col, tokenEnv := startGateway(t, vc.InsertURL(), []string{config})
	teststack.StartAgent(t, col, append(tokenEnv, "CONNAUDIT_CLUSTER_NAME=vl-cluster-test")...)

	listener := netnstest.Listen(t, "tcp4", "127.0.0.1:0")
	const connects = 20
	for i := 0; i < connects; i++ {
		c, err := net.Dial("tcp4", listener.String())
		must(t, err, "connect")
		c.Close()
	}
	query := fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d`, listener.Port())
	var rows []map[string]string
	deadline := time.Now().Add(time.Minute)
	for len(rows) < connects {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d records came back through vlselect within a minute", len(rows), connects)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		var err error
		rows, err = vc.Query(ctx, query)
		cancel()
		if err != nil {
			t.Logf("query through vlselect: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(rows) != connects {
		t.Errorf("%d records through vlselect; want %d", len(rows), connects)
	}

	// The storage nodes hold them between them, each record once.
	held := 0
	for i, s := range vc.Storage() {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		got, err := s.Query(ctx, query)
		cancel()
		must(t, err, "query storage node %d", i)
		held += len(got)
	}
	if held != connects {
		t.Errorf("the storage nodes hold %d records; want %d", held, connects)
	}

	// The stream is made of the low-cardinality attributes only.
	stream := rows[0]["_stream"]
	if !strings.Contains(stream, `k8s.cluster.name="vl-cluster-test"`) || !strings.Contains(stream, `service.name="connaudit"`) {
		t.Errorf("stream %s lacks the stream fields of VL-Stream-Fields", stream)
	}
	for _, high := range []string{"service.instance.id", "host.name", "service.version", "event_name"} {
		if strings.Contains(stream, high) {
			t.Errorf("stream %s has %s", stream, high)
		}
	}
	if rows[0]["service.instance.id"] == "" {
		t.Error("service.instance.id is not stored at all; it should be an ordinary field")
	}
}
