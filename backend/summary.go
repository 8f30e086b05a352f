package backend

import (
	"strconv"

	"github.com/connaudit/connaudit/trail"
)

// Summarize is the group of Backend.Summary that the tcp.connect record r
// counts in: its Source, Peer, Port and Outcome (Count, First and Last are
// zero).
//
// The source is the workload that owns the pod (trail.OwnerPrecedence), else
// the pod (kind pod), else, for a record that names no pod, the host process
// (kind process, by executable name) on its node. The peer is the peer pod's
// workload (or the pod), Service or node, with its namespace; a peer of
// another kind (loopback, external, unknown) is its address.
func Summarize(r Record) SummaryRow {
	s := SummaryRow{Outcome: r.Get(FieldOutcome)}
	s.Port, _ = strconv.Atoi(r.Get(FieldDstPort))
	s.Source.Namespace = r.Get(FieldNamespace)
	switch w, ok := r.SourceWorkload(); {
	case ok:
		s.Source.Workload = w
	case r.Get(FieldPod) != "":
		s.Source.Workload = Workload{Kind: "pod", Name: r.Get(FieldPod)}
	default:
		s.Source.Host = true
		s.Source.Workload.Kind = "process"
		if r.Get(FieldPodUID) == "" { // a pod whose name was lost is no host process's
			s.Source.Node = r.Get(FieldNode)
			s.Source.Workload.Name = r.Get(FieldComm)
		}
	}
	s.Peer.Kind = r.Get(FieldPeerKind)
	switch trail.PeerKind(s.Peer.Kind) {
	case trail.PeerPod:
		s.Peer.Namespace = r.Get(FieldPeerNamespace)
		if name := r.Get(FieldPeerWorkloadName); name != "" {
			s.Peer.Name = r.Get(FieldPeerWorkloadKind) + "/" + name
		} else {
			s.Peer.Name = "pod/" + r.Get(FieldPeerPod)
		}
	case trail.PeerService:
		s.Peer.Namespace = r.Get(FieldPeerNamespace)
		s.Peer.Name = "service/" + r.Get(FieldPeerService)
	case trail.PeerNode:
		s.Peer.Name = "node/" + r.Get(FieldPeerNode)
	default:
		s.Peer.Address = r.Get(FieldDstAddr)
	}
	return s
}
