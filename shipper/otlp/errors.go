package otlp

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Export failures are typed, as the OpenTelemetry Collector's exporterhelper
// types them (consumererror.NewPermanent, exporterhelper.NewThrottleRetry):
// the export loop decides on the type, never on the error's text.

// PermanentError is a failure caused by the records themselves: sending the
// same records again is bound to fail.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// ThrottleError is a collector that is overloaded or unavailable, or asked
// to be left alone for Delay (0 when it did not say how long): a smaller
// request would fare no better.
type ThrottleError struct {
	Err   error
	Delay time.Duration
}

func (e *ThrottleError) Error() string { return e.Err.Error() }
func (e *ThrottleError) Unwrap() error { return e.Err }

// PartialSuccessError is a request the collector accepted while dropping
// some of its records. OTLP does not say which.
type PartialSuccessError struct {
	Rejected int64
	Message  string
}

// The SDK's exporters word it the same way.
func (e *PartialSuccessError) Error() string {
	return fmt.Sprintf("OTLP partial success: %s (%d logs rejected)", e.Message, e.Rejected)
}

// IsPermanent tells whether retrying the records of err cannot help.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// IsBusy tells whether err says the collector is overloaded or unavailable.
func IsBusy(err error) bool {
	var t *ThrottleError
	return errors.As(err, &t)
}

// RetryAfter is how long the collector asked the sender of err to wait, 0 if it did not.
func RetryAfter(err error) time.Duration {
	var t *ThrottleError
	if errors.As(err, &t) {
		return t.Delay
	}
	return 0
}

// AsPartialSuccess returns the partial success err is, if it is one.
func AsPartialSuccess(err error) (*PartialSuccessError, bool) {
	var p *PartialSuccessError
	ok := errors.As(err, &p)
	return p, ok
}

// classifyStatus types a non-2xx response: malformed (400) or too large
// (413) records are permanent; 429, 502, 503 and 504 throttle, and so does
// any answer with Retry-After; anything else is transient.
func classifyStatus(e *StatusError) error {
	switch e.Code {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return &PermanentError{Err: e}
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return &ThrottleError{Err: e, Delay: e.RetryAfter}
	}
	if e.RetryAfter > 0 {
		return &ThrottleError{Err: e, Delay: e.RetryAfter}
	}
	return e
}
