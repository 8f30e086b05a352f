package e2e

// Tests of issue 7: `connaudit query`, `connaudit coverage` and the
// `kubectl connaudit` plugin against a real VictoriaLogs filled through our
// collector, with records made by the real agent where it can make them and
// with recordgen's OTLP records (same schema) for shapes it cannot: many
// pods, peers of every kind, hostile values, duplicates and holes.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connaudit/connaudit/internal/recordgen"
	"github.com/connaudit/connaudit/internal/teststack"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files of the query tests")

// qT0 is the start of the fixture's main window.
var qT0 = time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)

// qFixture is the trail of two agents on node-a and node-b, plus a third on
// node-c with a loss and a hole, as it reached VictoriaLogs.
type qFixture struct {
	vl    *teststack.VictoriaLogs
	col   *teststack.Collector
	names map[string]string // network.local.port -> record name
	// token, when set, is the bearer token of the agent of a node, which
	// the shipped gateway asks for.
	token func(node string) string
}

var (
	qWeb1 = &recordgen.Pod{Namespace: "shop", Name: "web-5d4f8-x1", UID: "uid-web-1", Container: "app",
		Labels: map[string]string{"app": "web", "tier": "frontend", "env": "prod", "pod-template-hash": "5d4f8"},
		Owners: recordgen.Attrs("k8s.deployment.name", "web", "k8s.replicaset.name", "web-5d4f8")}
	qWeb2 = &recordgen.Pod{Namespace: "shop", Name: "web-5d4f8-x2", UID: "uid-web-2", Container: "app",
		Labels: qWeb1.Labels, Owners: qWeb1.Owners}
	qDB = &recordgen.Pod{Namespace: "shop", Name: "db-0", UID: "uid-db-0", Container: "postgres",
		Labels: map[string]string{"app": "db", "tier": "backend", "env": "prod"},
		Owners: recordgen.Attrs("k8s.statefulset.name", "db")}
	qPay = &recordgen.Pod{Namespace: "billing", Name: "pay-7c9-x", UID: "uid-pay", Container: "pay",
		Labels: map[string]string{"app": "pay", "team": "payments", "env": "dev"},
		Owners: recordgen.Attrs("k8s.deployment.name", "pay", "k8s.replicaset.name", "pay-7c9")}
	qLone = &recordgen.Pod{Namespace: "billing", Name: "lone", UID: "uid-lone", Container: "main"}
)

var (
	peerDB     = recordgen.Attrs("connaudit.peer.kind", "pod", "connaudit.peer.k8s.namespace.name", "shop", "connaudit.peer.k8s.pod.name", "db-0", "connaudit.peer.k8s.workload.kind", "statefulset", "connaudit.peer.k8s.workload.name", "db", "connaudit.peer.k8s.pod.label.app", "db")
	peerAPI    = recordgen.Attrs("connaudit.peer.kind", "service", "connaudit.peer.k8s.namespace.name", "shop", "connaudit.peer.k8s.service.name", "api")
	peerGW     = recordgen.Attrs("connaudit.peer.kind", "service", "connaudit.peer.k8s.namespace.name", "billing", "connaudit.peer.k8s.service.name", "gateway")
	peerNodeA  = recordgen.Attrs("connaudit.peer.kind", "node", "connaudit.peer.k8s.node.name", "node-a")
	peerLoop   = recordgen.Attrs("connaudit.peer.kind", "loopback")
	peerExtern = recordgen.Attrs("connaudit.peer.kind", "external")
)

