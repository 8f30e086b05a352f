// Package advise turns a connection history into restrictive, deterministic
// NetworkPolicies that allow exactly what was observed, with the evidence for
// each rule. Its input is aggregated flows, never single records: a flow
// source (a log backend) does the counting.
package advise

import (
	"net/netip"
	"time"

	"github.com/connaudit/connaudit/trail"
)

// Source is the connecting side of a flow.
type Source struct {
	Kind         trail.SourceKind
	Namespace    string
	Pod          string
	WorkloadKind string // "deployment", "statefulset", "daemonset", "job", "cronjob", "replicaset"; empty for a bare pod
	WorkloadName string
	Labels       map[string]string // the pod's labels at the time of the records
	HostNetwork  bool
	Node         string
	Address      netip.Addr // network.local.address; invalid when the attempt failed before binding
}

// Destination is the accepting side of a flow.
type Destination struct {
	Kind         trail.PeerKind
	Namespace    string // of a pod or Service
	Name         string // of the pod, Service or node
	WorkloadKind string // of a pod
	WorkloadName string
	Labels       map[string]string // of a pod
	Address      netip.Addr
	Port         uint16
	// DNSName is the name the application asked DNS for (server.address),
	// when the records have one: evidence for an ipBlock, never a rule.
	// DNSResolver gave it; DNSFrom says whether that is the cluster DNS.
	DNSName     string
	DNSResolver string
	DNSFrom     DNSFrom
}

// DNSFrom tells whether a name came from the cluster DNS (connaudit.dns.cluster).
type DNSFrom int

const (
	DNSFromUnknown DNSFrom = iota // the agent could not tell
	DNSFromCluster
	DNSFromOther // a resolver the pod or its node chose
)

// Flow is every attempt from one source to one destination address and port
// that ended the same way.
type Flow struct {
	Source      Source
	Destination Destination
	Outcome     string // connaudit.outcome
	Count       int64
	First, Last time.Time
}

// Established reports whether the attempts succeeded.
func (f Flow) Established() bool { return f.Outcome == string(trail.OutcomeEstablished) }

// Gap is a place where the trail may be incomplete: a loss record or a hole
// in an agent instance's sequence numbers.
type Gap struct {
	Node        string
	Instance    string // service.instance.id
	Reason      string // connaudit.lost.reason, or "seq_hole"
	Count       int64  // records lost (0 when unknown)
	First, Last time.Time
}

// History is what the advisor works from: the flows of a time window and the
// gaps of the trail in it.
type History struct {
	From, To time.Time
	// Query describes where the flows came from (the backend's query), for
	// the policies' annotations.
	Query string
	Flows []Flow
	Gaps  []Gap
}
