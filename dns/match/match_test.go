package match

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

var (
	client = netip.MustParseAddrPort("198.51.100.2:40000")
	server = netip.MustParseAddr("198.51.100.1")
	a      = dnsmessage.TypeA
)

func key(id uint16) Key { return Key{NetNS: 1, Transport: 17, ID: id, Client: client, Server: server} }

func TestAnAnswerMustRepeatItsSocketsQuery(t *testing.T) {
	tb := New(Config{Lifetime: 5 * time.Second, PerNetns: 8, Max: 16})
	tb.Query(key(7), a, "api.example.com", 100)

	other := key(7)
	other.Server = netip.MustParseAddr("127.0.0.1") // another server than the one asked
	for name, c := range map[string]struct {
		k        Key
		typ      dnsmessage.Type
		question string
		want     Result
	}{
		"other server":   {other, a, "api.example.com", Unsolicited},
		"other id":       {key(8), a, "api.example.com", Unsolicited},
		"other port":     {Key{NetNS: 1, Transport: 17, ID: 7, Client: netip.AddrPortFrom(client.Addr(), 40001), Server: server}, a, "api.example.com", Unsolicited},
		"other netns":    {Key{NetNS: 2, Transport: 17, ID: 7, Client: client, Server: server}, a, "api.example.com", Unsolicited},
		"over TCP":       {Key{NetNS: 1, Transport: 6, ID: 7, Client: client, Server: server}, a, "api.example.com", Unsolicited},
		"other question": {key(7), a, "www.google.com", Mismatched},
		"other type":     {key(7), dnsmessage.TypeAAAA, "api.example.com", Mismatched},
	} {
		if got := tb.Answer(c.k, c.typ, c.question, 200); got != c.want {
			t.Errorf("%s: %s, want %s", name, got, c.want)
		}
	}
	if got := tb.Answer(key(7), a, "api.example.com", 300); got != Matched {
		t.Fatalf("the answer to the query: %s", got)
	}
	if got := tb.Answer(key(7), a, "api.example.com", 400); got != Unsolicited {
		t.Fatalf("a second answer to an answered query: %s, want unsolicited", got)
	}
	if tb.Len() != 0 {
		t.Fatalf("%d queries left", tb.Len())
	}
}

func TestQueriesExpireAndAreBounded(t *testing.T) {
	tb := New(Config{Lifetime: time.Second, PerNetns: 2, Max: 3})
	sec := uint64(time.Second)
	tb.Query(key(1), a, "one", 0)
	if got := tb.Answer(key(1), a, "one", 2*sec); got != Unsolicited {
		t.Fatalf("an answer after the query's lifetime: %s", got)
	}
	tb.Query(key(2), a, "two", 3*sec)
	tb.Query(key(3), a, "three", 3*sec)
	tb.Query(key(4), a, "four", 3*sec) // netns 1 holds 2 already
	if tb.Dropped != 1 || tb.Answer(key(4), a, "four", 3*sec) != Unsolicited {
		t.Fatalf("dropped %d, want the third query of one netns dropped", tb.Dropped)
	}
	k := key(5)
	k.NetNS = 2
	tb.Query(k, a, "five", 3*sec)
	k.ID = 6
	tb.Query(k, a, "six", 3*sec) // Max is 3: the oldest goes
	if tb.Evicted != 1 || tb.Answer(key(2), a, "two", 3*sec) != Unsolicited || tb.Answer(key(3), a, "three", 3*sec) != Matched {
		t.Fatalf("evicted %d, want the oldest query pushed out", tb.Evicted)
	}
	// A retry with the same id replaces the query, it does not add one.
	tb.Query(k, a, "six", 3*sec)
	tb.Query(k, a, "six", 3*sec)
	if tb.Len() != 2 {
		t.Fatalf("%d queries, want 2", tb.Len())
	}
}

func BenchmarkQueryAndAnswer(b *testing.B) {
	tb := New(Config{Lifetime: 5 * time.Second, PerNetns: 1024, Max: 65536})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		k := key(uint16(i))
		k.NetNS = uint32(i % 100)
		tb.Query(k, a, "api.example.com", uint64(i))
		if tb.Answer(k, a, "api.example.com", uint64(i)) != Matched {
			b.Fatal("no match")
		}
	}
}

// TestATableGrowsAsQueriesArrive: New allocates for the queries that come,
// not for Max (at the agent's Max of 65,536 that was 18 MB of heap on every
// node), the table still holds Max queries before it evicts, and once grown
// a steady flow of queries allocates nothing.
func TestATableGrowsAsQueriesArrive(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	tb := New(Config{Lifetime: 5 * time.Second, PerNetns: 1 << 20, Max: 65536})
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<10 {
		t.Fatalf("New allocated %d bytes for an empty table", grew)
	}

	small := New(Config{Lifetime: 5 * time.Second, PerNetns: 100, Max: 50})
	for i := range 50 {
		small.Query(key(uint16(i)), a, "q", 0)
	}
	if small.Len() != 50 || small.Evicted != 0 {
		t.Fatalf("%d queries waiting, %d evicted; want 50 and none", small.Len(), small.Evicted)
	}
	small.Query(key(50), a, "q", 0)
	if small.Len() != 50 || small.Evicted != 1 || small.Answer(key(0), a, "q", 0) != Unsolicited {
		t.Fatalf("at Max: %d waiting, %d evicted; want the oldest pushed out", small.Len(), small.Evicted)
	}

	for i := range 1000 {
		tb.Query(key(uint16(i)), a, "q", 0)
	}
	for i := range 1000 {
		if tb.Answer(key(uint16(i)), a, "q", 0) != Matched {
			t.Fatalf("query %d not matched", i)
		}
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		k := key(uint16(i % 1000))
		tb.Query(k, a, "q", 0)
		tb.Answer(k, a, "q", 0)
		i++
	}); n != 0 {
		t.Fatalf("a grown table allocated %v times per query", n)
	}
}
