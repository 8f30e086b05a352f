package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/connaudit/connaudit/internal/ports"
)

// vlStorage is what VictoriaLogs' /metrics says about its storage.
type vlStorage struct {
	bytes    float64 // vl_data_size_bytes: storage (compressed parts) and indexdb
	indexdb  float64 // of which indexdb
	rows     float64 // vl_storage_rows: rows in parts, in memory or on disk
	inmemory float64 // of those, rows in in-memory parts (not yet on disk)
	pending  float64 // vl_pending_rows: rows not yet in any part
	merged   float64 // vl_rows_merged_total of disk parts (small and big)
	parts    float64 // vl_storage_parts on disk (small and big)
}

func (b *bench) vlStorage(t *testing.T) vlStorage {
	t.Helper()
	resp, err := http.Get(b.vl.URL() + "/metrics")
	if err != nil {
		t.Fatalf("read VictoriaLogs metrics: %v", err)
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read VictoriaLogs metrics: %v", err)
	}
	var s vlStorage
	for _, line := range strings.Split(string(text), "\n") {
		name, v, ok := metricLine(line)
		if !ok {
			continue
		}
		onDisk := strings.Contains(name, `"storage/small"`) || strings.Contains(name, `"storage/big"`)
		switch {
		case strings.HasPrefix(name, "vl_data_size_bytes{"):
			s.bytes += v
			if strings.Contains(name, `"indexdb"`) {
				s.indexdb += v
			}
		case strings.HasPrefix(name, "vl_storage_rows{"):
			s.rows += v
			if strings.Contains(name, `"storage/inmemory"`) {
				s.inmemory += v
			}
		case strings.HasPrefix(name, "vl_pending_rows{"):
			s.pending += v
		case strings.HasPrefix(name, "vl_rows_merged_total{") && onDisk:
			s.merged += v
		case strings.HasPrefix(name, "vl_storage_parts{") && onDisk:
			s.parts += v
		}
	}
	return s
}

// vlOnDisk flushes VictoriaLogs once (/internal/force_flush puts pending
// rows into in-memory parts) and waits, at most a minute, until as many rows
// as its parts then held are in disk parts (-inmemoryDataFlushInterval, 5s
// by default). Rows that arrive meanwhile (this host's other connects) may
// still be in memory, and background merges of disk parts may go on.
func (b *bench) vlOnDisk(t *testing.T) vlStorage {
	t.Helper()
	if _, err := b.vl.Query(t.Context(), "* | limit 0"); err != nil { // Query flushes first
		t.Fatalf("flush VictoriaLogs: %v", err)
	}
	s := b.vlStorage(t)
	flushed := s.rows
	for deadline := time.Now().Add(time.Minute); s.rows-s.inmemory < flushed; time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Logf("VictoriaLogs had %v of %v flushed rows on disk after a minute", s.rows-s.inmemory, flushed)
			break
		}
		s = b.vlStorage(t)
	}
	return s
}

// diskFigure is figure 9: VictoriaLogs' bytes on disk per row it stored
// between two vlOnDisk states (the load's records, and the few other
// connects of this host meanwhile).
func diskFigure(id string, s0, s1 vlStorage, cmd string) Figure {
	rows := s1.rows - s0.rows
	f := Figure{ID: id, Name: "VictoriaLogs bytes on disk per record (vl_data_size_bytes ÷ vl_storage_rows, growth over the load), after /internal/force_flush and the in-memory parts' flush to disk, before background merges settle",
		Value: ptr(round((s1.bytes - s0.bytes) / rows)), Unit: "B", Target: "reference, no target", Command: cmd}
	f.Detail = fmt.Sprintf("%s rows, %s of them still in memory at the end; of the bytes, indexdb %s B/row; %s disk parts at the end, %s rows merged meanwhile; the whole store then: %s B/row over %s rows",
		num(rows), num(s1.inmemory), num((s1.indexdb-s0.indexdb)/rows), num(s1.parts), num(s1.merged-s0.merged), num(s1.bytes/s1.rows), num(s1.rows))
	return f
}

// latencyPoll is how often the latency load polls VictoriaLogs.
const latencyPoll = 50 * time.Millisecond