// qHostile are values that would change a badly built query's meaning; each
// is the comm of one host-process record, and must match only that record.
var qHostile = []string{
	`q"uote`, `back\slash`, `trail\`, `pi|pe`, `| delete _msg`, `st*r`, `*`, `or`, `not`, `a or b`, `-neg`,
	"new\nline", `{brace}`, `x:=y`, `'single'`, "`tick`", `(paren`, `in(a,b)`, "tab\there", "bad\uFFFD",
}

func startQueryFixture(t *testing.T) *qFixture {
	t.Helper()
	return startQueryFixtureVia(t, func(vlURL string) *teststack.Collector { return teststack.StartCollector(t, vlURL) }, nil)
}

// startQueryFixtureVia ingests the fixture through the collector that
// startCollector starts in front of the fixture's VictoriaLogs.
func startQueryFixtureVia(t *testing.T, startCollector func(vlURL string) *teststack.Collector, token func(node string) string) *qFixture {
	t.Helper()
	vl := teststack.StartVictoriaLogs(t)
	f := &qFixture{vl: vl, col: startCollector(vl.URL()), names: map[string]string{}, token: token}
	a := recordgen.NewAgent("node-a", "inst-a1")
	b := recordgen.NewAgent("node-b", "inst-b1")
	c := recordgen.NewAgent("node-c", "inst-c1")
	port := 40000
	var recs []recordgen.Record
	connect := func(name string, ag *recordgen.Agent, sec float64, src recordgen.Source, conn recordgen.Conn) recordgen.Record {
		port++
		f.names[strconv.Itoa(port)] = name
		conn.SrcPort = port
		if conn.SrcAddr == "" {
			conn.SrcAddr = "10.0.1.20"
		}
		if conn.Duration == 0 {
			conn.Duration = 0.00125
		}
		r := ag.Connect(qT0.Add(time.Duration(sec*float64(time.Second))), src, conn)
		recs = append(recs, r)
		return r
	}
	curl := func(p *recordgen.Pod) recordgen.Source {
		return recordgen.Source{Pod: p, Comm: "curl", PID: 100, PPID: 1, UID: 1000}
	}
	recs = append(recs, a.Start(qT0, false), b.Start(qT0, true))
	connect("web1-db", a, 1, curl(qWeb1), recordgen.Conn{DstAddr: "10.0.1.5", DstPort: 5432, Outcome: "established", Peer: peerDB})
	connect("web1-api", a, 2, curl(qWeb1), recordgen.Conn{DstAddr: "10.96.0.20", DstPort: 80, Outcome: "established", Peer: peerAPI})
	connect("web1-ext-refused", a, 3, curl(qWeb1), recordgen.Conn{DstAddr: "1.0.0.1", DstPort: 443, Outcome: "refused", ErrType: "ECONNREFUSED", Peer: peerExtern, Name: "api.example.com"})
	connect("web2-db-timeout", b, 4, recordgen.Source{Pod: qWeb2, Comm: "psql", PID: 200, PPID: 1, UID: 1000},
		recordgen.Conn{DstAddr: "10.0.1.5", DstPort: 5432, Outcome: "timeout", ErrType: "ETIMEDOUT", Duration: 3.01, Peer: peerDB})
	connect("db-ext6", b, 5, recordgen.Source{Pod: qDB, Comm: "postgres", PID: 300, PPID: 1, UID: 999},
		recordgen.Conn{SrcAddr: "2001:db8:1::20", DstAddr: "2001:db8::53", DstPort: 53, Outcome: "established", Peer: peerExtern, Name: "ns1.dns.example.com"})
	connect("pay-gw", a, 6, recordgen.Source{Pod: qPay, Comm: "java", PID: 400, PPID: 1, UID: 1001},
		recordgen.Conn{DstAddr: "10.96.0.30", DstPort: 443, Outcome: "established", Peer: peerGW})
	connect("lone-node", b, 7, recordgen.Source{Pod: qLone, Comm: "sh", PID: 500, PPID: 1, UID: 0},
		recordgen.Conn{DstAddr: "10.0.0.2", DstPort: 10250, Outcome: "unreachable", ErrType: "EHOSTUNREACH", Peer: peerNodeA})
	connect("host-kubelet", a, 8, recordgen.Source{Comm: "kubelet", PID: 1, UID: 0},
		recordgen.Conn{SrcAddr: "127.0.0.1", DstAddr: "127.0.0.1", DstPort: 10248, Outcome: "established", Peer: peerLoop})
	connect("host-ext", b, 9, recordgen.Source{Comm: "curl", PID: 600, PPID: 1, UID: 0},
		recordgen.Conn{SrcAddr: "0.0.0.0", DstAddr: "1.0.0.5", DstPort: 80, Outcome: "aborted", ErrType: "aborted", Peer: peerExtern, Name: "example.com"})
	dup := connect("web1-db-reset", a, 10, curl(qWeb1), recordgen.Conn{DstAddr: "10.0.1.5", DstPort: 5432, Outcome: "reset", ErrType: "ECONNRESET", Peer: peerDB})
	f.post(t, recs)
	f.post(t, []recordgen.Record{dup}) // a replay: same instance and seq

	// The hostile values, an hour later.
	recs = nil
	for i, v := range qHostile {
		connect("hostile-"+strconv.Itoa(i), a, 3600+float64(i), recordgen.Source{Comm: v, PID: 700 + i, UID: 0},
			recordgen.Conn{DstAddr: "1.0.0.9", DstPort: 9, Outcome: "established", Peer: peerExtern})
	}
	hostileNS := &recordgen.Pod{Namespace: `n"s|*`, Name: `p\o" or "d`, UID: "uid-hostile", Container: `c*`}
	connect("hostile-pod", a, 3600+float64(len(qHostile)), recordgen.Source{Pod: hostileNS, Comm: "evil", PID: 799},
		recordgen.Conn{DstAddr: "1.0.0.9", DstPort: 9, Outcome: "established", Peer: peerExtern})
	near := &recordgen.Pod{Namespace: `n"s|`, Name: `p\o`, UID: "uid-near", Container: `c`}
	connect("near-pod", a, 3600+float64(len(qHostile)+1), recordgen.Source{Pod: near, Comm: "evil", PID: 798},
		recordgen.Conn{DstAddr: "1.0.0.9", DstPort: 9, Outcome: "established", Peer: peerExtern})

	// Two hours later, node-c: a record older than the start record before
	// it in seq (outside the window that starts there, and no hole), 5
	// records lost and reported, then 3 lost without a loss record, then a
	// stop.
	at := qT0.Add(2 * time.Hour)
	recs = append(recs, c.Start(at, false))
	connect("c-early", c, 7199.5, curl(qWeb1), recordgen.Conn{DstAddr: "1.0.0.1", DstPort: 443, Outcome: "established", Peer: peerExtern})
	connect("c-1", c, 7201, curl(qWeb1), recordgen.Conn{DstAddr: "1.0.0.1", DstPort: 443, Outcome: "established", Peer: peerExtern})
	first, last := c.Lose(5)
	recs = append(recs, c.Loss(at.Add(3*time.Second), 5, "spool_full", first, last, at.Add(1500*time.Millisecond), at.Add(2500*time.Millisecond)))
	c.Lose(3)
	connect("c-2", c, 7210, curl(qWeb1), recordgen.Conn{DstAddr: "1.0.0.1", DstPort: 443, Outcome: "established", Peer: peerExtern})
	recs = append(recs, c.Stop(at.Add(20*time.Second)))
	f.post(t, recs)

	want := 2 + 10 + 1 + len(qHostile) + 2 + 6
	vl.WaitFor(t, `*`, want, time.Minute)
	return f
}

// post sends recs through the collector, each node's records as its agent.
func (f *qFixture) post(t *testing.T, recs []recordgen.Record) {
	t.Helper()
	if f.token == nil {
		if err := recordgen.Post(t.Context(), f.col.HTTPEndpoint()+"/v1/logs", recs); err != nil {
			t.Fatal(err)
		}
		return
	}
	byNode := map[string][]recordgen.Record{}
	var nodes []string
	for _, r := range recs {
		n := recordgen.Node(r)
		if byNode[n] == nil {
			nodes = append(nodes, n)
		}
		byNode[n] = append(byNode[n], r)
	}
	for _, n := range nodes {
		if err := recordgen.PostWith(t.Context(), f.col.HTTPClient(), f.col.HTTPEndpoint()+"/v1/logs", f.token(n), byNode[n]); err != nil {
			t.Fatal(err)
		}
	}
}

// connauditCmd runs bin/connaudit with a clean environment: no kubeconfig,
// so --server decides where the backend is.
func connauditCmd(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(teststack.Binary(t, "connaudit"), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	return cmd
}

type runResult struct {
	stdout, stderr string
	code           int
}

func runConnaudit(t *testing.T, env []string, args ...string) runResult {
	t.Helper()
	cmd := connauditCmd(t, env, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run connaudit %q: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return runResult{stdout.String(), stderr.String(), code}
}

// query runs `connaudit query -o json` in the fixture's window plus args and
// returns the names of the records printed, in order.
func (f *qFixture) query(t *testing.T, window []string, args ...string) ([]string, runResult) {
	t.Helper()
	full := append([]string{"query", "--server", f.vl.URL(), "-o", "json"}, window...)
	full = append(full, args...)
	res := runConnaudit(t, nil, full...)
	if res.code != 0 {
		t.Fatalf("connaudit %q: exit %d\nstderr: %s", full, res.code, res.stderr)
	}
	var names []string
	sc := bufio.NewScanner(strings.NewReader(res.stdout))
	for sc.Scan() {
		var obj map[string]any
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.UseNumber()
		if err := dec.Decode(&obj); err != nil {
			t.Fatalf("connaudit %q: line %q is not a JSON object: %v", full, sc.Text(), err)
		}
		port, ok := obj["network.local.port"].(json.Number)
		if !ok {
			t.Fatalf("connaudit %q: network.local.port is not a JSON number: %q", full, sc.Text())
		}
		name, ok := f.names[port.String()]
		if !ok {
			t.Fatalf("connaudit %q: record not from the fixture: %v", full, obj)
		}
		names = append(names, name)
	}
	return names, res
}

var qMainWindow = []string{"--from", qT0.Format(time.RFC3339), "--to", qT0.Add(time.Minute).Format(time.RFC3339)}

func TestQuery(t *testing.T) {
	f := startQueryFixture(t)
	t.Run("filters", func(t *testing.T) { testQueryFilters(t, f) })
	t.Run("selectors", func(t *testing.T) { testQuerySelectors(t, f) })
	t.Run("escaping", func(t *testing.T) { testQueryEscaping(t, f) })
	t.Run("time", func(t *testing.T) { testQueryTime(t, f) })
	t.Run("golden", func(t *testing.T) { testQueryGolden(t, f) })
	t.Run("duplicates", func(t *testing.T) { testQueryDuplicates(t, f) })
	t.Run("gaps", func(t *testing.T) { testQueryGaps(t, f) })
	t.Run("errors", func(t *testing.T) { testQueryErrors(t, f) })
	t.Run("follow", func(t *testing.T) { testQueryFollow(t, f) })
	t.Run("cluster", func(t *testing.T) { testQueryCluster(t, f) })
	t.Run("auth-proxy", func(t *testing.T) { testQueryAuthProxy(t, f) })
}

func checkNames(t *testing.T, args []string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("query %q:\n got %v\nwant %v", args, got, want)
	}
}

var allMain = []string{"web1-db", "web1-api", "web1-ext-refused", "web2-db-timeout", "db-ext6", "pay-gw", "lone-node", "host-kubelet", "host-ext", "web1-db-reset"}

func mainExcept(drop ...string) []string {
	var out []string
	for _, n := range allMain {
		if !slices.Contains(drop, n) {
			out = append(out, n)
		}
	}
	return out
}

func testQueryFilters(t *testing.T, f *qFixture) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, allMain},
		{[]string{"-A"}, allMain},
		{[]string{"-n", "shop"}, []string{"web1-db", "web1-api", "web1-ext-refused", "web2-db-timeout", "db-ext6", "web1-db-reset"}},
		{[]string{"--namespace", "billing"}, []string{"pay-gw", "lone-node"}},
		{[]string{"-n", "shop", "--pod", "web-5d4f8-x1"}, []string{"web1-db", "web1-api", "web1-ext-refused", "web1-db-reset"}},
		{[]string{"-n", "shop", "--podname", "web-5d4f8-x1"}, []string{"web1-db", "web1-api", "web1-ext-refused", "web1-db-reset"}},
		{[]string{"-n", "shop", "web-5d4f8-x1"}, []string{"web1-db", "web1-api", "web1-ext-refused", "web1-db-reset"}},
		{[]string{"-n", "shop", "deploy/web"}, []string{"web1-db", "web1-api", "web1-ext-refused", "web2-db-timeout", "web1-db-reset"}},
		{[]string{"-A", "--pod", "web-5d4f8-x1", "--pod", "db-0"}, []string{"web1-db", "web1-api", "web1-ext-refused", "db-ext6", "web1-db-reset"}},
		// Without -n, a pod is looked for in the context's namespace: "default" without a kubeconfig.
		{[]string{"--pod", "web-5d4f8-x1"}, nil},
		{[]string{"-n", "shop", "--workload", "deployment/web"}, []string{"web1-db", "web1-api", "web1-ext-refused", "web2-db-timeout", "web1-db-reset"}},
		{[]string{"-n", "shop", "--workload", "sts/db"}, []string{"db-ext6"}},
		{[]string{"-n", "billing", "--workload", "pod/lone"}, []string{"lone-node"}},
		{[]string{"-A", "--workload", "deploy/pay", "--workload", "statefulset/db"}, []string{"db-ext6", "pay-gw"}},
		{[]string{"-A", "--workload", "replicaset/web-5d4f8"}, []string{"web1-db", "web1-api", "web1-ext-refused", "web2-db-timeout", "web1-db-reset"}},
		{[]string{"-A", "-c", "postgres"}, []string{"db-ext6"}},
		{[]string{"--node", "node-b"}, []string{"web2-db-timeout", "db-ext6", "lone-node", "host-ext"}},
		{[]string{"--host"}, []string{"host-kubelet", "host-ext"}},
		{[]string{"--comm", "curl"}, []string{"web1-db", "web1-api", "web1-ext-refused", "host-ext", "web1-db-reset"}},
		{[]string{"--pid", "100"}, []string{"web1-db", "web1-api", "web1-ext-refused", "web1-db-reset"}},
		{[]string{"--pid", "300,400"}, []string{"db-ext6", "pay-gw"}},
		{[]string{"--uid", "0"}, []string{"lone-node", "host-kubelet", "host-ext"}},
		{[]string{"--dst", "10.0.1.5"}, []string{"web1-db", "web2-db-timeout", "web1-db-reset"}},
		{[]string{"--dst", "10.0.0.0/16"}, []string{"web1-db", "web2-db-timeout", "lone-node", "web1-db-reset"}},
		{[]string{"--dst", "2001:db8::/32"}, []string{"db-ext6"}},
		{[]string{"--dst", "1.0.0.1,2001:db8::53"}, []string{"web1-ext-refused", "db-ext6"}},
		{[]string{"--dst", "::ffff:1.0.0.0/104"}, []string{"web1-ext-refused", "host-ext"}},
		{[]string{"--dport", "5432"}, []string{"web1-db", "web2-db-timeout", "web1-db-reset"}},
		{[]string{"--dst-name", "api.example.com"}, []string{"web1-ext-refused"}},
		{[]string{"--dst-name", "API.Example.com."}, []string{"web1-ext-refused"}},
		{[]string{"--dst-name", "*.example.com"}, []string{"web1-ext-refused", "db-ext6"}},
		{[]string{"--dst-name", "example.com,ns1.dns.example.com"}, []string{"db-ext6", "host-ext"}},
		{[]string{"--dst-name", "*.dns.example.com"}, []string{"db-ext6"}},
		{[]string{"--dst-name", "*.xample.com"}, nil},
		{[]string{"--dport", "80,443"}, []string{"web1-api", "web1-ext-refused", "pay-gw", "host-ext"}},
		{[]string{"--peer-namespace", "billing"}, []string{"pay-gw"}},
		{[]string{"--peer-pod", "db-0"}, []string{"web1-db", "web2-db-timeout", "web1-db-reset"}},
		{[]string{"--peer-service", "api"}, []string{"web1-api"}},
		{[]string{"--peer-workload", "statefulset/db"}, []string{"web1-db", "web2-db-timeout", "web1-db-reset"}},
		{[]string{"--peer-workload", "pod/db-0"}, []string{"web1-db", "web2-db-timeout", "web1-db-reset"}},
		{[]string{"--peer-kind", "external"}, []string{"web1-ext-refused", "db-ext6", "host-ext"}},
		{[]string{"--peer-kind", "node", "--peer-kind", "loopback"}, []string{"lone-node", "host-kubelet"}},
		{[]string{"--outcome", "failed"}, []string{"web1-ext-refused", "web2-db-timeout", "lone-node", "host-ext", "web1-db-reset"}},
		{[]string{"--outcome", "refused,timeout"}, []string{"web1-ext-refused", "web2-db-timeout"}},
		{[]string{"--outcome", "established"}, []string{"web1-db", "web1-api", "db-ext6", "pay-gw", "host-kubelet"}},
		{[]string{"--outcome", "failed", "--outcome", "established"}, allMain},
		{[]string{"-n", "shop", "--outcome", "failed", "--dport", "5432"}, []string{"web2-db-timeout", "web1-db-reset"}},
		{[]string{"--comm", "curl", "--host"}, []string{"host-ext"}},
	} {
		got, _ := f.query(t, qMainWindow, tc.args...)
		checkNames(t, tc.args, got, tc.want)
	}

	// hubble's window flags: --since and --until, absolute here.
	got, _ := f.query(t, []string{"--since", qT0.Format(time.RFC3339), "--until", qT0.Add(time.Minute).Format(time.RFC3339)})
	checkNames(t, []string{"--since", "--until"}, got, allMain)

	got, res := f.query(t, qMainWindow, "--limit", "3")
	// The newest three, oldest first, as kubectl logs --tail keeps them.
	checkNames(t, []string{"--limit", "3"}, got, allMain[len(allMain)-3:])
	if !strings.Contains(res.stderr, "--limit 3 kept the newest connects") {
		t.Errorf("--limit 3: stderr does not say the limit left older connects out: %q", res.stderr)
	}
	got, res = f.query(t, qMainWindow, "--limit", "10")
	checkNames(t, []string{"--limit", "10"}, got, allMain)
	if strings.Contains(res.stderr, "kept the newest") {
		t.Errorf("--limit 10 with 10 matching: stderr says it left connects out: %q", res.stderr)
	}
}

