package k8s

import (
	"net/netip"
	"testing"
)

// The addresses of a cluster spread over every shard: a write copies only
// its own shard, so one shard holding everything makes every write copy the
// whole map.
func TestAddressesSpreadOverShards(t *testing.T) {
	m := newCOWMap[netip.Addr, int](hashAddr)
	for _, prefix := range []string{"10.244.0.0/16", "fd00:10:244::/64"} {
		base := netip.MustParsePrefix(prefix).Addr()
		a := base
		for i := 0; i < 10000; i++ {
			a = a.Next()
			m.set(a, i)
		}
	}
	for i := range m.shards {
		if n := m.lenOf(&m.shards[i]); n < 20000/cowShards/2 {
			t.Errorf("shard %d holds %d of 20000 addresses, want about %d", i, n, 20000/cowShards)
		}
	}
}
