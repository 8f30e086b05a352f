package cgroup

import (
	"strings"
	"testing"
)

const (
	uid     = "2d6f6e9c-3c0b-4e5d-9d2a-1f0b8c7a6e5d"
	uidUnd  = "2d6f6e9c_3c0b_4e5d_9d2a_1f0b8c7a6e5d"
	static  = "5e8b1b3d5c4b7a1e9d0f2c6a8b4e7d13" // static pods: md5 hash as UID
	cid     = "3f1d2a9e8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e"
	cid2    = "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1"
	sysBurs = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidUnd + ".slice"
	sysBest = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidUnd + ".slice"
	sysGuar = "/kubepods.slice/kubepods-pod" + uidUnd + ".slice"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		path string
		want Container
		ok   bool
	}{
		// systemd driver
		{"systemd containerd burstable", sysBurs + "/cri-containerd-" + cid + ".scope",
			Container{uid, cid, RuntimeContainerd, QoSBurstable}, true},
		{"systemd containerd besteffort", sysBest + "/cri-containerd-" + cid + ".scope",
			Container{uid, cid, RuntimeContainerd, QoSBestEffort}, true},
		{"systemd containerd guaranteed", sysGuar + "/cri-containerd-" + cid + ".scope",
			Container{uid, cid, RuntimeContainerd, QoSGuaranteed}, true},
		{"systemd cri-o", sysBurs + "/crio-" + cid + ".scope",
			Container{uid, cid, RuntimeCRIO, QoSBurstable}, true},
		{"systemd cri-o guaranteed", sysGuar + "/crio-" + cid + ".scope",
			Container{uid, cid, RuntimeCRIO, QoSGuaranteed}, true},
		{"systemd cri-o conmon is the pod, not the container", sysBurs + "/crio-conmon-" + cid + ".scope",
			Container{PodUID: uid, Runtime: RuntimeCRIO, QoS: QoSBurstable}, true},
		{"systemd docker (cri-dockerd)", sysBest + "/docker-" + cid + ".scope",
			Container{uid, cid, RuntimeDocker, QoSBestEffort}, true},
		{"systemd pod level", sysBurs,
			Container{PodUID: uid, QoS: QoSBurstable}, true},
		{"systemd static pod", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + static + ".slice/cri-containerd-" + cid + ".scope",
			Container{static, cid, RuntimeContainerd, QoSBurstable}, true},
		{"systemd container sub-cgroup", sysBurs + "/cri-containerd-" + cid + ".scope/init.scope",
			Container{uid, cid, RuntimeContainerd, QoSBurstable}, true},

		// cgroupfs driver
		{"cgroupfs burstable", "/kubepods/burstable/pod" + uid + "/" + cid,
			Container{PodUID: uid, ContainerID: cid, QoS: QoSBurstable}, true},
		{"cgroupfs besteffort", "/kubepods/besteffort/pod" + uid + "/" + cid,
			Container{PodUID: uid, ContainerID: cid, QoS: QoSBestEffort}, true},
		{"cgroupfs guaranteed", "/kubepods/pod" + uid + "/" + cid,
			Container{PodUID: uid, ContainerID: cid, QoS: QoSGuaranteed}, true},
		{"cgroupfs cri-o", "/kubepods/burstable/pod" + uid + "/crio-" + cid,
			Container{uid, cid, RuntimeCRIO, QoSBurstable}, true},
		{"cgroupfs pod level", "/kubepods/besteffort/pod" + uid,
			Container{PodUID: uid, QoS: QoSBestEffort}, true},
		{"cgroupfs static pod", "/kubepods/pod" + static + "/" + cid,
			Container{PodUID: static, ContainerID: cid, QoS: QoSGuaranteed}, true},

		// nested under a prefix
		{"kind node view", "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + uidUnd + ".slice/cri-containerd-" + cid + ".scope",
			Container{uid, cid, RuntimeContainerd, QoSBestEffort}, true},
		{"kind host view", "/system.slice/docker-" + cid2 + ".scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod" + uidUnd + ".slice/cri-containerd-" + cid + ".scope",
			Container{uid, cid, RuntimeContainerd, QoSGuaranteed}, true},
		{"kind host view pod level", "/system.slice/docker-" + cid2 + ".scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod" + uidUnd + ".slice",
			Container{PodUID: uid, QoS: QoSGuaranteed}, true},
		{"kind node daemon is the node container", "/system.slice/docker-" + cid2 + ".scope/system.slice/containerd.service",
			Container{ContainerID: cid2, Runtime: RuntimeDocker}, true},
		{"systemd under system.slice", "/system.slice/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidUnd + ".slice/crio-" + cid + ".scope",
			Container{uid, cid, RuntimeCRIO, QoSBurstable}, true},
		{"k3s cgroupfs", "/k3s/kubepods/besteffort/pod" + uid + "/" + cid,
			Container{PodUID: uid, ContainerID: cid, QoS: QoSBestEffort}, true},
		{"cgroupfs under --cgroup-root", "/kubelet/kubepods/burstable/pod" + uid + "/" + cid,
			Container{PodUID: uid, ContainerID: cid, QoS: QoSBurstable}, true},

		// containers outside Kubernetes
		{"docker systemd", "/system.slice/docker-" + cid + ".scope",
			Container{ContainerID: cid, Runtime: RuntimeDocker}, true},
		{"docker cgroupfs", "/docker/" + cid,
			Container{ContainerID: cid, Runtime: RuntimeDocker}, true},
		{"unrecognised pod layout keeps the container", "/weird/place/cri-containerd-" + cid + ".scope",
			Container{ContainerID: cid, Runtime: RuntimeContainerd}, true},

		// host and malformed
		{"root", "/", Container{}, false},
		{"empty", "", Container{}, false},
		{"host service", "/system.slice/containerd.service", Container{}, false},
		{"user session", "/user.slice/user-0.slice/session-1.scope", Container{}, false},
		{"kubepods slices", "/kubepods.slice/kubepods-burstable.slice", Container{}, false},
		{"cgroupfs qos", "/kubepods/burstable", Container{}, false},
		{"docker service", "/system.slice/docker.service", Container{}, false},
		{"bare id outside pod and docker", "/foo/" + cid, Container{}, false},
		{"conmon outside pod", "/system.slice/crio-conmon-" + cid + ".scope", Container{}, false},
		{"short container id", sysBurs + "/cri-containerd-abc.scope",
			Container{PodUID: uid, QoS: QoSBurstable}, true},
		{"upper case id", "/system.slice/docker-" + "3F1D2A9E8B7C6D5E4F3A2B1C0D9E8F7A6B5C4D3E2F1A0B9C8D7E6F5A4B3C2D1E" + ".scope", Container{}, false},
		{"bad uid", "/kubepods.slice/kubepods-pod1234.slice", Container{}, false},
		{"pod not under kubepods", "/my-pod" + uidUnd + ".slice", Container{}, false},
		{"cgroupfs pod not under kubepods", "/other/burstable/pod" + uid + "/" + cid, Container{}, false},
		{"bare id with scope", "/kubepods/pod" + uid + "/" + cid + ".scope",
			Container{PodUID: uid, QoS: QoSGuaranteed}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Parse(tt.path)
			if got != tt.want || ok != tt.ok {
				t.Errorf("Parse(%q)\n got %+v, %v\nwant %+v, %v", tt.path, got, ok, tt.want, tt.ok)
			}
			checkWellFormed(t, tt.path, got, ok)
		})
	}
}

