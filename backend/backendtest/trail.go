// Package backendtest is the conformance suite of backend.Backend: one trail,
// written once (Batches, as recordgen makes it), and one set of questions
// with their answers (Run), which every store must give alike. e2e runs it
// against VictoriaLogs ingested through the dev collector configuration and
// through the shipped gateway configuration, and against the archive
// backend loaded from `connaudit export` of that VictoriaLogs; this
// package's own test runs it against the archive backend over Records.
package backendtest

import (
	"strconv"
	"strings"
	"time"

	"github.com/connaudit/connaudit/backend"
	"github.com/connaudit/connaudit/internal/recordgen"
	"github.com/connaudit/connaudit/trail"
)

// T0 is the start of the main window; the gap window starts two hours later.
var T0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// Main is the window most questions ask about; Gap the one with the loss
// records and seq holes.
var (
	Main = [2]time.Time{T0, T0.Add(time.Minute)}
	Gap  = [2]time.Time{T0.Add(2 * time.Hour), T0.Add(2*time.Hour + time.Minute)}
)

// Nodes are the nodes whose agents wrote the trail.
var Nodes = []string{"node-a", "node-b", "node-c", "node-d", "node-h"}

var (
	web1 = &recordgen.Pod{Namespace: "shop", Name: "web-5d4f8-x1", UID: "uid-web-1", Container: "app",
		Labels: map[string]string{"app": "web", "tier": "frontend", "rank": "5", "pod-template-hash": "5d4f8"},
		Owners: recordgen.Attrs(trail.KeyK8sDeployment, "web", trail.KeyK8sReplicaSet, "web-5d4f8")}
	// web3 is a pod of the same Deployment after a rollout: another ReplicaSet.
	web3 = &recordgen.Pod{Namespace: "shop", Name: "web-6e7a9-x3", UID: "uid-web-3", Container: "app",
		Labels: map[string]string{"app": "web", "tier": "frontend", "rank": "5", "pod-template-hash": "6e7a9"},
		Owners: recordgen.Attrs(trail.KeyK8sDeployment, "web", trail.KeyK8sReplicaSet, "web-6e7a9")}
	db = &recordgen.Pod{Namespace: "shop", Name: "db-0", UID: "uid-db-0", Container: "postgres",
		Labels: map[string]string{"app": "db", "tier": "backend", "rank": "1"},
		Owners: recordgen.Attrs(trail.KeyK8sStatefulSet, "db")}
	// pay has a label with an empty value, which a store keeps as absent.
	pay = &recordgen.Pod{Namespace: "billing", Name: "pay-7c9-x", UID: "uid-pay", Container: "pay",
		Labels: map[string]string{"app": "pay", "team": "payments", "canary": ""},
		Owners: recordgen.Attrs(trail.KeyK8sDeployment, "pay", trail.KeyK8sReplicaSet, "pay-7c9")}
	lone = &recordgen.Pod{Namespace: "billing", Name: "lone", UID: "uid-lone", Container: "main"}
)

var (
	peerDB = recordgen.Attrs(trail.KeyPeerKind, "pod", trail.KeyPeerNamespace, "shop", trail.KeyPeerPod, "db-0",
		trail.KeyPeerWorkloadKind, "statefulset", trail.KeyPeerWorkloadName, "db", trail.KeyPeerPodLabelPrefix+"app", "db")
	peerAPI    = recordgen.Attrs(trail.KeyPeerKind, "service", trail.KeyPeerNamespace, "shop", trail.KeyPeerService, "api")
	peerGW     = recordgen.Attrs(trail.KeyPeerKind, "service", trail.KeyPeerNamespace, "billing", trail.KeyPeerService, "gateway")
	peerNodeA  = recordgen.Attrs(trail.KeyPeerKind, "node", trail.KeyPeerNode, "node-a")
	peerLoop   = recordgen.Attrs(trail.KeyPeerKind, "loopback")
	peerExtern = recordgen.Attrs(trail.KeyPeerKind, "external")
	peerUnkn   = recordgen.Attrs(trail.KeyPeerKind, "unknown")
)

