package termsafe

import "testing"

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"web-5d4f8-x1":             "web-5d4f8-x1",
		"café.example":             "café.example",
		"\x1b[1A\x1b[2K\rFAKE ROW": `\x1b[1A\x1b[2K\rFAKE ROW`,
		"a\tb\nc":                  `a\tb\nc`,
		"\x1b]0;title\x07":         `\x1b]0;title\a`,
		"evil\u202egnp.exe":        `evil\u202egnp.exe`,
		"\u009b31m":                `\u009b31m`,
		"bad\xffutf8":              `bad\xffutf8`,
		"":                         "",
	} {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStringDoesNotAllocateForCleanText(t *testing.T) {
	s := "default/web-5d4f8-x1"
	if n := testing.AllocsPerRun(100, func() { _ = String(s) }); n != 0 {
		t.Errorf("%v allocations for clean text", n)
	}
}
