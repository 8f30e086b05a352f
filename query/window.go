package query

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Window is the time flags of every command that reads the trail, as
// hubble's: --since (or --from) and --until (or --to), each either relative
// to now (30m, 1h, 1d12h, 7d) or an RFC 3339 time.
type Window struct {
	Since, From, Until, To string
	// Default is the window's length when neither --since nor --from is given.
	Default time.Duration
}

// AddFlags registers the window's flags. defaultText names Default in help.
func (w *Window) AddFlags(fs *pflag.FlagSet, defaultText string) {
	fs.StringVar(&w.Since, "since", "", "window start: relative to now (30m, 1h, 1d12h, 7d) or RFC 3339 (2026-11-24T14:00:00Z); default "+defaultText)
	fs.StringVar(&w.From, "from", "", "the same as --since")
	fs.StringVar(&w.Until, "until", "", "window end: relative to now (1h, 1d) or RFC 3339; default now")
	fs.StringVar(&w.To, "to", "", "the same as --until")
}

// Parse returns [from, to). A relative --until counts back from now, a
// relative --since from the window's end: "--until 2026-11-30T10:00:00Z
// --since 30m" is the half hour before ten.
func (w Window) Parse(now time.Time) (from, to time.Time, err error) {
	sinceFlag, since, err := either("--since", w.Since, "--from", w.From)
	if err != nil {
		return from, to, err
	}
	untilFlag, until, err := either("--until", w.Until, "--to", w.To)
	if err != nil {
		return from, to, err
	}
	to = now
	if until != "" {
		if to, err = parseTime(untilFlag, until, now); err != nil {
			return from, to, err
		}
	}
	switch {
	case since == "" && w.Default > 0:
		from = to.Add(-w.Default)
	case since == "":
		from = to.Add(-DefaultSince)
	default:
		if from, err = parseTime(sinceFlag, since, to); err != nil {
			return from, to, err
		}
	}
	if !from.Before(to) {
		return from, to, fmt.Errorf("the window from %s to %s is empty: %s must be before %s",
			from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano), sinceFlag, untilFlag)
	}
	return from, to, nil
}

// either returns the one of two synonymous flags that was given.
func either(name, value, alias, aliasValue string) (string, string, error) {
	switch {
	case value != "" && aliasValue != "":
		return "", "", fmt.Errorf("%s and %s: give one of them", name, alias)
	case aliasValue != "":
		return alias, aliasValue, nil
	}
	return name, value, nil
}

// parseTime parses an RFC 3339 time, or a duration counted back from base.
func parseTime(flag, s string, base time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := ParseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q: want a time such as 2026-11-24T14:00:00Z, or a duration back from now such as 30m, 1h, 1d12h or 7d", flag, s)
	}
	return base.Add(-d), nil
}

// ParseDuration parses a positive Go duration (90m, 1h30m) that may start
// with whole days (7d, 1d12h).
func ParseDuration(s string) (time.Duration, error) {
	orig := s
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.Atoi(s[:i])
		if err != nil || n < 0 || s[:i] != strconv.Itoa(n) {
			return 0, fmt.Errorf("%q: want a duration such as 30m, 1h, 1d12h or 7d", orig)
		}
		days = time.Duration(n) * 24 * time.Hour
		s = s[i+1:]
	}
	var rest time.Duration
	if s != "" {
		var err error
		if rest, err = time.ParseDuration(s); err != nil || rest < 0 || s[0] == '+' || s[0] == '-' {
			return 0, fmt.Errorf("%q: want a duration such as 30m, 1h, 1d12h or 7d", orig)
		}
	}
	if days+rest <= 0 {
		return 0, fmt.Errorf("%q: want a positive duration", orig)
	}
	return days + rest, nil
}
