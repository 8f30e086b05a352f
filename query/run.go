package query

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/connaudit/connaudit/backend"
	"github.com/connaudit/connaudit/internal/termsafe"
	"github.com/connaudit/connaudit/trail/coverage"
)

// Request is one `connaudit query`.
type Request struct {
	Filter  backend.Filter
	Format  string
	Limit   int  // 0: no limit
	Summary bool // aggregate instead of listing
	Follow  bool // stream new records until ctx ends
	Strict  bool // a gap in the window is an error
	// NoHeaders leaves out the header row of table, wide, csv and
	// custom-columns output.
	NoHeaders bool
	// ExtraNodes are nodes the cluster has (from its API server), checked
	// for coverage even when the trail never names them.
	ExtraNodes []string
	// Zone is where table, wide and --summary tables and the reports on
	// stderr show times; nil is UTC. JSON and CSV are always UTC.
	Zone *time.Location
}

// zoneOrUTC is zone, or UTC when it is nil.
func zoneOrUTC(zone *time.Location) *time.Location {
	if zone == nil {
		return time.UTC
	}
	return zone
}

// ErrGaps is returned (wrapped) by Run with Request.Strict when the trail
// of the window has gaps.
var ErrGaps = errors.New("the trail has gaps")

// Run answers r on stdout and reports limits and gaps on stderr.
func Run(ctx context.Context, b backend.Backend, r Request, stdout, stderr io.Writer) error {
	if err := CheckFormat(r.Format); err != nil {
		return err
	}
	if r.Summary && isPrinterFormat(r.Format) {
		return fmt.Errorf("-o %s: --summary writes table, wide, json or csv", strings.SplitN(r.Format, "=", 2)[0])
	}
	if r.Follow {
		if r.Summary {
			return fmt.Errorf("--follow and --summary: give one of them")
		}
		return follow(ctx, b, r, stdout)
	}

	// The gap check runs while the answer is read.
	type gapResult struct {
		gaps []coverage.Gap
		err  error
	}
	gapc := make(chan gapResult, 1)
	gapCtx, cancelGaps := context.WithCancel(ctx)
	defer cancelGaps()
	go func() {
		c, err := b.Coverage(gapCtx, r.Filter.From, r.Filter.To, r.Filter.Nodes)
		if err != nil {
			gapc <- gapResult{err: err}
			return
		}
		c.AddNodes(r.Filter.Nodes, r.ExtraNodes)
		gapc <- gapResult{gaps: coverage.Gaps(c)}
	}()

	var err error
	if r.Summary {
		err = summary(ctx, b, r, stdout, stderr)
	} else {
		err = list(ctx, b, r, stdout, stderr)
	}
	if err != nil {
		return err
	}
	g := <-gapc
	if g.err != nil {
		return fmt.Errorf("check the trail for gaps: %w", g.err)
	}
	ReportGaps(stderr, g.gaps, zoneOrUTC(r.Zone))
	if len(g.gaps) > 0 && r.Strict {
		return fmt.Errorf("%w: %d in the window (--strict)", ErrGaps, len(g.gaps))
	}
	return nil
}

func list(ctx context.Context, b backend.Backend, r Request, stdout, stderr io.Writer) error {
	rs, err := b.Records(ctx, r.Filter, r.Limit)
	if err != nil {
		return err
	}
	defer rs.Close()
	w := newRecordWriter(r.Format, r.NoHeaders, zoneOrUTC(r.Zone), stdout)
	n := 0
	for rs.Next() {
		if err := w.write(rs.Record()); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
		n++
	}
	if err := rs.Err(); err != nil {
		return err
	}
	if err := w.flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if n == 0 && (r.Format == "table" || r.Format == "wide") {
		noneFound(stderr, r.Filter, zoneOrUTC(r.Zone))
	}
	if rs.Truncated() {
		fmt.Fprintf(stderr, "connaudit: --limit %d kept the newest connects: older ones match too; raise --limit (0: no limit) or narrow the window\n", r.Limit)
	}
	return nil
}

func follow(ctx context.Context, b backend.Backend, r Request, stdout io.Writer) error {
	rs, err := b.Follow(ctx, r.Filter)
	if err != nil {
		if ctx.Err() != nil {
			return nil // Ctrl-C before the first record is how --follow ends too
		}
		return err
	}
	defer rs.Close()
	w := newRecordWriter(r.Format, r.NoHeaders, zoneOrUTC(r.Zone), stdout)
	for rs.Next() {
		if err := w.write(rs.Record()); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
		if err := w.flush(); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	}
	if err := rs.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("follow: %w", err)
	}
	return nil
}

// ReportGaps writes one line per gap: where and when the trail may be
// incomplete.
func ReportGaps(w io.Writer, gaps []coverage.Gap, zone *time.Location) {
	for _, g := range gaps {
		count := "count unknown"
		if g.Count > 0 {
			count = itoa(g.Count) + " records"
		}
		if g.Kind == coverage.GapUncovered {
			count = "no agent"
		}
		fmt.Fprintf(w, "connaudit: the trail has a gap here: node %s, %s to %s, %s (%s: %s",
			termsafe.String(dash(g.Node)), formatTime(g.From, zone), formatTime(g.To, zone), count, g.Kind, termsafe.String(g.Reason))
		if g.Instance != "" {
			fmt.Fprintf(w, ", agent instance %s", termsafe.String(g.Instance))
		}
		fmt.Fprintln(w, ")")
	}
}

// Now is the clock of the commands, a variable for tests.
var Now = time.Now

// noneFound says, as kubectl does, where an empty answer looked.
func noneFound(w io.Writer, f backend.Filter, zone *time.Location) {
	where := ""
	switch len(f.Namespaces) {
	case 0:
	case 1:
		where = " in namespace " + f.Namespaces[0]
	default:
		where = " in namespaces " + strings.Join(f.Namespaces, ", ")
	}
	fmt.Fprintf(w, "No connects found%s from %s to %s.\n", where, formatTime(f.From, zone), formatTime(f.To, zone))
}
