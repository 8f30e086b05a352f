package shipper

import (
	"math/rand/v2"
	"time"
)

// backoff doubles a wait from initial up to max, and draws each wait at
// random from [d·(1−jitter), d·(1+jitter)] (at most max), as the OTel
// Collector's exporterhelper retry sender does with its randomization
// factor: the agents of a DaemonSet that lost their collector together do
// not all come back at the same instant.
type backoff struct {
	initial, max time.Duration
	cur          time.Duration
	rand         func() float64 // in [0, 1); nil is math/rand/v2
}

// backoffJitter is exporterhelper's default randomization factor.
const backoffJitter = 0.5

func newBackoff(initial, max time.Duration) backoff {
	return backoff{initial: initial, max: max, cur: initial}
}

// next returns the wait before the next try and doubles the one after.
func (b *backoff) next() time.Duration {
	r := rand.Float64
	if b.rand != nil {
		r = b.rand
	}
	d := min(jitter(b.cur, backoffJitter, r()), b.max)
	b.cur = min(b.cur*2, b.max)
	return d
}

// reset starts over from initial.
func (b *backoff) reset() { b.cur = b.initial }

// jitter spreads d over [d·(1−factor), d·(1+factor)] by r in [0, 1).
func jitter(d time.Duration, factor, r float64) time.Duration {
	return time.Duration(float64(d) * (1 - factor + 2*factor*r))
}
