package otlp

import (
	"compress/gzip"
	"encoding/pem"
	"errors"
	"io"
	stdlog "log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// The request reaches the collector as it was given, compressed unless
// compression is off, with the configured headers.
func TestSendPostsWhatTheCollectorExpects(t *testing.T) {
	want, req := testRequest(t)
	for _, compression := range []string{"gzip", "none"} {
		t.Run(compression, func(t *testing.T) {
			var got *http.Request
			var body []byte
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = r
				var in io.Reader = r.Body
				if r.Header.Get("Content-Encoding") == "gzip" {
					zr, err := gzip.NewReader(r.Body)
					if err != nil {
						t.Errorf("the body is not gzip: %v", err)
						return
					}
					in = zr
				}
				body, _ = io.ReadAll(in)
			}))
			defer srv.Close()
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL+"/prefix/")
			t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20abc,x-tenant = shop ")
			t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", compression)
			cfg, err := ConfigFromEnv()
			if err != nil {
				t.Fatal(err)
			}
			cfg.UserAgent = "connaudit/test"
			x := New(cfg)
			if err := x.Send(t.Context(), req); err != nil {
				t.Fatal(err)
			}
			wantEncoding := map[string]string{"gzip": "gzip", "none": ""}[compression]
			if got.URL.Path != "/prefix/v1/logs" || got.Header.Get("Content-Type") != "application/x-protobuf" ||
				got.Header.Get("Content-Encoding") != wantEncoding || got.Header.Get("Authorization") != "Bearer abc" ||
				got.Header.Get("X-Tenant") != "shop" || got.Header.Get("User-Agent") != "connaudit/test" {
				t.Fatalf("request %s %v", got.URL, got.Header)
			}
			if sent := decode(t, body); !proto.Equal(sent, want) {
				t.Fatalf("the request body decodes as\n%s", prototext.Format(sent))
			}
		})
	}
}

func TestSendReportsWhatTheCollectorSaid(t *testing.T) {
	_, req := testRequest(t)
	for _, c := range []struct {
		name       string
		status     int
		ctype      string
		body       []byte
		permanent  bool
		rejected   int64
		retryAfter string
		wait       time.Duration // at least this, within a minute
		busy       bool
	}{
		{name: "accepted", status: 200},
		{name: "accepted, empty protobuf answer", status: 200, ctype: "application/x-protobuf", body: mustMarshal(&collogspb.ExportLogsServiceResponse{})},
		{name: "partial success", status: 200, ctype: "application/x-protobuf", rejected: 3,
			body: mustMarshal(&collogspb.ExportLogsServiceResponse{PartialSuccess: &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: 3, ErrorMessage: "too old"}})},
		{name: "malformed", status: 400, body: []byte("bad record"), permanent: true},
		{name: "too large", status: 413, permanent: true},
		{name: "queue full", status: 503, body: []byte("sending queue is full"), busy: true},
		{name: "throttled", status: 429, retryAfter: "2", wait: 2 * time.Second, busy: true},
		{name: "forbidden", status: 403},
		{name: "throttled until", status: 503, busy: true, retryAfter: time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), wait: time.Hour},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c.ctype != "" {
					w.Header().Set("Content-Type", c.ctype)
				}
				if c.retryAfter != "" {
					w.Header().Set("Retry-After", c.retryAfter)
				}
				w.WriteHeader(c.status)
				w.Write(c.body)
			}))
			defer srv.Close()
			x := New(Config{URL: srv.URL + "/v1/logs", Timeout: time.Second})
			err := x.Send(t.Context(), req)
			var partial *PartialSuccessError
			var status *StatusError
			switch {
			case c.status == 200 && c.rejected == 0:
				if err != nil {
					t.Fatal(err)
				}
			case c.rejected > 0:
				if !errors.As(err, &partial) || partial.Rejected != c.rejected || !strings.Contains(err.Error(), "(3 logs rejected)") {
					t.Fatalf("err %v, want a partial success of %d", err, c.rejected)
				}
			default:
				if !errors.As(err, &status) || status.Code != c.status || IsPermanent(err) != c.permanent || IsBusy(err) != c.busy {
					t.Fatalf("err %v: want status %d, permanent %v, busy %v", err, c.status, c.permanent, c.busy)
				}
				if d := RetryAfter(err); d > c.wait || d < c.wait-time.Minute || (c.wait == 0) != (d == 0) {
					t.Fatalf("Retry-After %q read as %s, want %s", c.retryAfter, d, c.wait)
				}
				if len(c.body) > 0 && !strings.Contains(err.Error(), string(c.body)) {
					t.Fatalf("err %v does not quote the collector's answer", err)
				}
			}
		})
	}
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func TestConfigFromEnv(t *testing.T) {
	for _, c := range []struct {
		env     map[string]string
		url     string
		gzip    bool
		timeout time.Duration
		err     string
	}{
		{env: nil, url: "http://localhost:4318/v1/logs", gzip: true, timeout: 10 * time.Second},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://col:4318"}, url: "https://col:4318/v1/logs", gzip: true, timeout: 10 * time.Second},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://b:2/custom"},
			url: "http://b:2/custom", gzip: true, timeout: 10 * time.Second},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://b:2"}, url: "http://b:2/", gzip: true, timeout: 10 * time.Second},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "none", "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "2500"},
			url: "http://localhost:4318/v1/logs", timeout: 2500 * time.Millisecond},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4318"}, err: "want a URL such as http://127.0.0.1:4318"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, err: "use gzip or none"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"}, err: "milliseconds"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, err: "OTEL_EXPORTER_OTLP_HEADERS"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem"}, err: "OTEL_EXPORTER_OTLP_CERTIFICATE"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_CLIENT_KEY": "/tmp/key.pem"}, err: "set both or neither"},
	} {
		for _, name := range []string{"ENDPOINT", "COMPRESSION", "TIMEOUT", "HEADERS", "CERTIFICATE", "CLIENT_CERTIFICATE", "CLIENT_KEY"} {
			t.Setenv("OTEL_EXPORTER_OTLP_"+name, "")
			t.Setenv("OTEL_EXPORTER_OTLP_LOGS_"+name, "")
		}
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		cfg, err := ConfigFromEnv()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: err %v, want one naming %q", c.env, err, c.err)
			}
			continue
		}
		if err != nil || cfg.URL != c.url || cfg.Gzip != c.gzip || cfg.Timeout != c.timeout {
			t.Errorf("%v: %+v, %v; want %s gzip=%v timeout=%s", c.env, cfg, err, c.url, c.gzip, c.timeout)
		}
	}
}

func TestCertificateWithoutPEM(t *testing.T) {
	path := t.TempDir() + "/ca.pem"
	if err := os.WriteFile(path, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", path)
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("err %v", err)
	}
}

func TestSendTrustsTheConfiguredCertificate(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0) // the refused handshake
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	_, req := testRequest(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if err := New(cfg).Send(t.Context(), req); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an unknown server certificate was accepted: %v", err)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", ca)
	if cfg, err = ConfigFromEnv(); err != nil {
		t.Fatal(err)
	}
	if err := New(cfg).Send(t.Context(), req); err != nil {
		t.Fatalf("with OTEL_EXPORTER_OTLP_CERTIFICATE: %v", err)
	}
}
