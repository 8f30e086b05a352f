package query

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/connaudit/connaudit/backend"
)

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func TestParseErrorsNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		flags Flags
		want  string
	}{
		{Flags{Selector: "a in ("}, "--selector"},
		{Flags{Workloads: []string{"deployment"}}, "--workload"},
		{Flags{PeerWorkloads: []string{"svc/x"}}, "--peer-workload"},
		{Flags{Dst: []string{"10.0.0.300"}}, "--dst"},
		{Flags{DstPorts: []int{0}}, "--dport"},
		{Flags{DstNames: []string{"api.*.com"}}, "--dst-name"},
		{Flags{DstNames: []string{"*."}}, "--dst-name"},
		{Flags{PeerKinds: []string{"cluster"}}, "--peer-kind"},
		{Flags{Outcomes: []string{"ok"}}, "--outcome"},
		{Flags{Window: Window{From: "monday"}}, "--from"},
		{Flags{Window: Window{To: "friday"}}, "--to"},
		{Flags{Window: Window{Since: "1d12"}}, "--since"},
		{Flags{Window: Window{Until: "-1h"}}, "--until"},
		{Flags{Window: Window{From: "2026-12-01T00:00:00Z", Since: "1h"}}, "--since and --from"},
		{Flags{Window: Window{Until: "1h", To: "2h"}}, "--until and --to"},
		{Flags{Window: Window{From: "2026-12-01T13:00:00Z"}}, "--from must be before --until"},
		{Flags{Window: Window{Since: "2026-12-01T11:00:00Z", Until: "2h"}}, "--since must be before --until"},
	} {
		_, err := tc.flags.Parse(now)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one naming %q", tc.flags, err, tc.want)
		}
	}
}

func TestParseWindow(t *testing.T) {
	for _, tc := range []struct {
		flags    Flags
		from, to time.Time
	}{
		{Flags{}, now.Add(-time.Hour), now},
		{Flags{Window: Window{Default: 7 * 24 * time.Hour}}, now.Add(-7 * 24 * time.Hour), now},
		{Flags{Window: Window{Since: "7d"}}, now.Add(-7 * 24 * time.Hour), now},
		{Flags{Window: Window{Since: "1d12h", Until: "12h"}}, now.Add(-48 * time.Hour), now.Add(-12 * time.Hour)},
		{Flags{Window: Window{To: "2026-11-30T10:00:00Z", Since: "30m"}}, time.Date(2026, 11, 30, 9, 30, 0, 0, time.UTC), time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)},
		{Flags{Window: Window{From: "2026-12-01T11:00:00.5+01:00"}}, time.Date(2026, 12, 1, 10, 0, 0, 5e8, time.UTC), now},
		{Flags{Window: Window{Since: "2026-12-01T10:00:00Z", Until: "2026-12-01T11:00:00Z"}}, time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC)},
	} {
		f, err := tc.flags.Parse(now)
		if err != nil {
			t.Fatalf("%+v: %v", tc.flags, err)
		}
		if !f.From.Equal(tc.from) || !f.To.Equal(tc.to) {
			t.Errorf("%+v: window %v..%v, want %v..%v", tc.flags, f.From, f.To, tc.from, tc.to)
		}
	}
}

func TestParseNamespace(t *testing.T) {
	f, _ := Flags{Namespace: "shop"}.Parse(now)
	if len(f.Namespaces) != 1 || f.Namespaces[0] != "shop" {
		t.Errorf("-n shop: %v", f.Namespaces)
	}
	f, _ = Flags{Namespace: "shop", AllNamespaces: true}.Parse(now)
	if len(f.Namespaces) != 0 {
		t.Errorf("-A: %v", f.Namespaces)
	}
}

