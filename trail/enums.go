package trail

import "strings"

// Outcome is how a connect attempt ended (connaudit.outcome).
type Outcome string

const (
	OutcomeEstablished Outcome = "established"
	OutcomeRefused     Outcome = "refused"     // RST answered the SYN
	OutcomeTimeout     Outcome = "timeout"     // SYN retries exhausted
	OutcomeUnreachable Outcome = "unreachable" // ICMP host or net unreachable
	OutcomeReset       Outcome = "reset"       // a RST after the SYN was answered
	OutcomeAborted     Outcome = "aborted"     // the application closed the socket mid-handshake
	OutcomeError       Outcome = "error"       // any other failure, and every synchronous one
)

// Outcomes lists every outcome, in README's order.
var Outcomes = []Outcome{OutcomeEstablished, OutcomeRefused, OutcomeTimeout, OutcomeUnreachable, OutcomeReset, OutcomeAborted, OutcomeError}

// SourceKind tells what made a connect attempt (connaudit.source.kind).
type SourceKind string

const (
	SourcePod     SourceKind = "pod"
	SourceHost    SourceKind = "host"    // a process whose cgroup is in no pod
	SourceUnknown SourceKind = "unknown" // its cgroup was never seen
)

// PeerKind tells what a destination address belongs to (connaudit.peer.kind).
type PeerKind string

const (
	PeerPod      PeerKind = "pod"
	PeerService  PeerKind = "service"
	PeerNode     PeerKind = "node"
	PeerLoopback PeerKind = "loopback"
	PeerExternal PeerKind = "external"
	// PeerUnknown is a non-loopback address while the caches of pods,
	// Services and nodes have never synced: calling it external would be a guess.
	PeerUnknown PeerKind = "unknown"
)

// PeerKinds lists every peer kind, in README's order.
var PeerKinds = []PeerKind{PeerPod, PeerService, PeerNode, PeerLoopback, PeerExternal, PeerUnknown}

// NameKey is the attribute that names a peer of kind k (the pod, Service or
// node); "" for the kinds that only an address names.
func (k PeerKind) NameKey() Key {
	switch k {
	case PeerPod:
		return KeyPeerPod
	case PeerService:
		return KeyPeerService
	case PeerNode:
		return KeyPeerNode
	}
	return ""
}

// Enrichment tells why a record lacks the pod identity it should have
// (connaudit.k8s.enrichment).
type Enrichment string

const (
	EnrichmentUnavailable    Enrichment = "unavailable"     // the API server was never reached, or is unreachable now
	EnrichmentPendingTimeout Enrichment = "pending_timeout" // the pod did not reach the cache within the hold timeout
	EnrichmentHoldQueueFull  Enrichment = "hold_queue_full" // no room to wait for the pod
)

// LossReason tells why records are missing (connaudit.lost.reason, and the
// reason label of connaudit_records_lost_total).
type LossReason string

const (
	LossRingBuffer      LossReason = "ring_buffer"      // the kernel found the event ring buffer full
	LossDNSRingBuffer   LossReason = "dns_ring_buffer"  // the kernel found the DNS ring buffer full
	LossDNSRateLimited  LossReason = "dns_rate_limited" // a network namespace sent answers over its budget; they were not read
	LossSpoolFull       LossReason = "spool_full"       // the spool was at CONNAUDIT_SPOOL_MAX_BYTES
	LossSpoolError      LossReason = "spool_error"      // the spool could not write (disk full, I/O error)
	LossSpoolCorrupt    LossReason = "spool_corrupt"    // unreadable spool data
	LossRejected        LossReason = "rejected"         // the collector refused records (partial success, or for good)
	LossUndecodable     LossReason = "undecodable"      // a spooled record this version cannot decode
	LossCaptureReplaced LossReason = "capture_replaced" // a replaced pinned capture of another layout held them
	LossAgentKilled     LossReason = "agent_killed"     // an agent instance ended (kill -9, crash) holding events it had read and not spooled
)

// LossReasons lists every loss reason, in README's order.
var LossReasons = []LossReason{LossRingBuffer, LossDNSRingBuffer, LossDNSRateLimited, LossSpoolFull, LossSpoolError, LossSpoolCorrupt, LossRejected, LossUndecodable, LossCaptureReplaced, LossAgentKilled}

// DegradedReason tells why records were shipped with less identity than they
// should have (connaudit.degraded.reason). Such records are not missing.
type DegradedReason string