func testQuerySelectors(t *testing.T, f *qFixture) {
	web := []string{"web1-db", "web1-api", "web1-ext-refused", "web2-db-timeout", "web1-db-reset"}
	for _, tc := range []struct {
		selector string
		want     []string
	}{
		{"app=web", web},
		{"app==web", web},
		// Kubernetes' semantics: != and notin also match what has no such label.
		{"app!=web", mainExcept(web...)},
		{"app in (web,db)", []string{"web1-db", "web1-api", "web1-ext-refused", "web2-db-timeout", "db-ext6", "web1-db-reset"}},
		{"app notin (web,db)", []string{"pay-gw", "lone-node", "host-kubelet", "host-ext"}},
		{"team", []string{"pay-gw"}},
		{"!team", mainExcept("pay-gw")},
		{"tier=frontend,env=prod", web},
		{"tier,app notin (web)", []string{"db-ext6"}},
		{"env in (prod),!team,tier!=frontend", []string{"db-ext6"}},
		{"pod-template-hash=5d4f8", web},
		{"app=nothing", nil},
	} {
		got, _ := f.query(t, qMainWindow, "-l", tc.selector)
		checkNames(t, []string{"-l", tc.selector}, got, tc.want)
	}
}

func testQueryEscaping(t *testing.T, f *qFixture) {
	window := []string{"--from", qT0.Add(time.Hour).Format(time.RFC3339), "--to", qT0.Add(time.Hour + time.Minute).Format(time.RFC3339)}
	for i, v := range qHostile {
		got, _ := f.query(t, window, "--comm", v)
		checkNames(t, []string{"--comm", v}, got, []string{"hostile-" + strconv.Itoa(i)})
	}
	// Non-UTF-8 bytes cannot be stored through OTLP (the agent writes U+FFFD
	// for them): such a value matches nothing, not its U+FFFD look-alike.
	got, _ := f.query(t, window, "--comm", "bad\xff")
	checkNames(t, []string{"--comm", `bad\xff`}, got, nil)

	// Stream filters (namespace, pod, container) and record filters with
	// hostile values; the near-pod's values are prefixes of them.
	for _, args := range [][]string{
		{"-n", `n"s|*`},
		{"-n", `n"s|*`, "--pod", `p\o" or "d`},
		{"-A", "--pod", `p\o" or "d`},
		{"-A", "-c", `c*`},
		{"-A", "--workload", `pod/p\o" or "d`},
	} {
		got, _ := f.query(t, window, args...)
		checkNames(t, args, got, []string{"hostile-pod"})
	}
	got, _ = f.query(t, window, "-n", `n"s|`, "--pod", `p\o`)
	checkNames(t, []string{"-n", `n"s|`, "--pod", `p\o`}, got, []string{"near-pod"})
	for _, args := range [][]string{{"--peer-service", `x" or "`}, {"--peer-namespace", "*"}, {"--peer-pod", `\`}} {
		got, _ := f.query(t, window, args...)
		checkNames(t, args, got, nil)
	}
}

func testQueryTime(t *testing.T, f *qFixture) {
	at := func(sec int) string { return qT0.Add(time.Duration(sec) * time.Second).Format(time.RFC3339Nano) }
	for _, tc := range []struct {
		args []string
		want []string
	}{
		// [from, to): a record exactly at --to is left out.
		{[]string{"--from", at(3), "--to", at(6)}, []string{"web1-ext-refused", "web2-db-timeout", "db-ext6"}},
		{[]string{"--to", at(5), "--since", "2s"}, []string{"web1-ext-refused", "web2-db-timeout"}},
		{[]string{"--from", qT0.Add(2500 * time.Millisecond).Format(time.RFC3339Nano), "--to", qT0.Add(3500 * time.Millisecond).Format(time.RFC3339Nano)}, []string{"web1-ext-refused"}},
		{[]string{"--from", "2026-11-24T15:00:00+01:00", "--to", at(2)}, []string{"web1-db"}},
		{[]string{"--to", at(11), "--since", "1d"}, allMain},
		// The default window is the last hour: the fixture is older.
		{nil, nil},
	} {
		got, _ := f.query(t, nil, tc.args...)
		checkNames(t, tc.args, got, tc.want)
	}
}

func testQueryGolden(t *testing.T, f *qFixture) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"table", []string{"-o", "table"}},
		{"wide", []string{"-o", "wide"}},
		{"json", []string{"-o", "json"}},
		{"csv", []string{"-o", "csv"}},
		{"summary-table", []string{"--summary"}},
		{"summary-json", []string{"--summary", "-o", "json"}},
		{"summary-csv", []string{"--summary", "-o", "csv"}},
		{"summary-shop", []string{"--summary", "-n", "shop", "-o", "wide"}},
		{"no-headers", []string{"-n", "shop", "--no-headers"}},
		{"custom-columns", []string{"-n", "shop", "-o", `custom-columns=POD:.k8s\.pod\.name,PEER:.network\.peer\.address,PORT:.network\.peer\.port,MISSING:.nope`}},
		{"jsonpath", []string{"-n", "shop", "-o", `jsonpath={.k8s\.pod\.name} {.network\.peer\.port}{"\n"}`}},
	} {
		args := append(append([]string{"query", "--server", f.vl.URL()}, qMainWindow...), tc.args...)
		res := runConnaudit(t, nil, args...)
		if res.code != 0 || res.stderr != "" {
			t.Errorf("%s: exit %d, stderr %q", tc.name, res.code, res.stderr)
		}
		golden(t, filepath.Join("testdata", "query", tc.name+".golden"), res.stdout)
	}

	// --local-time: tables in TZ's zone, with its offset; JSON stays UTC.
	kolkata := []string{"TZ=Asia/Kolkata"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"query", "-n", "shop", "--local-time"}, "\n2026-11-24T19:30:01.000000+05:30  shop"},
		{[]string{"query", "-n", "shop", "--summary", "--local-time"}, "2026-11-24T19:30:01.000000+05:30"},
		{[]string{"coverage", "--local-time"}, "Complete: every node was watched from 2026-11-24T19:30:00.000000+05:30"},
		{[]string{"query", "-n", "shop", "--local-time", "-o", "json"}, `"time":"2026-11-24T14:00:01.000000000Z"`},
		{[]string{"query", "-n", "shop"}, "\n2026-11-24T14:00:01.000000Z  shop"},
	} {
		args := append(append([]string{tc.args[0], "--server", f.vl.URL()}, qMainWindow...), tc.args[1:]...)
		res := runConnaudit(t, kolkata, args...)
		if res.code != 0 || !strings.Contains("\n"+res.stdout, tc.want) {
			t.Errorf("TZ=Asia/Kolkata %q: exit %d, want %q in\n%s%s", tc.args, res.code, tc.want, res.stdout, res.stderr)
		}
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func testQueryDuplicates(t *testing.T, f *qFixture) {
	// VictoriaLogs holds the replayed record twice.
	rows, err := f.vl.Query(t.Context(), `network.local.port:=40010`)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("the replayed record is stored %d times, want 2", len(rows))
	}
	got, _ := f.query(t, qMainWindow, "--outcome", "reset")
	checkNames(t, []string{"--outcome", "reset"}, got, []string{"web1-db-reset"})
	res := runConnaudit(t, nil, append(append([]string{"query", "--server", f.vl.URL()}, qMainWindow...), "--summary", "-o", "json", "--outcome", "reset")...)
	if !strings.Contains(res.stdout, `"count":1,`) || strings.Count(res.stdout, "\n") != 1 {
		t.Errorf("summary of the replayed record: want one group of count 1, got %q (stderr %q)", res.stdout, res.stderr)
	}
	res = runConnaudit(t, nil, append(append([]string{"coverage", "--server", f.vl.URL(), "-o", "json"}, qMainWindow...), "--node", "node-a")...)
	var cov struct {
		Instances []struct {
			Records int64 `json:"records"`
			MaxSeq  int64 `json:"max_seq"`
		} `json:"instances"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &cov); err != nil || len(cov.Instances) != 1 {
		t.Fatalf("coverage -o json: %v: %q", err, res.stdout)
	}
	if in := cov.Instances[0]; in.Records != in.MaxSeq {
		t.Errorf("coverage of node-a counts %d records for seq 1..%d: duplicates counted", in.Records, in.MaxSeq)
	}
}

func testQueryGaps(t *testing.T, f *qFixture) {
	main := append(append([]string{"query", "--server", f.vl.URL()}, qMainWindow...), "--strict")
	if res := runConnaudit(t, nil, main...); res.code != 0 || res.stderr != "" {
		t.Errorf("--strict on a complete window: exit %d, stderr %q", res.code, res.stderr)
	}
	gapWindow := []string{"--from", qT0.Add(2 * time.Hour).Format(time.RFC3339), "--to", qT0.Add(2*time.Hour + time.Minute).Format(time.RFC3339)}
	wantLines := []string{
		"the trail has a gap here: node node-c, 2026-11-24T16:00:01.500000Z to 2026-11-24T16:00:02.500000Z, 5 records (loss: spool_full, agent instance inst-c1)",
		"the trail has a gap here: node node-c, 2026-11-24T16:00:03.000000Z to 2026-11-24T16:00:10.000000Z, 3 records (seq_hole: connaudit.seq 10..12 missing, no loss record explains it, agent instance inst-c1)",
		"the trail has a gap here: node node-c, 2026-11-24T16:00:20.000000Z to 2026-11-24T16:01:00.000000Z, no agent (uncovered: the agent stopped and no other instance started)",
	}
	for _, args := range [][]string{{}, {"--summary"}, {"--node", "node-c", "-o", "csv"}} {
		full := append(append([]string{"query", "--server", f.vl.URL()}, gapWindow...), args...)
		res := runConnaudit(t, nil, full...)
		if res.code != 0 {
			t.Errorf("%q: exit %d without --strict: %s", args, res.code, res.stderr)
		}
		for _, l := range wantLines {
			if !strings.Contains(res.stderr, l) {
				t.Errorf("%q: stderr lacks %q:\n%s", args, l, res.stderr)
			}
		}
		if n := strings.Count(res.stderr, "gap here"); n != len(wantLines) {
			t.Errorf("%q: %d gap lines, want %d:\n%s", args, n, len(wantLines), res.stderr)
		}
		res = runConnaudit(t, nil, append(full, "--strict")...)
		if res.code != 3 || !strings.Contains(res.stderr, "the trail has gaps: 3 in the window (--strict)") {
			t.Errorf("%q --strict: exit %d, stderr %q; want exit 3", args, res.code, res.stderr)
		}
	}
	// A node no agent watched: node-b is in the trail, but asked for a
	// window before its agent started.
	res := runConnaudit(t, nil, "query", "--server", f.vl.URL(), "--node", "node-b", "--strict",
		"--from", qT0.Add(-time.Minute).Format(time.RFC3339), "--to", qT0.Add(time.Minute).Format(time.RFC3339))
	if res.code != 3 || !strings.Contains(res.stderr, "node node-b, 2026-11-24T13:59:00.000000Z to 2026-11-24T14:00:00.000000Z, no agent (uncovered: no agent instance watched the node)") {
		t.Errorf("window before node-b's agent started: exit %d, stderr %q", res.code, res.stderr)
	}

	res = runConnaudit(t, nil, append([]string{"coverage", "--server", f.vl.URL()}, gapWindow...)...)
	golden(t, filepath.Join("testdata", "query", "coverage-gaps.golden"), res.stdout)
	if res.code != 0 {
		t.Errorf("coverage: exit %d: %s", res.code, res.stderr)
	}
}

func testQueryErrors(t *testing.T, f *qFixture) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"query", "--server", "http://127.0.0.1:1"}, "backend unreachable: http://127.0.0.1:1"},
		{[]string{"query", "--server", "http://127.0.0.1:1"}, "`make run` starts one"},
		{[]string{"query", "-l", "app in (web"}, `--selector "app in (web"`},
		{[]string{"query", "--from", "yesterday"}, `--from "yesterday": want a time such as 2026-11-24T14:00:00Z, or a duration`},
		{[]string{"query", "--since", "7days"}, `--since "7days"`},
		{[]string{"query", "--dst", "10.0.0.0/40"}, `--dst: "10.0.0.0/40" is not a CIDR prefix`},
		{[]string{"query", "--dst", "example.com"}, `--dst: "example.com" is not an IP address or CIDR prefix`},
		{[]string{"query", "-o", "yaml"}, `-o "yaml": unknown output format; want one of table, wide, json, csv`},
		{[]string{"query", "--outcome", "ok"}, `--outcome "ok"`},
		{[]string{"query", "--workload", "web"}, `--workload: "web": want KIND/NAME`},
		{[]string{"query", "--workload", "service/web"}, `unknown kind "service"`},
		{[]string{"query", "--peer-kind", "cluster"}, `--peer-kind "cluster"`},
		{[]string{"query", "--dport", "70000"}, "--dport 70000"},
		{[]string{"query", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		{[]string{"query", "-n", "a", "-A"}, "-n and -A"},
		{[]string{"query", "--from", "2026-11-24T15:00:00Z", "--to", "2026-11-24T14:00:00Z"}, "--from must be before --to"},
	} {
		res := runConnaudit(t, nil, append(tc.args, "--server", f.vl.URL())...)
		if tc.args[1] == "--server" {
			res = runConnaudit(t, nil, tc.args...)
		}
		if res.code == 0 || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("connaudit %q: exit %d, stderr %q; want an error containing %q", tc.args, res.code, res.stderr, tc.want)
		}
	}
	if res := runConnaudit(t, nil, "query", "--server", "http://127.0.0.1:1"); strings.Contains(res.stderr, "logsql") {
		t.Errorf("an unreachable backend: the error shows the encoded query, not only the server: %q", res.stderr)
	}
}

