package trail

// Type is the OTLP value type of an attribute, as README's schema names it.
type Type string

const (
	TypeString Type = "string"
	TypeInt    Type = "int"
	TypeDouble Type = "double"
	TypeBool   Type = "bool"
)

// Attribute is one attribute a record may carry. A Prefix attribute stands
// for a family of keys: Key followed by, e.g., a label key.
type Attribute struct {
	Key    Key
	Type   Type
	Prefix bool
}

// ConnectAttributes are the attributes of a tcp.connect record, in README's
// order (its "Record schema" table; a test keeps the two equal).
var ConnectAttributes = []Attribute{
	{Key: KeyNetworkTransport, Type: TypeString},
	{Key: KeyNetworkType, Type: TypeString},
	{Key: KeyLocalAddress, Type: TypeString},
	{Key: KeyLocalPort, Type: TypeInt},
	{Key: KeyPeerAddress, Type: TypeString},
	{Key: KeyPeerPort, Type: TypeInt},
	{Key: KeyServerAddress, Type: TypeString},
	{Key: KeyServerPort, Type: TypeInt},
	{Key: KeyDNSNames, Type: TypeString},
	{Key: KeyDNSAge, Type: TypeDouble},
	{Key: KeyDNSResolver, Type: TypeString},
	{Key: KeyDNSCluster, Type: TypeBool},
	{Key: KeyOutcome, Type: TypeString},
	{Key: KeyErrorType, Type: TypeString},
	{Key: KeyConnectDuration, Type: TypeDouble},
	{Key: KeyProcessPID, Type: TypeInt},
	{Key: KeyProcessParentPID, Type: TypeInt},
	{Key: KeyThreadID, Type: TypeInt},
	{Key: KeyProcessExecName, Type: TypeString},
	{Key: KeyProcessExecPath, Type: TypeString},
	{Key: KeyProcessUserID, Type: TypeInt},
	{Key: KeyProcessGroupID, Type: TypeInt},
	{Key: KeyContainerID, Type: TypeString},
	{Key: KeyCgroupID, Type: TypeInt},
	{Key: KeyMntNS, Type: TypeInt},
	{Key: KeyNetNS, Type: TypeInt},
	{Key: KeyIdentityLost, Type: TypeBool},
	{Key: KeySourceKind, Type: TypeString},
	{Key: KeyHostNetwork, Type: TypeBool},
	{Key: KeyEnrichment, Type: TypeString},
	{Key: KeyPeerKind, Type: TypeString},
	{Key: KeyPeerNamespace, Type: TypeString},
	{Key: KeyPeerPod, Type: TypeString},
	{Key: KeyPeerService, Type: TypeString},
	{Key: KeyPeerNode, Type: TypeString},
	{Key: KeyPeerWorkloadKind, Type: TypeString},
	{Key: KeyPeerWorkloadName, Type: TypeString},
	{Key: KeyPeerPodLabelPrefix, Type: TypeString, Prefix: true},
	{Key: KeyPeerPodLabelsDropped, Type: TypeInt},
	{Key: KeySeq, Type: TypeInt},
	{Key: KeyChain, Type: TypeString},
}

// NoticeAttributes are the attributes of the records connaudit writes about
// itself and about what it lost, by event.
var NoticeAttributes = map[Event][]Key{
	EventAgentStart: {KeyCaptureResumed, KeyCaptureTakenOver, KeySpoolDir, KeyAgentKey,
		KeyPreviousInstance, KeyPreviousSeq, KeyPreviousChain, KeyHeartbeat},
	EventAgentStop: {KeySeqFinal},
	EventDNSAnswer: {KeyDNSQuestionName, KeyDNSAnswers, KeyDNSAliases, KeyDNSTTL, KeyDNSPartial,
		KeyNetworkTransport, KeyServerAddress, KeyNetNS, KeyCgroupID},
	EventDNSRejected: {KeyDNSQuestionName, KeyDNSAnswers, KeyDNSAliases, KeyDNSTTL, KeyDNSPartial,
		KeyNetworkTransport, KeyServerAddress, KeyNetNS, KeyCgroupID, KeyDNSRejected},
	EventLoss:     {KeyLostCount, KeyLostBytes, KeyLostReason, KeyLostTimeFirst, KeyLostTimeLast, KeyLostSeqFirst, KeyLostSeqLast},
	EventDegraded: {KeyDegradedCount, KeyDegradedReason, KeyDegradedTimeFirst, KeyDegradedTimeLast},
	EventCheckpoint: {KeyCheckpointSeqFirst, KeyCheckpointSeqLast, KeyCheckpointCount, KeyCheckpointHead,
		KeyCheckpointSignature},
}
