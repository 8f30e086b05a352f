package process

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// HostNetNS returns the inode of the host's network namespace: that of pid 1
// of the procfs at procRoot, or, where pid 1 cannot be inspected (as under
// some sandboxes' init), that of kthreadd (pid 2), which like every kernel
// thread lives in the initial network namespace. It is the agent's own only
// when the agent runs with hostNetwork. Reading it needs CAP_SYS_PTRACE
// unless the agent holds every capability of the process it inspects.
func HostNetNS(procRoot string) (uint32, error) {
	ino, err := netNSOf(procRoot + "/1")
	if err == nil {
		return ino, nil
	}
	if comm, cerr := os.ReadFile(procRoot + "/2/comm"); cerr == nil && strings.TrimSpace(string(comm)) == "kthreadd" {
		if ino, kerr := netNSOf(procRoot + "/2"); kerr == nil {
			return ino, nil
		}
	}
	return 0, fmt.Errorf("read the host's network namespace (CONNAUDIT_HOST_PROC is the host's /proc, and the agent needs CAP_SYS_PTRACE): %w", err)
}

func netNSOf(procPID string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(procPID+"/ns/net", &st); err != nil {
		return 0, fmt.Errorf("stat %s/ns/net: %w", procPID, err)
	}
	return uint32(st.Ino), nil
}
