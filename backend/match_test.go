package backend

import (
	"net/netip"
	"testing"
	"time"

	"github.com/connaudit/connaudit/trail"
	"k8s.io/apimachinery/pkg/labels"
)

var mt0 = time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)

func rec(at time.Duration, kv ...string) Record {
	r := Record{Time: mt0.Add(at), Fields: map[string]string{FieldEventName: EventConnect}}
	for i := 0; i < len(kv); i += 2 {
		r.Fields[kv[i]] = kv[i+1]
	}
	return r
}

// web is a pod of Deployment web (ReplicaSet web-5d4f8) connecting to a
// peer pod of StatefulSet db.
var web = rec(time.Second,
	FieldNamespace, "shop", FieldPod, "web-1", FieldPodUID, "uid-1", FieldContainer, "app", FieldContainerID, "c1",
	FieldNode, "node-a", FieldSourceKind, "pod", "k8s.deployment.name", "web", "k8s.replicaset.name", "web-5d4f8",
	FieldPodLabelPrefix+"app", "web", FieldPodLabelPrefix+"tier", "frontend", FieldPodLabelPrefix+"empty", "",
	FieldComm, "curl", FieldPID, "100", FieldUID, "1000",
	FieldDstAddr, "10.0.1.5", FieldDstPort, "5432", FieldDstName, "db.shop.svc.cluster.local", FieldOutcome, "established",
	FieldPeerKind, "pod", FieldPeerNamespace, "shop", FieldPeerPod, "db-0", FieldPeerWorkloadKind, "statefulset", FieldPeerWorkloadName, "db",
	FieldServiceInstanceID, "i1", FieldSeq, "7")

var host = rec(2*time.Second, FieldNode, "node-b", FieldSourceKind, "host", FieldComm, "kubelet", FieldPID, "1", FieldUID, "0",
	FieldDstAddr, "2001:db8::53", FieldDstPort, "53", FieldDstName, "ns1.example.com", FieldOutcome, "refused", FieldPeerKind, "external")

// unenriched is a record of an agent without Kubernetes enrichment.
var unenriched = rec(3*time.Second, FieldNode, "node-c", FieldComm, "wget", FieldDstAddr, "1.0.0.1", FieldDstPort, "443", FieldOutcome, "timeout")

