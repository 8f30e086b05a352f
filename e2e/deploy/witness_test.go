package deploy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/connaudit/connaudit/agent/witnesswriter"
	"github.com/connaudit/connaudit/internal/kubetest"
	"github.com/connaudit/connaudit/internal/teststack"
	"github.com/connaudit/connaudit/k8s"
	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/trail/chain"
	"github.com/connaudit/connaudit/trail/checkpoint"
	"github.com/connaudit/connaudit/trail/witness"
)

// apiAudience is the audience the API server takes tokens for (kubetest's
// --service-account-issuer), as in a pod's kube-api-access volume.
const apiAudience = "https://kubernetes.default.svc.cluster.local"

// asToken is a client configuration that authenticates with a token file.
func asToken(c *kubetest.Cluster, tokenFile string) *rest.Config {
	cfg := c.Config()
	return &rest.Config{Host: cfg.Host, TLSClientConfig: rest.TLSClientConfig{CAFile: cfg.CAFile, CAData: cfg.CAData}, BearerTokenFile: tokenFile}
}

func leasesAs(t *testing.T, cfg *rest.Config) *k8s.Leases {
	t.Helper()
	l, err := k8s.NewLeases(cfg, namespace)
	must(t, err, "Leases client")
	return l
}

func signedCheckpoint(key ed25519.PrivateKey, instance string, last uint64) (checkpoint.Checkpoint, string) {
	c := checkpoint.Checkpoint{Instance: instance, First: 1, Last: last, Count: last, Head: chain.Next(chain.Genesis, chain.Link{byte(last)})}
	return c, checkpoint.Sign(key, c)
}

