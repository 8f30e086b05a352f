package trail

import (
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Key is an attribute key of a record or of its resource.
type Key string

// Standard keys: OpenTelemetry semantic conventions.
const (
	KeyNetworkTransport   = Key(semconv.NetworkTransportKey)
	KeyNetworkType        = Key(semconv.NetworkTypeKey)
	KeyLocalAddress       = Key(semconv.NetworkLocalAddressKey)
	KeyLocalPort          = Key(semconv.NetworkLocalPortKey)
	KeyPeerAddress        = Key(semconv.NetworkPeerAddressKey)
	KeyPeerPort           = Key(semconv.NetworkPeerPortKey)
	KeyServerAddress      = Key(semconv.ServerAddressKey)
	KeyServerPort         = Key(semconv.ServerPortKey)
	KeyErrorType          = Key(semconv.ErrorTypeKey)
	KeyProcessPID         = Key(semconv.ProcessPIDKey)
	KeyProcessParentPID   = Key(semconv.ProcessParentPIDKey)
	KeyThreadID           = Key(semconv.ThreadIDKey)
	KeyProcessExecName    = Key(semconv.ProcessExecutableNameKey)
	KeyProcessExecPath    = Key(semconv.ProcessExecutablePathKey)
	KeyProcessUserID      = Key(semconv.ProcessUserIDKey)
	KeyContainerID        = Key(semconv.ContainerIDKey)
	KeyContainerImageName = Key(semconv.ContainerImageNameKey)
	KeyContainerImageTags = Key(semconv.ContainerImageTagsKey)
	KeyDNSQuestionName    = Key(semconv.DNSQuestionNameKey)
	KeyDNSAnswers         = Key(semconv.DNSAnswersKey)
	KeyServiceName        = Key(semconv.ServiceNameKey)
	KeyServiceVersion     = Key(semconv.ServiceVersionKey)
	KeyServiceInstanceID  = Key(semconv.ServiceInstanceIDKey)
	KeyHostName           = Key(semconv.HostNameKey)
	KeyK8sClusterName     = Key(semconv.K8SClusterNameKey)
	KeyK8sNodeName        = Key(semconv.K8SNodeNameKey)
	KeyK8sNamespace       = Key(semconv.K8SNamespaceNameKey)
	KeyK8sPodName         = Key(semconv.K8SPodNameKey)
	KeyK8sPodUID          = Key(semconv.K8SPodUIDKey)
	KeyK8sContainerName   = Key(semconv.K8SContainerNameKey)
	KeyK8sDeployment      = Key(semconv.K8SDeploymentNameKey)
	KeyK8sReplicaSet      = Key(semconv.K8SReplicaSetNameKey)
	KeyK8sStatefulSet     = Key(semconv.K8SStatefulSetNameKey)
	KeyK8sDaemonSet       = Key(semconv.K8SDaemonSetNameKey)
	KeyK8sJob             = Key(semconv.K8SJobNameKey)
	KeyK8sCronJob         = Key(semconv.K8SCronJobNameKey)
	KeyK8sReplicationCtrl = Key(semconv.K8SReplicationControllerNameKey)
	KeyK8sPodLabelPrefix  = Key("k8s.pod.label.")   // semconv's k8s.pod.label.<key>
	KeyProcessGroupID     = Key("process.group.id") // not in the semantic conventions, which name only real and saved ids
)

// connaudit's own keys.
const (
	KeySeq             Key = "connaudit.seq"
	KeyOutcome         Key = "connaudit.outcome"
	KeyConnectDuration Key = "connaudit.connect.duration"
	KeyCgroupID        Key = "connaudit.cgroup.id"
	KeyMntNS           Key = "connaudit.mntns"
	KeyNetNS           Key = "connaudit.netns"
	KeyIdentityLost    Key = "connaudit.identity.lost"
	KeySourceKind      Key = "connaudit.source.kind"
	KeyHostNetwork     Key = "connaudit.host_network"
	KeyEnrichment      Key = "connaudit.k8s.enrichment"
	KeyServiceAccount  Key = "connaudit.k8s.service_account.name"
	// KeyPodLabelsDropped counts the pod's labels left out of its resource
	// (beyond MaxLabels); KeyPeerPodLabelsDropped those of a peer pod.
	KeyPodLabelsDropped Key = "connaudit.k8s.pod.labels.dropped"

	KeyDNSNames   Key = "connaudit.dns.names"
	KeyDNSAge     Key = "connaudit.dns.age"
	KeyDNSAliases Key = "connaudit.dns.aliases"
	KeyDNSTTL     Key = "connaudit.dns.ttl"
	KeyDNSPartial Key = "connaudit.dns.partial"
	// KeyDNSResolver is the address of the resolver whose answer named a
	// connect's server.address.
	KeyDNSResolver Key = "connaudit.dns.resolver"
	// KeyDNSCluster tells whether that resolver is the cluster DNS (the
	// Service ClusterDNSService), or one the pod or node chose.
	KeyDNSCluster Key = "connaudit.dns.cluster"
	// KeyDNSRejected says why a dns.rejected answer matched no query.
	KeyDNSRejected Key = "connaudit.dns.rejected"

	KeyPeerKind             Key = "connaudit.peer.kind"
	KeyPeerNamespace        Key = "connaudit.peer.k8s.namespace.name"
	KeyPeerPod              Key = "connaudit.peer.k8s.pod.name"
	KeyPeerService          Key = "connaudit.peer.k8s.service.name"
	KeyPeerNode             Key = "connaudit.peer.k8s.node.name"
	KeyPeerWorkloadKind     Key = "connaudit.peer.k8s.workload.kind"
	KeyPeerWorkloadName     Key = "connaudit.peer.k8s.workload.name"
	KeyPeerPodLabelPrefix   Key = "connaudit.peer.k8s.pod.label."
	KeyPeerPodLabelsDropped Key = "connaudit.peer.k8s.pod.labels.dropped"

	KeyCaptureResumed   Key = "connaudit.capture.resumed"
	KeyCaptureTakenOver Key = "connaudit.capture.taken_over"
	KeySpoolDir         Key = "connaudit.spool.dir"

	KeyLostCount     Key = "connaudit.lost.count"
	KeyLostBytes     Key = "connaudit.lost.bytes"
	KeyLostReason    Key = "connaudit.lost.reason"
	KeyLostTimeFirst Key = "connaudit.lost.time.first"
	KeyLostTimeLast  Key = "connaudit.lost.time.last"
	KeyLostSeqFirst  Key = "connaudit.lost.seq.first"
	KeyLostSeqLast   Key = "connaudit.lost.seq.last"

	KeyDegradedCount     Key = "connaudit.degraded.count"
	KeyDegradedReason    Key = "connaudit.degraded.reason"
	KeyDegradedTimeFirst Key = "connaudit.degraded.time.first"
	KeyDegradedTimeLast  Key = "connaudit.degraded.time.last"

	// The chain and checkpoints (package trail/chain and trail/checkpoint).
	KeyChain               Key = "connaudit.chain"
	KeyAgentKey            Key = "connaudit.agent.key"
	KeySeqFinal            Key = "connaudit.seq.final"
	KeyCheckpointSeqFirst  Key = "connaudit.checkpoint.seq.first"
	KeyCheckpointSeqLast   Key = "connaudit.checkpoint.seq.last"
	KeyCheckpointCount     Key = "connaudit.checkpoint.count"
	KeyCheckpointHead      Key = "connaudit.checkpoint.head"
	KeyCheckpointSignature Key = "connaudit.checkpoint.signature"

	// The start record's link to the instance before it on the node, and the
	// heartbeat it promises (package shipper/handoff, verify).
	KeyPreviousInstance Key = "connaudit.previous.instance.id"
	KeyPreviousSeq      Key = "connaudit.previous.seq"
	KeyPreviousChain    Key = "connaudit.previous.chain"
	KeyHeartbeat        Key = "connaudit.heartbeat.interval"

	// KeyResourceError marks a resource the exporter could not decode.
	KeyResourceError Key = "connaudit.resource.error"
)

// String is an attribute of key k.
func (k Key) String(v string) attribute.KeyValue { return attribute.String(string(k), v) }

// Bool is an attribute of key k.
func (k Key) Bool(v bool) attribute.KeyValue { return attribute.Bool(string(k), v) }

// Int is an attribute of key k.
func (k Key) Int(v int) attribute.KeyValue { return attribute.Int(string(k), v) }