func sel(t *testing.T, s string) labels.Selector {
	t.Helper()
	l, err := labels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestMatch(t *testing.T) {
	pfx := func(s string) []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix(s)} }
	for _, tc := range []struct {
		name string
		f    Filter
		want [3]bool // web, host, unenriched
	}{
		{"empty filter", Filter{}, [3]bool{true, true, true}},
		{"window [From, To)", Filter{From: mt0.Add(time.Second), To: mt0.Add(3 * time.Second)}, [3]bool{true, true, false}},
		{"window excludes To", Filter{From: mt0, To: mt0.Add(time.Second)}, [3]bool{false, false, false}},
		{"namespace", Filter{Namespaces: []string{"shop", "billing"}}, [3]bool{true, false, false}},
		{"pod", Filter{Pods: []string{"web-1"}}, [3]bool{true, false, false}},
		{"container", Filter{Containers: []string{"app"}}, [3]bool{true, false, false}},
		{"node", Filter{Nodes: []string{"node-b", "node-c"}}, [3]bool{false, true, true}},
		{"workload deployment", Filter{Workloads: []Workload{{"deployment", "web"}}}, [3]bool{true, false, false}},
		{"workload replicaset under a deployment", Filter{Workloads: []Workload{{"replicaset", "web-5d4f8"}}}, [3]bool{true, false, false}},
		{"workload pod", Filter{Workloads: []Workload{{"pod", "web-1"}}}, [3]bool{true, false, false}},
		{"workload other name", Filter{Workloads: []Workload{{"deployment", "api"}, {"statefulset", "web"}}}, [3]bool{false, false, false}},
		{"selector =", Filter{Selector: sel(t, "app=web")}, [3]bool{true, false, false}},
		{"selector != matches without the label", Filter{Selector: sel(t, "app!=db")}, [3]bool{true, true, true}},
		{"selector notin", Filter{Selector: sel(t, "tier notin (frontend)")}, [3]bool{false, true, true}},
		{"selector exists", Filter{Selector: sel(t, "tier")}, [3]bool{true, false, false}},
		{"selector !exists", Filter{Selector: sel(t, "!tier")}, [3]bool{false, true, true}},
		{"selector: an empty value is absent", Filter{Selector: sel(t, "empty")}, [3]bool{false, false, false}},
		{"selector key= matches nothing", Filter{Selector: sel(t, "empty=")}, [3]bool{false, false, false}},
		{"selector key!= matches all", Filter{Selector: sel(t, "app!=")}, [3]bool{true, true, true}},
		{"selector gt", Filter{Selector: sel(t, "app>1")}, [3]bool{false, false, false}},
		{"labels.Everything", Filter{Selector: labels.Everything()}, [3]bool{true, true, true}},
		{"host only", Filter{HostOnly: true}, [3]bool{false, true, true}},
		{"comm", Filter{Comms: []string{"kubelet", "wget"}}, [3]bool{false, true, true}},
		{"pid", Filter{PIDs: []int{100}}, [3]bool{true, false, false}},
		{"uid", Filter{UIDs: []int{0}}, [3]bool{false, true, false}},
		{"dst v4 prefix", Filter{Dst: pfx("10.0.0.0/16")}, [3]bool{true, false, false}},
		{"dst v4 address", Filter{Dst: pfx("1.0.0.1/32")}, [3]bool{false, false, true}},
		{"dst v6 prefix", Filter{Dst: pfx("2001:db8::/32")}, [3]bool{false, true, false}},
		{"dst ::/0 holds no IPv4 address", Filter{Dst: pfx("::/0")}, [3]bool{false, true, false}},
		{"dst v4-mapped prefix is IPv4", Filter{Dst: pfx("::ffff:10.0.0.0/112")}, [3]bool{true, false, false}},
		{"dst 0.0.0.0/0", Filter{Dst: pfx("0.0.0.0/0")}, [3]bool{true, false, true}},
		{"dport", Filter{DstPorts: []int{53, 443}}, [3]bool{false, true, true}},
		{"dst name exact", Filter{DstNames: []string{"ns1.example.com"}}, [3]bool{false, true, false}},
		{"dst name any case, final dot", Filter{DstNames: []string{"NS1.Example.COM."}}, [3]bool{false, true, false}},
		{"dst name suffix", Filter{DstNames: []string{"*.example.com"}}, [3]bool{false, true, false}},
		{"dst name suffix is below only", Filter{DstNames: []string{"*.ns1.example.com"}}, [3]bool{false, false, false}},
		{"dst name suffix on a label boundary", Filter{DstNames: []string{"*.ample.com"}}, [3]bool{false, false, false}},
		{"peer namespace", Filter{PeerNamespaces: []string{"shop"}}, [3]bool{true, false, false}},
		{"peer pod", Filter{PeerPods: []string{"db-0"}}, [3]bool{true, false, false}},
		{"peer service", Filter{PeerServices: []string{"db"}}, [3]bool{false, false, false}},
		{"peer workload", Filter{PeerWorkloads: []Workload{{"statefulset", "db"}}}, [3]bool{true, false, false}},
		{"peer workload kind must match", Filter{PeerWorkloads: []Workload{{"deployment", "db"}}}, [3]bool{false, false, false}},
		{"peer workload pod", Filter{PeerWorkloads: []Workload{{"pod", "db-0"}}}, [3]bool{true, false, false}},
		{"peer kind", Filter{PeerKinds: []string{"external"}}, [3]bool{false, true, false}},
		{"outcome", Filter{Outcomes: []string{"refused", "timeout"}}, [3]bool{false, true, true}},
		{"outcome failed", Filter{Outcomes: []string{OutcomeFailed}}, [3]bool{false, true, true}},
		{"outcome failed or established", Filter{Outcomes: []string{OutcomeFailed, "established"}}, [3]bool{true, true, true}},
		{"AND of fields", Filter{Namespaces: []string{"shop"}, DstPorts: []int{53}}, [3]bool{false, false, false}},
	} {
		for i, r := range []Record{web, host, unenriched} {
			if got := Match(tc.f, r); got != tc.want[i] {
				t.Errorf("%s: record %d: Match = %v, want %v", tc.name, i, got, tc.want[i])
			}
		}
	}
}

func TestMatchOnlyConnects(t *testing.T) {
	r := rec(time.Second, FieldNode, "node-a")
	r.Fields[FieldEventName] = EventLoss
	if Match(Filter{}, r) {
		t.Error("a connaudit.loss record matched a connect filter")
	}
}

func TestRecordKey(t *testing.T) {
	if k, ok := web.Key(); !ok || k != (trail.RecordKey{Instance: "i1", Seq: "7"}) {
		t.Errorf("Key = %v, %v", k, ok)
	}
	if _, ok := host.Key(); ok {
		t.Error("a record without instance and seq has a key")
	}
}
