package shipper

import (
	"net/netip"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"

	"github.com/connaudit/connaudit/dns"
	"github.com/connaudit/connaudit/trail"
)

// Addr adds an address as a string attribute.
func (l *AttrList) Addr(key trail.Key, a netip.Addr) {
	var b [64]byte
	l.StringBytes(key, a.AppendTo(b[:0]))
}

// StringList adds vs as one string joined by ", ". DNS names in their
// presentation form (package dns) hold no ',' or ' ': those are escaped.
func (l *AttrList) StringList(key trail.Key, vs []string) {
	l.String(key, strings.Join(vs, ", "))
}

// DNSAnswer is one answer as the trail records it.
type DNSAnswer struct {
	Answer   *dns.Answer
	Received time.Time // when the socket got it
	Observed time.Time
	NetNS    uint32
	CgroupID uint64
	TCP      bool
	Resolver string // the server's address
	// Rejected, when set, says why the answer named nothing (a dns.rejected record).
	Rejected string
	Resource *Resource            // the receiving process's pod, or the node
	Attrs    []attribute.KeyValue // further attributes, built by an AttrList
}

// DNSAnswerBuilder encodes dns.answer records, reusing its buffers: the
// record it returns is valid until the next Build.
type DNSAnswerBuilder struct {
	enc   Encoder
	body  []byte
	addrs []string
	list  AttrList
}

// Build encodes a, e.g. body "api.example.com -> 203.0.113.80, 2001:db8::80".
func (b *DNSAnswerBuilder) Build(a *DNSAnswer) *Encoder {
	b.addrs = b.addrs[:0]
	for _, ad := range a.Answer.Addrs {
		b.addrs = append(b.addrs, ad.IP.String())
	}
	b.body = append(b.body[:0], a.Answer.Question...)
	b.body = append(b.body, " -> "...)
	for i, s := range b.addrs {
		if i > 0 {
			b.body = append(b.body, ", "...)
		}
		b.body = append(b.body, s...)
	}
	e := &b.enc
	event, sev := trail.EventDNSAnswer, log.SeverityInfo
	if a.Rejected != "" {
		event, sev = trail.EventDNSRejected, log.SeverityWarn
	}
	e.Reset(event, a.Received, a.Observed, sev, b.body, a.Resource)
	e.String(trail.KeyDNSQuestionName, a.Answer.Question)
	e.StringList(trail.KeyDNSAnswers, b.addrs)
	if len(a.Answer.Aliases) > 0 {
		e.StringList(trail.KeyDNSAliases, a.Answer.Aliases)
	}
	ttl := ^uint32(0)
	for _, ad := range a.Answer.Addrs {
		ttl = min(ttl, ad.TTL)
	}
	e.Int(trail.KeyDNSTTL, int64(ttl))
	if a.Answer.Partial {
		e.Bool(trail.KeyDNSPartial, true)
	}
	if a.TCP {
		e.String(trail.KeyNetworkTransport, "tcp")
	} else {
		e.String(trail.KeyNetworkTransport, "udp")
	}
	e.String(trail.KeyServerAddress, a.Resolver)
	if a.Rejected != "" {
		e.String(trail.KeyDNSRejected, a.Rejected)
	}
	e.Int(trail.KeyNetNS, int64(a.NetNS))
	e.Int(trail.KeyCgroupID, int64(a.CgroupID))
	e.Append(a.Attrs...)
	return e.Finish()
}
