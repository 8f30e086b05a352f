// Package cgroup maps cgroup v2 ids, as returned by the eBPF helper
// bpf_get_current_cgroup_id(), to cgroup paths, and cgroup paths to the
// Kubernetes pod and container that own them.
//
// A cgroup v2 id is the inode number of the cgroup's directory in the v2
// hierarchy. A Resolver walks that hierarchy to build an id → path map and
// caches the parsed result per id, so the per-event cost is one map lookup.
// Parse understands the kubelet's systemd and cgroupfs drivers and the
// containerd, CRI-O and Docker naming schemes.
package cgroup
