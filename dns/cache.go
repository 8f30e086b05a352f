package dns

import (
	"net/netip"
	"slices"
	"sync"
	"time"
)

// maxNamesPerAddr bounds the names remembered for one address in one netns.
const maxNamesPerAddr = 8

// CacheConfig bounds the cache.
type CacheConfig struct {
	// EntriesPerNetns bounds the addresses remembered per network namespace,
	// so that one chatty pod cannot evict another's names.
	EntriesPerNetns int
	// Netns bounds the network namespaces remembered.
	Netns int
	// Grace keeps a name usable this long after its TTL ran out: applications
	// and connection pools go on using an address after its answer expired.
	Grace time.Duration
	// MaxTTL caps the TTL an answer gives its addresses (0: no cap), so that
	// no answer names an address for days.
	MaxTTL time.Duration
}

// Cache remembers, per network namespace, which names each address was
// answered for, by which resolver and when. It is safe for concurrent use.
// Every operation but Expire is O(1): addresses and namespaces are kept in
// lists from the least to the most recently answered, and room is made by
// forgetting the least recently answered.
type Cache struct {
	cfg      CacheConfig
	mu       sync.Mutex
	netns    map[uint32]*nsCache
	nsOldest *nsCache
	nsNewest *nsCache
	evicted  uint64
	names    []string // Lookup's result, reused
}

type nsCache struct {
	id             uint32
	addrs          map[netip.Addr]*entry
	lastNs         uint64 // newest answer
	oldest, newest *entry
	older, newer   *nsCache
}

// entry holds an address's names, the newest answer first.
type entry struct {
	ip           netip.Addr
	names        [maxNamesPerAddr]binding
	n            int
	older, newer *entry
}

// binding is a name that resolver gave the address, from the first of a run
// of answers that kept it usable without a break (sinceNs) to the newest's
// TTL. A connect is often handled after the next answer for the same name
// arrived: it is named by the answer before, kept as prevNs.
type binding struct {
	name       string
	resolver   netip.Addr
	sinceNs    uint64 // CLOCK_BOOTTIME
	prevNs     uint64 // the answer before answeredNs, 0 for none
	answeredNs uint64
	expiresNs  uint64 // answeredNs + TTL
}

// NewCache returns an empty cache.
func NewCache(cfg CacheConfig) *Cache {
	return &Cache{cfg: cfg, netns: make(map[uint32]*nsCache)}
}

// Add remembers what answer, received at atNs in netns from resolver, said.
func (c *Cache) Add(netns uint32, a *Answer, atNs uint64, resolver netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ns := c.netns[netns]
	if ns == nil {
		if len(c.netns) >= c.cfg.Netns {
			c.evictNetns()
		}
		ns = &nsCache{id: netns, addrs: make(map[netip.Addr]*entry)}
		c.netns[netns] = ns
	} else {
		c.unlinkNetns(ns)
	}
	c.pushNetns(ns)
	ns.lastNs = max(ns.lastNs, atNs)
	for _, ad := range a.Addrs {
		e := ns.addrs[ad.IP]
		if e == nil {
			if len(ns.addrs) >= c.cfg.EntriesPerNetns {
				e = c.evictAddr(ns, atNs)
			} else {
				e = &entry{}
			}
			e.ip = ad.IP
			ns.addrs[ad.IP] = e
		} else {
			ns.unlink(e)
		}
		ns.push(e)
		ttl := time.Duration(ad.TTL) * time.Second
		if c.cfg.MaxTTL > 0 {
			ttl = min(ttl, c.cfg.MaxTTL)
		}
		e.add(binding{name: a.Question, resolver: resolver, sinceNs: atNs, answeredNs: atNs, expiresNs: atNs + uint64(ttl)},
			uint64(c.cfg.Grace))
	}
}

// add puts b first. An answer that gives the same name from the same
// resolver while the last one is still usable continues its run.
func (e *entry) add(b binding, grace uint64) {
	i := 0
	for i < e.n && (e.names[i].name != b.name || e.names[i].resolver != b.resolver) {
		i++
	}
	if i < e.n {
		if old := e.names[i]; b.answeredNs <= old.expiresNs+grace {
			b.sinceNs = min(old.sinceNs, b.answeredNs)
			if b.answeredNs < old.answeredNs { // out of order: the newer answer stays newest
				b.prevNs, b.answeredNs = max(old.prevNs, b.answeredNs), old.answeredNs
			} else {
				b.prevNs = old.answeredNs
			}
			b.expiresNs = max(b.expiresNs, old.expiresNs)
		}
	} else {
		if e.n < maxNamesPerAddr {
			e.n++
		}
		i = e.n - 1 // the oldest name goes when the entry is full
	}
	copy(e.names[1:i+1], e.names[:i])
	e.names[0] = b
}

