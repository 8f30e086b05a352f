package otlp

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
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

// A failed gRPC call is typed by its status code and RetryInfo.
func TestGRPCStatusClassification(t *testing.T) {
	retry := func(c codes.Code, d time.Duration) error {
		s, err := status.New(c, "x").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
		if err != nil {
			t.Fatal(err)
		}
		return s.Err()
	}
	for _, c := range []struct {
		err             error
		permanent, busy bool
		retryAfter      time.Duration
	}{
		{err: status.Error(codes.InvalidArgument, "x"), permanent: true},
		{err: status.Error(codes.Unavailable, "x"), busy: true},
		{err: retry(codes.Unavailable, time.Second), busy: true, retryAfter: time.Second},
		{err: retry(codes.ResourceExhausted, 3*time.Second), busy: true, retryAfter: 3 * time.Second},
		{err: retry(codes.Aborted, time.Second), busy: true, retryAfter: time.Second},
		{err: status.Error(codes.ResourceExhausted, "x")},
		{err: status.Error(codes.DeadlineExceeded, "x")},
		{err: status.Error(codes.Unauthenticated, "x")},
		{err: status.Error(codes.Internal, "x")},
		{err: errors.New("not a status")},
	} {
		err := classifyGRPC(fmt.Errorf("failed to send: %w", c.err))
		if IsPermanent(err) != c.permanent || IsBusy(err) != c.busy || RetryAfter(err) != c.retryAfter || !errors.Is(err, c.err) {
			t.Errorf("%v: permanent %v, busy %v, retry after %v; want %v, %v, %v",
				c.err, IsPermanent(err), IsBusy(err), RetryAfter(err), c.permanent, c.busy, c.retryAfter)
		}
	}
}