const (
	DegradedHandshakeMap DegradedReason = "handshake_map" // shipped without process identity (connaudit.identity.lost)
	DegradedHoldQueue    DegradedReason = "hold_queue"    // shipped without waiting for the pod
)

// DegradedReasons lists every degraded reason, in README's order.
var DegradedReasons = []DegradedReason{DegradedHandshakeMap, DegradedHoldQueue}

// WorkloadKind is a pod owner's kind in lower case, as records name it
// (connaudit.peer.k8s.workload.kind). A controller of another kind is
// named by its kind lower-cased.
type WorkloadKind string

const (
	WorkloadDeployment            WorkloadKind = "deployment"
	WorkloadReplicaSet            WorkloadKind = "replicaset"
	WorkloadStatefulSet           WorkloadKind = "statefulset"
	WorkloadDaemonSet             WorkloadKind = "daemonset"
	WorkloadJob                   WorkloadKind = "job"
	WorkloadCronJob               WorkloadKind = "cronjob"
	WorkloadReplicationController WorkloadKind = "replicationcontroller"
)

// WorkloadPod is "pod" where a KIND/NAME names a pod itself (pod/mypod).
const WorkloadPod WorkloadKind = "pod"

// kubectlKinds maps kubectl's names and short names of workload kinds
// (deploy, sts, deployments, deployment.apps, ...) to the records' kind.
var kubectlKinds = func() map[string]WorkloadKind {
	m := map[string]WorkloadKind{}
	for _, k := range []struct {
		kind         WorkloadKind
		short, group string
	}{
		{WorkloadDeployment, "deploy", "apps"}, {WorkloadStatefulSet, "sts", "apps"}, {WorkloadDaemonSet, "ds", "apps"},
		{WorkloadReplicaSet, "rs", "apps"}, {WorkloadJob, "", "batch"}, {WorkloadCronJob, "cj", "batch"}, {WorkloadPod, "po", ""},
	} {
		m[string(k.kind)], m[string(k.kind)+"s"] = k.kind, k.kind
		if k.short != "" {
			m[k.short] = k.kind
		}
		if k.group != "" {
			m[string(k.kind)+"."+k.group] = k.kind
		}
	}
	return m
}()

// ParseWorkloadKind reads a workload kind as kubectl takes it, in any case.
func ParseWorkloadKind(s string) (WorkloadKind, bool) {
	k, ok := kubectlKinds[strings.ToLower(s)]
	return k, ok
}

// OwnerPrecedence are the workload kinds a source record names, in the order
// that names its workload: a Deployment over its ReplicaSet, a CronJob over
// its Job.
var OwnerPrecedence = []WorkloadKind{WorkloadDeployment, WorkloadStatefulSet, WorkloadDaemonSet, WorkloadCronJob, WorkloadJob, WorkloadReplicaSet}

// ResourceKey is the resource attribute that carries the name of a workload
// of kind k; "" for a kind the semantic conventions do not name.
func (k WorkloadKind) ResourceKey() Key {
	switch k {
	case WorkloadDeployment:
		return KeyK8sDeployment
	case WorkloadReplicaSet:
		return KeyK8sReplicaSet
	case WorkloadStatefulSet:
		return KeyK8sStatefulSet
	case WorkloadDaemonSet:
		return KeyK8sDaemonSet
	case WorkloadJob:
		return KeyK8sJob
	case WorkloadCronJob:
		return KeyK8sCronJob
	case WorkloadReplicationController:
		return KeyK8sReplicationCtrl
	}
	return ""
}

// SourceWorkload names the workload of a record's source from its resource
// attributes, as get returns them ("" when absent), by OwnerPrecedence; ok is
// false for a pod without an owner and for a host process.
func SourceWorkload(get func(Key) string) (kind WorkloadKind, name string, ok bool) {
	for _, k := range OwnerPrecedence {
		if n := get(k.ResourceKey()); n != "" {
			return k, n, true
		}
	}
	return "", "", false
}

// Strings converts enum values to the strings records hold.
func Strings[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// ClusterDNSService is the Service, as namespace and name, whose answers are
// the cluster DNS's (connaudit.dns.cluster): kube-dns, the name every
// distribution keeps for its cluster DNS Service, CoreDNS included.
var ClusterDNSService = [2]string{"kube-system", "kube-dns"}
