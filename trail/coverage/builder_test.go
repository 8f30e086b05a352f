package coverage

import (
	"testing"
	"time"

	"github.com/connaudit/connaudit/trail"
)

func attrs(m map[trail.Key]string) func(trail.Key) string {
	return func(k trail.Key) string { return m[k] }
}

func TestBuilder(t *testing.T) {
	b := NewBuilder(at(0), at(60), nil, at(61))
	on := func(node, id string, more map[trail.Key]string) func(trail.Key) string {
		m := map[trail.Key]string{trail.KeyK8sNodeName: node, trail.KeyServiceInstanceID: id}
		for k, v := range more {
			m[k] = v
		}
		return attrs(m)
	}
	// n1/a: two start records (the earliest counts) and two stops (the latest).
	b.Lifecycle(trail.EventAgentStart, at(-5), on("n1", "a", map[trail.Key]string{trail.KeyCaptureResumed: "false", trail.KeyHeartbeat: "30"}))
	b.Lifecycle(trail.EventAgentStart, at(-10), on("n1", "a", map[trail.Key]string{trail.KeyCaptureResumed: "true", trail.KeyHeartbeat: "1.5"}))
	b.Lifecycle(trail.EventAgentStop, at(40), on("n1", "a", nil))
	b.Lifecycle(trail.EventAgentStop, at(30), on("n1", "a", nil))
	b.Lifecycle(trail.EventConnect, at(1), on("n1", "x", nil)) // not a lifecycle record
	// n2/old stopped before the window; n3/late started after it: neither is listed, their nodes are.
	b.Lifecycle(trail.EventAgentStop, at(-1), on("n2", "old", nil))
	b.Lifecycle(trail.EventAgentStart, at(61), on("n3", "late", nil))
	in := b.Instance("n1", "a")
	in.Records, in.MinSeq, in.MaxSeq = 3, 1, 5
	loss := map[trail.Key]string{trail.KeySeq: "4", trail.KeyLostCount: "2", trail.KeyLostReason: "ring_buffer",
		trail.KeyLostSeqFirst: "2", trail.KeyLostSeqLast: "3", trail.KeyLostTimeFirst: at(2).Format(time.RFC3339Nano)}
	b.Loss(at(9), on("n1", "a", loss))
	b.Loss(at(9), on("n1", "a", loss)) // a replayed copy
	b.Loss(at(3), on("n1", "a", map[trail.Key]string{trail.KeySeq: "2", trail.KeyLostBytes: "100"}))
	if b.Lookup("n1", "nobody") != nil || b.Lookup("n1", "a") != in {
		t.Fatal("Lookup")
	}

	var asked []string
	c, err := b.Coverage(func(in *Instance) error {
		asked = append(asked, in.ID)
		in.Missing = []Hole{{Seqs: SeqRange{2, 3}}}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !c.From.Equal(at(0)) || !c.To.Equal(at(60)) || !c.AsOf.Equal(at(61)) {
		t.Errorf("window %v %v %v", c.From, c.To, c.AsOf)
	}
	if len(c.Nodes) != 3 || c.Nodes[0] != "n1" || c.Nodes[1] != "n2" || c.Nodes[2] != "n3" {
		t.Errorf("nodes %v, want n1 n2 n3", c.Nodes)
	}
	if len(c.Instances) != 1 || len(asked) != 1 {
		t.Fatalf("instances %+v (missing asked for %v), want n1/a only", c.Instances, asked)
	}
	got := c.Instances[0]
	if !got.Started.Equal(at(-10)) || !got.Resumed || got.Heartbeat != 1500*time.Millisecond || !got.Stopped.Equal(at(40)) {
		t.Errorf("lifecycle %+v", got)
	}
	if len(got.Losses) != 2 || got.Losses[0].Seq != 2 || got.Losses[0].Bytes != 100 || got.Losses[1].Seq != 4 {
		t.Fatalf("losses %+v, want seq 2 then seq 4, once each", got.Losses)
	}
	if l := got.Losses[1]; l.Count != 2 || l.Reason != "ring_buffer" || l.Seqs != (SeqRange{2, 3}) || !l.First.Equal(at(2)) || !l.Last.IsZero() || !l.Time.Equal(at(9)) {
		t.Errorf("loss %+v", l)
	}
	if len(got.Missing) != 1 {
		t.Errorf("missing %+v", got.Missing)
	}

	// Asked for nodes, exactly those are listed.
	b = NewBuilder(at(0), at(60), []string{"n9"}, at(61))
	b.Lifecycle(trail.EventAgentStart, at(1), on("n1", "a", nil))
	if c, _ := b.Coverage(nil); len(c.Nodes) != 1 || c.Nodes[0] != "n9" {
		t.Errorf("nodes %v, want the one asked for", c.Nodes)
	}
}
