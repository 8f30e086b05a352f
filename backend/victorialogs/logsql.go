package victorialogs

import (
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/connaudit/connaudit/backend"
)

// LogsQL is built only from quoted strings: every field name and every value
// goes through quote, which writes a Go-syntax string literal that
// VictoriaLogs' lexer reads back byte for byte (strconv.Unquote). No input
// can therefore end a literal, add a filter, a keyword (or, not) or a pipe.

func quote(s string) string { return strconv.Quote(s) }

// quoteAll returns the quoted values, comma-separated.
func quoteAll(values []string) string {
	var b strings.Builder
	for i, v := range values {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quote(v))
	}
	return b.String()
}

func ints(values []int) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = strconv.Itoa(v)
	}
	return out
}

// timeRange is the filter of [from, to).
func timeRange(from, to time.Time) string {
	return "_time:[" + from.UTC().Format(time.RFC3339Nano) + ", " + to.UTC().Format(time.RFC3339Nano) + ")"
}

// query accumulates the filters of one LogsQL query, combined with AND.
//
// Every filter is a field filter, never a stream filter ({...}): a stream
// filter matches stream fields only, and which resource attributes are
// stream fields is the ingesting collector's choice (VL-Stream-Fields; the
// gateway of k8s/deploy names six, the default makes every resource
// attribute one). A field filter matches stream and ordinary fields alike.
type query struct {
	terms []string
}

func (q *query) in(field string, values []string) {
	if len(values) > 0 {
		q.terms = append(q.terms, quote(field)+":in("+quoteAll(values)+")")
	}
}

func (q *query) add(term string) { q.terms = append(q.terms, term) }

func (q *query) String() string {
	if len(q.terms) == 0 {
		return "*"
	}
	return strings.Join(q.terms, " ")
}

// connectQuery returns the LogsQL filter of f's tcp.connect records, without
// a time range.
func connectQuery(f backend.Filter) string {
	q := &query{}
	q.in(backend.FieldEventName, []string{backend.EventConnect})
	q.in(backend.FieldNamespace, f.Namespaces)
	q.in(backend.FieldPod, f.Pods)
	q.in(backend.FieldContainer, f.Containers)
	q.in(backend.FieldNode, f.Nodes)
	workloadFilter(q, f.Workloads, true)
	if f.HostOnly {
		// A host process: the enriching agent says so; an agent without
		// Kubernetes enrichment names no pod and no container.
		q.add("(" + quote(backend.FieldSourceKind) + `:="host" or (-` + quote(backend.FieldSourceKind) + ":* -" +
			quote(backend.FieldPodUID) + ":* -" + quote(backend.FieldContainerID) + ":*))")
	}
	selectorFilter(q, f.Selector)
	q.in(backend.FieldComm, f.Comms)
	q.in(backend.FieldPID, ints(f.PIDs))
	q.in(backend.FieldUID, ints(f.UIDs))

	dstFilter(q, f.Dst)
	q.in(backend.FieldDstPort, ints(f.DstPorts))
	dstNameFilter(q, f.DstNames)
	q.in(backend.FieldPeerNamespace, f.PeerNamespaces)
	q.in(backend.FieldPeerPod, f.PeerPods)
	q.in(backend.FieldPeerService, f.PeerServices)
	workloadFilter(q, f.PeerWorkloads, false)
	q.in(backend.FieldPeerKind, f.PeerKinds)
	outcomeFilter(q, f.Outcomes)
	return q.String()
}

// workloadFilter adds "any of these workloads". A source workload is a
// resource attribute per kind; a peer's is a kind and name pair of record
// attributes.
func workloadFilter(q *query, ws []backend.Workload, source bool) {
	if len(ws) == 0 {
		return
	}
	var alts []string
	for _, w := range ws {
		if source {
			if w.Kind == "pod" {
				alts = append(alts, quote(backend.FieldPod)+":="+quote(w.Name))
				continue
			}
			alts = append(alts, quote(backend.WorkloadKinds[w.Kind])+":="+quote(w.Name))
			continue
		}
		if w.Kind == "pod" {
			alts = append(alts, quote(backend.FieldPeerPod)+":="+quote(w.Name))
			continue
		}
		alts = append(alts, "("+quote(backend.FieldPeerWorkloadKind)+":="+quote(w.Kind)+" "+
			quote(backend.FieldPeerWorkloadName)+":="+quote(w.Name)+")")
	}
	q.add("(" + strings.Join(alts, " or ") + ")")
}