// answeredBy is when the answer that named a connect at atNs (within the
// binding's run) arrived: the newest known answer not after atNs.
func (b *binding) answeredBy(atNs uint64) uint64 {
	switch {
	case b.answeredNs <= atNs:
		return b.answeredNs
	case b.prevNs != 0 && b.prevNs <= atNs:
		return b.prevNs
	}
	return b.sinceNs
}

// usableUntil is the last time any of the entry's names may be used.
func (c *Cache) usableUntil(e *entry) uint64 {
	var t uint64
	for _, b := range e.names[:e.n] {
		t = max(t, b.expiresNs)
	}
	return t + uint64(c.cfg.Grace)
}

// evictAddr forgets ns's least recently answered address and returns its
// entry, emptied, for reuse.
func (c *Cache) evictAddr(ns *nsCache, nowNs uint64) *entry {
	e := ns.oldest
	ns.unlink(e)
	delete(ns.addrs, e.ip)
	if c.usableUntil(e) >= nowNs {
		c.evicted++
	}
	*e = entry{}
	return e
}

// evictNetns forgets the namespace whose newest answer is the oldest.
func (c *Cache) evictNetns() {
	ns := c.nsOldest
	c.unlinkNetns(ns)
	c.evicted += uint64(len(ns.addrs))
	delete(c.netns, ns.id)
}

func (ns *nsCache) push(e *entry) {
	e.older, e.newer = ns.newest, nil
	if ns.newest != nil {
		ns.newest.newer = e
	} else {
		ns.oldest = e
	}
	ns.newest = e
}

func (ns *nsCache) unlink(e *entry) {
	if e.older != nil {
		e.older.newer = e.newer
	} else {
		ns.oldest = e.newer
	}
	if e.newer != nil {
		e.newer.older = e.older
	} else {
		ns.newest = e.older
	}
	e.older, e.newer = nil, nil
}

func (c *Cache) pushNetns(ns *nsCache) {
	ns.older, ns.newer = c.nsNewest, nil
	if c.nsNewest != nil {
		c.nsNewest.newer = ns
	} else {
		c.nsOldest = ns
	}
	c.nsNewest = ns
}

func (c *Cache) unlinkNetns(ns *nsCache) {
	if ns.older != nil {
		ns.older.newer = ns.newer
	} else {
		c.nsOldest = ns.newer
	}
	if ns.newer != nil {
		ns.newer.older = ns.older
	} else {
		c.nsNewest = ns.older
	}
	ns.older, ns.newer = nil, nil
}

// Lookup tells which name ip had in netns at atNs: that of the newest answer
// received before atNs whose TTL plus grace had not run out (or was renewed
// by the next answer for the name before it did), and the resolver that
// gave it. names lists every name usable then, newest first;
// it is valid until the next Lookup, and Lookup does not allocate.
func (c *Cache) Lookup(netns uint32, ip netip.Addr, atNs uint64) (name string, names []string, age time.Duration, resolver netip.Addr, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ns := c.netns[netns]
	if ns == nil {
		return "", nil, 0, netip.Addr{}, false
	}
	e := ns.addrs[ip.Unmap()]
	if e == nil {
		return "", nil, 0, netip.Addr{}, false
	}
	c.names = c.names[:0]
	grace := uint64(c.cfg.Grace)
	for i := range e.names[:e.n] {
		b := &e.names[i]
		if b.sinceNs > atNs || atNs > b.expiresNs+grace {
			continue
		}
		if by := b.answeredBy(atNs); len(c.names) == 0 || by > atNs-uint64(age) {
			name, age, resolver = b.name, time.Duration(atNs-by), b.resolver
		}
		if !slices.Contains(c.names, b.name) { // the same name from two resolvers
			c.names = append(c.names, b.name)
		}
	}
	if i := slices.Index(c.names, name); i > 0 { // the name that named the connect comes first
		copy(c.names[1:i+1], c.names[:i])
		c.names[0] = name
	}
	return name, c.names, age, resolver, len(c.names) > 0
}

// Expire forgets what no connect at or after nowNs can use any more, from
// each namespace's least recently answered address on, and namespaces left
// empty. An expired address behind a live one stays until it is pushed out;
// Lookup never uses it.
func (c *Cache) Expire(nowNs uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for ns := c.nsOldest; ns != nil; {
		next := ns.newer
		for e := ns.oldest; e != nil && c.usableUntil(e) < nowNs; e = ns.oldest {
			ns.unlink(e)
			delete(ns.addrs, e.ip)
		}
		if len(ns.addrs) == 0 {
			c.unlinkNetns(ns)
			delete(c.netns, ns.id)
		}
		ns = next
	}
}

// Evicted counts addresses forgotten for lack of room before their time.
func (c *Cache) Evicted() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.evicted
}

// Len is the number of (netns, address) entries held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, ns := range c.netns {
		n += len(ns.addrs)
	}
	return n
}
