package witness

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connaudit/connaudit/trail/chain"
	"github.com/connaudit/connaudit/trail/checkpoint"
)

func TestLeaseName(t *testing.T) {
	if n, err := LeaseName("node-1.example"); err != nil || n != "connaudit-witness-node-1.example" {
		t.Errorf("LeaseName = %q, %v", n, err)
	}
	for _, bad := range []string{"", strings.Repeat("a", 240), "Node_1"} {
		if _, err := LeaseName(bad); err == nil {
			t.Errorf("LeaseName(%q): no error", bad)
		}
	}
}

// The history keeps the newest MaxHistory instances, newest first, and a
// repeated Begin of the same instance does not push it into its own history.
func TestBeginBoundsHistory(t *testing.T) {
	var w Witness
	for i := range MaxHistory + 5 {
		w.Begin("n", Instance{ID: fmt.Sprint(i)})
		w.Begin("n", Instance{ID: fmt.Sprint(i)})
	}
	if len(w.History) != MaxHistory || w.Current.ID != fmt.Sprint(MaxHistory+4) || w.History[0].ID != fmt.Sprint(MaxHistory+3) {
		t.Fatalf("current %s, history %d, newest %s", w.Current.ID, len(w.History), w.History[0].ID)
	}
	if got := len(w.Instances()); got != MaxHistory+1 {
		t.Errorf("Instances: %d", got)
	}
}

// What ApplyTo writes, FromLease reads; the checkpoint verifies only with
// the instance's key, and a Lease that names another node is refused. The
// full witness stays far below the API server's 256 KiB annotation limit.
func TestLeaseRoundTrip(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	c := checkpoint.Checkpoint{Instance: "i-0", First: 1, Last: 9, Count: 9, Head: chain.Next(chain.Genesis, chain.Link{1})}
	var w Witness
	for i := range MaxHistory + 1 {
		in := Instance{ID: fmt.Sprintf("i-%d", i), Key: checkpoint.EncodePublicKey(pub), Started: time.Now().UTC(), Heartbeat: 10 * time.Second}
		c.Instance = in.ID
		in.Latest = &Checkpoint{First: c.First, Last: c.Last, Count: c.Count, Head: c.Head.String(), Signature: checkpoint.Sign(key, c), Time: time.Now().UTC()}
		w.Begin("node-1", in)
	}
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "connaudit-witness-node-1", Namespace: "connaudit"}}
	if err := w.ApplyTo(l); err != nil {
		t.Fatal(err)
	}
	if n := len(l.Annotations[Annotation]); n > 16<<10 {
		t.Errorf("witness annotation is %d bytes", n)
	}
	got, err := FromLease(l)
	if err != nil {
		t.Fatal(err)
	}
	if got.Current.ID != w.Current.ID || len(got.History) != MaxHistory || *l.Spec.HolderIdentity != w.Current.ID || l.Spec.RenewTime == nil {
		t.Fatalf("read back %+v", got)
	}
	if _, err := got.Current.Checked(); err != nil {
		t.Errorf("Checked: %v", err)
	}
	forged := got.Current
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	forged.Key = checkpoint.EncodePublicKey(other)
	if _, err := forged.Checked(); err == nil {
		t.Error("a checkpoint verified with another key")
	}
	l.Name = "connaudit-witness-node-2"
	if _, err := FromLease(l); err == nil || !strings.Contains(err.Error(), "another node") {
		t.Errorf("a witness under another node's name: %v", err)
	}
}

type lister []coordinationv1.Lease

func (l lister) List(context.Context, string) (*coordinationv1.LeaseList, error) {
	return &coordinationv1.LeaseList{Items: l}, nil
}

func TestRead(t *testing.T) {
	var items lister
	for _, n := range []string{"a", "b"} {
		w := Witness{}
		w.Begin(n, Instance{ID: "i-" + n})
		l := coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: NamePrefix + n}}
		_ = w.ApplyTo(&l)
		items = append(items, l)
	}
	items = append(items, coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "other-lease"}})
	ws, err := Read(context.Background(), items, []string{"b"})
	if err != nil || len(ws) != 1 || ws[0].Node != "b" {
		t.Fatalf("Read b: %v, %v", ws, err)
	}
	items = append(items, coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: NamePrefix + "c", Annotations: map[string]string{Annotation: "{"}}})
	ws, err = Read(context.Background(), items, nil)
	if len(ws) != 2 || err == nil || !strings.Contains(err.Error(), NamePrefix+"c") {
		t.Fatalf("Read all: %d witnesses, %v; want 2 and the bad one named", len(ws), err)
	}
}
