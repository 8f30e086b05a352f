package dns_test

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/connaudit/connaudit/dns"
)

type rr struct {
	owner string
	ttl   uint32
	cname string
	ip    string
}

// response builds a wire response to question with the given answers.
func response(t testing.TB, question string, qtype dnsmessage.Type, answers ...rr) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, Response: true, RecursionAvailable: true})
	b.EnableCompression()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.StartQuestions())
	must(b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(question), Type: qtype, Class: dnsmessage.ClassINET}))
	must(b.StartAnswers())
	for _, a := range answers {
		h := dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(a.owner), Class: dnsmessage.ClassINET, TTL: a.ttl}
		switch ip := netip.MustParseAddr(orZero(a.ip)); {
		case a.cname != "":
			must(b.CNAMEResource(h, dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(a.cname)}))
		case ip.Is4():
			must(b.AResource(h, dnsmessage.AResource{A: ip.As4()}))
		default:
			must(b.AAAAResource(h, dnsmessage.AAAAResource{AAAA: ip.As16()}))
		}
	}
	msg, err := b.Finish()
	must(err)
	return msg
}

func orZero(s string) string {
	if s == "" {
		return "0.0.0.0"
	}
	return s
}

func TestParseFollowsTheCNAMEChainBackToTheQuestion(t *testing.T) {
	msg := response(t, "WWW.Example.COM.", dnsmessage.TypeA,
		rr{owner: "www.example.com.", ttl: 300, cname: "edge.cdn.example.net."},
		rr{owner: "edge.cdn.example.net.", ttl: 60, cname: "e1.cdn.example.net."},
		rr{owner: "e1.cdn.example.net.", ttl: 120, ip: "203.0.113.80"},
		rr{owner: "e1.cdn.example.net.", ttl: 20, ip: "203.0.113.81"},
		rr{owner: "unrelated.example.org.", ttl: 999, ip: "203.0.113.99"}, // never attributed to the question
	)
	var p dns.Parser
	var a dns.Answer
	if err := p.Parse(msg, false, &a); err != nil {
		t.Fatal(err)
	}
	want := dns.Answer{
		ID:       7,
		Type:     dnsmessage.TypeA,
		Question: "www.example.com",
		Aliases:  []string{"edge.cdn.example.net", "e1.cdn.example.net"},
		Addrs: []dns.Addr{
			{IP: netip.MustParseAddr("203.0.113.80"), TTL: 60},
			{IP: netip.MustParseAddr("203.0.113.81"), TTL: 20},
		},
	}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("got %+v\nwant %+v", a, want)
	}

	// The same over TCP, with its length prefix.
	tcp := append([]byte{byte(len(msg) >> 8), byte(len(msg))}, msg...)
	if err := p.Parse(tcp, true, &a); err != nil || a.Question != "www.example.com" || len(a.Addrs) != 2 {
		t.Fatalf("TCP: %v %+v", err, a)
	}
}

func TestParseAAAAAndBadInput(t *testing.T) {
	var p dns.Parser
	var a dns.Answer
	msg := response(t, "v6.example.com.", dnsmessage.TypeAAAA, rr{owner: "v6.example.com.", ttl: 30, ip: "2001:db8:2::80"})
	if err := p.Parse(msg, false, &a); err != nil || a.Addrs[0].IP != netip.MustParseAddr("2001:db8:2::80") {
		t.Fatalf("%v %+v", err, a)
	}

	// Cut inside the last answer: the answers before the cut are kept.
	two := response(t, "two.example.com.", dnsmessage.TypeA,
		rr{owner: "two.example.com.", ttl: 30, ip: "203.0.113.1"}, rr{owner: "two.example.com.", ttl: 30, ip: "203.0.113.2"})
	if err := p.Parse(two[:len(two)-2], false, &a); err != nil || !a.Partial || len(a.Addrs) != 1 {
		t.Fatalf("truncated: %v %+v", err, a)
	}
	if err := p.Parse(two[:20], false, &a); !errors.Is(err, dns.ErrMalformed) {
		t.Fatalf("cut in the question: %v, want ErrMalformed", err)
	}
	if err := p.Parse([]byte{1, 2, 3}, false, &a); !errors.Is(err, dns.ErrMalformed) {
		t.Fatalf("garbage: %v, want ErrMalformed", err)
	}
	empty := response(t, "none.example.com.", dnsmessage.TypeA)
	if err := p.Parse(empty, false, &a); !errors.Is(err, dns.ErrNotAnswer) {
		t.Fatalf("empty answer: %v, want ErrNotAnswer", err)
	}
}

func TestParseMakesOddNamesValid(t *testing.T) {
	var p dns.Parser
	var a dns.Answer
	// A label with a space and a byte that is not UTF-8.
	name := dnsmessage.Name{Length: 12}
	copy(name.Data[:], "a b\xff.exa.co.")
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{Response: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	_ = b.StartAnswers()
	_ = b.AResource(dnsmessage.ResourceHeader{Name: name, Class: dnsmessage.ClassINET, TTL: 5}, dnsmessage.AResource{A: [4]byte{203, 0, 113, 5}})
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Parse(msg, false, &a); err != nil || a.Question != `a\032b\255.exa.co` {
		t.Fatalf("%v %q", err, a.Question)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(response(f, "www.example.com.", dnsmessage.TypeA,
		rr{owner: "www.example.com.", ttl: 300, cname: "e.example.net."}, rr{owner: "e.example.net.", ttl: 5, ip: "203.0.113.80"}), false)
	f.Add(response(f, "v6.example.com.", dnsmessage.TypeAAAA, rr{owner: "v6.example.com.", ttl: 30, ip: "2001:db8::1"}), true)
	f.Fuzz(func(t *testing.T, msg []byte, tcp bool) {
		var p dns.Parser
		var a dns.Answer
		if err := p.Parse(msg, tcp, &a); err != nil {
			return
		}
		if len(a.Addrs) == 0 {
			t.Fatal("an answer without addresses was accepted")
		}
		for _, ad := range a.Addrs {
			if !ad.IP.IsValid() || ad.IP.Is4In6() {
				t.Fatalf("address %v", ad.IP)
			}
		}
		for _, c := range []byte(a.Question) {
			if c < 0x21 || c > 0x7e || 'A' <= c && c <= 'Z' {
				t.Fatalf("question %q holds byte %#x", a.Question, c)
			}
		}
	})
}

func sec(s float64) uint64 { return uint64(s * float64(time.Second)) }

func answer(q string, ttl uint32, ips ...string) *dns.Answer {
	a := &dns.Answer{Question: q}
	for _, ip := range ips {
		a.Addrs = append(a.Addrs, dns.Addr{IP: netip.MustParseAddr(ip), TTL: ttl})
	}
	return a
}

func TestCacheTTLGraceAndNetnsIsolation(t *testing.T) {
	c := dns.NewCache(dns.CacheConfig{EntriesPerNetns: 100, Netns: 10, Grace: 10 * time.Second})
	ip := netip.MustParseAddr("203.0.113.80")
	c.Add(1, answer("api.example.com", 30, "203.0.113.80"), sec(100), resolver)

	if _, _, _, _, ok := c.Lookup(1, ip, sec(99)); ok {
		t.Fatal("a connect before the answer got its name")
	}
	name, names, age, _, ok := c.Lookup(1, ip, sec(105))
	if !ok || name != "api.example.com" || len(names) != 1 || age != 5*time.Second {
		t.Fatalf("got %q %v %v %v", name, names, age, ok)
	}
	if _, _, _, _, ok := c.Lookup(1, ip, sec(139)); !ok {
		t.Fatal("within the grace period the name should hold")
	}
	if _, _, _, _, ok := c.Lookup(1, ip, sec(141)); ok {
		t.Fatal("after TTL and grace the name should be gone")
	}
	if _, _, _, _, ok := c.Lookup(2, ip, sec(105)); ok {
		t.Fatal("another netns got the name")
	}
	if _, _, _, _, ok := c.Lookup(1, netip.MustParseAddr("203.0.113.81"), sec(105)); ok {
		t.Fatal("another address got the name")
	}

	// The same IP under a second name: the newest answer names it, both are listed.
	c.Add(1, answer("www.example.com", 30, "203.0.113.80"), sec(110), resolver)
	name, names, _, _, _ = c.Lookup(1, ip, sec(111))
	if name != "www.example.com" || !reflect.DeepEqual(names, []string{"www.example.com", "api.example.com"}) {
		t.Fatalf("got %q %v", name, names)
	}
	// A connect between the two answers is named by the first.
	if name, _, _, _, _ = c.Lookup(1, ip, sec(105)); name != "api.example.com" {
		t.Fatalf("got %q", name)
	}
	c.Expire(sec(200))
	if c.Len() != 0 {
		t.Fatalf("%d entries left after expiry", c.Len())
	}
	if got := testing.AllocsPerRun(100, func() { c.Lookup(1, ip, sec(105)) }); got != 0 {
		t.Fatalf("Lookup allocates %v times", got)
	}
}

func TestCacheBounds(t *testing.T) {
	c := dns.NewCache(dns.CacheConfig{EntriesPerNetns: 4, Netns: 2, Grace: time.Second})
	for i := range 6 {
		c.Add(1, answer("n.example.com", uint32(100+i), netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}).String()), sec(1), resolver)
	}
	if c.Len() != 4 || c.Evicted() != 2 {
		t.Fatalf("%d entries, %d evicted; want 4 and 2", c.Len(), c.Evicted())
	}
	// The soonest to expire went first.
	if _, _, _, _, ok := c.Lookup(1, netip.MustParseAddr("203.0.113.0"), sec(2)); ok {
		t.Fatal("the entry expiring soonest was kept")
	}
	if _, _, _, _, ok := c.Lookup(1, netip.MustParseAddr("203.0.113.5"), sec(2)); !ok {
		t.Fatal("the newest entry was evicted")
	}
	// A chatty netns never evicts another's entries; a third netns evicts the stalest.
	c.Add(2, answer("b.example.com", 100, "203.0.113.200"), sec(3), resolver)
	c.Add(3, answer("c.example.com", 100, "203.0.113.201"), sec(4), resolver)
	if _, _, _, _, ok := c.Lookup(2, netip.MustParseAddr("203.0.113.200"), sec(5)); !ok {
		t.Fatal("netns 2 lost its entry")
	}
	if c.Evicted() != 6 {
		t.Fatalf("evicted %d, want 6 (netns 1's four went with it)", c.Evicted())
	}
}

var resolver = netip.MustParseAddr("198.51.100.53")

func TestCacheNamesTheResolverAndCapsTTLs(t *testing.T) {
	c := dns.NewCache(dns.CacheConfig{EntriesPerNetns: 10, Netns: 10, MaxTTL: time.Hour})
	other := netip.MustParseAddr("127.0.0.53")
	c.Add(1, answer("api.example.com", 1<<31-1, "203.0.113.80"), sec(100), resolver)
	c.Add(1, answer("www.example.com", 60, "203.0.113.81"), sec(100), other)
	ip := netip.MustParseAddr("203.0.113.80")
	if name, _, _, r, ok := c.Lookup(1, ip, sec(100+3599)); !ok || name != "api.example.com" || r != resolver {
		t.Fatalf("got %q from %s, %v; want api.example.com from %s", name, r, ok, resolver)
	}
	if _, _, _, _, ok := c.Lookup(1, ip, sec(100+3601)); ok {
		t.Fatal("a TTL of 68 years held beyond the one-hour cap")
	}
	if _, _, _, r, _ := c.Lookup(1, netip.MustParseAddr("203.0.113.81"), sec(101)); r != other {
		t.Fatalf("resolver %s, want %s", r, other)
	}
}

// The least recently answered address goes; an address answered again is
// the most recent, whatever its TTL.
func TestCacheEvictsTheLeastRecentlyAnswered(t *testing.T) {
	c := dns.NewCache(dns.CacheConfig{EntriesPerNetns: 3, Netns: 10, Grace: time.Second})
	addr := func(i int) string { return netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}).String() }
	for i := range 3 {
		c.Add(1, answer("n.example.com", 300, addr(i)), sec(float64(i)), resolver)
	}
	c.Add(1, answer("again.example.com", 300, addr(0)), sec(3), resolver)
	c.Add(1, answer("new.example.com", 300, addr(3)), sec(4), resolver)
	for i, want := range []bool{true, false, true, true} {
		if _, _, _, _, ok := c.Lookup(1, netip.MustParseAddr(addr(i)), sec(5)); ok != want {
			t.Errorf("%s named: %v, want %v", addr(i), ok, want)
		}
	}
	// Expiry from the least recently answered on.
	c.Expire(sec(2000))
	if c.Len() != 0 {
		t.Fatalf("%d entries after expiry", c.Len())
	}
}

// One answer with 60 new addresses into a full namespace of 4,096: the issue
// measured 7.6 ms when eviction scanned the namespace.
func BenchmarkCacheAddToFullNetns(b *testing.B) {
	c := dns.NewCache(dns.CacheConfig{EntriesPerNetns: 4096, Netns: 16, Grace: time.Minute})
	a := &dns.Answer{Question: "flood.example.com"}
	for range 60 {
		a.Addrs = append(a.Addrs, dns.Addr{TTL: 300})
	}
	n := uint32(0)
	fill := func(at uint64) {
		for i := range a.Addrs {
			n++
			a.Addrs[i].IP = netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
		}
		c.Add(1, a, at, resolver)
	}
	for i := 0; i < 4096/60+1; i++ {
		fill(uint64(i))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fill(uint64(1000 + i))
	}
}

