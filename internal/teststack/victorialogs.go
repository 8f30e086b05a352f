package teststack

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const (
	readyTimeout = 30 * time.Second
	// queryLimit bounds the rows one Query returns.
	queryLimit = 1_000_000
)

// httpClient talks to the components. It keeps no idle connections: a kept
// connection goes stale when a component restarts, and a POST on it fails.
var httpClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true},
	Timeout:   30 * time.Second,
}

// VictoriaLogs is a victoria-logs process listening on 127.0.0.1, with its
// data in a temporary directory.
type VictoriaLogs struct {
	t    testing.TB
	proc *process
	url  string
}

// StartVictoriaLogs starts bin/victoria-logs on a free port of 127.0.0.1 with
// an empty data directory and a 100-year retention (so that old test
// timestamps are not dropped on ingest), waits until it is ready, and stops it
// when the test ends.
func StartVictoriaLogs(t testing.TB) *VictoriaLogs {
	t.Helper()
	return StartVictoriaLogsOn(t, t.TempDir())
}

// StartVictoriaLogsOn is StartVictoriaLogs on the data directory dir, which
// outlives the test: a benchmark can load it once and reuse it.
func StartVictoriaLogsOn(t testing.TB, dir string) *VictoriaLogs {
	t.Helper()
	path := Binary(t, "victoria-logs")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{
		"-storageDataPath=" + dir,
		"-httpListenAddr=" + addr,
		"-retentionPeriod=100y",
		"-loggerLevel=WARN",
	}
	v := &VictoriaLogs{
		t:    t,
		proc: newProcess(t, "victoria-logs", path, args, nil),
		url:  "http://" + addr,
	}
	t.Cleanup(v.proc.cleanup)
	v.Start()
	return v
}

// URL returns the base URL, http://127.0.0.1:port.
func (v *VictoriaLogs) URL() string { return v.url }

// Start starts VictoriaLogs again, on the same port and data directory, and
// waits until it is ready. StartVictoriaLogs already started it once.
func (v *VictoriaLogs) Start() {
	v.t.Helper()
	if err := v.proc.start(); err != nil {
		v.t.Fatalf("teststack: %v", err)
	}
	if err := v.proc.waitUntil(readyTimeout, v.healthy); err != nil {
		v.t.Fatalf("teststack: %v", err)
	}
}

// Stop stops VictoriaLogs with SIGTERM and waits for it to exit.
func (v *VictoriaLogs) Stop() {
	v.t.Helper()
	if err := v.proc.stop(); err != nil {
		v.t.Fatalf("teststack: %v", err)
	}
}

func (v *VictoriaLogs) healthy() error {
	resp, err := httpClient.Get(v.url + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /health: %s", resp.Status)
	}
	return nil
}

// Query flushes freshly ingested data and runs a LogsQL query over all time.
// Each row maps field names to values; VictoriaLogs returns every value as a
// string.
func (v *VictoriaLogs) Query(ctx context.Context, logsql string) ([]map[string]string, error) {
	if err := v.post(ctx, "/internal/force_flush", nil); err != nil {
		return nil, err
	}
	return v.queryNoFlush(ctx, logsql)
}

// queryNoFlush is Query without the flush, for a front end that has no data
// of its own to flush.
func (v *VictoriaLogs) queryNoFlush(ctx context.Context, logsql string) ([]map[string]string, error) {
	form := url.Values{
		"query": {logsql},
		"start": {"1970-01-01T00:00:00Z"},
		"end":   {time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)},
		"limit": {fmt.Sprint(queryLimit)},
	}
	var rows []map[string]string
	err := v.postFunc(ctx, "/select/logsql/query", form, func(body io.Reader) error {
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		for sc.Scan() {
			if len(strings.TrimSpace(sc.Text())) == 0 {
				continue
			}
			row := map[string]string{}
			if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
				return fmt.Errorf("decode row %q: %w", sc.Text(), err)
			}
			rows = append(rows, row)
		}
		return sc.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", logsql, err)
	}
	return rows, nil
}

// WaitFor polls Query until it returns at least n rows, and returns them. It
// fails the test after timeout, saying how many rows it saw.
func (v *VictoriaLogs) WaitFor(t testing.TB, logsql string, n int, timeout time.Duration) []map[string]string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var (
		rows    []map[string]string
		lastErr error
	)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		rows, lastErr = v.Query(ctx, logsql)
		cancel()
		if lastErr == nil && len(rows) >= n {
			return rows
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	msg := fmt.Sprintf("teststack: VictoriaLogs query %q: saw %d rows after %v, want at least %d", logsql, len(rows), timeout, n)
	if lastErr != nil {
		msg += fmt.Sprintf("; last error: %v", lastErr)
	}
	for i, row := range rows {
		if i == 5 {
			msg += fmt.Sprintf("\n  ... and %d more", len(rows)-i)
			break
		}
		msg += fmt.Sprintf("\n  %v", row)
	}
	t.Fatal(msg)
	return nil
}

func (v *VictoriaLogs) post(ctx context.Context, path string, form url.Values) error {
	return v.postFunc(ctx, path, form, func(body io.Reader) error {
		_, err := io.Copy(io.Discard, body)
		return err
	})
}

// postFunc POSTs a form and hands a 200 response's body to read.
func (v *VictoriaLogs) postFunc(ctx context.Context, path string, form url.Values, read func(io.Reader) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.url+path, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := read(resp.Body); err != nil {
		return fmt.Errorf("POST %s: read response: %w", path, err)
	}
	return nil
}
