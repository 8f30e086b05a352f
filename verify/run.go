package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/connaudit/connaudit/trail"
)

// Source is a store of the trail, as verify reads it: every record with
// every field, values as text (backend/victorialogs implements it). A
// source may reuse a row's map once each returns, so each keeps none.
type Source interface {
	// Trail calls each with every record of the window [from, to) that
	// carries a connaudit.seq, on the given nodes (all when empty).
	Trail(ctx context.Context, from, to time.Time, nodes []string, each func(map[string]string) error) error
	// InstanceRecords calls each with the records of one instance, at any
	// time before to: its start record (start), or those at seq.
	InstanceRecords(ctx context.Context, instance string, start bool, seq uint64, to time.Time, each func(map[string]string) error) error
}

// InstanceSource is a Source that can also give one instance's records at
// a time, in runs of ascending seqs, so that Run holds one run of one
// instance's records, not the window's.
type InstanceSource interface {
	Source
	// Instances lists the service.instance.id of every instance with a
	// record that carries a connaudit.seq in [from, to) on the given nodes.
	Instances(ctx context.Context, from, to time.Time, nodes []string) ([]string, error)
	// InstanceTrail is Trail for one instance, in runs: it calls endOfRun
	// after each, and every record of a run has a larger seq than the
	// records of the runs before it.
	InstanceTrail(ctx context.Context, from, to time.Time, nodes []string, instance string, each func(map[string]string) error, endOfRun func()) error
}

// Request is one `connaudit verify`.
type Request struct {
	From, To   time.Time
	Nodes      []string
	TrustedKey string // base64; empty: each instance's own key
	Format     string // table or json
	// Witnesses are the nodes' witnesses (nil: none were looked for).
	Witnesses *Witnesses
}

// ErrFindings is returned (wrapped) when the trail was changed or is
// incomplete in the window.
var ErrFindings = errors.New("the trail does not verify")

// Run reads the window, judges it and writes the report.
func Run(ctx context.Context, src Source, r Request, stdout io.Writer) error {
	if r.Format != "table" && r.Format != "json" {
		return fmt.Errorf("-o %q: verify writes table or json", r.Format)
	}
	opt := DefaultOptions
	// A window that ends in the future ends now for an instance's silence.
	opt.Until, opt.TrustedKey = minTime(r.To, time.Now()), r.TrustedKey
	ws := r.Witnesses
	if ws == nil {
		ws = &Witnesses{Missing: "no witness was looked for"}
	}
	wit, witFindings := ws.witnessed()
	opt.Witnessed = wit
	v := New(opt)
	// Instances whose start is before the window: their key and heartbeat.
	addStarts := func() error {
		for _, id := range v.withoutStart() {
			if err := src.InstanceRecords(ctx, id, true, 0, r.To, v.AddStart); err != nil {
				return fmt.Errorf("read the start record of instance %s: %w", id, err)
			}
		}
		return nil
	}
	if is, ok := src.(InstanceSource); ok {
		ids, err := is.Instances(ctx, r.From, r.To, r.Nodes)
		if err != nil {
			return fmt.Errorf("list the agent instances of the window: %w", err)
		}
		for _, id := range ids {
			if err := readInstance(ctx, src, is, r, id, v); err != nil {
				return err
			}
		}
	} else {
		if err := src.Trail(ctx, r.From, r.To, r.Nodes, v.Add); err != nil {
			return fmt.Errorf("read the trail: %w", err)
		}
		if err := addStarts(); err != nil {
			return err
		}
	}
	for _, p := range v.Predecessors() {
		if err := src.InstanceRecords(ctx, p.Instance, false, p.Seq, r.To, v.AddOutside); err != nil {
			return fmt.Errorf("read seq %d of instance %s: %w", p.Seq, p.Instance, err)
		}
	}
	rep := v.Report()
	rep.From, rep.To = r.From, r.To
	rep.Findings = append(rep.Findings, witFindings...)
	rep.Findings = append(rep.Findings, ws.check(rep, wit, r.From, opt.Until)...)
	rep.Verified = rep.OK()
	rep.Witness = ws.report(rep, wit)
	if r.Format == "json" {
		if err := json.NewEncoder(stdout).Encode(rep); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	} else {
		writeTable(stdout, rep)
	}
	if !rep.OK() {
		return fmt.Errorf("%w: %d finding(s) in the window", ErrFindings, len(rep.Findings))
	}
	return nil
}

