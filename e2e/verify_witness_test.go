package e2e

import (
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connaudit/connaudit/internal/kubetest"
	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/trail/witness"
)

// TestVerifyWitness: the real agent, with a real API server, runs two
// instances on its node; each writes the node's witness Lease. `connaudit
// verify`, reading the witness through the kubeconfig, passes the untouched
// trail, and finds in copies of it what the trail alone does not show yet:
// the newest instance's tail deleted with its stop record (found at once,
// without waiting for the instance's heartbeat to be overdue), and the
// first instance deleted whole. (Policy and RBAC on the witness are tested
// in e2e/deploy; a swapped key in verify's own tests.)
func TestVerifyWitness(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	_, err := c.Client().CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "connaudit"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := startStack(t, "CONNAUDIT_HEARTBEAT_INTERVAL=1s", "CONNAUDIT_CHECKPOINT_RECORDS=50", "KUBECONFIG="+c.Kubeconfig(), "CONNAUDIT_KUBERNETES=on")
	target := newConnectTarget(t)
	ids := runInstances(t, s, target, 2)
	a, b := ids[0], ids[1]
	finalTrail(t, s.vl, b, a)

	lease, err := c.Client().CoordinationV1().Leases("connaudit").Get(t.Context(), "connaudit-witness-test-node", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the agent wrote no witness: %v", err)
	}
	wit, err := witness.FromLease(lease)
	if err != nil {
		t.Fatal(err)
	}
	if wit.Current.ID != b || len(wit.History) != 1 || wit.History[0].ID != a || wit.Current.Latest == nil || wit.History[0].Latest == nil {
		t.Fatalf("witness %+v; want current %s and history [%s], each with a checkpoint", wit, b, a)
	}

	rows, err := s.vl.Query(t.Context(), `connaudit.seq:*`)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i]["_time"] < rows[j]["_time"] })
	from, _ := time.Parse(time.RFC3339Nano, rows[0]["_time"])
	window := []string{"--from", from.Add(-time.Second).Format(time.RFC3339Nano), "--to", time.Now().Add(5 * time.Minute).UTC().Format(time.RFC3339Nano), "-o", "json"}
	withWitness := append([]string{"--kubeconfig", c.Kubeconfig(), "--witness-lag", "0s"}, window...)
	noWitness := append([]string{"--witness-namespace", ""}, window...)

	t.Run("intact", func(t *testing.T) {
		res := runConnaudit(t, nil, append([]string{"verify", "--server", s.vl.URL(), "--kubeconfig", c.Kubeconfig(), "--witness-lag", "0s"}, window[:4]...)...)
		if res.code != 0 || !strings.Contains(res.stdout, "Witnesses: 1 node(s), 2 instance(s)") {
			t.Fatalf("verify with the witness: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
		}
		res = runConnaudit(t, nil, append([]string{"verify", "--server", s.vl.URL(), "--witness-namespace", ""}, window[:4]...)...)
		if res.code != 0 || !strings.Contains(res.stdout, "No witness: --witness-namespace is empty") || !strings.Contains(res.stdout, "Weaker proof") {
			t.Fatalf("verify without a witness: exit %d; want 0 and the weaker proof named\n%s\n%s", res.code, res.stdout, res.stderr)
		}
	})

	bStart := time.Now()
	var bRows []map[string]string
	for _, r := range rows {
		if r[string(trail.KeyServiceInstanceID)] == b {
			bRows = append(bRows, r)
		}
	}
	sort.Slice(bRows, func(i, j int) bool { return seqOf(bRows[i]) < seqOf(bRows[j]) })
	tailFrom := seqOf(bRows[len(bRows)-1]) - 30
	t.Run("newest tail and stop record deleted", func(t *testing.T) {
		copied := copyTrail(t, rows, func(r map[string]string) bool {
			return r[string(trail.KeyServiceInstanceID)] == b && seqOf(r) >= tailFrom
		})
		if time.Since(bStart) < 20*time.Second {
			// The trail alone cannot tell this from a live agent until the
			// heartbeat is overdue (three intervals and 30 s).
			runVerify(t, copied, noWitness, 0)
		}
		rep := runVerify(t, copied, withWitness, 3)
		wantFinding(t, rep, b, "deleted")
	})
	t.Run("first instance deleted whole", func(t *testing.T) {
		rep := runVerify(t, copyTrail(t, rows, func(r map[string]string) bool {
			return r[string(trail.KeyServiceInstanceID)] == a
		}), withWitness, 3)
		found := false
		for _, f := range rep.Findings {
			if f.Instance == a && f.Kind == "deleted" && strings.Contains(f.Detail, "witness") {
				found = true
			}
		}
		if !found {
			t.Errorf("no finding from the witness that instance %s was deleted: %+v", a, rep.Findings)
		}
	})
}
