package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connaudit/connaudit/internal/teststack"
	"github.com/connaudit/connaudit/trail"
)

// v1SpoolCommit is the last commit whose agent spooled records in the
// spool's payload version 1 (a compact encoding, decoded at export), before
// records were encoded once, as OTLP.
const v1SpoolCommit = "0230ddf3cbd5cd2ac1780e2e3f3ea7e03db4fb8e"

// TestUpgradeDrainsAnOlderAgentsSpool: the agent of the previous spool
// format spools connects while the collector is down, and stops. The
// current agent starts on its spool and pins, as a DaemonSet rollout does,
// and delivers every one of them, with the chain values the old agent gave
// them: verify passes both instances.
func TestUpgradeDrainsAnOlderAgentsSpool(t *testing.T) {
	old := buildAgentAt(t, v1SpoolCommit)
	vl := teststack.StartVictoriaLogs(t)
	col := teststack.StartCollector(t, vl.URL())
	col.Stop()
	agent := teststack.StartAgentBinary(t, col, old, "CONNAUDIT_CHECKPOINT_RECORDS=50")
	target := newConnectTarget(t)
	const connects = 300
	if made, failed := target.connect(connects); made != connects {
		t.Fatalf("made %d connects of %d (%d failed)", made, connects, failed)
	}
	// Every connect, and the records about them, spooled; none exported.
	if !pollUntil(arrivalTimeout, func() bool {
		m := metricsOf(t, agent)
		return m["connaudit_records_spooled_total"] > connects && m["connaudit_records_exported_total"] == 0
	}) {
		t.Fatalf("the old agent did not spool the connects: %v", metricsOf(t, agent))
	}
	agent.Stop()

	col.Start()
	agent.StartBinary(teststack.Binary(t, "connaudit-agent"))
	waitConnects(t, vl, target.port, connects, arrivalTimeout)
	agent.Stop()

	starts := vl.WaitFor(t, `event_name:="connaudit.agent.start"`, 2, arrivalTimeout)
	vl.WaitFor(t, `event_name:="connaudit.agent.stop"`, 2, arrivalTimeout)
	versions := map[string]bool{}
	for _, r := range starts {
		versions[r[string(trail.KeyServiceVersion)]] = true
	}
	if len(versions) != 2 {
		t.Fatalf("start records of versions %v: want the old agent's and the new one's", versions)
	}
	from := starts[0]["_time"]
	for _, r := range starts {
		if r["_time"] < from {
			from = r["_time"]
		}
	}
	at, err := time.Parse(time.RFC3339Nano, from)
	if err != nil {
		t.Fatal(err)
	}
	window := []string{"--node", "test-node", "--from", at.Add(-time.Second).Format(time.RFC3339Nano),
		"--to", time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano), "-o", "json"}
	rep := runVerify(t, vl.URL(), window, 0)
	if len(rep.Instances) != 2 {
		t.Errorf("verify: instances %+v, want the old agent's and the new one's", rep.Instances)
	}
}

// buildAgentAt builds the agent of a commit of this repository's history.
func buildAgentAt(t *testing.T, commit string) string {
	t.Helper()
	src := t.TempDir()
	if exec.Command("git", "-C", "..", "cat-file", "-e", commit+"^{commit}").Run() != nil {
		// A shallow clone lacks it: fetch it from where the clone came from.
		if out, err := exec.Command("git", "-C", "..", "fetch", "--quiet", "--depth=1", "origin", commit).CombinedOutput(); err != nil {
			t.Fatalf("commit %s is not in this clone and cannot be fetched from origin: %v: %s", commit, err, out)
		}
	}
	archive := exec.Command("sh", "-c", `git -C .. archive --format=tar "$0" | tar -x -C "$1"`, commit, src)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("extract commit %s: %v: %s", commit, err, out)
	}
	bin := filepath.Join(t.TempDir(), "connaudit-agent")
	build := exec.Command("go", "build", "-ldflags", "-X main.version="+commit[:7], "-o", bin, "./cmd/connaudit-agent")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the agent of %s: %v: %s", commit, err, strings.TrimSpace(string(out)))
	}
	return bin
}