// selectorFilter pushes a label selector's requirements down. A missing
// field reads as empty, which gives `key!=v` Kubernetes' meaning: a pod
// without the label matches.
// Greater-than and less-than stay client-side (see Filter.Selector, applied
// again to every record).
func selectorFilter(q *query, sel labels.Selector) {
	if sel == nil {
		return
	}
	reqs, selectable := sel.Requirements()
	if !selectable {
		return
	}
	for _, r := range reqs {
		field := backend.FieldPodLabelPrefix + r.Key()
		// A label with an empty value is stored as absent (backend.Match):
		// `key=` matches nothing and `key!=` everything, while
		// VictoriaLogs' in("") would match every record without the label.
		values := slices.DeleteFunc(r.Values().UnsortedList(), func(v string) bool { return v == "" })
		slices.Sort(values)
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In:
			if len(values) == 0 {
				q.add("(" + quote(field) + ":* -" + quote(field) + ":*)") // nothing
				continue
			}
			q.in(field, values)
		case selection.NotEquals, selection.NotIn:
			if len(values) > 0 {
				q.add("-" + quote(field) + ":in(" + quoteAll(values) + ")")
			}
		case selection.Exists:
			q.add(quote(field) + ":*")
		case selection.DoesNotExist:
			q.add("-" + quote(field) + ":*")
		}
	}
}

// dstFilter adds "the peer address is within any of these prefixes". An
// IPv4-mapped peer is stored as IPv4 (README.md), so a mapped prefix is
// asked for as IPv4.
func dstFilter(q *query, prefixes []netip.Prefix) {
	if len(prefixes) == 0 {
		return
	}
	var alts []string
	field := quote(backend.FieldDstAddr)
	for _, p := range prefixes {
		p = backend.DstPrefix(p)
		if p.Addr().Is4() {
			alts = append(alts, field+":ipv4_range("+quote(p.String())+")")
			continue
		}
		alt := field + ":ipv6_range(" + quote(p.String()) + ")"
		if p.Contains(mappedV4) {
			// VictoriaLogs' ipv6_range reads an IPv4 address as IPv4-mapped
			// IPv6: ::/0 would hold every IPv4 peer.
			alt = "(" + alt + " -" + field + `:ipv4_range("0.0.0.0/0"))`
		}
		alts = append(alts, alt)
	}
	q.add("(" + strings.Join(alts, " or ") + ")")
}

// mappedV4 is the first IPv4-mapped IPv6 address.
var mappedV4 = netip.MustParseAddr("::ffff:0.0.0.0")

// dstNameFilter adds "server.address is any of these names"; a name
// "*.example.com" is a suffix, matched by a regular expression.
func dstNameFilter(q *query, names []string) {
	if len(names) == 0 {
		return
	}
	var alts []string
	for _, n := range names {
		n = backend.NormalizeName(n)
		if suffix, ok := strings.CutPrefix(n, "*"); ok {
			alts = append(alts, quote(backend.FieldDstName)+":~"+quote(regexp.QuoteMeta(suffix)+"$"))
			continue
		}
		alts = append(alts, quote(backend.FieldDstName)+":="+quote(n))
	}
	q.add("(" + strings.Join(alts, " or ") + ")")
}

func outcomeFilter(q *query, outcomes []string) {
	if len(outcomes) == 0 {
		return
	}
	var exact []string
	failed := false
	for _, o := range outcomes {
		if o == backend.OutcomeFailed {
			failed = true
			continue
		}
		exact = append(exact, o)
	}
	field := quote(backend.FieldOutcome)
	var alts []string
	if failed {
		alts = append(alts, "-"+field+`:="established"`)
	}
	if len(exact) > 0 {
		alts = append(alts, field+":in("+quoteAll(exact)+")")
	}
	q.add("(" + strings.Join(alts, " or ") + ")")
}
