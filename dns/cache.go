package dns

import (
	"net/netip"
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
}

// Cache remembers, per network namespace, which names each address was
// answered for and when. It is safe for concurrent use.
type Cache struct {
	cfg     CacheConfig
	mu      sync.Mutex
	netns   map[uint32]*nsCache
	evicted uint64
	names   []string // Lookup's result, reused
}

type nsCache struct {
	addrs  map[netip.Addr]*entry
	lastNs uint64 // newest answer
}

// entry holds an address's names, the newest answer first.
type entry struct {
	names [maxNamesPerAddr]binding
	n     int
}

type binding struct {
	name       string
	answeredNs uint64 // CLOCK_BOOTTIME
	expiresNs  uint64 // answeredNs + TTL
}

// NewCache returns an empty cache.
func NewCache(cfg CacheConfig) *Cache {
	return &Cache{cfg: cfg, netns: make(map[uint32]*nsCache)}
}

// Add remembers what answer, received at atNs in netns, said.
func (c *Cache) Add(netns uint32, a *Answer, atNs uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ns := c.netns[netns]
	if ns == nil {
		if len(c.netns) >= c.cfg.Netns {
			c.evictNetns()
		}
		ns = &nsCache{addrs: make(map[netip.Addr]*entry)}
		c.netns[netns] = ns
	}
	ns.lastNs = max(ns.lastNs, atNs)
	for _, ad := range a.Addrs {
		e := ns.addrs[ad.IP]
		if e == nil {
			if len(ns.addrs) >= c.cfg.EntriesPerNetns {
				c.evictAddr(ns, atNs)
			}
			e = &entry{}
			ns.addrs[ad.IP] = e
		}
		e.add(binding{name: a.Question, answeredNs: atNs, expiresNs: atNs + uint64(ad.TTL)*uint64(time.Second)})
	}
}

func (e *entry) add(b binding) {
	i := 0
	for i < e.n && e.names[i].name != b.name {
		i++
	}
	if i == e.n {
		if e.n < maxNamesPerAddr {
			e.n++
		}
		i = e.n - 1 // the oldest name goes when the entry is full
	}
	copy(e.names[1:i+1], e.names[:i])
	e.names[0] = b
}

// usableUntil is the last time any of the entry's names may be used.
func (c *Cache) usableUntil(e *entry) uint64 {
	var t uint64
	for _, b := range e.names[:e.n] {
		t = max(t, b.expiresNs)
	}
	return t + uint64(c.cfg.Grace)
}

// evictAddr makes room in ns: expired entries go first, else the one that
// expires soonest.
func (c *Cache) evictAddr(ns *nsCache, nowNs uint64) {
	var victim netip.Addr
	soonest := ^uint64(0)
	for ip, e := range ns.addrs {
		u := c.usableUntil(e)
		if u < nowNs {
			delete(ns.addrs, ip)
			continue
		}
		if u < soonest {
			soonest, victim = u, ip
		}
	}
	if len(ns.addrs) >= c.cfg.EntriesPerNetns && victim.IsValid() {
		delete(ns.addrs, victim)
		c.evicted++
	}
}

// evictNetns forgets the namespace whose newest answer is the oldest.
func (c *Cache) evictNetns() {
	var victim uint32
	oldest := ^uint64(0)
	for id, ns := range c.netns {
		if ns.lastNs < oldest {
			oldest, victim = ns.lastNs, id
		}
	}
	c.evicted += uint64(len(c.netns[victim].addrs))
	delete(c.netns, victim)
}

// Lookup tells which name ip had in netns at atNs: the newest answer
// received before atNs whose TTL plus grace had not run out. names lists
// every name usable then, newest first; it is valid until the next Lookup,
// and Lookup does not allocate.
func (c *Cache) Lookup(netns uint32, ip netip.Addr, atNs uint64) (name string, names []string, age time.Duration, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ns := c.netns[netns]
	if ns == nil {
		return "", nil, 0, false
	}
	e := ns.addrs[ip.Unmap()]
	if e == nil {
		return "", nil, 0, false
	}
	c.names = c.names[:0]
	grace := uint64(c.cfg.Grace)
	for _, b := range e.names[:e.n] {
		if b.answeredNs > atNs || atNs > b.expiresNs+grace {
			continue
		}
		if len(c.names) == 0 {
			name, age = b.name, time.Duration(atNs-b.answeredNs)
		}
		c.names = append(c.names, b.name)
	}
	return name, c.names, age, len(c.names) > 0
}

// Expire forgets what no connect at or after nowNs can use any more.
func (c *Cache) Expire(nowNs uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, ns := range c.netns {
		for ip, e := range ns.addrs {
			if c.usableUntil(e) < nowNs {
				delete(ns.addrs, ip)
			}
		}
		if len(ns.addrs) == 0 {
			delete(c.netns, id)
		}
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