func testQueryFollow(t *testing.T, f *qFixture) {
	cmd := connauditCmd(t, nil, "query", "--server", f.vl.URL(), "-f", "-o", "json", "-n", "follow", "--pod", "tail-me")
	out := &syncWriter{w: &strings.Builder{}}
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = out, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	ag := recordgen.NewAgent("node-a", "inst-follow")
	pod := &recordgen.Pod{Namespace: "follow", Name: "tail-me", UID: "uid-tail", Container: "app"}
	other := &recordgen.Pod{Namespace: "follow", Name: "not-me", UID: "uid-other", Container: "app"}
	deadline := time.Now().Add(90 * time.Second)
	sent := 0
	for !strings.Contains(out.String(), `"network.local.port":41002`) {
		if time.Now().After(deadline) {
			t.Fatalf("--follow printed no new record within 90s; stdout %q, stderr %q", out.String(), stderr.String())
		}
		if sent < 10 { // the tail may start after the first posts
			now := time.Now()
			f.post(t, []recordgen.Record{
				ag.Connect(now, recordgen.Source{Pod: other, Comm: "curl", PID: 1}, recordgen.Conn{SrcAddr: "10.0.0.1", SrcPort: 41001, DstAddr: "1.0.0.1", DstPort: 443, Outcome: "established"}),
				ag.Connect(now, recordgen.Source{Pod: pod, Comm: "curl", PID: 1}, recordgen.Conn{SrcAddr: "10.0.0.1", SrcPort: 41002, DstAddr: "1.0.0.1", DstPort: 443, Outcome: "established"}),
			})
			sent++
		}
		time.Sleep(time.Second)
	}
	if strings.Contains(out.String(), `"network.local.port":41001`) {
		t.Errorf("--follow --pod tail-me printed another pod's record: %s", out.String())
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("--follow ended by SIGINT: %v; stderr %q", err, stderr.String())
	}
	// Each line is one record, even with several sends in flight.
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	seen := map[string]bool{}
	for _, l := range lines {
		var obj map[string]any
		if err := json.Unmarshal([]byte(l), &obj); err != nil {
			t.Fatalf("--follow line %q: %v", l, err)
		}
		key := fmt.Sprint(obj["service.instance.id"], "/", obj["connaudit.seq"])
		if seen[key] {
			t.Errorf("--follow printed %s twice", key)
		}
		seen[key] = true
	}
	sort.Strings(lines)
	t.Logf("--follow printed %d records", len(lines))
	_ = fmt.Sprint()
}

