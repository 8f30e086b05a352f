package cgroup

import "strings"

// Container runtimes, as named in Container.Runtime.
const (
	RuntimeContainerd = "containerd"
	RuntimeCRIO       = "cri-o"
	RuntimeDocker     = "docker"
)

// Pod QoS classes, as named in Container.QoS (the kubelet's cgroup names,
// lower case).
const (
	QoSGuaranteed = "guaranteed"
	QoSBurstable  = "burstable"
	QoSBestEffort = "besteffort"
)

// Container is the workload that owns a cgroup, as told by its path.
type Container struct {
	// PodUID is the pod's UID with dashes ("2d6f6e9c-3c0b-4e5d-9d2a-1f0b8c7a6e5d"),
	// or the 32-hex-digit hash that the kubelet uses as the UID of a static
	// pod. Empty outside Kubernetes pods.
	PodUID string
	// ContainerID is the runtime's 64-hex-digit container ID. Empty for a
	// pod-level cgroup (processes of the pod that belong to no container, such
	// as CRI-O's conmon).
	ContainerID string
	// Runtime is RuntimeContainerd, RuntimeCRIO or RuntimeDocker, or empty
	// when the path does not tell (the cgroupfs driver names containerd and
	// Docker containers by bare ID).
	Runtime string
	// QoS is QoSGuaranteed, QoSBurstable or QoSBestEffort when PodUID is set.
	QoS string
}

// Parse returns the pod and container that own the cgroup at path, which is
// relative to the cgroup v2 mount as in the "0::" line of /proc/<pid>/cgroup.
// It reports false when the path belongs to neither a pod nor a container,
// as for host processes.
//
// The innermost pod cgroup wins, so paths nested under a prefix (kind, k3s,
// a kubelet with --cgroup-root) parse like top-level ones. Supported layouts:
//
//	systemd:  /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_underscored>.slice/cri-containerd-<id>.scope
//	          /kubepods.slice/kubepods-pod<uid>.slice/crio-<id>.scope            (guaranteed)
//	          .../kubepods-besteffort-pod<uid>.slice/docker-<id>.scope
//	          .../kubepods-burstable-pod<uid>.slice/crio-conmon-<id>.scope       (conmon: pod only)
//	cgroupfs: /kubepods/burstable/pod<uid>/<id>, /kubepods/pod<uid>/<id>, /kubepods/besteffort/pod<uid>/crio-<id>
//	nested:   /kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope
//	Docker:   /system.slice/docker-<id>.scope, /docker/<id>                     (no pod)
//
// A pod-level cgroup gives the pod only. A path with a runtime-named container
// segment but no recognisable pod gives the container only.
func Parse(path string) (Container, bool) {
	segs := strings.Split(path, "/")

	for i := len(segs) - 1; i >= 0; i-- {
		uid, qos, ok := parsePodSegment(segs, i)
		if !ok {
			continue
		}
		c := Container{PodUID: uid, QoS: qos}
		if i+1 < len(segs) {
			id, runtime, kind := parseContainerSegment(segs[i+1])
			switch kind {
			case segContainer:
				c.ContainerID, c.Runtime = id, runtime
			case segConmon:
				// CRI-O's monitor process lives in the pod's cgroup tree but is
				// not the container, so it is attributed to the pod only.
				c.Runtime = runtime
			}
		}
		return c, true
	}

	// Not in a pod: the innermost container that its name identifies, like
	// Docker's /system.slice/docker-<id>.scope, or cgroupfs Docker's /docker/<id>.
	for i := len(segs) - 1; i >= 0; i-- {
		id, runtime, kind := parseContainerSegment(segs[i])
		if kind != segContainer {
			continue
		}
		if runtime == "" {
			if i == 0 || segs[i-1] != "docker" {
				continue
			}
			runtime = RuntimeDocker
		}
		return Container{ContainerID: id, Runtime: runtime}, true
	}
	return Container{}, false
}

