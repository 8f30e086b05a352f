package kubenode

import (
	"fmt"
	"path/filepath"
	"strings"
)

// NodeName is the node's name in the API.
const NodeName = "connaudit-node"

// SandboxImage is the pause image name containerd pins; Up imports
// Options.PauseImage under it, since this host cannot pull.
const SandboxImage = "registry.k8s.io/pause:3.10.1"

func (n *Node) containerdConfig() string {
	d := filepath.Join(n.dir, "containerd")
	return fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins.'io.containerd.internal.v1.opt']
  path = %[5]q

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %[6]q

[plugins.'io.containerd.cri.v1.runtime']
  # Root here lacks CAP_SYS_RESOURCE: without this, runc fails to raise a
  # container's oom_score_adj ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = %[7]q
`, filepath.Join(d, "root"), filepath.Join(d, "state"), n.ContainerdSocket(), filepath.Join(d, "ttrpc.sock"),
		filepath.Join(d, "opt"), SandboxImage, filepath.Join(n.dir, "cni", "net.d"))
}

func (n *Node) cniConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "connaudit-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q, "rangeStart": %q, "rangeEnd": %q, "gateway": %q}]]
      }
    },
    {"type": "loopback"}
  ]
}
`, Bridge, filepath.Join(n.dir, "cni", "ipam"), PodCIDR, podRangeStart, podRangeEnd, NodeIP)
}

func (n *Node) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
# This host runs hybrid cgroup v1; 1.35 and later refuse v1 otherwise.
failCgroupV1: false
failSwapOn: false
address: %[1]s
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
containerRuntimeEndpoint: unix://%[2]s
podLogsDir: %[3]s
resolvConf: %[4]s
clusterDNS: [%[5]s]
clusterDomain: cluster.local
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
authorization:
  mode: Webhook
# A test node on a shared disk: evict only when nearly full, and never
# collect the imported images (nothing could pull them back).
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  imagefs.available: 1%%
  nodefs.inodesFree: 1%%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`, NodeIP, n.ContainerdSocket(), filepath.Join(n.dir, "pod-logs"), filepath.Join(n.dir, "resolv.conf"), ClusterDNSIP)
}

func (n *Node) kubeProxyConfig() string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %[1]s
hostnameOverride: %[2]s
mode: iptables
clusterCIDR: %[3]s
bindAddress: %[4]s
healthzBindAddress: %[4]s:10256
metricsBindAddress: %[4]s:10249
nodePortAddresses: [%[4]s/32]
# Leave the host's conntrack settings alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, n.Kubeconfig(), NodeName, PodCIDR, NodeIP)
}

// corefile answers cluster names from the API and the outside hosts' names
// from a hosts block, and forwards nothing (that would leave through the
// uplink).
func (n *Node) corefile() string {
	var hosts strings.Builder
	for _, o := range Outsides {
		fmt.Fprintf(&hosts, "        %s %s\n", o.Addr, o.Name)
	}
	return fmt.Sprintf(`.:53 {
    bind %s
    errors
    hosts {
%s        fallthrough
    }
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %s connaudit-node
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
    loadbalance
}
`, NodeIP, hosts.String(), n.Kubeconfig())
}