func TestParseWorkload(t *testing.T) {
	for in, want := range map[string]backend.Workload{
		"deployment/web":  {Kind: "deployment", Name: "web"},
		"deploy/web":      {Kind: "deployment", Name: "web"},
		"sts/db":          {Kind: "statefulset", Name: "db"},
		"DaemonSet/agent": {Kind: "daemonset", Name: "agent"},
		"cj/nightly":      {Kind: "cronjob", Name: "nightly"},
		"po/x":            {Kind: "pod", Name: "x"},
	} {
		got, err := ParseWorkload(in)
		if err != nil || got != want {
			t.Errorf("ParseWorkload(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"web", "deployment/", "/web", "service/web", "deployment/a/b"} {
		if _, err := ParseWorkload(in); err == nil {
			t.Errorf("ParseWorkload(%q): no error", in)
		}
	}
}

func TestParseDstName(t *testing.T) {
	for in, want := range map[string]string{
		"api.example.com":  "api.example.com",
		"API.Example.COM.": "api.example.com",
		"*.example.com":    "*.example.com",
		"localhost":        "localhost",
	} {
		if got, err := ParseDstName(in); err != nil || got != want {
			t.Errorf("ParseDstName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", ".", "*", "*.", "a..b", ".example.com", "*.*.example.com", "a b"} {
		if got, err := ParseDstName(bad); err == nil {
			t.Errorf("ParseDstName(%q) = %q; want an error", bad, got)
		}
	}
}

func TestParseDst(t *testing.T) {
	for in, want := range map[string]string{
		"1.0.0.1":        "1.0.0.1/32",
		"10.1.2.3/8":     "10.0.0.0/8",
		"2001:db8::1":    "2001:db8::1/128",
		"2001:db8::1/32": "2001:db8::/32",
		"fe80::1%eth0":   "fe80::1/128",
	} {
		got, err := ParseDst(in)
		if err != nil || got != netip.MustParsePrefix(want) {
			t.Errorf("ParseDst(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"90m": 90 * time.Minute, "1h30m": 90 * time.Minute, "7d": 7 * 24 * time.Hour, "1d12h": 36 * time.Hour, "0d30s": 30 * time.Second} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "7days", "-1h", "0d", "d", "1w", "+1d", "1d-1h", "1d2d"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q): no error", in)
		}
	}
}

func TestTableRowOfHostProcess(t *testing.T) {
	r := backend.Record{Time: now, Fields: map[string]string{
		backend.FieldSourceKind: "host", backend.FieldComm: "kubelet", backend.FieldPID: "1", backend.FieldNetType: "ipv6",
		backend.FieldDstAddr: "::1", backend.FieldDstPort: "10248", backend.FieldOutcome: "refused", backend.FieldErrType: "ECONNREFUSED",
		backend.FieldDuration: "0.00021", backend.FieldPeerKind: "loopback", backend.FieldNode: "n1",
	}}
	got := strings.Join(row(r, true, tableTime, time.UTC), " ")
	want := "2026-12-01T12:00:00.000000Z <host> - 1 kubelet 6 - ::1 10248 refused (ECONNREFUSED) 0.21ms n1 - - loopback -"
	if got != want {
		t.Errorf("row:\n got %q\nwant %q", got, want)
	}
}

func TestNoneFoundSaysWhere(t *testing.T) {
	for _, tc := range []struct {
		ns   []string
		want string
	}{
		{nil, "No connects found from 2026-12-01T11:00:00.000000Z to 2026-12-01T12:00:00.000000Z.\n"},
		{[]string{"default"}, "No connects found in namespace default from 2026-12-01T11:00:00.000000Z to 2026-12-01T12:00:00.000000Z.\n"},
		{[]string{"a", "b"}, "No connects found in namespaces a, b from 2026-12-01T11:00:00.000000Z to 2026-12-01T12:00:00.000000Z.\n"},
	} {
		var b strings.Builder
		noneFound(&b, backend.Filter{Namespaces: tc.ns, From: now.Add(-time.Hour), To: now}, time.UTC)
		if b.String() != tc.want {
			t.Errorf("%v: %q, want %q", tc.ns, b.String(), tc.want)
		}
	}
}