// latency runs a load at rate in which every sampleEvery-th connect is
// sampled (loadgen -sample), while a goroutine polls VictoriaLogs every
// latencyPoll, without flushing it, for the sampled records. A record's
// latency is from just before its connect() to the start of the first poll
// that returned it. It returns the latencies of the samples seen within a
// minute of the load's end, sorted, and how many samples the load made.
func (b *bench) latency(t *testing.T, rate, count, sampleEvery int, bound time.Duration) (latencies []time.Duration, samples int) {
	t.Helper()
	port, err := ports.Free()
	if err != nil {
		t.Fatal(err)
	}
	query := fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d network.local.address:ipv4_range("127.2.0.0/16") | fields network.local.address`, port)
	since := time.Now().Add(-time.Minute)
	made := make(chan int) // the samples the load made, once it is done
	seen := make(chan map[string]time.Time)
	stop := make(chan struct{}) // the load failed the test
	defer close(stop)
	var pollErrs int
	var pollErr error
	go func() {
		// One kept-alive connection, so that polling adds no connects (each
		// would be a record) of its own.
		client := &http.Client{Timeout: 10 * time.Second}
		defer client.CloseIdleConnections()
		firstSeen := map[string]time.Time{}
		tick := time.NewTicker(latencyPoll)
		defer tick.Stop()
		want, deadline := -1, time.Time{}
		for {
			select {
			case want = <-made:
				deadline = time.Now().Add(time.Minute)
			case <-tick.C:
			case <-stop:
				return
			}
			if want >= 0 && (len(firstSeen) >= want || time.Now().After(deadline)) {
				seen <- firstSeen
				return
			}
			at := time.Now()
			srcs, err := b.search(client, query, since)
			if err != nil {
				pollErrs, pollErr = pollErrs+1, err // read once seen is sent
			}
			for _, src := range srcs {
				if _, ok := firstSeen[src]; !ok {
					firstSeen[src] = at
				}
			}
		}
	}()
	res := b.load(t, rate, count, bound, "-port", fmt.Sprint(port), "-sample", fmt.Sprint(sampleEvery))
	made <- len(res.Samples)
	firstSeen := <-seen
	if pollErrs > 0 {
		t.Logf("%d polls of VictoriaLogs failed, the last with: %v", pollErrs, pollErr)
	}
	for _, s := range res.Samples {
		if at, ok := firstSeen[s.Source]; ok {
			latencies = append(latencies, at.Sub(time.Unix(0, s.ConnectNs)))
		}
	}
	slices.Sort(latencies)
	return latencies, len(res.Samples)
}

// search runs a LogsQL query over the records since start without flushing
// VictoriaLogs first, as a user's query would, and returns the values of
// its rows' fields.
func (b *bench) search(client *http.Client, logsql string, start time.Time) ([]string, error) {
	form := url.Values{"query": {logsql}, "start": {start.UTC().Format(time.RFC3339Nano)}}
	resp, err := client.PostForm(b.vl.URL()+"/select/logsql/query", form)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("%s: %s", resp.Status, body)
	}
	var out []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var row map[string]string
		if json.Unmarshal(sc.Bytes(), &row) == nil {
			for _, v := range row {
				out = append(out, v)
			}
		}
	}
	return out, sc.Err()
}

// percentile is the nearest-rank p-th percentile of sorted xs.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// latencyFigures are figures 10-p50 and 10-p99 of one latency load.
func latencyFigures(rate int, latencies []time.Duration, samples, sampleEvery int, cmd string) []Figure {
	name := func(p string) string {
		return fmt.Sprintf("time from connect() until the record can be queried in VictoriaLogs (no flush), %s", p)
	}
	detail := fmt.Sprintf("at %s/s in a load of its own, 1 in %d connects sampled: %d of %d samples seen; polled every %s, so each value is late by up to that and a query's duration",
		num(float64(rate)), sampleEvery, len(latencies), samples, latencyPoll)
	var figs []Figure
	for _, p := range []float64{50, 99} {
		f := Figure{ID: fmt.Sprintf("10-p%g@%d", p, rate), Name: name(fmt.Sprintf("p%g", p)), Unit: "s", Target: "reference, no target", Detail: detail, Command: cmd}
		if len(latencies) > 0 {
			f.Value = ptr(round(percentile(latencies, p).Seconds()))
		}
		figs = append(figs, f)
	}
	return figs
}
