package otlp

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/protobuf/proto"
)

// Config is what the standard OTEL_EXPORTER_OTLP_* variables say about an
// OTLP/HTTP or OTLP/gRPC logs exporter.
type Config struct {
	URL       string        // full URL of the logs endpoint; for gRPC http:// or https://host:port
	Headers   http.Header   // sent with every request
	Timeout   time.Duration // of one request
	Gzip      bool          // compress request bodies
	TLS       *tls.Config   // nil: the default
	UserAgent string        // empty: DefaultUserAgent, or GRPCUserAgent
	Token     *TokenFile    // nil: no Authorization header
}

// DefaultUserAgent names connaudit's exporter to the collector.
const DefaultUserAgent = "connaudit OTLP/HTTP logs exporter"

// ConfigFromEnv reads the exporter's configuration as the OpenTelemetry
// specification defines it, each variable's _LOGS_ form first. Compression
// is gzip when neither form is set.
func ConfigFromEnv() (Config, error) {
	target := "http://localhost:4318/v1/logs"
	if v := os.Getenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"); v != "" {
		u, err := parseEndpoint("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", v, 4318)
		if err != nil {
			return Config{}, err
		}
		if u.Path == "" {
			u.Path = "/"
		}
		target = u.String()
	} else if v := os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); v != "" {
		u, err := parseEndpoint("OTEL_EXPORTER_OTLP_ENDPOINT", v, 4318)
		if err != nil {
			return Config{}, err
		}
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/logs"
		target = u.String()
	}
	return configFromEnv(target)
}

// GRPCConfigFromEnv is ConfigFromEnv for OTLP/gRPC, reading the variables as
// the SDK's otlploggrpc does: URL is the endpoint's scheme://host:port, its
// path ignored; https:// means TLS, http:// plaintext. With no endpoint set
// it is localhost:4317 over TLS, or plaintext when
// OTEL_EXPORTER_OTLP_(LOGS_)INSECURE is true.
func GRPCConfigFromEnv() (Config, error) {
	var u *url.URL
	if name, v := env("ENDPOINT"); v != "" {
		var err error
		if u, err = parseEndpoint(name, v, 4317); err != nil {
			return Config{}, err
		}
	} else {
		u = &url.URL{Scheme: "https", Host: "localhost:4317"}
		if name, v := env("INSECURE"); v != "" {
			insecure, err := strconv.ParseBool(v)
			if err != nil {
				return Config{}, fmt.Errorf("%s=%q: want true or false", name, v)
			}
			if insecure {
				u.Scheme = "http"
			}
		}
	}
	return configFromEnv(u.Scheme + "://" + u.Host)
}

// configFromEnv reads what the variables say besides the endpoint, target.
func configFromEnv(target string) (Config, error) {
	cfg := Config{URL: target, Timeout: 10 * time.Second, Gzip: true, Headers: http.Header{}}
	if name, v := env("HEADERS"); v != "" {
		for _, pair := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(pair, "=")
			k, err1 := url.PathUnescape(strings.TrimSpace(k))
			val, err2 := url.PathUnescape(strings.TrimSpace(val))
			if !ok || k == "" || err1 != nil || err2 != nil {
				return cfg, fmt.Errorf("%s: %q is not key=value (values URL-encoded)", name, pair)
			}
			cfg.Headers.Set(k, val)
		}
	}
	if name, v := env("TIMEOUT"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			return cfg, fmt.Errorf("%s=%q: want a positive number of milliseconds", name, v)
		}
		cfg.Timeout = time.Duration(ms) * time.Millisecond
	}
	if name, v := env("COMPRESSION"); v != "" {
		if v != "gzip" && v != "none" {
			return cfg, fmt.Errorf("%s=%q: use gzip or none", name, v)
		}
		cfg.Gzip = v == "gzip"
	}
	u, _ := url.Parse(cfg.URL)
	tlsCfg, err := tlsFromEnv(u.Hostname())
	if err != nil {
		return cfg, err
	}
	cfg.TLS = tlsCfg
	return cfg, nil
}

// parseEndpoint parses an endpoint variable; port is the protocol's own, for
// the example in the error.
func parseEndpoint(name, v string, port int) (*url.URL, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s=%q: want a URL such as http://127.0.0.1:%d", name, v, port)
	}
	return u, nil
}

// env returns the _LOGS_ form of OTEL_EXPORTER_OTLP_<suffix> if set, else the general one.
func env(suffix string) (string, string) {
	name := "OTEL_EXPORTER_OTLP_LOGS_" + suffix
	if v := os.Getenv(name); v != "" {
		return name, v
	}
	name = "OTEL_EXPORTER_OTLP_" + suffix
	return name, os.Getenv(name)
}