// With k8s/deploy applied to a real API server: the agent's pod-bound token
// lets its writer create and update its own node's witness; the agent of
// another node, another ServiceAccount and a cluster admin cannot write it,
// each refused with a message that says why; an admin can delete it.
func TestWitnessLease(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	applyAll(t, c)
	g := teststack.NewGatewayAuth(t, c)
	ctx := t.Context()
	agentA := asToken(c, g.Token(namespace, teststack.AgentAccount, "connaudit-agent-node-a", "node-a", apiAudience))
	agentB := asToken(c, g.Token(namespace, teststack.AgentAccount, "connaudit-agent-node-b", "node-b", apiAudience))

	// The writer, as the agent runs it, on node-a: two instances in turn.
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func(id string, key ed25519.PrivateKey) *witnesswriter.Writer {
		w, err := witnesswriter.New(witnesswriter.Config{Node: "node-a", MinInterval: 200 * time.Millisecond,
			Instance: witness.Instance{ID: id, Key: checkpoint.EncodePublicKey(key.Public().(ed25519.PublicKey)), Started: time.Now(), Heartbeat: time.Second}},
			leasesAs(t, agentA), witnesswriter.NewMetrics(prometheus.NewRegistry()), logger)
		must(t, err, "witness writer")
		w.Start()
		return w
	}
	read := func() witness.Witness {
		t.Helper()
		l, err := c.Client().CoordinationV1().Leases(namespace).Get(ctx, "connaudit-witness-node-a", metav1.GetOptions{})
		must(t, err, "get the witness Lease")
		w, err := witness.FromLease(l)
		must(t, err, "read the witness")
		return w
	}
	waitFor := func(what string, ok func(witness.Witness) bool) witness.Witness {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			l, err := c.Client().CoordinationV1().Leases(namespace).Get(ctx, "connaudit-witness-node-a", metav1.GetOptions{})
			if err == nil {
				if w, err := witness.FromLease(l); err == nil && ok(w) {
					return w
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the witness never showed %s (last: %v)", what, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	_, key1, _ := ed25519.GenerateKey(rand.Reader)
	w1 := start("instance-1", key1)
	waitFor("instance-1 as current", func(w witness.Witness) bool { return w.Current.ID == "instance-1" })
	for _, last := range []uint64{10, 20, 30} {
		cp, sig := signedCheckpoint(key1, "instance-1", last)
		w1.Checkpointed(cp, sig, time.Now())
	}
	got := waitFor("instance-1's checkpoint 1-30", func(w witness.Witness) bool {
		return w.Current.Latest != nil && w.Current.Latest.Last == 30
	})
	if _, err := got.Current.Checked(); err != nil {
		t.Errorf("the witnessed checkpoint does not verify: %v", err)
	}
	cp, sig := signedCheckpoint(key1, "instance-1", 42)
	w1.Checkpointed(cp, sig, time.Now())
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	must(t, w1.Stop(stopCtx), "final write")
	cancel()
	if got := read(); got.Current.Latest == nil || got.Current.Latest.Last != 42 {
		t.Fatalf("after Stop the witness holds %+v; want the final checkpoint through 42", got.Current.Latest)
	}
	lease, err := c.Client().CoordinationV1().Leases(namespace).Get(ctx, "connaudit-witness-node-a", metav1.GetOptions{})
	must(t, err, "get Lease")
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != "instance-1" || lease.Spec.RenewTime == nil {
		t.Errorf("Lease spec %+v; want holderIdentity instance-1 and a renewTime", lease.Spec)
	}

	_, key2, _ := ed25519.GenerateKey(rand.Reader)
	w2 := start("instance-2", key2)
	got = waitFor("instance-2 current, instance-1 in the history", func(w witness.Witness) bool {
		return w.Current.ID == "instance-2" && len(w.History) == 1 && w.History[0].ID == "instance-1"
	})
	if got.History[0].Latest == nil || got.History[0].Latest.Last != 42 {
		t.Errorf("history keeps instance-1 with %+v; want its final checkpoint through 42", got.History[0].Latest)
	}
	stopCtx, cancel = context.WithTimeout(ctx, 10*time.Second)
	_ = w2.Stop(stopCtx)
	cancel()

	// The agent of node-b may write its own witness...
	lb := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "connaudit-witness-node-b", Namespace: namespace}}
	if _, err := leasesAs(t, agentB).Create(ctx, lb); err != nil {
		t.Errorf("node-b's agent cannot create its own witness: %v", err)
	}
	// ...and not node-a's: the admission policy refuses it, saying why.
	stolen, err := leasesAs(t, agentB).Get(ctx, "connaudit-witness-node-a")
	must(t, err, "node-b's agent reads node-a's witness") // get is allowed: reading proves nothing
	stolen.Annotations[witness.Annotation] = `{"version":1,"node":"node-a","current":{"instance":"forged"}}`
	_, err = leasesAs(t, agentB).Update(ctx, stolen)
	if err == nil || !strings.Contains(err.Error(), "only the agent on node node-a may write its witness connaudit-witness-node-a") ||
		!strings.Contains(err.Error(), "is bound to node node-b") {
		t.Errorf("node-b's agent updating node-a's witness: err = %v; want the ValidatingAdmissionPolicy's refusal", err)
	}
	_, err = leasesAs(t, agentB).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "connaudit-witness-node-c", Namespace: namespace}})
	if err == nil || !strings.Contains(err.Error(), "only the agent on node node-c") {
		t.Errorf("node-b's agent creating node-c's witness: err = %v; want the policy's refusal", err)
	}

	// Another ServiceAccount, even with a token bound to a pod on node-a:
	// RBAC refuses it first, naming the verb and resource.
	other := asToken(c, g.Token(namespace, "intruder", "intruder-node-a", "node-a", apiAudience))
	cur, err := c.Client().CoordinationV1().Leases(namespace).Get(ctx, "connaudit-witness-node-a", metav1.GetOptions{})
	must(t, err, "get")
	_, err = leasesAs(t, other).Update(ctx, cur)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `cannot update resource "leases"`) {
		t.Errorf("another ServiceAccount updating the witness: err = %v; want RBAC's refusal", err)
	}

	// A cluster admin cannot rewrite a witness either (no node in its
	// credentials)...
	cur.Annotations[witness.Annotation] = `{}`
	_, err = c.Client().CoordinationV1().Leases(namespace).Update(ctx, cur, metav1.UpdateOptions{})
	if err == nil || !strings.Contains(err.Error(), "has no token bound to a pod on a node") {
		t.Errorf("a cluster admin updating the witness: err = %v; want the policy's refusal", err)
	}
	// ...and a writer with the wrong node's token says what is missing.
	wrong, err := witnesswriter.New(witnesswriter.Config{Node: "node-a", MinInterval: 100 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Stale: time.Millisecond,
		Instance: witness.Instance{ID: "instance-3", Key: checkpoint.EncodePublicKey(key2.Public().(ed25519.PublicKey))}},
		leasesAs(t, agentB), witnesswriter.NewMetrics(prometheus.NewRegistry()), logger)
	must(t, err, "writer")
	wrong.Start()
	deadline := time.Now().Add(10 * time.Second)
	for wrong.Check() == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := wrong.Check(); err == nil || !strings.Contains(err.Error(), "witness Lease connaudit/connaudit-witness-node-a not written") ||
		!strings.Contains(err.Error(), "only the agent on node node-a") {
		t.Errorf("Check of a writer the policy refuses: %v; want the Lease and the refusal named", err)
	}
	_ = wrong.Stop(ctx)

	// Deleting is left to admins (and audited): the agent cannot.
	if err := leasesAsDelete(ctx, agentA); !apierrors.IsForbidden(err) {
		t.Errorf("the agent deleting its witness: err = %v; want forbidden", err)
	}
	if err := c.Client().CoordinationV1().Leases(namespace).Delete(ctx, "connaudit-witness-node-a", metav1.DeleteOptions{}); err != nil {
		t.Errorf("an admin cannot delete a witness: %v", err)
	}
}

