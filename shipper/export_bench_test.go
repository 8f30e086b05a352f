package shipper

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"

	"github.com/connaudit/connaudit/shipper/otlp"
)

// realisticBatch is a full export batch of tcp.connect records as a node
// running 8 pods makes them: each record has its pod's resource (the agent's
// attributes, the pod's identity, labels and owner) and a peer pod with its
// workload and labels, and distinct addresses, ports and times.
func realisticBatch(n int) [][]byte {
	var resources []*Resource
	for p := range 8 {
		resources = append(resources, NewResource(map[attribute.Key]attribute.Value{
			"service.name": attribute.StringValue("connaudit"), "service.version": attribute.StringValue("v0.4.0"),
			"service.instance.id": attribute.StringValue("5f0c2a9e-8d1b-4c3a-9e7f-0a1b2c3d4e5f"), "host.name": attribute.StringValue("node-a"),
			"k8s.node.name": attribute.StringValue("node-a"), "k8s.cluster.name": attribute.StringValue("prod-eu-1"),
			"k8s.namespace.name": attribute.StringValue("shop"), "k8s.pod.name": attribute.StringValue(fmt.Sprintf("web-5d4f8b7c9-x7k2%d", p)),
			"k8s.pod.uid": attribute.StringValue(fmt.Sprintf("2d6f6e9c-3c0b-4e5d-9d2a-1f0b8c7a6e5%d", p)), "k8s.container.name": attribute.StringValue("app"),
			"container.id":         attribute.StringValue(fmt.Sprintf("%063x%d", 0xabcdef, p)),
			"container.image.name": attribute.StringValue("registry.example/shop/web"), "container.image.tags": attribute.StringSliceValue([]string{"1.4.2"}),
			"k8s.pod.label.app": attribute.StringValue("web"), "k8s.pod.label.tier": attribute.StringValue("frontend"),
			"k8s.pod.label.pod-template-hash":         attribute.StringValue("5d4f8b7c9"),
			"k8s.pod.label.app.kubernetes.io/version": attribute.StringValue("1.4.2"),
			"k8s.deployment.name":                     attribute.StringValue("web"), "k8s.replicaset.name": attribute.StringValue("web-5d4f8b7c9"),
			"connaudit.k8s.service_account.name": attribute.StringValue("web"),
		}))
	}
	var peer AttrList
	peer.String("connaudit.source.kind", "pod")
	peer.String("connaudit.peer.kind", "pod")
	peer.String("connaudit.peer.k8s.namespace.name", "shop")
	peer.String("connaudit.peer.k8s.pod.name", "db-0")
	peer.String("connaudit.peer.k8s.workload.kind", "statefulset")
	peer.String("connaudit.peer.k8s.workload.name", "db")
	peer.String("connaudit.peer.k8s.pod.label.app", "db")
	peer.String("connaudit.peer.k8s.pod.label.statefulset.kubernetes.io/pod-name", "db-0")
	ev := testEvent()
	ev.SetComm("web-server")
	var b ConnectBuilder
	start := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	out := make([][]byte, n)
	for i := range n {
		ev.PID, ev.TID = uint32(4000+i%8), uint32(4000+i%8)
		ev.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 64, 0, byte(10 + i%8)}), uint16(32768+i))
		ev.Peer = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 64, 1, byte(i % 4)}), 5432)
		at := start.Add(time.Duration(i) * 397 * time.Microsecond)
		src := &Source{Resource: resources[i%8], ExecutablePath: "/usr/local/bin/web-server", Attrs: peer.KeyValues()}
		out[i] = appendSeq(bytes.Clone(b.Build(&ev, at, at.Add(210*time.Microsecond), at.Add(3*time.Millisecond), src).Payload()), uint64(i+1))
	}
	return out
}

// BenchmarkExport is the export path per record at full batches of 2,048
// realistic records: reading them from spooled payloads and framing them
// into a request ("frame"), and that plus gzip and the HTTP request to a
// loopback server ("send", the agent's whole export path).
// wire-B/record is the compressed request body.
func BenchmarkExport(b *testing.B) {
	const batch = 2048
	payloads := realisticBatch(batch)
	var body atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		body.Add(n)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	ctx := context.Background()
	exp := otlp.New(otlp.Config{URL: srv.URL + "/v1/logs", Gzip: true, Timeout: 10 * time.Second})
	defer exp.Shutdown(ctx)
	x := NewExporter(ExportConfig{BatchRecords: batch, Version: "bench"}, nil, exp, nil,
		NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	x.read(payloads)
	if len(x.records) != batch || len(x.undecodable) != 0 {
		b.Fatalf("read %d records, %d undecodable", len(x.records), len(x.undecodable))
	}

	perRecord := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/record")
		b.ReportMetric(0, "ns/op")
	}
	b.Run("frame", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			x.read(payloads)
			x.framer.Reset()
			for _, r := range x.records {
				x.framer.Add(r.resource, r.rec)
			}
			x.framer.Bytes()
		}
		perRecord(b)
	})
	b.Run("send", func(b *testing.B) {
		b.ReportAllocs()
		body.Store(0)
		for b.Loop() {
			x.read(payloads)
			if err := x.send(ctx, x.records); err != nil {
				b.Fatal(err)
			}
		}
		perRecord(b)
		b.ReportMetric(float64(body.Load())/float64(b.N*batch), "wire-B/record")
	})
}