// parsePodSegment reports whether segs[i] is a pod's cgroup, returning its
// UID and QoS class. The systemd driver names it
// "<prefix>kubepods[-<qos>]-pod<uid_underscored>.slice"; the cgroupfs driver
// "pod<uid>" below "kubepods" or "kubepods/<qos>".
func parsePodSegment(segs []string, i int) (uid, qos string, ok bool) {
	seg := segs[i]
	if name, ok := strings.CutSuffix(seg, ".slice"); ok {
		j := strings.LastIndex(name, "-pod")
		if j < 0 {
			return "", "", false
		}
		switch prefix := name[:j]; {
		case hasWordSuffix(prefix, "kubepods"):
			qos = QoSGuaranteed
		case hasWordSuffix(prefix, "kubepods-burstable"):
			qos = QoSBurstable
		case hasWordSuffix(prefix, "kubepods-besteffort"):
			qos = QoSBestEffort
		default:
			return "", "", false
		}
		uid, ok = normalizeUID(name[j+len("-pod"):])
		return uid, qos, ok
	}

	rest, ok := strings.CutPrefix(seg, "pod")
	if !ok || i == 0 {
		return "", "", false
	}
	switch parent := segs[i-1]; {
	case parent == "kubepods":
		qos = QoSGuaranteed
	case (parent == QoSBurstable || parent == QoSBestEffort) && i >= 2 && segs[i-2] == "kubepods":
		qos = parent
	default:
		return "", "", false
	}
	uid, ok = normalizeUID(rest)
	return uid, qos, ok
}

// hasWordSuffix reports whether s is word or ends with "-" + word.
func hasWordSuffix(s, word string) bool {
	if !strings.HasSuffix(s, word) {
		return false
	}
	n := len(s) - len(word)
	return n == 0 || s[n-1] == '-'
}

// normalizeUID accepts a pod UID as found in a cgroup name: a UUID whose
// dashes the systemd driver turns into underscores, or the 32-hex-digit hash
// that static pods use. It returns the UID as the API server shows it.
func normalizeUID(s string) (string, bool) {
	switch len(s) {
	case 32:
		return s, isLowerHex(s)
	case 36:
		underscores := false
		for i := 0; i < len(s); i++ {
			c := s[i]
			switch i {
			case 8, 13, 18, 23:
				if c == '_' {
					underscores = true
				} else if c != '-' {
					return "", false
				}
			default:
				if !isLowerHexByte(c) {
					return "", false
				}
			}
		}
		if underscores {
			s = strings.ReplaceAll(s, "_", "-")
		}
		return s, true
	}
	return "", false
}

type segKind int

const (
	segNone      segKind = iota
	segContainer         // a container; runtime may be "" for a bare ID
	segConmon            // CRI-O's conmon for a container
)

// containerPrefixes are the runtime-specific names of container cgroups, with
// or without the systemd ".scope" suffix. Longer prefixes come first.
var containerPrefixes = []struct {
	prefix  string
	runtime string
	kind    segKind
}{
	{"cri-containerd-", RuntimeContainerd, segContainer},
	{"crio-conmon-", RuntimeCRIO, segConmon},
	{"crio-", RuntimeCRIO, segContainer},
	{"docker-", RuntimeDocker, segContainer},
}

// parseContainerSegment tells whether seg names a container's cgroup and
// returns the container ID and runtime. A bare 64-hex-digit name is a
// container of unknown runtime.
func parseContainerSegment(seg string) (id, runtime string, kind segKind) {
	name, scope := strings.CutSuffix(seg, ".scope")
	for _, p := range containerPrefixes {
		if id, ok := strings.CutPrefix(name, p.prefix); ok {
			if !isContainerID(id) {
				return "", "", segNone
			}
			return id, p.runtime, p.kind
		}
	}
	if !scope && isContainerID(name) {
		return name, "", segContainer
	}
	return "", "", segNone
}

func isContainerID(s string) bool { return len(s) == 64 && isLowerHex(s) }

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isLowerHexByte(s[i]) {
			return false
		}
	}
	return true
}

func isLowerHexByte(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }
