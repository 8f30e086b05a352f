package trail

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func readmeSection(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "## Record schema")
	end := strings.Index(s[start+1:], "\n## ")
	if start < 0 || end < 0 {
		t.Fatal("README.md has no Record schema section")
	}
	return s[start : start+1+end]
}

var backticked = regexp.MustCompile("`([^`]*)`")

// README's tcp.connect attribute table lists exactly ConnectAttributes, with
// their types, in the same order.
func TestREADMEConnectTableMatchesTheSchema(t *testing.T) {
	row := regexp.MustCompile("(?m)^\\| (`[^|]*`) \\| ([a-z, ]+) \\|")
	var documented []Attribute
	for _, m := range row.FindAllStringSubmatch(readmeSection(t), -1) {
		types := strings.Split(m[2], ", ")
		keys := backticked.FindAllStringSubmatch(m[1], -1)
		for i, k := range keys {
			typ := types[min(i, len(types)-1)]
			key, prefix := strings.CutSuffix(k[1], "<key>")
			documented = append(documented, Attribute{Key: Key(key), Type: Type(typ), Prefix: prefix})
		}
	}
	for i := range max(len(documented), len(ConnectAttributes)) {
		var doc, code Attribute
		if i < len(documented) {
			doc = documented[i]
		}
		if i < len(ConnectAttributes) {
			code = ConnectAttributes[i]
		}
		if doc != code {
			t.Fatalf("tcp.connect attribute %d: README says %+v, trail.ConnectAttributes %+v", i+1, doc, code)
		}
	}
}

// README's table of other records names every event, each with every
// attribute of NoticeAttributes; the loss and degraded rows list exactly the
// reasons of the code.
func TestREADMEOtherRecordsMatchTheSchema(t *testing.T) {
	section := readmeSection(t)
	others := strings.Index(section, "**Other records**")
	if others < 0 {
		t.Fatal("README's Record schema has no Other records table")
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z.]+)` \\|(.*)\\|$")
	events := []Event{EventConnect}
	for _, m := range row.FindAllStringSubmatch(section[others:], -1) {
		ev := Event(m[1])
		events = append(events, ev)
		var tokens []string
		prev := ""
		for _, tok := range backticked.FindAllStringSubmatch(m[2], -1) {
			s := tok[1]
			if strings.HasPrefix(s, ".") && prev != "" { // `connaudit.lost.time.first` / `.last`
				s = prev[:strings.LastIndexByte(prev, '.')] + s
			}
			prev = s
			tokens = append(tokens, s)
		}
		want, ok := NoticeAttributes[ev]
		if !ok {
			t.Errorf("README documents event %s, which trail.NoticeAttributes lacks", ev)
		}
		for _, k := range want {
			if !slices.Contains(tokens, string(k)) {
				t.Errorf("README's %s row does not name attribute %s", ev, k)
			}
		}
		reasonsIn := func() []string {
			var out []string
			for _, s := range tokens {
				if regexp.MustCompile(`^[a-z]+(_[a-z]+)+$|^rejected$|^undecodable$`).MatchString(s) {
					out = append(out, s)
				}
			}
			return out
		}
		switch ev {
		case EventLoss:
			if got := reasonsIn(); !slices.Equal(got, Strings(LossReasons)) {
				t.Errorf("README's loss reasons %v, the code's %v", got, LossReasons)
			}
		case EventDegraded:
			if got := reasonsIn(); !slices.Equal(got, Strings(DegradedReasons)) {
				t.Errorf("README's degraded reasons %v, the code's %v", got, DegradedReasons)
			}
		}
	}
	if !slices.Equal(events, Events) {
		t.Errorf("README's events %v, the code's %v", events, Events)
	}
}

// README's enumerations of outcomes and peer kinds are those of the code.
func TestREADMEEnumsMatchTheSchema(t *testing.T) {
	section := readmeSection(t)
	enum := regexp.MustCompile(`^[a-z_]+$`)
	rowOf := func(key Key) []string {
		i := strings.Index(section, "| `"+string(key)+"` |")
		if i < 0 {
			t.Fatalf("README has no row for %s", key)
		}
		line := section[i : i+strings.IndexByte(section[i:], '\n')]
		var out []string
		for _, m := range backticked.FindAllStringSubmatch(line, -1)[1:] {
			if enum.MatchString(m[1]) {
				out = append(out, m[1])
			}
		}
		return out
	}
	if got := rowOf(KeyOutcome); !slices.Equal(got, Strings(Outcomes)) {
		t.Errorf("README's outcomes %v, the code's %v", got, Outcomes)
	}
	if got := rowOf(KeyPeerKind); !slices.Equal(got, Strings(PeerKinds)) {
		t.Errorf("README's peer kinds %v, the code's %v", got, PeerKinds)
	}
}
