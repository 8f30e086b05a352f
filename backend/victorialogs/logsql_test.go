package victorialogs

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/connaudit/connaudit/backend"
)

// Every value reaches the query as one literal that reads back as exactly
// the value. The e2e tests show the same against VictoriaLogs itself.
func TestQuoteReadsBackExactly(t *testing.T) {
	for _, v := range []string{`a"b`, `\`, `a\"`, `|`, `*`, "or", "not", "\n", "bad\xff", "`", "'", "", "\u2028", "\x00"} {
		q := quote(v)
		back, err := strconv.Unquote(q)
		if err != nil || back != v {
			t.Errorf("quote(%q) = %s reads back as %q, %v", v, q, back, err)
		}
		if strings.ContainsAny(q, "\n\x00") {
			t.Errorf("quote(%q) = %q holds a raw newline or NUL", v, q)
		}
	}
}

func TestConnectQuery(t *testing.T) {
	sel, err := labels.Parse("app in (web,db),tier!=frontend,team,!canary,version>2")
	if err != nil {
		t.Fatal(err)
	}
	f := backend.Filter{
		Namespaces: []string{"shop"},
		Pods:       []string{`p"x`},
		Workloads:  []backend.Workload{{Kind: "deployment", Name: "web"}},
		Selector:   sel,
		Dst:        []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::ffff:1.0.0.0/120"), netip.MustParsePrefix("2001:db8::/32")},
		DstPorts:   []int{443},
		Outcomes:   []string{backend.OutcomeFailed, "established"},
	}
	got := connectQuery(f)
	for _, want := range []string{
		`"event_name":in("tcp.connect") "k8s.namespace.name":in("shop") "k8s.pod.name":in("p\"x")`,
		`"k8s.pod.label.app":in("db", "web")`,
		`("k8s.deployment.name":="web")`,
		`-"k8s.pod.label.tier":in("frontend")`,
		`"k8s.pod.label.team":*`,
		`-"k8s.pod.label.canary":*`,
		`("network.peer.address":ipv4_range("10.0.0.0/8") or "network.peer.address":ipv4_range("1.0.0.0/24") or "network.peer.address":ipv6_range("2001:db8::/32"))`,
		`"network.peer.port":in("443")`,
		`(-"connaudit.outcome":="established" or "connaudit.outcome":in("established"))`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("query lacks %s:\n%s", want, got)
		}
	}
	// Which fields are stream fields is the collector's choice: no stream filter.
	if strings.Contains(got, "{") {
		t.Errorf("query has a stream filter, which finds nothing when the field is no stream field: %s", got)
	}
	if strings.Contains(got, "version") {
		t.Errorf("version>2 cannot be said in LogsQL and must stay client-side: %s", got)
	}
	if err := serverSideSelector(f); err == nil || !strings.Contains(err.Error(), "version>2") {
		t.Errorf("summary with version>2: %v", err)
	}
}

func TestDedup(t *testing.T) {
	rec := func(sec int, inst, seq string) backend.Record {
		return backend.Record{Time: time.Unix(int64(sec), 0), Fields: map[string]string{backend.FieldServiceInstanceID: inst, backend.FieldSeq: seq}}
	}
	d := &timeRunDedup{}
	for i, tc := range []struct {
		r    backend.Record
		seen bool
	}{
		{rec(1, "a", "1"), false}, {rec(1, "a", "2"), false}, {rec(1, "a", "1"), true}, {rec(1, "b", "1"), false},
		{rec(2, "a", "3"), false}, {rec(2, "a", "3"), true},
	} {
		if got := d.seen(tc.r); got != tc.seen {
			t.Errorf("timeRunDedup record %d: seen %v, want %v", i, got, tc.seen)
		}
	}
	r := newRecentDedup(2)
	for i, tc := range []struct {
		r    backend.Record
		seen bool
	}{
		{rec(1, "a", "1"), false}, {rec(5, "a", "1"), true}, {rec(2, "a", "2"), false}, {rec(3, "a", "3"), false},
		{rec(9, "a", "1"), false}, // forgotten after 2 newer keys
	} {
		if got := r.seen(tc.r); got != tc.seen {
			t.Errorf("recentDedup record %d: seen %v, want %v", i, got, tc.seen)
		}
	}
}
