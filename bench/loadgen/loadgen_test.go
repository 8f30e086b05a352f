package loadgen

import (
	"strings"
	"testing"
	"time"
)

func TestRunMakesEveryConnect(t *testing.T) {
	res, err := Run(t.Context(), Config{Count: 3000, Duration: time.Minute, Sources: 64})
	if err != nil {
		t.Fatal(err)
	}
	if res.Made != 3000 || res.Failed != 0 || res.Accepted != 3000 {
		t.Fatalf("made %d, failed %d, accepted %d; want 3000, 0, 3000", res.Made, res.Failed, res.Accepted)
	}
	if res.Port == 0 {
		t.Fatal("no listener port reported")
	}
}

func TestRunStopsAtItsDuration(t *testing.T) {
	res, err := Run(t.Context(), Config{Rate: 100, Count: 1_000_000, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Made >= 1_000_000 || res.Failed != 0 {
		t.Fatalf("made %d (failed %d): the duration did not bound the load", res.Made, res.Failed)
	}
}

func TestSourcesSpreadOverLoopback(t *testing.T) {
	seen := map[[4]byte]bool{}
	for i := range 1024 {
		s := source(i)
		if s[0] != 127 || s == [4]byte{127, 1, 0, 0} {
			t.Fatalf("source(%d) = %v: not a host address in 127.0.0.0/8", i, s)
		}
		seen[s] = true
	}
	if len(seen) != 1024 {
		t.Fatalf("1024 sources gave %d distinct addresses", len(seen))
	}
}

func TestValidateRefusesUnboundedLoad(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Duration: time.Second}, "count"},
		{Config{Count: 1}, "duration"},
		{Config{Count: 1, Duration: time.Second, Rate: -1}, "rate"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", c.cfg, err, c.want)
		}
	}
}

func TestRunReportsEverySampledConnect(t *testing.T) {
	before := time.Now().UnixNano()
	res, err := Run(t.Context(), Config{Count: 1000, Duration: time.Minute, SampleEvery: 50})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Samples) != 20 {
		t.Fatalf("%d samples of 1000 connects every 50th, want 20", len(res.Samples))
	}
	seen := map[string]bool{}
	for _, s := range res.Samples {
		if !strings.HasPrefix(s.Source, "127.2.") || seen[s.Source] || s.ConnectNs < before || s.ConnectNs > time.Now().UnixNano() {
			t.Fatalf("sample %+v: want a source of its own in 127.2.0.0/16 and a time within the load", s)
		}
		seen[s.Source] = true
	}
}
