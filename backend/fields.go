package backend

import "github.com/connaudit/connaudit/trail"

// Field names of the record schema (package trail) that filters and
// aggregates use, as the text keys a store answers with.
const (
	FieldEventName = "event_name" // VictoriaLogs' name for the OTLP EventName

	FieldServiceInstanceID = string(trail.KeyServiceInstanceID)
	FieldSeq               = string(trail.KeySeq)
	FieldNamespace         = string(trail.KeyK8sNamespace)
	FieldPod               = string(trail.KeyK8sPodName)
	FieldPodUID            = string(trail.KeyK8sPodUID)
	FieldContainer         = string(trail.KeyK8sContainerName)
	FieldContainerID       = string(trail.KeyContainerID)
	FieldNode              = string(trail.KeyK8sNodeName)
	FieldPodLabelPrefix    = string(trail.KeyK8sPodLabelPrefix)
	FieldSourceKind        = string(trail.KeySourceKind)
	FieldHostNetwork       = string(trail.KeyHostNetwork)

	FieldComm    = string(trail.KeyProcessExecName)
	FieldPID     = string(trail.KeyProcessPID)
	FieldUID     = string(trail.KeyProcessUserID)
	FieldNetType = string(trail.KeyNetworkType)
	FieldSrcAddr = string(trail.KeyLocalAddress)
	FieldSrcPort = string(trail.KeyLocalPort)
	FieldDstAddr = string(trail.KeyPeerAddress)
	FieldDstPort = string(trail.KeyPeerPort)
	FieldDstName = string(trail.KeyServerAddress)
	// FieldDNSResolver answered the query that gave FieldDstName;
	// FieldDNSCluster says whether it is the cluster DNS.
	FieldDNSResolver = string(trail.KeyDNSResolver)
	FieldDNSCluster  = string(trail.KeyDNSCluster)
	FieldOutcome     = string(trail.KeyOutcome)
	FieldErrType     = string(trail.KeyErrorType)
	FieldDuration    = string(trail.KeyConnectDuration)

	FieldPeerKind           = string(trail.KeyPeerKind)
	FieldPeerNamespace      = string(trail.KeyPeerNamespace)
	FieldPeerPod            = string(trail.KeyPeerPod)
	FieldPeerService        = string(trail.KeyPeerService)
	FieldPeerNode           = string(trail.KeyPeerNode)
	FieldPeerWorkloadKind   = string(trail.KeyPeerWorkloadKind)
	FieldPeerWorkloadName   = string(trail.KeyPeerWorkloadName)
	FieldPeerPodLabelPrefix = string(trail.KeyPeerPodLabelPrefix)

	FieldResumed     = string(trail.KeyCaptureResumed)
	FieldHeartbeat   = string(trail.KeyHeartbeat)
	FieldLostCount   = string(trail.KeyLostCount)
	FieldLostBytes   = string(trail.KeyLostBytes)
	FieldLostReason  = string(trail.KeyLostReason)
	FieldLostTimeMin = string(trail.KeyLostTimeFirst)
	FieldLostTimeMax = string(trail.KeyLostTimeLast)
	FieldLostSeqMin  = string(trail.KeyLostSeqFirst)
	FieldLostSeqMax  = string(trail.KeyLostSeqLast)
)

// Event names (the OTLP EventName, VictoriaLogs' event_name).
const (
	EventConnect    = string(trail.EventConnect)
	EventAgentStart = string(trail.EventAgentStart)
	EventAgentStop  = string(trail.EventAgentStop)
	EventLoss       = string(trail.EventLoss)
)

// Outcomes of tcp.connect (connaudit.outcome).
var Outcomes = trail.Strings(trail.Outcomes)

// PeerKinds are the values of connaudit.peer.kind.
var PeerKinds = trail.Strings(trail.PeerKinds)

// SourceOwners are the workload kinds that name a record's source, in
// trail.OwnerPrecedence.
var SourceOwners = trail.Strings(trail.OwnerPrecedence)
