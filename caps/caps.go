// Package caps checks at start that the agent holds the Linux capabilities
// it needs, and names any that is missing, rather than failing later with a
// bare EPERM or, worse, silently recording less.
package caps

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Need is one capability the agent needs, and why. Any of Satisfied stands
// in for it, as the kernel lets CAP_SYS_ADMIN stand in for CAP_BPF and
// CAP_PERFMON.
type Need struct {
	Name      string // as in capabilities(7), e.g. "CAP_BPF"
	Why       string
	Satisfied []int // capability numbers, any of which is enough
}

// Agent is what connaudit-agent needs on Linux 5.11 or newer to capture
// connects. The DaemonSet (k8s/deploy/base/agent-daemonset.yaml) adds exactly
// these and DNS.
var Agent = []Need{
	{Name: "CAP_BPF", Why: "create the eBPF maps and ring buffer, load the programs and pin them",
		Satisfied: []int{unix.CAP_BPF, unix.CAP_SYS_ADMIN}},
	{Name: "CAP_PERFMON", Why: "load tracing programs and attach them to tracepoints (perf_event_open)",
		Satisfied: []int{unix.CAP_PERFMON, unix.CAP_SYS_ADMIN}},
	{Name: "CAP_SYS_PTRACE", Why: "read /proc/<pid>/exe of other users' processes (process.executable.path) and the host's network namespace",
		Satisfied: []int{unix.CAP_SYS_PTRACE}},
}

// DNS is what DNS capture (CONNAUDIT_DNS=on) needs beyond Agent. Without it
// the agent captures connects without names.
var DNS = Need{Name: "CAP_NET_ADMIN", Why: "attach the cgroup_skb program that names connects' peers from DNS answers",
	Satisfied: []int{unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN}}

// Require returns an error naming every need that the effective set of
// this process does not meet.
func Require(needs []Need) error {
	eff, err := Effective()
	if err != nil {
		return err
	}
	return check(eff, needs)
}

func check(eff uint64, needs []Need) error {
	var missing []string
	for _, n := range needs {
		if !meets(eff, n) {
			missing = append(missing, n.Name+" (to "+n.Why+")")
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("missing capabilit%s %s: run as root, or add %s to the container's securityContext.capabilities (uid 0)",
		plural(len(missing)), strings.Join(missing, ", "), names(needs))
}

func meets(eff uint64, n Need) bool {
	for _, c := range n.Satisfied {
		if c < 64 && eff&(1<<uint(c)) != 0 {
			return true
		}
	}
	return false
}

// Effective returns the effective capability set of this process, from the
// CapEff line of /proc/self/status.
func Effective() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read own capabilities: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if hex, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			v, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			if err != nil {
				return 0, fmt.Errorf("read own capabilities: parse CapEff %q: %w", hex, err)
			}
			return v, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read own capabilities: %w", err)
	}
	return 0, fmt.Errorf("read own capabilities: no CapEff line in /proc/self/status")
}

func names(needs []Need) string {
	var s []string
	for _, n := range needs {
		s = append(s, strings.TrimPrefix(n.Name, "CAP_"))
	}
	return strings.Join(s, ", ")
}

func plural(n int) string {
	if n == 1 {
		return "y"
	}
	return "ies"
}
