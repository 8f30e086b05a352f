// Package victorialogs is the backend.Backend of a VictoriaLogs server (or a
// vlselect cluster front end) over its HTTP API: /select/logsql/query for
// records and aggregates (the stats pipe), /select/logsql/tail for Follow.
//
// It assumes the collector's default ingestion, where every resource
// attribute is a stream field, so that filters on the namespace, pod,
// container, node, workload and pod labels are stream filters and
// VictoriaLogs skips whole streams.
package victorialogs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/connaudit/connaudit/backend"
)

// Config says where VictoriaLogs is and how to reach it.
type Config struct {
	// URL is the base URL, e.g. http://127.0.0.1:9428, or an API server's
	// service proxy path (…/services/victorialogs:9428/proxy).
	URL string
	// Client makes the requests; nil is http.DefaultClient.
	Client *http.Client
	// Header is added to every request (for an auth proxy, or a tenant's
	// AccountID/ProjectID).
	Header http.Header
	// Hint is added to the error when the server cannot be reached, telling
	// the user what must be running.
	Hint string
	// DeniedHint is added to a 401 or 403 answer, telling the user which
	// permission to ask for.
	DeniedHint string
	// TrailRunSeqs is how many seqs of an instance InstanceTrail reads at a
	// time; 0: DefaultTrailRunSeqs.
	TrailRunSeqs uint64
}

// DefaultTrailRunSeqs bounds what verify holds of an instance: about 100
// bytes per record, so some 25 MB.
const DefaultTrailRunSeqs = 1 << 18

// Backend queries one VictoriaLogs.
type Backend struct {
	base    *url.URL
	client  *http.Client
	header  http.Header
	hint    string
	denied  string
	runSeqs uint64
}

var _ backend.Backend = (*Backend)(nil)

// New checks cfg and returns its Backend.
func New(cfg Config) (*Backend, error) {
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("VictoriaLogs URL %q: want http(s)://host[:port][/path]", cfg.URL)
	}
	client := cfg.Client
	if client == nil {
		client = http.DefaultClient
	}
	runSeqs := cfg.TrailRunSeqs
	if runSeqs == 0 {
		runSeqs = DefaultTrailRunSeqs
	}
	return &Backend{base: u, client: client, header: cfg.Header, hint: cfg.Hint, denied: cfg.DeniedHint, runSeqs: runSeqs}, nil
}

// URL is the base URL the backend queries.
func (b *Backend) URL() string { return b.base.String() }

// get asks path with the query args and returns the body of a 200 answer.
// It uses GET, so that through the API server's service proxy the caller
// needs only the get verb on services/proxy.
func (b *Backend) get(ctx context.Context, path string, args url.Values) (io.ReadCloser, error) {
	u := b.base.JoinPath(path)
	u.RawQuery = args.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("query VictoriaLogs: %w", err)
	}
	for k, vs := range b.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := b.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		cause := err
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			cause = urlErr.Err // its URL holds the whole encoded query
		}
		msg := fmt.Sprintf("%v: %s: %v", backend.ErrUnreachable, b.base.Redacted(), cause)
		if b.hint != "" {
			msg += "; " + b.hint
		}
		return nil, &unreachableError{msg: msg, err: err}
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		err := fmt.Errorf("VictoriaLogs at %s answered %s: %s", b.base.Redacted(), resp.Status, statusMessage(body))
		switch resp.StatusCode {
		case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusNotFound:
			if b.hint != "" {
				err = fmt.Errorf("%w; %s", err, b.hint)
			}
		case http.StatusUnauthorized, http.StatusForbidden:
			if b.denied != "" {
				err = fmt.Errorf("%w; %s", err, b.denied)
			}
		}
		return nil, err
	}
	return resp.Body, nil
}

type unreachableError struct {
	msg string
	err error
}

func (e *unreachableError) Error() string { return e.msg }
func (e *unreachableError) Is(target error) bool {
	return target == backend.ErrUnreachable
}
func (e *unreachableError) Unwrap() error { return e.err }

// rows runs a LogsQL query and calls each with every result row, a JSON
// object of string values. The map is reused for the next row: each must
// not keep it (its strings it may).
func (b *Backend) rows(ctx context.Context, logsql string, each func(map[string]string) error) error {
	body, err := b.get(ctx, "/select/logsql/query", url.Values{"query": {logsql}})
	if err != nil {
		return err
	}
	defer body.Close()
	dec := newLineDecoder(body)
	row := map[string]string{}
	for {
		clear(row)
		err := dec.into(row)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := each(row); err != nil {
			return err
		}
	}
}

// lineDecoder reads VictoriaLogs' JSON lines.
type lineDecoder struct {
	sc   *bufio.Scanner
	keys map[string]string // field names, interned across rows
}

func newLineDecoder(r io.Reader) *lineDecoder {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	return &lineDecoder{sc: sc, keys: map[string]string{}}
}

func (d *lineDecoder) next() (map[string]string, error) {
	row := map[string]string{}
	if err := d.into(row); err != nil {
		return nil, err
	}
	return row, nil
}

// into decodes the next row into row, an empty map.
func (d *lineDecoder) into(row map[string]string) error {
	for d.sc.Scan() {
		line := d.sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if err := decodeRow(line, row, d.keys); err != nil {
			return fmt.Errorf("decode VictoriaLogs row %.200q: %w", line, err)
		}
		return nil
	}
	if err := d.sc.Err(); err != nil {
		return fmt.Errorf("read VictoriaLogs answer: %w", err)
	}
	return io.EOF
}

// statusMessage is the message of a Kubernetes Status (what the API server's
// service proxy answers with), else the body as text.
func statusMessage(body []byte) string {
	var st struct {
		Kind    string `json:"kind"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &st) == nil && st.Kind == "Status" && st.Message != "" {
		return st.Message
	}
	return strings.TrimSpace(string(body))
}
