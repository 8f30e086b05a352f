package backend

// Field names of the record schema (README.md, "Record schema") that
// filters and aggregates use.
const (
	FieldEventName = "event_name"

	FieldServiceInstanceID = "service.instance.id"
	FieldSeq               = "connaudit.seq"
	FieldNamespace         = "k8s.namespace.name"
	FieldPod               = "k8s.pod.name"
	FieldPodUID            = "k8s.pod.uid"
	FieldContainer         = "k8s.container.name"
	FieldContainerID       = "container.id"
	FieldNode              = "k8s.node.name"
	FieldPodLabelPrefix    = "k8s.pod.label."
	FieldSourceKind        = "connaudit.source.kind"
	FieldHostNetwork       = "connaudit.host_network"

	FieldComm     = "process.executable.name"
	FieldPID      = "process.pid"
	FieldUID      = "process.user.id"
	FieldNetType  = "network.type"
	FieldSrcAddr  = "network.local.address"
	FieldSrcPort  = "network.local.port"
	FieldDstAddr  = "network.peer.address"
	FieldDstPort  = "network.peer.port"
	FieldDstName  = "server.address"
	FieldOutcome  = "connaudit.outcome"
	FieldErrType  = "error.type"
	FieldDuration = "connaudit.connect.duration"

	FieldPeerKind           = "connaudit.peer.kind"
	FieldPeerNamespace      = "connaudit.peer.k8s.namespace.name"
	FieldPeerPod            = "connaudit.peer.k8s.pod.name"
	FieldPeerService        = "connaudit.peer.k8s.service.name"
	FieldPeerNode           = "connaudit.peer.k8s.node.name"
	FieldPeerWorkloadKind   = "connaudit.peer.k8s.workload.kind"
	FieldPeerWorkloadName   = "connaudit.peer.k8s.workload.name"
	FieldPeerPodLabelPrefix = "connaudit.peer.k8s.pod.label."

	FieldResumed     = "connaudit.capture.resumed"
	FieldLostCount   = "connaudit.lost.count"
	FieldLostBytes   = "connaudit.lost.bytes"
	FieldLostReason  = "connaudit.lost.reason"
	FieldLostTimeMin = "connaudit.lost.time.first"
	FieldLostTimeMax = "connaudit.lost.time.last"
	FieldLostSeqMin  = "connaudit.lost.seq.first"
	FieldLostSeqMax  = "connaudit.lost.seq.last"
)

// Event names (the OTLP EventName, VictoriaLogs' event_name).
const (
	EventConnect    = "tcp.connect"
	EventAgentStart = "connaudit.agent.start"
	EventAgentStop  = "connaudit.agent.stop"
	EventLoss       = "connaudit.loss"
)

// Outcomes of tcp.connect (connaudit.outcome).
var Outcomes = []string{"established", "refused", "timeout", "unreachable", "reset", "aborted", "error"}

// PeerKinds are the values of connaudit.peer.kind.
var PeerKinds = []string{"pod", "service", "node", "loopback", "external", "unknown"}
