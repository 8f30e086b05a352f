package chain

import (
	"strconv"
	"testing"
)

// agentSide builds a record as the agent does, from typed values.
func agentSide(body string, dur float64, pid int64) Link {
	var c Canon
	c.Reset("tcp.connect", 1765090800123456789, 9, body)
	c.Bytes([]byte("service.instance.id"), []byte("i-1"))
	c.Float("connaudit.connect.duration", dur)
	c.Int("process.pid", pid)
	c.Bool("connaudit.host_network", true)
	c.Bytes([]byte("connaudit.k8s.enrichment"), nil) // empty: dropped like VictoriaLogs does
	c.Int("connaudit.seq", 7)
	return c.Leaf()
}

// backendSide builds it from strings, in another order, as a verifier reads
// them back from VictoriaLogs.
func backendSide(body string, fields map[string]string) Link {
	var c Canon
	c.Reset("tcp.connect", 1765090800123456789, 9, body)
	for k, v := range fields {
		c.String(k, v)
	}
	return c.Leaf()
}

func TestAgentAndBackendFormsHashAlike(t *testing.T) {
	for _, tc := range []struct {
		dur  float64
		back string // as VictoriaLogs may give it back
	}{
		{0.00021, "0.00021"},
		{0.00021, "0.00021000000000000001"},
		{0.1 + 0.2, "0.3"},
		{0.1 + 0.2, "0.30000000000000004"},
		{1e-7, "0.0000001"},
		{3, "3"},
		{123.000000001, "123.000000001"},
	} {
		want := agentSide("b", tc.dur, 42)
		got := backendSide("b", map[string]string{
			"connaudit.seq": "7", "process.pid": "42", "connaudit.host_network": "true",
			"connaudit.connect.duration": tc.back, "service.instance.id": "i-1",
		})
		if got != want {
			t.Errorf("duration %v read back as %q: leaf %s, the agent's %s", tc.dur, tc.back, got, want)
		}
	}
}

func TestEveryPartIsBound(t *testing.T) {
	base := map[string]string{"connaudit.seq": "7", "process.pid": "42", "connaudit.host_network": "true",
		"connaudit.connect.duration": "0.5", "service.instance.id": "i-1"}
	want := agentSide("b", 0.5, 42)
	if backendSide("b", base) != want {
		t.Fatal("the untouched record does not match")
	}
	alter := func(k, v string) map[string]string {
		m := map[string]string{}
		for kk, vv := range base {
			m[kk] = vv
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for name, fields := range map[string]map[string]string{
		"value changed":  alter("process.pid", "43"),
		"field removed":  alter("connaudit.host_network", ""),
		"field added":    alter("k8s.pod.name", "x"),
		"seq changed":    alter("connaudit.seq", "8"),
		"resource moved": alter("service.instance.id", "i-2"),
		"float changed":  alter("connaudit.connect.duration", "0.50001"),
	} {
		if backendSide("b", fields) == want {
			t.Errorf("%s: leaf unchanged", name)
		}
	}
	if backendSide("c", base) == want {
		t.Error("body changed: leaf unchanged")
	}
	var c Canon
	c.Reset("tcp.connect", 1765090800123456788, 9, "b")
	for k, v := range base {
		c.String(k, v)
	}
	if c.Leaf() == want {
		t.Error("timestamp changed: leaf unchanged")
	}
}

// Items are length-prefixed: moving bytes between a key and its value, or
// between two attributes, changes the leaf.
func TestNoAmbiguousSplits(t *testing.T) {
	leaf := func(kv ...string) Link {
		var c Canon
		c.Reset("e", 1, 9, "b")
		for i := 0; i < len(kv); i += 2 {
			c.String(kv[i], kv[i+1])
		}
		return c.Leaf()
	}
	if leaf("ab", "c") == leaf("a", "bc") {
		t.Error("key/value split is ambiguous")
	}
	if leaf("a", "x", "b", "y") == leaf("a", "xby") {
		t.Error("attribute boundary is ambiguous")
	}
}

func TestNumbersNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"1_000": "1000", "1.50": "1.5", "-2.5": "-2.5", "1.": "1", "v1.2": "v1.2",
		"10.0.0.1": "10.0.0.1", "2001:db8::1": "2001:db8::1", "-": "-", "007": "007",
		"0.30000000000000004": "0.3",
	} {
		dot, ok := numeric(in)
		got := in
		if ok {
			got = string(normalizeNumber(nil, in, dot))
		}
		if got != want {
			t.Errorf("%q normalizes to %q, want %q", in, got, want)
		}
	}
}

func TestChainOrderMatters(t *testing.T) {
	a, b := Link{1}, Link{2}
	if Next(Next(Genesis, a), b) == Next(Next(Genesis, b), a) {
		t.Error("swapping two records leaves the head unchanged")
	}
	l := Next(Genesis, a)
	p, err := Parse(l.String())
	if err != nil || p != l {
		t.Fatalf("Parse(String()) = %v, %v", p, err)
	}
	for _, bad := range []string{"", l.String()[:63], l.String() + "0", "zz" + l.String()[2:]} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

// A Canon reused for many records, which skips the sort when a record
// repeats the last one's keys, hashes each as a fresh Canon does: the
// same keys with other values, the same keys added in another order, fewer
// keys, and a key given twice (whose order depends on its values).
func TestReusedCanonHashesAsAFreshOne(t *testing.T) {
	type attr struct{ k, v string }
	records := [][]attr{
		{{"b", "1"}, {"a", "2"}, {"c", "3"}},
		{{"b", "9"}, {"a", "8"}, {"c", "7"}},
		{{"a", "8"}, {"b", "9"}, {"c", "7"}},
		{{"a", "8"}, {"b", "9"}},
		{{"k", "z"}, {"k", "a"}, {"j", "1"}},
		{{"k", "a"}, {"k", "z"}, {"j", "1"}},
		{{"k", "b"}, {"k", "c"}, {"j", "1"}},
		{},
		{{"b", "1"}, {"a", "2"}, {"c", "3"}},
	}
	leaf := func(c *Canon, rec []attr) Link {
		c.Reset("tcp.connect", 1, 9, "body")
		for _, a := range rec {
			c.String(a.k, a.v)
		}
		return c.Leaf()
	}
	var reused Canon
	for i, rec := range records {
		if got, want := leaf(&reused, rec), leaf(&Canon{}, rec); got != want {
			t.Errorf("record %d %v: reused Canon %s, fresh %s", i, rec, got, want)
		}
	}
}

func BenchmarkLeafAndLink(b *testing.B) {
	var c Canon
	body := "curl (pid 4242) -> 127.0.0.1:8080 established in 0.21 ms"
	keys := make([]string, 30)
	for i := range keys {
		keys[i] = "connaudit.some.attribute." + strconv.Itoa(29-i)
	}
	val := "some-value-of-a-typical-length"
	var head Link
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Reset("tcp.connect", int64(i), 9, body)
		for j, k := range keys {
			if j%3 == 0 {
				c.Int(k, int64(i))
			} else {
				c.String(k, val)
			}
		}
		c.Float("connaudit.connect.duration", 0.000213)
		head = Next(head, c.Leaf())
	}
}