func TestParseQueryReadsIDTypeAndQuestion(t *testing.T) {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x1234, RecursionDesired: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("API.Example.com."), Type: dnsmessage.TypeAAAA, Class: dnsmessage.ClassINET})
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	var ps dns.Parser
	var q dns.Query
	for _, tcp := range []bool{false, true} {
		m := msg
		if tcp {
			m = append([]byte{byte(len(msg) >> 8), byte(len(msg))}, msg...)
		}
		if err := ps.ParseQuery(m, tcp, &q); err != nil || q != (dns.Query{ID: 0x1234, Type: dnsmessage.TypeAAAA, Question: "api.example.com"}) {
			t.Fatalf("tcp %v: %+v, %v", tcp, q, err)
		}
	}
	// The answer to it carries the same id, type and question.
	var a dns.Answer
	if err := ps.Parse(response(t, "api.example.com.", dnsmessage.TypeA, rr{owner: "api.example.com.", ttl: 5, ip: "203.0.113.1"}), false, &a); err != nil ||
		a.ID != 7 || a.Type != dnsmessage.TypeA || a.Question != "api.example.com" {
		t.Fatalf("answer %+v, %v", a, err)
	}
	if err := ps.ParseQuery(response(t, "x.example.com.", dnsmessage.TypeA), false, &q); !errors.Is(err, dns.ErrMalformed) {
		t.Fatalf("a response sent as a query: %v", err)
	}
}

// A stub resolver asks again before each connect: the connect is handled
// after the next answer for the same name arrived, and is still named by
// the one before it, with that answer's age.
func TestCacheNamesAConnectHandledAfterTheNextAnswer(t *testing.T) {
	c := dns.NewCache(dns.CacheConfig{EntriesPerNetns: 10, Netns: 10, Grace: time.Second})
	ip := netip.MustParseAddr("203.0.113.80")
	for i := range 5 {
		c.Add(1, answer("api.example.com", 60, "203.0.113.80"), sec(100+float64(i)), resolver)
	}
	name, _, age, r, ok := c.Lookup(1, ip, sec(103.5))
	if !ok || name != "api.example.com" || age != 500*time.Millisecond || r != resolver {
		t.Fatalf("a connect between the 4th and 5th answers: %q, age %s, from %s, %v; want api.example.com, 500ms, from %s", name, age, r, ok, resolver)
	}
	if _, _, age, _, ok := c.Lookup(1, ip, sec(101.5)); !ok || age > 1500*time.Millisecond {
		t.Fatalf("a connect between the 2nd and 3rd answers: age %s, %v; want named, by an answer at most 1.5s before", age, ok)
	}
	if _, _, _, _, ok := c.Lookup(1, ip, sec(99)); ok {
		t.Fatal("a connect before the first answer got its name")
	}

	// Another name for the address between two answers of the first: a
	// connect after it is named by it, the newest answer before the connect.
	c.Add(1, answer("www.example.com", 60, "203.0.113.80"), sec(104.2), resolver)
	c.Add(1, answer("api.example.com", 60, "203.0.113.80"), sec(105), resolver)
	name, names, _, _, _ := c.Lookup(1, ip, sec(104.5))
	if name != "www.example.com" || !reflect.DeepEqual(names, []string{"www.example.com", "api.example.com"}) {
		t.Fatalf("a connect after www's answer: %q %v", name, names)
	}

	// A run ends when the name was no longer usable: an answer after the
	// TTL and grace ran out does not name connects before it.
	c.Add(1, answer("late.example.com", 1, "203.0.113.81"), sec(200), resolver)
	c.Add(1, answer("late.example.com", 1, "203.0.113.81"), sec(205), resolver)
	if _, _, _, _, ok := c.Lookup(1, netip.MustParseAddr("203.0.113.81"), sec(203)); ok {
		t.Fatal("a connect in the gap between two runs got the name")
	}
	// The same name from another resolver is another binding: the connect
	// names the resolver that answered before it.
	other := netip.MustParseAddr("127.0.0.53")
	c.Add(1, answer("api.example.com", 60, "203.0.113.80"), sec(106), other)
	if _, _, _, r, _ := c.Lookup(1, ip, sec(105.5)); r != resolver {
		t.Fatalf("a connect before the other resolver's answer: from %s, want %s", r, resolver)
	}
	if name, names, _, r, _ := c.Lookup(1, ip, sec(106.5)); name != "api.example.com" || r != other || len(names) != 2 {
		t.Fatalf("a connect after the other resolver's answer: %q %v from %s, want api.example.com (listed once) from %s", name, names, r, other)
	}
	// Answers from the two resolvers interleave: a connect is attributed to
	// the one that answered last before it, though the other's run is newer.
	c.Add(1, answer("api.example.com", 60, "203.0.113.80"), sec(107), resolver)
	c.Add(1, answer("api.example.com", 60, "203.0.113.80"), sec(108), other)
	if _, _, age, r, _ := c.Lookup(1, ip, sec(107.5)); r != resolver || age != 500*time.Millisecond {
		t.Fatalf("a connect after %s's answer at 107: from %s, age %s", resolver, r, age)
	}
}
