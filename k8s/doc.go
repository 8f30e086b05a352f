// Enrichment. An Enricher watches the API server through informers and
// answers two questions per event, from its caches, without locks or
// allocations:
//
//   - Source: which pod container a connecting process runs in, from the pod
//     UID and container id that its cgroup path tells (see package
//     k8s/cgroup). A node-scoped pod informer (spec.nodeName=CONNAUDIT_NODE_NAME)
//     indexes pods by UID, by the static-pod hash of mirror pods, and by the
//     container ids of their containers, init containers and ephemeral
//     containers. The answer is a Workload with the pod's current labels, its
//     owning workload and its OTLP resource attributes.
//   - Peer: what a destination address belonged to at the event's time: a
//     pod, a Service, a node, loopback or external. Cluster-wide informers of
//     pods, Services and nodes keep, per address, a short history of holders,
//     so that a reused pod IP resolves to the pod that held it then.
//
// Deleted pods and released addresses still resolve for
// CONNAUDIT_K8S_DELETED_POD_GRACE. An API server that is unreachable at start,
// or that goes away, is retried in the background: lookups answer from the
// caches meanwhile (Source says SourceUnavailable for pods it does not know).
//
// RBAC. The agent's ServiceAccount needs exactly these permissions, in a
// ClusterRole:
//
//	apiGroups: [""]       resources: ["pods"]        verbs: ["list", "watch"]
//	apiGroups: [""]       resources: ["services"]    verbs: ["list", "watch"]
//	apiGroups: [""]       resources: ["nodes"]       verbs: ["list", "watch"]
//	apiGroups: ["apps"]   resources: ["replicasets"] verbs: ["list", "watch"]
//	apiGroups: ["batch"]  resources: ["jobs"]        verbs: ["list", "watch"]
//
// Only list and watch are called, never get, and nothing is written. Pods,
// Services, ReplicaSets and Jobs are watched in every namespace (RBAC cannot
// narrow the node's pod informer to its field selector).
//
// Client. The enricher reads through an API (NewAPI): one REST client per
// API group version (core/v1, apps/v1, batch/v1) that decodes these five
// types only (asking for protobuf), not client-go's generated clientset, which would
// link and initialise every API group of Kubernetes into the agent.
package k8s
