// Package query answers `connaudit query` and `connaudit coverage`: it turns
// the command's flags into a backend.Filter, asks a backend.Backend, writes
// the answer in the asked format, and reports the trail's gaps in the window
// asked for.
package query

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/connaudit/connaudit/backend"
	"github.com/connaudit/connaudit/trail"
)

// Flags are the command line's filters, as typed. Parse turns them into a
// backend.Filter, with errors that name the flag.
type Flags struct {
	Namespace     string // -n; "" with AllNamespaces or when no namespaced name is asked
	AllNamespaces bool
	Pods          []string
	Selector      string
	Workloads     []string
	Containers    []string
	Nodes         []string
	Host          bool
	Comms         []string
	PIDs          []int
	UIDs          []int

	Dst            []string
	DstPorts       []int
	DstNames       []string
	PeerNamespaces []string
	PeerPods       []string
	PeerServices   []string
	PeerWorkloads  []string
	PeerKinds      []string
	Outcomes       []string

	Window Window
}

// DefaultSince is the window when neither --since nor --from is given and
// Window.Default is zero.
const DefaultSince = time.Hour

// Parse checks the flags and returns the filter. now is the end of a window
// given by --since alone.
func (fl Flags) Parse(now time.Time) (backend.Filter, error) {
	var f backend.Filter
	var err error
	if f.From, f.To, err = fl.Window.Parse(now); err != nil {
		return f, err
	}
	if fl.Namespace != "" && !fl.AllNamespaces {
		f.Namespaces = []string{fl.Namespace}
	}
	f.Pods = fl.Pods
	f.Containers = fl.Containers
	f.Nodes = fl.Nodes
	f.HostOnly = fl.Host
	f.Comms = fl.Comms
	f.PIDs = fl.PIDs
	f.UIDs = fl.UIDs
	if fl.Selector != "" {
		if f.Selector, err = labels.Parse(fl.Selector); err != nil {
			return f, fmt.Errorf("--selector %q: %w", fl.Selector, err)
		}
	}
	for _, w := range fl.Workloads {
		wl, err := ParseWorkload(w)
		if err != nil {
			return f, fmt.Errorf("--workload: %w", err)
		}
		f.Workloads = append(f.Workloads, wl)
	}
	for _, d := range fl.Dst {
		p, err := ParseDst(d)
		if err != nil {
			return f, fmt.Errorf("--dst: %w", err)
		}
		f.Dst = append(f.Dst, p)
	}
	for _, p := range fl.DstPorts {
		if p < 1 || p > 65535 {
			return f, fmt.Errorf("--dport %d: want a port from 1 to 65535", p)
		}
	}
	f.DstPorts = fl.DstPorts
	for _, n := range fl.DstNames {
		name, err := ParseDstName(n)
		if err != nil {
			return f, fmt.Errorf("--dst-name: %w", err)
		}
		f.DstNames = append(f.DstNames, name)
	}
	f.PeerNamespaces = fl.PeerNamespaces
	f.PeerPods = fl.PeerPods
	f.PeerServices = fl.PeerServices
	for _, w := range fl.PeerWorkloads {
		wl, err := ParseWorkload(w)
		if err != nil {
			return f, fmt.Errorf("--peer-workload: %w", err)
		}
		f.PeerWorkloads = append(f.PeerWorkloads, wl)
	}
	for _, k := range fl.PeerKinds {
		if !slices.Contains(backend.PeerKinds, k) {
			return f, fmt.Errorf("--peer-kind %q: want one of %s", k, strings.Join(backend.PeerKinds, ", "))
		}
	}
	f.PeerKinds = fl.PeerKinds
	for _, o := range fl.Outcomes {
		if o != backend.OutcomeFailed && !slices.Contains(backend.Outcomes, o) {
			return f, fmt.Errorf("--outcome %q: want %s or %s", o, backend.OutcomeFailed, strings.Join(backend.Outcomes, ", "))
		}
	}
	f.Outcomes = fl.Outcomes
	return f, nil
}

// ParseWorkload parses KIND/NAME, with kubectl's kind names (deployment,
// deploy, sts, ds, rs, job, cronjob, cj, pod).
func ParseWorkload(s string) (backend.Workload, error) {
	kind, name, ok := strings.Cut(s, "/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return backend.Workload{}, fmt.Errorf("%q: want KIND/NAME, e.g. deployment/web", s)
	}
	k, ok := trail.ParseWorkloadKind(kind)
	if !ok {
		return backend.Workload{}, fmt.Errorf("%q: unknown kind %q; want deployment, statefulset, daemonset, replicaset, job, cronjob or pod", s, kind)
	}
	return backend.Workload{Kind: string(k), Name: name}, nil
}

// ParseDstName checks a DNS name, or "*." and a name for any name below it,
// and returns it as records hold it: lower case, without a final dot.
func ParseDstName(s string) (string, error) {
	name := strings.TrimSuffix(strings.ToLower(s), ".")
	rest, wildcard := strings.CutPrefix(name, "*.")
	if rest == "" || strings.ContainsAny(rest, "* ") || strings.Contains(rest, "..") || strings.HasPrefix(rest, ".") {
		return "", fmt.Errorf("%q: want a DNS name (api.example.com) or *. and one (*.example.com)", s)
	}
	if wildcard {
		return "*." + rest, nil
	}
	return rest, nil
}

// ParseDst parses an IP address or a CIDR prefix, IPv4 or IPv6.
func ParseDst(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("%q is not a CIDR prefix such as 10.0.0.0/8 or 2001:db8::/32", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", s)
	}
	a = a.WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