// Batches are the trail's records in the order they are to be posted: a
// later batch replays records of an earlier one (the same instance and
// seq), as an agent does after a crash.
func Batches() [][]recordgen.Record {
	at := func(sec float64) time.Time { return T0.Add(time.Duration(sec * float64(time.Second))) }
	port := 41000
	conn := func(name string, c recordgen.Conn) recordgen.Conn {
		port++
		names[strconv.Itoa(port)] = name
		c.SrcPort = port
		if c.SrcAddr == "" {
			c.SrcAddr = "198.51.100.20"
		}
		if c.Duration == 0 {
			c.Duration = 0.00125
		}
		return c
	}
	proc := func(p *recordgen.Pod, comm string, pid, uid int) recordgen.Source {
		return recordgen.Source{Pod: p, Comm: comm, PID: pid, PPID: 1, UID: uid}
	}
	a := recordgen.NewAgent("node-a", "ct-a1")
	b1 := recordgen.NewAgent("node-b", "ct-b1")
	b2 := recordgen.NewAgent("node-b", "ct-b2")
	h := recordgen.NewAgent("node-h", "ct-h1")

	var main []recordgen.Record
	add := func(r recordgen.Record) recordgen.Record { main = append(main, r); return r }
	add(a.Start(at(-1), false))
	add(b1.Start(at(-1), true))
	hStart := h.Start(at(-1), false)
	hStart.Attrs = append(hStart.Attrs, recordgen.KV{Key: trail.KeyHeartbeat, Value: 10.0})
	add(hStart)
	add(a.Connect(at(0), proc(nil, "date", 50, 0), conn("edge-from", recordgen.Conn{DstAddr: "127.0.0.1", DstPort: 9, Outcome: "established", Peer: peerLoop})))
	add(a.Connect(at(1), proc(web1, "curl", 100, 1000), conn("web1-db", recordgen.Conn{DstAddr: "10.0.1.5", DstPort: 5432, Outcome: "established", Peer: peerDB})))
	add(a.Connect(at(2), proc(web1, "curl", 100, 1000), conn("web1-api", recordgen.Conn{DstAddr: "10.96.0.20", DstPort: 80, Outcome: "established", Peer: peerAPI})))
	add(a.Connect(at(3), proc(web1, "curl", 100, 1000), conn("web1-ext", recordgen.Conn{DstAddr: "1.0.0.1", DstPort: 443, Outcome: "refused", ErrType: "ECONNREFUSED", Peer: peerExtern, Name: "api.example.com"})))
	add(b1.Connect(at(4), proc(web3, "psql", 200, 1000), conn("web3-db", recordgen.Conn{DstAddr: "10.0.1.5", DstPort: 5432, Outcome: "established", Peer: peerDB})))
	add(b1.Connect(at(5), proc(db, "postgres", 300, 999), conn("db-ext6", recordgen.Conn{SrcAddr: "2001:db8:1::20", DstAddr: "2001:db8::53", DstPort: 53, Outcome: "established", Peer: peerExtern, Name: "ns1.dns.example.com"})))
	add(a.Connect(at(6), proc(pay, "java", 400, 1001), conn("pay-gw", recordgen.Conn{DstAddr: "10.96.0.30", DstPort: 443, Outcome: "established", Peer: peerGW})))
	add(b1.Connect(at(7), proc(lone, "sh", 500, 0), conn("lone-node", recordgen.Conn{DstAddr: "10.0.0.2", DstPort: 10250, Outcome: "unreachable", ErrType: "EHOSTUNREACH", Peer: peerNodeA})))
	add(a.Connect(at(8), proc(nil, "kubelet", 1, 0), conn("host-kubelet", recordgen.Conn{SrcAddr: "127.0.0.1", DstAddr: "127.0.0.1", DstPort: 10248, Outcome: "established", Peer: peerLoop})))
	add(b1.Connect(at(9), proc(nil, "curl", 600, 0), conn("host-ext", recordgen.Conn{SrcAddr: "0.0.0.0", DstAddr: "1.0.0.5", DstPort: 80, Outcome: "aborted", ErrType: "aborted", Peer: peerExtern, Name: "example.com"})))
	reset := add(a.Connect(at(10), proc(web1, "curl", 100, 1000), conn("web1-db-reset", recordgen.Conn{DstAddr: "10.0.1.5", DstPort: 5432, Outcome: "reset", ErrType: "ECONNRESET", Peer: peerDB})))
	// An agent without Kubernetes enrichment names no source kind.
	unenriched := h.Connect(at(11), proc(nil, "wget", 700, 0), conn("unenriched", recordgen.Conn{DstAddr: "203.0.113.7", DstPort: 443, Outcome: "timeout", ErrType: "ETIMEDOUT", Peer: peerUnkn}))
	unenriched.Attrs = without(unenriched.Attrs, trail.KeySourceKind)
	add(unenriched)
	add(h.Connect(at(12), proc(nil, "sshd", 22, 0), conn("h-sshd", recordgen.Conn{DstAddr: "203.0.113.10", DstPort: 22, Outcome: "established", Peer: peerExtern})))
	add(b1.Stop(at(30)))
	add(b2.Start(at(35), false))
	add(a.Connect(at(60), proc(nil, "date", 50, 0), conn("edge-to", recordgen.Conn{DstAddr: "127.0.0.1", DstPort: 9, Outcome: "established", Peer: peerLoop})))

	// The gap window. node-c: a record older than the start record before
	// it in seq (drained from the pinned capture: outside the window, not
	// missing), 5 records lost and reported, 3 lost without a loss record,
	// then a stop.
	g := func(sec float64) time.Time { return Gap[0].Add(time.Duration(sec * float64(time.Second))) }
	c := recordgen.NewAgent("node-c", "ct-c1")
	var gap []recordgen.Record
	gap = append(gap, c.Start(g(0), false))
	gap = append(gap, c.Connect(g(-0.5), proc(web1, "curl", 100, 1000), conn("c-early", recordgen.Conn{DstAddr: "1.0.0.1", DstPort: 443, Outcome: "established", Peer: peerExtern})))
	gap = append(gap, c.Connect(g(1), proc(web1, "curl", 100, 1000), conn("c-1", recordgen.Conn{DstAddr: "1.0.0.1", DstPort: 443, Outcome: "established", Peer: peerExtern})))
	first, last := c.Lose(5)
	loss := c.Loss(g(3), 5, "spool_full", first, last, g(1.5), g(2.5))
	gap = append(gap, loss)
	c.Lose(3)
	gap = append(gap, c.Connect(g(10), proc(web1, "curl", 100, 1000), conn("c-2", recordgen.Conn{DstAddr: "1.0.0.1", DstPort: 443, Outcome: "established", Peer: peerExtern})))
	gap = append(gap, c.Stop(g(20)))
	// node-d: a loss record names seqs 3..4, which are stored, while 5..6
	// are missing: as many seqs absent as named, but not the same ones.
	d := recordgen.NewAgent("node-d", "ct-d1")
	gap = append(gap, d.Start(g(0), false))
	for i := 1; i <= 3; i++ {
		gap = append(gap, d.Connect(g(float64(i)+0.25), proc(nil, "curl", 800, 0), conn("d-"+strconv.Itoa(i), recordgen.Conn{DstAddr: "1.0.0.1", DstPort: 443, Outcome: "established", Peer: peerExtern})))
	}
	d.Lose(2)
	gap = append(gap, d.Connect(g(6.25), proc(nil, "curl", 800, 0), conn("d-6", recordgen.Conn{DstAddr: "1.0.0.1", DstPort: 443, Outcome: "established", Peer: peerExtern})))
	gap = append(gap, d.Loss(g(7), 2, "spool_full", 3, 4, g(2), g(3)))
	gap = append(gap, d.Stop(g(20)))

	return [][]recordgen.Record{main, gap, {reset, loss}}
}

