package k8s

import (
	"hash/maphash"
	"net/netip"
	"sync/atomic"
)

// cowShards is the number of shards of a cowMap. A write copies one shard,
// so with 20,000 keys a write copies about 300 entries.
const cowShards = 64

// cowMap is a map for a read-mostly hot path: reads take no lock and do not
// allocate, writes copy one shard and publish it atomically. Values are
// snapshots: readers see either the old or the new value of a key, never a
// partial write. Writers must be serialized by the caller.
type cowMap[K comparable, V any] struct {
	hash   func(K) uint64
	shards [cowShards]atomic.Pointer[map[K]V]
}

func newCOWMap[K comparable, V any](hash func(K) uint64) *cowMap[K, V] {
	return &cowMap[K, V]{hash: hash}
}

func (m *cowMap[K, V]) shard(k K) *atomic.Pointer[map[K]V] {
	return &m.shards[m.hash(k)%cowShards]
}

func (m *cowMap[K, V]) get(k K) (V, bool) {
	if p := m.shard(k).Load(); p != nil {
		v, ok := (*p)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

// set stores v under k. The caller serializes writers.
func (m *cowMap[K, V]) set(k K, v V) {
	s := m.shard(k)
	next := make(map[K]V, m.lenOf(s)+1)
	if p := s.Load(); p != nil {
		for k2, v2 := range *p {
			next[k2] = v2
		}
	}
	next[k] = v
	s.Store(&next)
}

// delete removes k. The caller serializes writers.
func (m *cowMap[K, V]) delete(k K) {
	s := m.shard(k)
	p := s.Load()
	if p == nil {
		return
	}
	if _, ok := (*p)[k]; !ok {
		return
	}
	next := make(map[K]V, len(*p))
	for k2, v2 := range *p {
		if k2 != k {
			next[k2] = v2
		}
	}
	s.Store(&next)
}

// all calls fn for every entry, shard by shard.
func (m *cowMap[K, V]) all(fn func(K, V)) {
	for i := range m.shards {
		if p := m.shards[i].Load(); p != nil {
			for k, v := range *p {
				fn(k, v)
			}
		}
	}
}

// len returns the number of entries.
func (m *cowMap[K, V]) len() int {
	n := 0
	for i := range m.shards {
		n += m.lenOf(&m.shards[i])
	}
	return n
}

func (m *cowMap[K, V]) lenOf(s *atomic.Pointer[map[K]V]) int {
	if p := s.Load(); p != nil {
		return len(*p)
	}
	return 0
}

var hashSeed = maphash.MakeSeed()

func hashString(s string) uint64 { return maphash.String(hashSeed, s) }

func hashAddr(a netip.Addr) uint64 {
	b := a.As16()
	return maphash.Bytes(hashSeed, b[:])
}
