package capture_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/connaudit/connaudit/dns/capture"
	"github.com/connaudit/connaudit/k8s/cgroup"
)

// TestMain lets the privilege test run this binary with fewer capabilities.
func TestMain(m *testing.M) {
	if os.Getenv("CAPTURE_PRIVILEGE_CHILD") == "1" {
		root, err := cgroup.FindV2Mount()
		if err == nil {
			var c *capture.Capture
			if c, err = capture.Load(capture.Config{RingBufferBytes: 1 << 16, CgroupRoot: root}); err == nil {
				c.Close()
			}
		}
		switch {
		case err == nil:
			fmt.Println("loaded")
		case errors.Is(err, capture.ErrPrivilege):
			fmt.Println("privilege:", err)
		default:
			fmt.Println("other:", err)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Attaching to the cgroup needs CAP_NET_ADMIN (or CAP_SYS_ADMIN) beyond
// CAP_BPF and CAP_PERFMON; without it the error says so.
func TestLoadNeedsNetAdmin(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv (util-linux) is needed to run with an exact capability set")
	}
	for _, c := range []struct{ caps, want string }{
		{"-all,+bpf,+perfmon", "privilege:"},
		{"-all,+bpf,+perfmon,+net_admin", "loaded"},
	} {
		cmd := exec.Command("setpriv", "--bounding-set", c.caps, "--inh-caps", "-all", os.Args[0], "-test.run", "^$")
		cmd.Env = append(os.Environ(), "CAPTURE_PRIVILEGE_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), c.want) {
			t.Errorf("with capabilities %s: %v: %s, want %q", c.caps, err, out, c.want)
		}
	}
}