// tlsFromEnv is the TLS configuration of the standard variables, for a
// server named host (the endpoint's host name or IP address).
func tlsFromEnv(host string) (*tls.Config, error) {
	caName, ca := env("CERTIFICATE")
	certName, cert := env("CLIENT_CERTIFICATE")
	keyName, key := env("CLIENT_KEY")
	if ca == "" && cert == "" && key == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pool, err := newCAPool(caName, ca)
		if err != nil {
			return nil, err
		}
		// crypto/tls verifies against a RootCAs fixed when the connection
		// is made and cannot read a CA file again; InsecureSkipVerify only
		// hands verification to VerifyConnection, which checks the chain
		// and the host name itself, against the file's current CA, on every
		// handshake. A CA not published yet fails the handshake, not the
		// agent: records wait in the spool until the file appears.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error { return pool.verify(host, cs) }
	}
	if (cert == "") != (key == "") {
		return nil, fmt.Errorf("%s and %s go together: set both or neither", certName, keyName)
	}
	if cert != "" {
		pair, err := newKeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("%s, %s: %w", certName, keyName, err)
		}
		// Read again on every handshake that finds the files changed: a
		// renewed certificate is used without a restart.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return pair.get() }
	}
	return cfg, nil
}

// Exporter is a Sender over OTLP/HTTP. It does not retry: its caller does,
// and learns from the error's type whether retrying can help.
type Exporter struct {
	cfg    Config
	client *http.Client

	mu   sync.Mutex // one Send at a time: they share the buffers
	body bytes.Buffer
	gz   *gzip.Writer
}

// New returns an exporter for cfg.
func New(cfg Config) *Exporter {
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       cfg.TLS,
	}
	x := &Exporter{cfg: cfg, client: &http.Client{Transport: transport, Timeout: cfg.Timeout}}
	if cfg.Gzip {
		x.gz, _ = gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	}
	return x
}

// StatusError is a response other than 2xx.
type StatusError struct {
	URL        string
	Status     string // "400 Bad Request"
	Code       int
	Body       string        // the start of the response body
	RetryAfter time.Duration // what the server's Retry-After header asked for, 0 if none
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("failed to send logs to %s: %s (body: %s)", e.URL, e.Status, e.Body)
}

// maxResponseBytes bounds what is read of a response body.
const maxResponseBytes = 64 << 10

// Send posts req, compressed if so configured.
func (x *Exporter) Send(ctx context.Context, req []byte) error {
	if len(req) == 0 {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	payload := req
	if x.gz != nil {
		x.body.Reset()
		x.gz.Reset(&x.body)
		if _, err := x.gz.Write(payload); err != nil {
			return err
		}
		if err := x.gz.Close(); err != nil {
			return err
		}
		payload = x.body.Bytes()
	}
	post, err := http.NewRequestWithContext(ctx, http.MethodPost, x.cfg.URL, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	for k, v := range x.cfg.Headers {
		post.Header[k] = v
	}
	if x.cfg.Token != nil {
		token, err := x.cfg.Token.Token()
		if err != nil {
			return err
		}
		post.Header.Set("Authorization", "Bearer "+token)
	}
	post.Header.Set("Content-Type", "application/x-protobuf")
	if x.gz != nil {
		post.Header.Set("Content-Encoding", "gzip")
	}
	ua := x.cfg.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}
	post.Header.Set("User-Agent", ua)
	resp, err := x.client.Do(post)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("read the response of %s: %w", x.cfg.URL, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		text := strings.TrimSpace(string(body))
		if text == "" {
			text = "(empty)"
		}
		return classifyStatus(&StatusError{URL: x.cfg.URL, Status: resp.Status, Code: resp.StatusCode, Body: text,
			RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())})
	}
	if len(body) == 0 || resp.Header.Get("Content-Type") != "application/x-protobuf" {
		return nil
	}
	var answer collogspb.ExportLogsServiceResponse
	if err := proto.Unmarshal(body, &answer); err != nil {
		return fmt.Errorf("decode the response of %s: %w", x.cfg.URL, err)
	}
	if p := answer.GetPartialSuccess(); p != nil && (p.GetRejectedLogRecords() != 0 || p.GetErrorMessage() != "") {
		return &PartialSuccessError{Rejected: p.GetRejectedLogRecords(), Message: p.GetErrorMessage()}
	}
	return nil
}

// Shutdown closes idle connections.
func (x *Exporter) Shutdown(context.Context) error {
	x.client.CloseIdleConnections()
	return nil
}

var _ Sender = (*Exporter)(nil)

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