// checkWellFormed asserts the invariants that every Parse result keeps.
func checkWellFormed(t *testing.T, path string, c Container, ok bool) {
	t.Helper()
	if !ok {
		if c != (Container{}) {
			t.Errorf("Parse(%q) = %+v with ok=false, want the zero Container", path, c)
		}
		return
	}
	if c.PodUID == "" && c.ContainerID == "" {
		t.Errorf("Parse(%q) = %+v: ok but neither pod nor container", path, c)
	}
	if c.PodUID != "" {
		if _, valid := normalizeUID(c.PodUID); !valid || len(c.PodUID) == 36 && c.PodUID[8] != '-' {
			t.Errorf("Parse(%q): malformed PodUID %q", path, c.PodUID)
		}
	}
	if c.ContainerID != "" && !isContainerID(c.ContainerID) {
		t.Errorf("Parse(%q): malformed ContainerID %q", path, c.ContainerID)
	}
	switch c.Runtime {
	case "", RuntimeContainerd, RuntimeCRIO, RuntimeDocker:
	default:
		t.Errorf("Parse(%q): unknown Runtime %q", path, c.Runtime)
	}
	switch c.QoS {
	case QoSGuaranteed, QoSBurstable, QoSBestEffort:
		if c.PodUID == "" {
			t.Errorf("Parse(%q): QoS %q without a pod", path, c.QoS)
		}
	case "":
		if c.PodUID != "" {
			t.Errorf("Parse(%q): pod %q without QoS", path, c.PodUID)
		}
	default:
		t.Errorf("Parse(%q): unknown QoS %q", path, c.QoS)
	}
}

func TestParseMountinfo(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"hybrid", `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`, "/sys/fs/cgroup/unified"},
		{"pure v2", `29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`, "/sys/fs/cgroup"},
		{"prefers whole hierarchy", `50 40 0:26 /kubepods.slice /host/sub rw - cgroup2 cgroup2 rw
29 23 0:26 / /host\040cgroup rw shared:4 - cgroup2 cgroup2 rw
`, "/host cgroup"},
		{"only a subtree", `50 40 0:26 /kubepods.slice /host/sub rw - cgroup2 cgroup2 rw
`, "/host/sub"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMountinfo(strings.NewReader(tt.in))
			if err != nil || got != tt.want {
				t.Errorf("parseMountinfo() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := parseMountinfo(strings.NewReader("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n")); err == nil {
		t.Error("parseMountinfo without cgroup2: want an error")
	}
}
