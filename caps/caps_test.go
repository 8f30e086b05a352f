package caps

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCheck(t *testing.T) {
	bit := func(cs ...int) uint64 {
		var v uint64
		for _, c := range cs {
			v |= 1 << uint(c)
		}
		return v
	}
	for _, tc := range []struct {
		name    string
		eff     uint64
		dns     bool
		missing []string // names the error must carry; none: no error
	}{
		{"the three", bit(unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_SYS_PTRACE), false, nil},
		{"DNS capture needs NET_ADMIN", bit(unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_SYS_PTRACE), true, []string{"CAP_NET_ADMIN"}},
		{"the four", bit(unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_SYS_PTRACE, unix.CAP_NET_ADMIN), true, nil},
		{"SYS_ADMIN stands in for NET_ADMIN", bit(unix.CAP_SYS_ADMIN, unix.CAP_SYS_PTRACE), true, nil},
		{"SYS_ADMIN stands in for BPF and PERFMON", bit(unix.CAP_SYS_ADMIN, unix.CAP_SYS_PTRACE), false, nil},
		{"no PERFMON", bit(unix.CAP_BPF, unix.CAP_SYS_PTRACE), false, []string{"CAP_PERFMON"}},
		{"no SYS_PTRACE", bit(unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_SYS_ADMIN), false, []string{"CAP_SYS_PTRACE"}},
		{"none", 0, false, []string{"CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			needs := Agent
			if tc.dns {
				needs = append(needs[:len(needs):len(needs)], DNS)
			}
			err := check(tc.eff, needs)
			if len(tc.missing) == 0 {
				if err != nil {
					t.Fatalf("check: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("check passed; want it to name %v", tc.missing)
			}
			for _, m := range tc.missing {
				if !strings.Contains(err.Error(), m+" (to ") {
					t.Errorf("error %q does not name %s", err, m)
				}
			}
			for _, n := range needs {
				if !contains(tc.missing, n.Name) && strings.Contains(err.Error(), n.Name+" (to ") {
					t.Errorf("error %q names %s, which is held", err, n.Name)
				}
			}
		})
	}
}

// The test process runs as root with every capability.
func TestEffectiveOfRoot(t *testing.T) {
	eff, err := Effective()
	if err != nil {
		t.Fatal(err)
	}
	if err := check(eff, Agent); err != nil {
		t.Fatalf("as root: %v", err)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
