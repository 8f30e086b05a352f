package agent

import (
	"net/netip"
	"testing"
	"time"

	"github.com/connaudit/connaudit/dns/limit"
	"github.com/connaudit/connaudit/shipper"
)

type discardTrail struct{ n int }

func (d *discardTrail) Emit(*shipper.Encoder)            { d.n++ }
func (d *discardTrail) Lose(shipper.Loss)                {}
func (d *discardTrail) Degrade(shipper.Degraded)         {}
func (d *discardTrail) TryLose(shipper.Loss) bool        { return true }
func (d *discardTrail) TryDegrade(shipper.Degraded) bool { return true }

// BenchmarkDNSAnswer is the agent's work per DNS answer after the ring
// buffer: parse, cache, deduplicate and, for a new answer, encode its
// dns.answer record. Spooling is measured by the spool's own benchmark.
func BenchmarkDNSAnswer(b *testing.B) {
	for _, distinct := range []bool{true, false} {
		name := "repeated"
		if distinct {
			name = "distinct"
		}
		b.Run(name, func(b *testing.B) {
			d, _, _ := testDNS(&testing.T{})
			sink := &discardTrail{}
			d.Trail = sink
			d.DedupEntries = 65536
			msgs := make([][]byte, 256)
			for i := range msgs {
				msgs[i] = dnsAnswer(&testing.T{}, "api.example.com.", netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}).String())
			}
			now := bootNs()
			d.Limit = limit.New(limit.Config{PerSecond: 1e9, Burst: 1e9, Netns: 4096})
			q := query(b, 0, now, "api.example.com.")
			d.drain(-1) // initialises deduplication
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				msg := msgs[0]
				if distinct {
					msg = msgs[i%len(msgs)]
				}
				p := packet(uint32(1+i/len(msgs)%1000), now+uint64(i), msg)
				q.NetNS = p.NetNS
				d.handle(&q, time.Now()) // the query it answers
				d.handle(&p, time.Now())
			}
		})
	}
}

// BenchmarkNamesLookup is what DNS adds to each connect: a cache lookup.
func BenchmarkNamesLookup(b *testing.B) {
	d, packets, _ := testDNS(&testing.T{})
	d.Trail = &discardTrail{}
	now := bootNs()
	packets.push(query(b, 1, now-1, "api.example.com."), packet(1, now, dnsAnswer(&testing.T{}, "api.example.com.", "203.0.113.80")))
	d.drain(-1)
	ip := netip.MustParseAddr("203.0.113.80")
	if _, _, _, _, ok := d.Lookup(1, ip, now+1); !ok {
		b.Fatal("not named")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.Lookup(1, ip, now+1)
	}
}
