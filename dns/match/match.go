// Package match pairs DNS answers with the queries their sockets sent: an
// answer may name addresses only if the same socket asked that question, of
// that server, with that transaction id, a short time before.
package match

import (
	"hash/maphash"
	"net/netip"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Config bounds the outstanding queries.
type Config struct {
	// Lifetime is how long a query waits for its answer.
	Lifetime time.Duration
	// PerNetns bounds the queries waiting in one network namespace, so that
	// one namespace's burst cannot push out another's queries.
	PerNetns int
	// Max bounds the queries waiting in all.
	Max int
}

// Key is what an answer shares with its query: the socket's network
// namespace and 5-tuple (the server end is always port 53) and the id.
type Key struct {
	NetNS     uint32
	Transport uint8
	ID        uint16
	Client    netip.AddrPort
	Server    netip.Addr
}

// Result of Answer.
type Result uint8

const (
	Matched     Result = iota
	Unsolicited        // no query from this socket to this server with this id is waiting
	Mismatched         // a query is waiting, for another question
)

func (r Result) String() string {
	switch r {
	case Matched:
		return "matched"
	case Unsolicited:
		return "unsolicited"
	default:
		return "question_mismatch"
	}
}

// node is a waiting query, in a list in sending order. The nodes live in
// one array, linked by index, so that queries cost no allocation.
type node struct {
	key        Key
	question   uint64 // hash of the question's type and name
	expiresNs  uint64
	prev, next int32 // -1: none
}

// Table holds the outstanding queries. Queries expire in the order they
// were sent (one lifetime for all), so the list in sending order makes
// expiry, eviction and removal O(1). Not safe for concurrent use.
type Table struct {
	cfg        Config
	seed       maphash.Seed
	byKey      map[Key]int32
	netns      map[uint32]int // queries waiting per namespace
	nodes      []node
	free       []int32
	head, tail int32 // oldest, newest

	Dropped uint64 // queries not kept: their namespace was at PerNetns
	Evicted uint64 // queries pushed out by Max before their lifetime
}

// New returns an empty table. It allocates as queries arrive, not for Max up
// front: at Max 65,536 the nodes and the map would take about 18 MB of every
// agent's heap (and twice that of its resident set, at GOGC=100) although a
// node rarely has more than a few hundred queries waiting. Once grown, the
// table keeps its nodes, so a steady flow of queries allocates nothing.
func New(cfg Config) *Table {
	cfg.Max = max(cfg.Max, 1)
	return &Table{cfg: cfg, seed: maphash.MakeSeed(), byKey: make(map[Key]int32), netns: make(map[uint32]int),
		head: -1, tail: -1}
}

func (t *Table) hash(typ dnsmessage.Type, question string) uint64 {
	var h maphash.Hash
	h.SetSeed(t.seed)
	h.WriteByte(byte(typ >> 8))
	h.WriteByte(byte(typ))
	h.WriteString(question)
	return h.Sum64()
}

// Query records a query sent at atNs. A query sent again with the same id
// (a retry) replaces the first.
func (t *Table) Query(k Key, typ dnsmessage.Type, question string, atNs uint64) {
	t.expire(atNs)
	if i, ok := t.byKey[k]; ok {
		t.remove(i)
	}
	if t.netns[k.NetNS] >= t.cfg.PerNetns {
		t.Dropped++
		return
	}
	if len(t.free) == 0 {
		if len(t.nodes) < t.cfg.Max {
			t.nodes = append(t.nodes, node{})
			t.free = append(t.free, int32(len(t.nodes)-1))
		} else {
			t.remove(t.head)
			t.Evicted++
		}
	}
	i := t.free[len(t.free)-1]
	t.free = t.free[:len(t.free)-1]
	t.nodes[i] = node{key: k, question: t.hash(typ, question), expiresNs: atNs + uint64(t.cfg.Lifetime), prev: t.tail, next: -1}
	if t.tail >= 0 {
		t.nodes[t.tail].next = i
	} else {
		t.head = i
	}
	t.tail = i
	t.byKey[k] = i
	t.netns[k.NetNS]++
}

// Answer tells whether an answer received at atNs, with this key and
// question, answers a waiting query. A matched query is answered: a second
// answer to it is unsolicited.
func (t *Table) Answer(k Key, typ dnsmessage.Type, question string, atNs uint64) Result {
	t.expire(atNs)
	i, ok := t.byKey[k]
	if !ok {
		return Unsolicited
	}
	if t.nodes[i].question != t.hash(typ, question) {
		return Mismatched // the query still waits for its own answer
	}
	t.remove(i)
	return Matched
}

// Len is the number of queries waiting.
func (t *Table) Len() int { return len(t.byKey) }

func (t *Table) remove(i int32) {
	n := &t.nodes[i]
	if n.prev >= 0 {
		t.nodes[n.prev].next = n.next
	} else {
		t.head = n.next
	}
	if n.next >= 0 {
		t.nodes[n.next].prev = n.prev
	} else {
		t.tail = n.prev
	}
	delete(t.byKey, n.key)
	if t.netns[n.key.NetNS]--; t.netns[n.key.NetNS] <= 0 {
		delete(t.netns, n.key.NetNS)
	}
	*n = node{}
	t.free = append(t.free, i)
}

// expire forgets the queries whose lifetime has passed at nowNs.
func (t *Table) expire(nowNs uint64) {
	for t.head >= 0 && t.nodes[t.head].expiresNs < nowNs {
		t.remove(t.head)
	}
}
