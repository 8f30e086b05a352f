// Package kubeapi is the small Kubernetes API client that connaudit's
// gateway components share: which API server, which CA verifies it, and the
// gateway's own ServiceAccount token, re-read on every request so that a
// rotated projected token is used at once. It speaks plain REST: the
// components need a handful of calls, not client-go.
package kubeapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// Config says how a component reaches the API server. Components embed it
// with `mapstructure:",squash"`, so its keys sit beside theirs.
type Config struct {
	// APIServer is the Kubernetes API server's URL. Empty: the in-cluster
	// one, from KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT.
	APIServer string `mapstructure:"api_server"`
	// CAFile verifies the API server's certificate.
	CAFile string `mapstructure:"ca_file"`
	// TokenFile holds the gateway's own token, re-read when it rotates.
	TokenFile string `mapstructure:"token_file"`
}

const (
	inClusterCA    = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
	inClusterToken = "/var/run/secrets/kubernetes.io/serviceaccount/token"
)

// DefaultConfig is the pod's own service account: its CA and its token.
func DefaultConfig() Config {
	return Config{CAFile: inClusterCA, TokenFile: inClusterToken}
}

// Validate checks what can be checked without the files.
func (c *Config) Validate() error {
	if c.TokenFile == "" {
		return errors.New("token_file: empty; the gateway needs a token of its own to call the API server")
	}
	return nil
}

// Client calls the API server as the gateway's ServiceAccount.
type Client struct {
	url       string
	tokenFile string
	http      *http.Client
}

// New reads the CA and checks that the token file is there.
func New(c Config) (*Client, error) {
	url := strings.TrimRight(c.APIServer, "/")
	if url == "" {
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return nil, errors.New("api_server is empty and this is not a pod (KUBERNETES_SERVICE_HOST is unset): name the API server")
		}
		url = "https://" + net.JoinHostPort(host, port)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		tlsCfg.RootCAs = x509.NewCertPool()
		if !tlsCfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", c.CAFile)
		}
	}
	if _, err := os.ReadFile(c.TokenFile); err != nil {
		return nil, fmt.Errorf("token_file: %w", err)
	}
	return &Client{url: url, tokenFile: c.TokenFile,
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}}, nil
}

// Response is the API server's answer: its status code and (the start of)
// its body.
type Response struct {
	Code int
	Body []byte
}

// Do sends body (JSON-encoded unless nil) to path with the gateway's token.
// An error means no answer; any answer, refusals included, is a Response.
func (c *Client) Do(ctx context.Context, method, path string, body any) (Response, error) {
	own, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return Response{}, fmt.Errorf("read the gateway's own token: %w", err)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return Response{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, rd)
	if err != nil {
		return Response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(own)))
	resp, err := c.http.Do(req)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return Response{Code: resp.StatusCode, Body: text}, nil
}

// CloseIdleConnections closes the client's idle connections.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }
