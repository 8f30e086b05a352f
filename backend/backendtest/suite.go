package backendtest

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/connaudit/connaudit/backend"
	"github.com/connaudit/connaudit/trail/coverage"
)

// Run asks b, a store that holds Batches, every question of the suite, and
// checks its answers.
func Run(t *testing.T, b backend.Backend) {
	t.Run("records", func(t *testing.T) { testRecords(t, b) })
	t.Run("limit", func(t *testing.T) { testLimit(t, b) })
	t.Run("summary", func(t *testing.T) { testSummary(t, b) })
	t.Run("flows", func(t *testing.T) { testFlows(t, b) })
	t.Run("coverage", func(t *testing.T) { testCoverage(t, b) })
	t.Run("trail", func(t *testing.T) { testTrail(t, b) })
}

var all = []string{"edge-from", "web1-db", "web1-api", "web1-ext", "web3-db", "db-ext6", "pay-gw", "lone-node",
	"host-kubelet", "host-ext", "web1-db-reset", "unenriched", "h-sshd"}

func allBut(drop ...string) []string {
	return slices.DeleteFunc(slices.Clone(all), func(n string) bool { return slices.Contains(drop, n) })
}

func main() backend.Filter { return backend.Filter{From: Main[0], To: Main[1]} }

func mustSelector(s string) labels.Selector {
	sel, err := labels.Parse(s)
	if err != nil {
		panic(err)
	}
	return sel
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// RecordCase is one question of Records: the filter (in the main window
// unless it says otherwise) and the names of the answer, oldest first.
type RecordCase struct {
	Name   string
	Filter func(*backend.Filter)
	Want   []string
}

// RecordCases hold an answer to every field of backend.Filter.
var RecordCases = []RecordCase{
	{"everything", func(*backend.Filter) {}, all},
	{"namespace", func(f *backend.Filter) { f.Namespaces = []string{"shop"} }, []string{"web1-db", "web1-api", "web1-ext", "web3-db", "db-ext6", "web1-db-reset"}},
	{"namespaces", func(f *backend.Filter) { f.Namespaces = []string{"billing", "nowhere"} }, []string{"pay-gw", "lone-node"}},
	{"pod", func(f *backend.Filter) { f.Pods = []string{"web-5d4f8-x1"} }, []string{"web1-db", "web1-api", "web1-ext", "web1-db-reset"}},
	{"container", func(f *backend.Filter) { f.Containers = []string{"postgres"} }, []string{"db-ext6"}},
	{"node", func(f *backend.Filter) { f.Nodes = []string{"node-b"} }, []string{"web3-db", "db-ext6", "lone-node", "host-ext"}},
	{"workload deployment, across ReplicaSets", func(f *backend.Filter) { f.Workloads = []backend.Workload{{Kind: "deployment", Name: "web"}} },
		[]string{"web1-db", "web1-api", "web1-ext", "web3-db", "web1-db-reset"}},
	{"workload replicaset", func(f *backend.Filter) { f.Workloads = []backend.Workload{{Kind: "replicaset", Name: "web-6e7a9"}} }, []string{"web3-db"}},
	{"workloads statefulset or pod", func(f *backend.Filter) {
		f.Workloads = []backend.Workload{{Kind: "statefulset", Name: "db"}, {Kind: "pod", Name: "lone"}}
	}, []string{"db-ext6", "lone-node"}},
	{"selector =", func(f *backend.Filter) { f.Selector = mustSelector("app=web") }, []string{"web1-db", "web1-api", "web1-ext", "web3-db", "web1-db-reset"}},
	{"selector in, !=", func(f *backend.Filter) { f.Selector = mustSelector("app in (web,db),tier!=frontend") }, []string{"db-ext6"}},
	{"selector != matches without the label", func(f *backend.Filter) { f.Selector = mustSelector("app!=web") },
		[]string{"edge-from", "db-ext6", "pay-gw", "lone-node", "host-kubelet", "host-ext", "unenriched", "h-sshd"}},
	{"selector exists", func(f *backend.Filter) { f.Selector = mustSelector("team") }, []string{"pay-gw"}},
	{"selector !exists", func(f *backend.Filter) { f.Selector = mustSelector("!team") }, allBut("pay-gw")},
	{"selector: an empty label is absent", func(f *backend.Filter) { f.Selector = mustSelector("canary") }, nil},
	{"selector key= matches nothing", func(f *backend.Filter) { f.Selector = mustSelector("canary=") }, nil},
	{"selector key!= matches everything", func(f *backend.Filter) { f.Selector = mustSelector("canary!=") }, all},
	{"selector notin", func(f *backend.Filter) { f.Selector = mustSelector("tier notin (frontend,backend)") },
		[]string{"edge-from", "pay-gw", "lone-node", "host-kubelet", "host-ext", "unenriched", "h-sshd"}},
	{"selector gt", func(f *backend.Filter) { f.Selector = mustSelector("rank>3") }, []string{"web1-db", "web1-api", "web1-ext", "web3-db", "web1-db-reset"}},
	{"host only, with or without enrichment", func(f *backend.Filter) { f.HostOnly = true }, []string{"edge-from", "host-kubelet", "host-ext", "unenriched", "h-sshd"}},
	{"comm", func(f *backend.Filter) { f.Comms = []string{"curl"} }, []string{"web1-db", "web1-api", "web1-ext", "host-ext", "web1-db-reset"}},
	{"pid", func(f *backend.Filter) { f.PIDs = []int{1, 600} }, []string{"host-kubelet", "host-ext"}},
	{"uid", func(f *backend.Filter) { f.UIDs = []int{999} }, []string{"db-ext6"}},
	{"dst IPv4 prefix", func(f *backend.Filter) { f.Dst = prefixes("10.0.0.0/16") }, []string{"web1-db", "web3-db", "lone-node", "web1-db-reset"}},
	{"dst IPv4 address", func(f *backend.Filter) { f.Dst = prefixes("1.0.0.1/32") }, []string{"web1-ext"}},
	{"dst IPv6 prefix", func(f *backend.Filter) { f.Dst = prefixes("2001:db8::/32") }, []string{"db-ext6"}},
	{"dst ::/0 holds no IPv4 peer", func(f *backend.Filter) { f.Dst = prefixes("::/0") }, []string{"db-ext6"}},
	{"dst IPv4-mapped prefix is IPv4", func(f *backend.Filter) { f.Dst = prefixes("::ffff:1.0.0.0/120") }, []string{"web1-ext", "host-ext"}},
	{"dst 0.0.0.0/0", func(f *backend.Filter) { f.Dst = prefixes("0.0.0.0/0") }, allBut("db-ext6")},
	{"dst prefixes", func(f *backend.Filter) { f.Dst = prefixes("203.0.113.0/24", "2001:db8::53/128") }, []string{"db-ext6", "unenriched", "h-sshd"}},
	{"dport", func(f *backend.Filter) { f.DstPorts = []int{5432} }, []string{"web1-db", "web3-db", "web1-db-reset"}},
	{"dst name", func(f *backend.Filter) { f.DstNames = []string{"api.example.com"} }, []string{"web1-ext"}},
	{"dst name in any case, with a final dot", func(f *backend.Filter) { f.DstNames = []string{"API.Example.COM."} }, []string{"web1-ext"}},
	{"dst name suffix", func(f *backend.Filter) { f.DstNames = []string{"*.example.com"} }, []string{"web1-ext", "db-ext6"}},
	{"dst name longer suffix", func(f *backend.Filter) { f.DstNames = []string{"*.dns.example.com"} }, []string{"db-ext6"}},
	{"peer namespace", func(f *backend.Filter) { f.PeerNamespaces = []string{"shop"} }, []string{"web1-db", "web1-api", "web3-db", "web1-db-reset"}},
	{"peer pod", func(f *backend.Filter) { f.PeerPods = []string{"db-0"} }, []string{"web1-db", "web3-db", "web1-db-reset"}},
	{"peer service", func(f *backend.Filter) { f.PeerServices = []string{"gateway"} }, []string{"pay-gw"}},
	{"peer workload", func(f *backend.Filter) { f.PeerWorkloads = []backend.Workload{{Kind: "statefulset", Name: "db"}} }, []string{"web1-db", "web3-db", "web1-db-reset"}},
	{"peer workload of another kind", func(f *backend.Filter) { f.PeerWorkloads = []backend.Workload{{Kind: "deployment", Name: "db"}} }, nil},
	{"peer workload pod", func(f *backend.Filter) { f.PeerWorkloads = []backend.Workload{{Kind: "pod", Name: "db-0"}} }, []string{"web1-db", "web3-db", "web1-db-reset"}},
	{"peer kinds", func(f *backend.Filter) { f.PeerKinds = []string{"node", "loopback"} }, []string{"edge-from", "lone-node", "host-kubelet"}},
	{"peer kind unknown", func(f *backend.Filter) { f.PeerKinds = []string{"unknown"} }, []string{"unenriched"}},
	{"outcome failed", func(f *backend.Filter) { f.Outcomes = []string{backend.OutcomeFailed} }, []string{"web1-ext", "lone-node", "host-ext", "web1-db-reset", "unenriched"}},
	{"outcome established", func(f *backend.Filter) { f.Outcomes = []string{"established"} },
		[]string{"edge-from", "web1-db", "web1-api", "web3-db", "db-ext6", "pay-gw", "host-kubelet", "h-sshd"}},
	{"outcomes", func(f *backend.Filter) { f.Outcomes = []string{"refused", "timeout"} }, []string{"web1-ext", "unenriched"}},
	{"fields combine with AND", func(f *backend.Filter) {
		f.Namespaces, f.Outcomes, f.DstPorts = []string{"shop"}, []string{backend.OutcomeFailed}, []int{5432}
	}, []string{"web1-db-reset"}},
	{"window [From, To)", func(f *backend.Filter) { f.From, f.To = T0.Add(time.Second), T0.Add(3*time.Second) }, []string{"web1-db", "web1-api"}},
	{"window to the edge record", func(f *backend.Filter) { f.To = T0.Add(61 * time.Second) }, append(slices.Clone(all), "edge-to")},
}

func records(t *testing.T, b backend.Backend, f backend.Filter, limit int) (names []string, cut bool) {
	t.Helper()
	rs, err := b.Records(context.Background(), f, limit)
	if err != nil {
		t.Fatalf("Records: %v", err)
	}
	defer rs.Close()
	for rs.Next() {
		names = append(names, name(rs.Record()))
	}
	if err := rs.Err(); err != nil {
		t.Fatalf("Records: %v", err)
	}
	return names, rs.Truncated()
}

func testRecords(t *testing.T, b backend.Backend) {
	for _, tc := range RecordCases {
		f := main()
		tc.Filter(&f)
		got, cut := records(t, b, f, 0)
		if !slices.Equal(got, tc.Want) || cut {
			t.Errorf("%s:\n got %v (truncated %v)\nwant %v", tc.Name, got, cut, tc.Want)
		}
	}
}

func testLimit(t *testing.T, b backend.Backend) {
	for _, tc := range []struct {
		name  string
		f     backend.Filter
		limit int
		want  []string
		cut   bool
	}{
		{"newest 3", main(), 3, []string{"web1-db-reset", "unenriched", "h-sshd"}, true},
		{"as many as there are: not cut, the duplicate once", main(), len(all), all, false},
		{"newest 2 of a namespace", backend.Filter{From: Main[0], To: Main[1], Namespaces: []string{"shop"}}, 2, []string{"db-ext6", "web1-db-reset"}, true},
	} {
		got, cut := records(t, b, tc.f, tc.limit)
		if !slices.Equal(got, tc.want) || cut != tc.cut {
			t.Errorf("%s:\n got %v (truncated %v)\nwant %v (truncated %v)", tc.name, got, cut, tc.want, tc.cut)
		}
	}
}

func offset(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Sub(T0).String()
}

func summaryText(r backend.SummaryRow) string {
	src := r.Source.Namespace + "/" + r.Source.Workload.String()
	if r.Source.Host {
		src = "host " + r.Source.Node + "/" + r.Source.Workload.Name
	}
	peer := r.Peer.Kind + " " + r.Peer.Address
	if r.Peer.Name != "" {
		peer = r.Peer.Kind + " " + r.Peer.Namespace + "/" + r.Peer.Name
	}
	return fmt.Sprintf("%s -> %s :%d %s x%d %s..%s", src, peer, r.Port, r.Outcome, r.Count, offset(r.First), offset(r.Last))
}

func testSummary(t *testing.T, b backend.Backend) {
	for _, tc := range []struct {
		name string
		f    backend.Filter
		want []string // biggest first, then by text
	}{
		{"everything: a Deployment is one source across its ReplicaSets, a duplicate counts once", main(), []string{
			"shop/deployment/web -> pod shop/statefulset/db :5432 established x2 1s..4s",
			"billing/deployment/pay -> service billing/service/gateway :443 established x1 6s..6s",
			"billing/pod/lone -> node /node/node-a :10250 unreachable x1 7s..7s",
			"host node-a/date -> loopback 127.0.0.1 :9 established x1 0s..0s",
			"host node-a/kubelet -> loopback 127.0.0.1 :10248 established x1 8s..8s",
			"host node-b/curl -> external 1.0.0.5 :80 aborted x1 9s..9s",
			"host node-h/sshd -> external 203.0.113.10 :22 established x1 12s..12s",
			"host node-h/wget -> unknown 203.0.113.7 :443 timeout x1 11s..11s",
			"shop/deployment/web -> external 1.0.0.1 :443 refused x1 3s..3s",
			"shop/deployment/web -> pod shop/statefulset/db :5432 reset x1 10s..10s",
			"shop/deployment/web -> service shop/service/api :80 established x1 2s..2s",
			"shop/statefulset/db -> external 2001:db8::53 :53 established x1 5s..5s",
		}},
		{"a namespace and a selector", backend.Filter{From: Main[0], To: Main[1], Namespaces: []string{"shop"}, Selector: mustSelector("app=web,tier!=backend")}, []string{
			"shop/deployment/web -> pod shop/statefulset/db :5432 established x2 1s..4s",
			"shop/deployment/web -> external 1.0.0.1 :443 refused x1 3s..3s",
			"shop/deployment/web -> pod shop/statefulset/db :5432 reset x1 10s..10s",
			"shop/deployment/web -> service shop/service/api :80 established x1 2s..2s",
		}},
		{"selector key= matches nothing, computed in the store too", backend.Filter{From: Main[0], To: Main[1], Selector: mustSelector("canary=")}, nil},
		{"selector key!= matches everything without the label", backend.Filter{From: Main[0], To: Main[1], Selector: mustSelector("canary!=,team")}, []string{
			"billing/deployment/pay -> service billing/service/gateway :443 established x1 6s..6s",
		}},
		{"failed to names below example.com", backend.Filter{From: Main[0], To: Main[1], DstNames: []string{"*.example.com"}, Outcomes: []string{backend.OutcomeFailed}}, []string{
			"shop/deployment/web -> external 1.0.0.1 :443 refused x1 3s..3s",
		}},
	} {
		rows, err := b.Summary(context.Background(), tc.f)
		if err != nil {
			t.Fatalf("%s: Summary: %v", tc.name, err)
		}
		for i := 1; i < len(rows); i++ {
			if rows[i].Count > rows[i-1].Count {
				t.Errorf("%s: row %d counts more than the one before", tc.name, i)
			}
		}
		var got []string
		for _, r := range rows {
			got = append(got, summaryText(r))
		}
		slices.SortStableFunc(got, func(a, b string) int { return strings.Compare(count(b), count(a)) })
		byCountThenText(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s:\n got\n%s\nwant\n%s", tc.name, join(got), join(tc.want))
		}
	}
}

func count(s string) string { f := strings.Fields(s); return f[len(f)-2] }

func byCountThenText(ss []string) {
	slices.SortFunc(ss, func(a, b string) int {
		if c := strings.Compare(count(b), count(a)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
}

func flowText(r backend.FlowRow) string {
	var own, peer []string
	for k, v := range r.Fields {
		if l, ok := strings.CutPrefix(k, backend.FieldPodLabelPrefix); ok {
			own = append(own, l+"="+v)
		}
		if l, ok := strings.CutPrefix(k, backend.FieldPeerPodLabelPrefix); ok {
			peer = append(peer, l+"="+v)
		}
	}
	slices.Sort(own)
	slices.Sort(peer)
	src := r.Get(backend.FieldPod)
	if src == "" {
		src = "host " + r.Get(backend.FieldNode)
	}
	return fmt.Sprintf("%s>%s:%s/%s x%d %s..%s [%s] peer %s %s/%s [%s]", src, r.Get(backend.FieldDstAddr), r.Get(backend.FieldDstPort), r.Get(backend.FieldOutcome),
		r.Count, offset(r.First), offset(r.Last), strings.Join(own, ","), r.Get(backend.FieldPeerKind), r.Get(backend.FieldPeerWorkloadKind), r.Get(backend.FieldPeerWorkloadName), strings.Join(peer, ","))
}

func testFlows(t *testing.T, b backend.Backend) {
	agg, ok := b.(backend.FlowAggregator)
	if !ok {
		t.Fatalf("%T is no backend.FlowAggregator: advise cannot read it", b)
	}
	const web1 = "[app=web,pod-template-hash=5d4f8,rank=5,tier=frontend]"
	for _, tc := range []struct {
		name string
		f    backend.Filter
		want []string
	}{
		{"a namespace's egress", backend.Filter{From: Main[0], To: Main[1], Namespaces: []string{"shop"}}, []string{
			"db-0>2001:db8::53:53/established x1 5s..5s [app=db,rank=1,tier=backend] peer external / []",
			"web-5d4f8-x1>1.0.0.1:443/refused x1 3s..3s " + web1 + " peer external / []",
			"web-5d4f8-x1>10.0.1.5:5432/established x1 1s..1s " + web1 + " peer pod statefulset/db [app=db]",
			"web-5d4f8-x1>10.0.1.5:5432/reset x1 10s..10s " + web1 + " peer pod statefulset/db [app=db]",
			"web-5d4f8-x1>10.96.0.20:80/established x1 2s..2s " + web1 + " peer service / []",
			"web-6e7a9-x3>10.0.1.5:5432/established x1 4s..4s [app=web,pod-template-hash=6e7a9,rank=5,tier=frontend] peer pod statefulset/db [app=db]",
		}},
		{"a namespace's egress, an empty label left out", backend.Filter{From: Main[0], To: Main[1], Namespaces: []string{"billing"}}, []string{
			"lone>10.0.0.2:10250/unreachable x1 7s..7s [] peer node / []",
			"pay-7c9-x>10.96.0.30:443/established x1 6s..6s [app=pay,team=payments] peer service / []",
		}},
		{"a namespace's ingress", backend.Filter{From: Main[0], To: Main[1], PeerNamespaces: []string{"shop"}, Outcomes: []string{"established"}}, []string{
			"web-5d4f8-x1>10.0.1.5:5432/established x1 1s..1s " + web1 + " peer pod statefulset/db [app=db]",
			"web-5d4f8-x1>10.96.0.20:80/established x1 2s..2s " + web1 + " peer service / []",
			"web-6e7a9-x3>10.0.1.5:5432/established x1 4s..4s [app=web,pod-template-hash=6e7a9,rank=5,tier=frontend] peer pod statefulset/db [app=db]",
		}},
	} {
		rows, err := agg.Flows(context.Background(), tc.f)
		if err != nil {
			t.Fatalf("%s: Flows: %v", tc.name, err)
		}
		var got []string
		for _, r := range rows {
			got = append(got, flowText(r))
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s:\n got\n%s\nwant\n%s", tc.name, join(got), join(tc.want))
		}
	}
}

func instanceText(in coverage.Instance) string {
	return fmt.Sprintf("%s %s started %s resumed %v stopped %s heartbeat %s seen %s..%s records %d seq %d..%d losses %d",
		in.Node, in.ID, offset(in.Started), in.Resumed, offset(in.Stopped), in.Heartbeat, offset(in.FirstSeen), offset(in.LastSeen),
		in.Records, in.MinSeq, in.MaxSeq, len(in.Losses))
}

func gapText(g coverage.Gap) string {
	return fmt.Sprintf("%s %s %s %s..%s x%d: %s", g.Kind, g.Node, g.Instance, offset(g.From), offset(g.To), g.Count, g.Reason)
}

const (
	heartbeatsStopped = "the agent's heartbeats stopped, with no stop record: it died or hung, or its records were deleted"
	stoppedNoNext     = "the agent stopped and no other instance started"
	stoppedNextLater  = "the agent stopped and the next one started later, without resuming its capture"
	noAgent           = "no agent instance watched the node"
)

func testCoverage(t *testing.T, b backend.Backend) {
	for _, tc := range []struct {
		name      string
		window    [2]time.Time
		nodes     []string
		wantNodes []string
		instances []string
		gaps      []string
	}{
		{"the main window: a stop, a start that did not resume, a heartbeat that stopped", Main, nil,
			[]string{"node-a", "node-b", "node-h"},
			[]string{
				"node-a ct-a1 started -1s resumed false stopped - heartbeat 0s seen 0s..10s records 7 seq 2..8 losses 0",
				"node-b ct-b1 started -1s resumed true stopped 30s heartbeat 0s seen 4s..30s records 5 seq 2..6 losses 0",
				"node-b ct-b2 started 35s resumed false stopped - heartbeat 0s seen 35s..35s records 1 seq 1..1 losses 0",
				"node-h ct-h1 started -1s resumed false stopped - heartbeat 10s seen 11s..12s records 2 seq 2..3 losses 0",
			},
			[]string{
				"uncovered node-b  30s..35s x0: " + stoppedNextLater,
				"uncovered node-h  32s..1m0s x0: " + heartbeatsStopped,
			}},
		{"nodes asked for, one without any record", Main, []string{"node-b", "node-z"},
			[]string{"node-b", "node-z"},
			[]string{
				"node-b ct-b1 started -1s resumed true stopped 30s heartbeat 0s seen 4s..30s records 5 seq 2..6 losses 0",
				"node-b ct-b2 started 35s resumed false stopped - heartbeat 0s seen 35s..35s records 1 seq 1..1 losses 0",
			},
			[]string{
				"uncovered node-b  30s..35s x0: " + stoppedNextLater,
				"uncovered node-z  0s..1m0s x0: " + noAgent,
			}},
		{"the gap window: loss records (one replayed), holes, a record from before the start, a loss record naming stored seqs", Gap, nil,
			[]string{"node-a", "node-b", "node-c", "node-d", "node-h"},
			[]string{
				"node-a ct-a1 started -1s resumed false stopped - heartbeat 0s seen -..- records 0 seq 0..0 losses 0",
				"node-b ct-b2 started 35s resumed false stopped - heartbeat 0s seen -..- records 0 seq 0..0 losses 0",
				"node-c ct-c1 started 2h0m0s resumed false stopped 2h0m20s heartbeat 0s seen 2h0m0s..2h0m20s records 5 seq 1..14 losses 1",
				"node-d ct-d1 started 2h0m0s resumed false stopped 2h0m20s heartbeat 0s seen 2h0m0s..2h0m20s records 7 seq 1..9 losses 1",
				"node-h ct-h1 started -1s resumed false stopped - heartbeat 10s seen -..- records 0 seq 0..0 losses 0",
			},
			[]string{
				"loss node-c ct-c1 2h0m1.5s..2h0m2.5s x5: spool_full",
				"seq_hole node-c ct-c1 2h0m3s..2h0m10s x3: connaudit.seq 10..12 missing, no loss record explains it",
				"uncovered node-c  2h0m20s..2h1m0s x0: " + stoppedNoNext,
				"loss node-d ct-d1 2h0m2s..2h0m3s x2: spool_full",
				"seq_hole node-d ct-d1 2h0m3.25s..2h0m6.25s x2: connaudit.seq 5..6 missing, no loss record explains it",
				"uncovered node-d  2h0m20s..2h1m0s x0: " + stoppedNoNext,
				"uncovered node-h  2h0m0s..2h1m0s x0: " + heartbeatsStopped,
			}},
	} {
		c, err := b.Coverage(context.Background(), tc.window[0], tc.window[1], tc.nodes)
		if err != nil {
			t.Fatalf("%s: Coverage: %v", tc.name, err)
		}
		var ins, gaps []string
		for _, in := range c.Instances {
			ins = append(ins, instanceText(in))
		}
		for _, g := range coverage.Gaps(c) {
			gaps = append(gaps, gapText(g))
		}
		if !slices.Equal(c.Nodes, tc.wantNodes) {
			t.Errorf("%s: nodes %v, want %v", tc.name, c.Nodes, tc.wantNodes)
		}
		if !slices.Equal(ins, tc.instances) {
			t.Errorf("%s: instances\n%s\nwant\n%s", tc.name, join(ins), join(tc.instances))
		}
		if !slices.Equal(gaps, tc.gaps) {
			t.Errorf("%s: gaps\n%s\nwant\n%s", tc.name, join(gaps), join(tc.gaps))
		}
	}
}

func testTrail(t *testing.T, b backend.Backend) {
	tr, ok := b.(backend.TrailReader)
	if !ok {
		t.Fatalf("%T is no backend.TrailReader: verify and export cannot read it", b)
	}
	ctx := context.Background()
	collect := func(what string, read func(each func(map[string]string) error) error) []map[string]string {
		t.Helper()
		var rows []map[string]string
		err := read(func(row map[string]string) error {
			if _, err := time.Parse(time.RFC3339Nano, row["_time"]); err != nil || row[backend.FieldEventName] == "" {
				t.Errorf("%s: a row without _time or event_name: %v", what, row)
			}
			rows = append(rows, maps(row))
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return rows
	}
	// 8 of node-a (one replayed), 6 of node-b, 2 of node-h.
	if rows := collect("Trail", func(each func(map[string]string) error) error { return tr.Trail(ctx, Main[0], Main[1], nil, each) }); len(rows) != 16 {
		t.Errorf("Trail of the main window: %d rows, want 16, duplicates included", len(rows))
	}
	if rows := collect("Trail of node-h", func(each func(map[string]string) error) error {
		return tr.Trail(ctx, Main[0], Main[1], []string{"node-h"}, each)
	}); len(rows) != 2 {
		t.Errorf("Trail of node-h: %d rows, want 2", len(rows))
	}
	rows := collect("InstanceRecords start", func(each func(map[string]string) error) error {
		return tr.InstanceRecords(ctx, "ct-b2", true, 0, Main[1], each)
	})
	if len(rows) != 1 || rows[0][backend.FieldEventName] != backend.EventAgentStart {
		t.Errorf("the start record of ct-b2: %v", rows)
	}
	rows = collect("InstanceRecords seq", func(each func(map[string]string) error) error {
		return tr.InstanceRecords(ctx, "ct-c1", false, 2, Gap[1], each)
	})
	if len(rows) != 1 || rows[0]["_time"] != Gap[0].Add(-500*time.Millisecond).Format(time.RFC3339Nano) {
		t.Errorf("seq 2 of ct-c1, before its window: %v", rows)
	}
	rows = collect("Export", func(each func(map[string]string) error) error {
		return tr.Export(ctx, T0.Add(-time.Hour), Gap[1].Add(time.Hour), nil, each)
	})
	if len(rows) != Count() {
		t.Errorf("Export of everything: %d rows, want %d", len(rows), Count())
	}
	for _, r := range rows {
		if _, ok := r["_stream"]; ok {
			t.Errorf("Export keeps the store's own field _stream: %v", r)
			break
		}
	}
}

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