func without(kvs []recordgen.KV, key trail.Key) []recordgen.KV {
	var out []recordgen.KV
	for _, kv := range kvs {
		if kv.Key != key {
			out = append(out, kv)
		}
	}
	return out
}

// Count is how many records Batches posts, duplicates included.
func Count() int {
	n := 0
	for _, b := range Batches() {
		n += len(b)
	}
	return n
}

// Records are Batches as a store holds them: the flat field names
// VictoriaLogs stores, values as text (empty ones too: a reader must take
// them as absent).
func Records() []backend.Record {
	var out []backend.Record
	for _, batch := range Batches() {
		for _, r := range batch {
			f := map[string]string{backend.FieldEventName: r.Event}
			for _, kv := range append(append([]recordgen.KV{}, r.Resource...), r.Attrs...) {
				f[string(kv.Key)] = text(kv.Value)
			}
			out = append(out, backend.Record{Time: r.Time, Body: r.Body, Fields: f})
		}
	}
	return out
}

func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	panic("backendtest: value of unknown type")
}

// names are the connects' names in the answers, by network.local.port.
var names = map[string]string{}

func init() { Batches() }

// name is a connect's name in the answers of Run.
func name(r backend.Record) string {
	if n, ok := names[r.Get(string(trail.KeyLocalPort))]; ok {
		return n
	}
	return "unknown record " + r.Get(backend.FieldServiceInstanceID) + "/" + r.Get(backend.FieldSeq)
}

func join(ss []string) string { return strings.Join(ss, "\n") }
