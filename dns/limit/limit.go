// Package limit bounds how many events per second each network namespace
// may have handled, with one token bucket per namespace.
package limit

// Config sets the buckets.
type Config struct {
	PerSecond float64 // tokens added per second
	Burst     float64 // bucket size
	Netns     int     // buckets kept; a full bucket carries no state and may go
}

type bucket struct {
	tokens float64
	lastNs uint64
}

// PerNetns is a token bucket per network namespace. Not safe for concurrent use.
type PerNetns struct {
	cfg     Config
	buckets map[uint32]bucket
}

// New returns a limiter with every bucket full.
func New(cfg Config) *PerNetns {
	return &PerNetns{cfg: cfg, buckets: make(map[uint32]bucket)}
}

// Allow takes a token from netns's bucket at nowNs, if it has one.
func (l *PerNetns) Allow(netns uint32, nowNs uint64) bool {
	b, ok := l.buckets[netns]
	if !ok {
		if len(l.buckets) >= l.cfg.Netns {
			l.forgetFull(nowNs)
		}
		b = bucket{tokens: l.cfg.Burst, lastNs: nowNs}
	} else if nowNs > b.lastNs {
		b.tokens = min(l.cfg.Burst, b.tokens+float64(nowNs-b.lastNs)*l.cfg.PerSecond/1e9)
		b.lastNs = nowNs
	}
	allowed := b.tokens >= 1
	if allowed {
		b.tokens--
	}
	l.buckets[netns] = b
	return allowed
}

// forgetFull drops the buckets that have refilled: forgetting them changes
// nothing. If none has, all go (bounded memory over exactness).
func (l *PerNetns) forgetFull(nowNs uint64) {
	for id, b := range l.buckets {
		if nowNs > b.lastNs && b.tokens+float64(nowNs-b.lastNs)*l.cfg.PerSecond/1e9 >= l.cfg.Burst {
			delete(l.buckets, id)
		}
	}
	if len(l.buckets) >= l.cfg.Netns {
		clear(l.buckets)
	}
}