func leasesAsDelete(ctx context.Context, cfg *rest.Config) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	return cs.CoordinationV1().Leases(namespace).Delete(ctx, "connaudit-witness-node-a", metav1.DeleteOptions{})
}

// checkWitness checks the witness the real agent (run as the DaemonSet runs
// it, now stopped) left for its node against the trail it wrote: the
// instance and key of its start record, and its final checkpoint, the one
// just before its stop record, which is in the store as witnessed.
func checkWitness(t *testing.T, w *agentCluster, vl *teststack.VictoriaLogs) {
	t.Helper()
	ctx := t.Context()
	lease, err := w.cluster.Client().CoordinationV1().Leases(namespace).Get(ctx, "connaudit-witness-"+w.nodeName, metav1.GetOptions{})
	must(t, err, "get the node's witness Lease")
	wit, err := witness.FromLease(lease)
	must(t, err, "read the node's witness")
	start := waitForRow(t, vl, fmt.Sprintf(`event_name:=%q k8s.node.name:=%q`, trail.EventAgentStart, w.nodeName), func() {})
	stop := waitForRow(t, vl, fmt.Sprintf(`event_name:=%q k8s.node.name:=%q`, trail.EventAgentStop, w.nodeName), func() {})
	cur := wit.Current
	if cur.ID != start[string(trail.KeyServiceInstanceID)] || cur.Key != start[string(trail.KeyAgentKey)] || cur.Key == "" {
		t.Fatalf("witness current instance %s key %s; the start record names %s key %s", cur.ID, cur.Key,
			start[string(trail.KeyServiceInstanceID)], start[string(trail.KeyAgentKey)])
	}
	if _, err := cur.Checked(); err != nil {
		t.Fatalf("the witnessed checkpoint: %v", err)
	}
	if got, want := strconv.FormatUint(cur.Latest.Last+2, 10), stop[string(trail.KeySeqFinal)]; got != want {
		t.Errorf("witnessed checkpoint seals through seq %d; the stop record's final seq is %s: want the checkpoint just before it (%s)", cur.Latest.Last, want, got)
	}
	cp := waitForRow(t, vl, fmt.Sprintf(`event_name:=%q %s:=%d`, trail.EventCheckpoint, trail.KeyCheckpointSeqLast, cur.Latest.Last), func() {})
	if cp[string(trail.KeyCheckpointHead)] != cur.Latest.Head {
		t.Errorf("the trail's checkpoint through seq %d seals %s; the witness holds %s", cur.Latest.Last, cp[string(trail.KeyCheckpointHead)], cur.Latest.Head)
	}
	if *lease.Spec.HolderIdentity != cur.ID {
		t.Errorf("Lease holderIdentity %q; want %q", *lease.Spec.HolderIdentity, cur.ID)
	}
}