// readInstance reads one instance's records a run of seqs at a time,
// judging each run once the next is read, and then judges the instance.
func readInstance(ctx context.Context, src Source, is InstanceSource, r Request, id string, v *Verifier) error {
	// Its start records before the window, whose key signs the window's
	// checkpoints: read first, used only if the window has no start
	// record, which would be in the first run.
	var before []map[string]string
	err := src.InstanceRecords(ctx, id, true, 0, r.To, func(row map[string]string) error {
		before = append(before, maps.Clone(row))
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the start record of instance %s: %w", id, err)
	}
	first := true
	var startErr error
	endOfRun := func() {
		if first {
			first = false
			if slices.Contains(v.withoutStart(), id) {
				for _, row := range before {
					startErr = errors.Join(startErr, v.AddStart(row))
				}
			}
		}
		v.Advance()
	}
	if err := is.InstanceTrail(ctx, r.From, r.To, r.Nodes, id, v.Add, endOfRun); err != nil {
		return fmt.Errorf("read the trail of instance %s: %w", id, err)
	}
	if startErr != nil {
		return fmt.Errorf("read the start record of instance %s: %w", id, startErr)
	}
	v.Flush()
	return nil
}

func writeTable(w io.Writer, r *Report) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tINSTANCE\tSEQ\tRECORDS\tDUPLICATES\tLOST\tCHECKPOINTS\tSEALED THROUGH\tSTART\tSTOP\tPREVIOUS")
	records, checkpoints := 0, 0
	for _, p := range r.Instances {
		records += p.Records
		checkpoints += p.Checkpoints
		prev := p.Previous
		if prev == "" {
			prev = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d..%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", p.Node, p.Instance, p.FirstSeq, p.LastSeq, p.Records,
			p.Duplicates, p.Lost, p.Checkpoints, p.SealedThrough, yesNo(p.FromStart, "in window", "before"), yesNo(p.Stopped, "yes", "-"), prev)
	}
	tw.Flush()
	window := r.From.UTC().Format(time.RFC3339) + " to " + r.To.UTC().Format(time.RFC3339)
	if wr := r.Witness; wr != nil {
		switch {
		case wr.Missing != "":
			fmt.Fprintf(w, "\nNo witness: %s.\n", wr.Missing)
		default:
			fmt.Fprintf(w, "\nWitnesses: %d node(s), %d instance(s), from %s.\n", len(wr.Nodes), wr.Instances, wr.Source)
			if len(wr.Unwitness) > 0 {
				fmt.Fprintf(w, "No witness for node(s) %s.\n", strings.Join(wr.Unwitness, ", "))
			}
		}
		if wr.WeakerNote != "" {
			fmt.Fprintf(w, "Weaker proof: %s.\n", wr.WeakerNote)
		}
	}
	if r.OK() {
		fmt.Fprintf(w, "\nVerified: %d instance(s), %d records, %d signed checkpoint(s), %s: every seq is present or named by a loss record, every record matches its instance's chain and every checkpoint's signature, no instance between two is missing.\n",
			len(r.Instances), records, checkpoints, window)
		return
	}
	fmt.Fprintf(w, "\nNOT VERIFIED, %s: %d finding(s):\n", window, len(r.Findings))
	for _, f := range r.Findings {
		fmt.Fprintf(w, "  %s\n", f)
	}
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

// withoutStart are the instances whose start record is not in the window.
func (v *Verifier) withoutStart() []string {
	var out []string
	for k, in := range v.instances {
		if in.judged {
			continue
		}
		in.group()
		has := false
		for i := range in.seqs {
			if trail.Event(in.at(i)[0].event()) == trail.EventAgentStart {
				has = true
				break
			}
		}
		if !has {
			out = append(out, k.id)
		}
	}
	return out
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
