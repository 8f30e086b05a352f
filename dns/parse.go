// Package dns turns DNS responses into names for addresses: it parses
// answers (A, AAAA and CNAME chains back to the question) and keeps, per
// network namespace, which names each address was given and until when.
package dns

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/net/dns/dnsmessage"
)

// maxChain bounds how many CNAME hops are followed from the question.
const maxChain = 16

// maxAddrs bounds the addresses kept from one answer.
const maxAddrs = 64

// Addr is one address an answer gave the question's name.
type Addr struct {
	IP  netip.Addr
	TTL uint32 // seconds, the lowest TTL along the chain that led to it
}

// Answer is what one response said about the name the application asked for.
type Answer struct {
	ID       uint16          // the transaction id, copied from the query
	Type     dnsmessage.Type // the question's type
	Question string          // the asked name: lower case, without the final dot, bytes outside [a-z0-9-_*] escaped as \DDD
	Aliases  []string        // the CNAME chain from the question, in order
	Addrs    []Addr
	// Partial is set when the packet was cut off (by the capture's bound or
	// by the sender) after some answers: the ones before the cut are kept.
	Partial bool
}

// ErrNotAnswer is returned for a well-formed response that names no
// address: an error code, an empty answer, a query rather than a response.
var ErrNotAnswer = errors.New("no address answer")

// ErrMalformed is returned for a packet that is not a DNS response.
var ErrMalformed = errors.New("malformed DNS message")

// record is an answer record of interest, before the chain is followed.
type record struct {
	owner, target string // target: of a CNAME
	ip            netip.Addr
	ttl           uint32
}

// Parser parses responses; it reuses its storage, so an Answer it filled is
// valid until its next Parse. Not safe for concurrent use.
type Parser struct {
	p       dnsmessage.Parser
	records []record
	text    []byte
}

// Query is the part of a query an answer must repeat.
type Query struct {
	ID       uint16
	Type     dnsmessage.Type
	Question string // as Answer.Question
}

// ParseQuery reads a query (for TCP, starting with its 2-byte length).
func (ps *Parser) ParseQuery(msg []byte, tcp bool, q *Query) error {
	msg, err := unframe(msg, tcp)
	if err != nil {
		return err
	}
	h, err := ps.p.Start(msg)
	if err != nil {
		return fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	if h.Response {
		return fmt.Errorf("%w: a response where a query was sent", ErrMalformed)
	}
	dq, err := ps.p.Question()
	if err != nil {
		return fmt.Errorf("%w: question: %w", ErrMalformed, err)
	}
	*q = Query{ID: h.ID, Type: dq.Type, Question: ps.name(dq.Name)}
	return nil
}

// unframe strips a TCP message's 2-byte length.
func unframe(msg []byte, tcp bool) ([]byte, error) {
	if !tcp {
		return msg, nil
	}
	if len(msg) < 2 {
		return nil, fmt.Errorf("%w: TCP segment of %d bytes has no length", ErrMalformed, len(msg))
	}
	n := int(msg[0])<<8 | int(msg[1])
	msg = msg[2:]
	if n < len(msg) {
		msg = msg[:n]
	}
	return msg, nil
}

// Parse reads a DNS message (for TCP, starting with its 2-byte length) into a.
func (ps *Parser) Parse(msg []byte, tcp bool, a *Answer) error {
	*a = Answer{Aliases: a.Aliases[:0], Addrs: a.Addrs[:0]}
	msg, err := unframe(msg, tcp)
	if err != nil {
		return err
	}
	h, err := ps.p.Start(msg)
	if err != nil {
		return fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	a.ID = h.ID
	if !h.Response {
		return fmt.Errorf("%w: a query", ErrNotAnswer)
	}
	if h.RCode != dnsmessage.RCodeSuccess {
		return fmt.Errorf("%w: %s", ErrNotAnswer, h.RCode)
	}
	q, err := ps.p.Question()
	if err != nil {
		return fmt.Errorf("%w: question: %w", ErrMalformed, err)
	}
	if q.Class != dnsmessage.ClassINET {
		return fmt.Errorf("%w: class %s", ErrNotAnswer, q.Class)
	}
	if err := ps.p.SkipAllQuestions(); err != nil {
		return fmt.Errorf("%w: questions: %w", ErrMalformed, err)
	}
	a.Question = ps.name(q.Name)
	a.Type = q.Type
	ps.records = ps.records[:0]
	for len(ps.records) < 4*maxAddrs {
		rh, err := ps.p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			a.Partial = true
			break
		}
		r := record{ttl: rh.TTL}
		switch {
		case rh.Class != dnsmessage.ClassINET:
			err = ps.p.SkipAnswer()
		case rh.Type == dnsmessage.TypeA:
			var rr dnsmessage.AResource
			if rr, err = ps.p.AResource(); err == nil {
				r.ip = netip.AddrFrom4(rr.A)
			}
		case rh.Type == dnsmessage.TypeAAAA:
			var rr dnsmessage.AAAAResource
			if rr, err = ps.p.AAAAResource(); err == nil {
				r.ip = netip.AddrFrom16(rr.AAAA).Unmap()
			}
		case rh.Type == dnsmessage.TypeCNAME:
			var rr dnsmessage.CNAMEResource
			if rr, err = ps.p.CNAMEResource(); err == nil {
				r.target = ps.name(rr.CNAME)
			}
		default:
			err = ps.p.SkipAnswer()
		}
		if err != nil {
			a.Partial = true
			break
		}
		if r.ip.IsValid() || r.target != "" {
			r.owner = ps.name(rh.Name)
			ps.records = append(ps.records, r)
		}
	}
	ps.follow(a)
	if len(a.Addrs) == 0 {
		if a.Partial {
			return fmt.Errorf("%w: cut off before any address", ErrMalformed)
		}
		return ErrNotAnswer
	}
	return nil
}

// follow walks the CNAME chain from the question and keeps the addresses of
// its names; records about other names are never attributed to it.
func (ps *Parser) follow(a *Answer) {
	cur := a.Question
	ttl := ^uint32(0)
	for hop := 0; hop <= maxChain; hop++ {
		next := ""
		for _, r := range ps.records {
			if r.owner != cur {
				continue
			}
			if r.ip.IsValid() && len(a.Addrs) < maxAddrs {
				a.Addrs = append(a.Addrs, Addr{IP: r.ip, TTL: min(ttl, r.ttl)})
			} else if r.target != "" && next == "" {
				next = r.target
				ttl = min(ttl, r.ttl)
			}
		}
		if next == "" || next == a.Question {
			return
		}
		a.Aliases = append(a.Aliases, next)
		cur = next
	}
}

// name is a wire name in a form that is valid UTF-8 and unambiguous: lower
// case ASCII, letters, digits, '-', '_' and '*' as they are, other bytes as \DDD.
func (ps *Parser) name(n dnsmessage.Name) string {
	b := ps.text[:0]
	s := n.Data[:n.Length]
	if len(s) > 0 && s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	for _, c := range s {
		switch {
		case 'A' <= c && c <= 'Z':
			b = append(b, c+'a'-'A')
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_', c == '*', c == '.':
			b = append(b, c)
		default:
			b = append(b, '\\', '0'+c/100, '0'+c/10%10, '0'+c%10)
		}
	}
	ps.text = b
	return string(b)
}