// Values in the trail are written by the workloads they describe: a pod
// name or DNS name with terminal escapes must print as text in table and
// wide output (and stay exact in JSON), never move the cursor or rewrite
// rows above it.
func TestTableOutputEscapesControlCharacters(t *testing.T) {
	vl := teststack.StartVictoriaLogs(t)
	col := teststack.StartCollector(t, vl.URL())
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	ag := recordgen.NewAgent("node-\x1b]0;pwned\x07", "inst-esc")
	pod := &recordgen.Pod{Namespace: "default", Name: "web\x1b[1A\x1b[2K\rFAKE ROW", UID: "uid-esc", Container: "app"}
	recs := []recordgen.Record{ag.Start(t0, false), ag.Connect(t0.Add(time.Second), recordgen.Source{Pod: pod, Comm: "curl", PID: 7},
		recordgen.Conn{SrcAddr: "10.0.0.7", SrcPort: 43000, DstAddr: "198.51.100.7", DstPort: 443, Outcome: "established", Duration: 0.001,
			Peer: recordgen.Attrs("connaudit.peer.kind", "external")})}
	if err := recordgen.Post(t.Context(), col.HTTPEndpoint()+"/v1/logs", recs); err != nil {
		t.Fatal(err)
	}
	window := []string{"--since", t0.Add(-time.Minute).Format(time.RFC3339), "--until", time.Now().Add(time.Minute).Format(time.RFC3339)}
	var res runResult
	if !pollUntil(30*time.Second, func() bool {
		res = runConnaudit(t, nil, append([]string{"query", "-A", "-o", "wide", "--server", vl.URL()}, window...)...)
		return strings.Contains(res.stdout, "FAKE ROW")
	}) {
		t.Fatalf("the record did not come back: %+v", res)
	}
	for _, out := range []struct{ name, text string }{{"query -o wide", res.stdout + res.stderr}} {
		if strings.ContainsAny(out.text, "\x1b\x07\r") {
			t.Errorf("%s printed raw control characters: %q", out.name, out.text)
		}
		if !strings.Contains(out.text, `web\x1b[1A\x1b[2K\rFAKE ROW`) || !strings.Contains(out.text, `node-\x1b]0;pwned\a`) {
			t.Errorf("%s does not show the escaped names: %q", out.name, out.text)
		}
	}
	res = runConnaudit(t, nil, append([]string{"coverage", "--server", vl.URL()}, window...)...)
	if strings.ContainsAny(res.stdout+res.stderr, "\x1b\x07") || !strings.Contains(res.stdout, `node-\x1b]0;pwned\a`) {
		t.Errorf("coverage printed raw control characters or no escaped node: %q %q", res.stdout, res.stderr)
	}
	res = runConnaudit(t, nil, append([]string{"query", "-A", "-o", "json", "--server", vl.URL()}, window...)...)
	if !strings.Contains(res.stdout, `"k8s.pod.name":"web\u001b[1A\u001b[2K\rFAKE ROW"`) {
		t.Errorf("JSON does not keep the exact name: %q", res.stdout)
	}
}
