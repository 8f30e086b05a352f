package k8s

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/connaudit/connaudit/trail"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const (
	benchPods     = 10000
	benchServices = 1000
	benchNodes    = 100
)

// podIP returns an address for pod n. Nothing connects to it: these tests
// only index it.
func podIP(n int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
}

func serviceIP(n int) netip.Addr {
	return netip.AddrFrom4([4]byte{172, 20, byte(n >> 8), byte(n)})
}

func nodeIP(n int) netip.Addr {
	return netip.AddrFrom4([4]byte{192, 168, byte(n >> 8), byte(n)})
}

// BenchmarkSource looks up the containers of 10,000 pods that all run on
// this node (far more than a node holds), fed through the node informer's
// transform and handler.
func BenchmarkSource(b *testing.B) {
	e := newTestEnricher(b, Config{NodeName: "node-a"})
	uids := make([]string, benchPods)
	cids := make([]string, benchPods)
	for i := range benchPods {
		p := genPod(i, "node-a")
		feedNodePod(b, e, p)
		uids[i] = string(p.UID)
		cids[i] = hexID(2 * i)
	}
	now := time.Now()
	if w, st := e.Source(uids[42], cids[42], now); st != SourceResolved || w.ContainerName != "app" {
		b.Fatalf("Source = %v, %v", w, st)
	}

	b.Run("container", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, st := e.Source(uids[i], cids[i], now); st != SourceResolved {
				b.Fatal(st)
			}
			i++
			if i == benchPods {
				i = 0
			}
		}
	})
	b.Run("pod", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, st := e.Source(uids[i], "", now); st != SourceResolved {
				b.Fatal(st)
			}
			i++
			if i == benchPods {
				i = 0
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, st := e.Source(uids[i], cids[i], now); st != SourceResolved {
					b.Error(st)
					return
				}
				i++
				if i == benchPods {
					i = 0
				}
			}
		})
	})
}

// BenchmarkPeer classifies addresses against 10,000 pods, 1,000 Services and
// 100 nodes fed through the cluster-wide informers' transforms and handlers:
// a pod, Service, node, loopback and external address in turn.
func BenchmarkPeer(b *testing.B) {
	e := newTestEnricher(b, Config{NodeName: "node-a"})
	for i := range benchPods {
		feedClusterPod(b, e, genPod(i, fmt.Sprintf("node-%d", i%benchNodes)), true)
	}
	for i := range benchServices {
		feedService(b, e, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc%d", i), Namespace: fmt.Sprintf("ns%d", i%50), UID: types.UID(fmt.Sprintf("svc-%d", i))},
			Spec:       corev1.ServiceSpec{ClusterIP: serviceIP(i).String(), ClusterIPs: []string{serviceIP(i).String()}},
		}, true)
	}
	for i := range benchNodes {
		feedNode(b, e, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", i), UID: types.UID(fmt.Sprintf("node-%d", i))},
			Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: nodeIP(i).String()}}},
		}, true)
	}
	e.peersSynced.Store(true)

	type probe struct {
		addr netip.Addr
		kind trail.PeerKind
	}
	var probes []probe
	for i := range benchPods {
		probes = append(probes, probe{podIP(i), trail.PeerPod})
		if i%10 == 0 {
			probes = append(probes, probe{serviceIP(i / 10), trail.PeerService})
		}
		if i%100 == 0 {
			probes = append(probes,
				probe{nodeIP(i / 100), trail.PeerNode},
				probe{netip.MustParseAddr("127.0.0.1"), trail.PeerLoopback},
				probe{netip.AddrFrom4([4]byte{198, 51, 100, byte(i / 100)}), trail.PeerExternal})
		}
	}
	now := time.Now()
	for _, p := range probes {
		if got := e.Peer(p.addr, now).Kind; got != p.kind {
			b.Fatalf("Peer(%s) = %s, want %s", p.addr, got, p.kind)
		}
	}

	b.Run("mixed", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			e.Peer(probes[i].addr, now)
			i++
			if i == len(probes) {
				i = 0
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				e.Peer(probes[i].addr, now)
				i++
				if i == len(probes) {
					i = 0
				}
			}
		})
	})
}
