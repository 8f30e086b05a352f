package otlp

import (
	"errors"
	"testing"
	"time"
)

// A non-2xx answer is typed by its status code and Retry-After, and the
// type keeps the answer itself reachable.
func TestStatusClassification(t *testing.T) {
	for _, c := range []struct {
		code            int
		retryAfter      time.Duration
		permanent, busy bool
	}{
		{code: 400, permanent: true},
		{code: 413, permanent: true},
		{code: 429, busy: true},
		{code: 429, retryAfter: 3 * time.Second, busy: true},
		{code: 502, busy: true},
		{code: 503, busy: true},
		{code: 504, busy: true},
		{code: 500, retryAfter: time.Second, busy: true},
		{code: 500},
		{code: 401},
		{code: 404},
	} {
		err := classifyStatus(&StatusError{Code: c.code, RetryAfter: c.retryAfter})
		var s *StatusError
		if IsPermanent(err) != c.permanent || IsBusy(err) != c.busy || RetryAfter(err) != c.retryAfter || !errors.As(err, &s) || s.Code != c.code {
			t.Errorf("%d (Retry-After %v): permanent %v, busy %v, retry after %v; want %v, %v, %v",
				c.code, c.retryAfter, IsPermanent(err), IsBusy(err), RetryAfter(err), c.permanent, c.busy, c.retryAfter)
		}
	}
}
