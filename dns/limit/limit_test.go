package limit

import (
	"testing"
	"time"
)

func TestEachNetnsHasItsOwnBudget(t *testing.T) {
	l := New(Config{PerSecond: 10, Burst: 5, Netns: 2})
	const sec = uint64(time.Second)
	allowed := 0
	for range 100 {
		if l.Allow(1, sec) {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("a burst of 100 let %d through, want the burst of 5", allowed)
	}
	if !l.Allow(2, sec) {
		t.Fatal("netns 2 paid for netns 1's burst")
	}
	if l.Allow(1, sec+uint64(50*time.Millisecond)) {
		t.Fatal("half a token after 50 ms at 10/s")
	}
	if !l.Allow(1, sec+uint64(150*time.Millisecond)) {
		t.Fatal("no token after 150 ms at 10/s")
	}
	// A third netns beyond the bound: netns 2's refilled bucket goes, 1's,
	// spent, stays.
	for range 10 {
		l.Allow(1, 10*sec)
	}
	l.Allow(3, 10*sec)
	if _, ok := l.buckets[2]; ok || len(l.buckets) != 2 {
		t.Fatalf("buckets %v, want 1 and 3", l.buckets)
	}
}

func BenchmarkAllow(b *testing.B) {
	l := New(Config{PerSecond: 1000, Burst: 2000, Netns: 4096})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		l.Allow(uint32(i%100), uint64(i)*1000)
	}
}
