package querybench

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"

	"github.com/connaudit/connaudit/backend/victorialogs"
	"github.com/connaudit/connaudit/internal/teststack"
	"github.com/connaudit/connaudit/shipper"
	"github.com/connaudit/connaudit/shipper/spool"
	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/verify"
)

// trailRecords is the size of each instance of BenchmarkTrail300k:
// 300,000, or CONNAUDIT_BENCH_TRAIL_RECORDS (issue 17's target is for
// 1,000,000).
func trailRecords(b *testing.B) uint64 {
	s := os.Getenv("CONNAUDIT_BENCH_TRAIL_RECORDS")
	if s == "" {
		return 300_000
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n < 2 {
		b.Fatalf("CONNAUDIT_BENCH_TRAIL_RECORDS=%q: want a count of at least 2", s)
	}
	return n
}

// BenchmarkTrail300k measures hole finding (coverage, which every query
// runs) and verify over one agent instance of 300,000 chained, checkpointed
// records written by the real ledger: on node-whole every seq is stored, on
// node-hole one is not (issue 17). Besides time and allocations it reports
// peak-heap-MB, the largest heap in use during an operation above the heap
// before it (sampled every millisecond), fetched-KB/op, what it read from
// VictoriaLogs, and for the CLI max-rss-MB (which includes the Go runtime
// and the mapped binary: about 55-65 MB for any command).
//
//	go test -run '^$' -bench Trail300k -benchtime 5x ./e2e/querybench/
//	CONNAUDIT_BENCH_TRAIL_RECORDS=1000000 go test -run '^$' -bench 'Trail300k/(cli-)?verify/node-whole' -benchtime 1x ./e2e/querybench/
//	CONNAUDIT_BENCH_BASELINE=/path/to/older/connaudit go test -run '^$' -bench Trail300k/cli ./e2e/querybench/
func BenchmarkTrail300k(b *testing.B) {
	vl := teststack.StartVictoriaLogs(b)
	records := trailRecords(b)
	// The records are 10 ms apart (ingestTrail) and all in the past.
	t0 := time.Now().Add(-time.Hour - time.Duration(records)*10*time.Millisecond).Truncate(time.Second)
	loadStart := time.Now()
	for _, node := range []string{"node-whole", "node-hole"} {
		drop := uint64(0)
		if node == "node-hole" {
			drop = records / 2
		}
		ingestTrail(b, vl, node, "instance-"+node, t0, int(records), drop)
	}
	resp, err := http.Get(vl.URL() + "/internal/force_flush")
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	b.Logf("loaded 2 × %d records in %v", records, time.Since(loadStart).Round(time.Millisecond))
	from, to := t0.Add(-time.Minute), time.Now()

	fetched := &countingTransport{}
	be, err := victorialogs.New(victorialogs.Config{URL: vl.URL(), Client: &http.Client{Transport: fetched}})
	if err != nil {
		b.Fatal(err)
	}
	for _, node := range []string{"node-whole", "node-hole"} {
		b.Run("coverage/"+node, func(b *testing.B) {
			measure(b, fetched, func() {
				c, err := be.Coverage(context.Background(), from, to, []string{node})
				if err != nil {
					b.Fatal(err)
				}
				if len(c.Instances) != 1 || (node == "node-hole") != (len(c.Instances[0].Missing) == 1) {
					b.Fatalf("coverage of %s: %+v", node, c.Instances)
				}
			})
		})
		b.Run("verify/"+node, func(b *testing.B) {
			measure(b, fetched, func() {
				var out bytes.Buffer
				err := verify.Run(context.Background(), be, verify.Request{From: from, To: to, Nodes: []string{node}, Format: "json"}, &out)
				if (node == "node-hole") != errors.Is(err, verify.ErrFindings) {
					b.Fatalf("verify %s: %v\n%.2000s", node, err, out.String())
				}
			})
		})
	}
	// The CLI as users run it, for its peak resident memory. /usr/bin/time
	// measures it: a child's own rusage would count the memory of this
	// process, which it was forked from.
	// With $CONNAUDIT_BENCH_BASELINE set to another connaudit binary (say,
	// one built from main), each CLI figure is taken for it too, against
	// the same records: "…/baseline". Both binaries are copied afresh first:
	// a binary's resident size depends on how its file was last written
	// (42 or 65 MB for `version` from the same build here).
	dir := b.TempDir()
	bins := map[string]string{"": teststack.Binary(b, "connaudit")}
	if base := os.Getenv("CONNAUDIT_BENCH_BASELINE"); base != "" {
		bins["/baseline"] = base
	}
	for name, path := range bins {
		data, err := os.ReadFile(path)
		if err == nil {
			path = filepath.Join(dir, "connaudit"+strings.ReplaceAll(name, "/", "-"))
			err = os.WriteFile(path, data, 0o755)
		}
		if err != nil {
			b.Fatal(err)
		}
		bins[name] = path
	}
	timeBin, err := exec.LookPath("/usr/bin/time")
	if err != nil {
		b.Logf("no /usr/bin/time, no max-rss-MB: %v", err)
	}
	window := []string{"--from", from.UTC().Format(time.RFC3339), "--to", to.UTC().Format(time.RFC3339), "--server", vl.URL()}
	for _, node := range []string{"node-whole", "node-hole"} {
		for _, c := range [][]string{{"coverage"}, {"query", "--limit", "1"}, {"verify", "-o", "json"}} {
			for _, name := range []string{"/baseline", ""} {
				bin, ok := bins[name]
				if !ok {
					continue
				}
				b.Run("cli-"+c[0]+"/"+node+name, func(b *testing.B) {
					var rss int64
					rssFile := filepath.Join(b.TempDir(), "rss")
					for b.Loop() {
						args := append(append(append([]string{}, c...), "--node", node), window...)
						cmd := exec.Command(bin, args...)
						if timeBin != "" {
							cmd = exec.Command(timeBin, append([]string{"-f", "%M", "-o", rssFile, bin}, args...)...)
						}
						cmd.Env = []string{"HOME=" + b.TempDir()}
						var stderr strings.Builder
						cmd.Stdout, cmd.Stderr = io.Discard, &stderr
						if err := cmd.Run(); err != nil && (node == "node-whole" || c[0] == "coverage") {
							b.Fatalf("connaudit %v: %v: %s", c, err, stderr.String())
						}
						if timeBin != "" {
							// The last line: a failed command's exit status comes first.
							out, err := os.ReadFile(rssFile)
							lines := strings.Split(strings.TrimSpace(string(out)), "\n")
							kb, err2 := strconv.ParseInt(lines[len(lines)-1], 10, 64)
							if err != nil || err2 != nil {
								b.Fatalf("/usr/bin/time: %q: %v %v", out, err, err2)
							}
							rss = max(rss, kb)
						}
					}
					if timeBin != "" {
						b.ReportMetric(float64(rss)/1024, "max-rss-MB")
					}
				})
			}
		}
	}
}

// countingTransport counts the bytes of the answers it reads.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil {
		resp.Body = &countingBody{resp.Body, &c.n}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// measure runs op b.N times and reports the peak heap above the heap
// before each run, and the bytes op read from VictoriaLogs.
func measure(b *testing.B, fetched *countingTransport, op func()) {
	b.ReportAllocs()
	var peak uint64
	fetched.n.Store(0)
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		base := heapBytes()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var top uint64
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for {
				top = max(top, heapBytes())
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
		b.StartTimer()
		op()
		b.StopTimer()
		close(stop)
		wg.Wait()
		top = max(top, heapBytes())
		if top > base {
			peak = max(peak, top-base)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(fetched.n.Load())/float64(b.N)/(1<<10), "fetched-KB/op")
}

func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// ingestTrail has a real ledger write an instance's start record, n-2
// connect records (with a checkpoint every 1,000 records) and its stop
// record, and ingests them into VictoriaLogs as they come back from it, but
// the record at seq drop (0: none).
func ingestTrail(b *testing.B, vl *teststack.VictoriaLogs, node, instance string, t0 time.Time, n int, drop uint64) {
	b.Helper()
	sp, _, err := spool.Open(b.TempDir(), spool.Options{MaxBytes: 1 << 30, FsyncInterval: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	res := shipper.NewResource(map[attribute.Key]attribute.Value{
		attribute.Key(trail.KeyServiceName):       attribute.StringValue("connaudit"),
		attribute.Key(trail.KeyServiceInstanceID): attribute.StringValue(instance),
		attribute.Key(trail.KeyK8sNodeName):       attribute.StringValue(node),
		attribute.Key(trail.KeyHostName):          attribute.StringValue(node),
	})
	l := shipper.NewLedger(sp, res, shipper.NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	l.EnableCheckpoints(shipper.CheckpointConfig{Instance: instance, Key: key, Records: 1000})
	l.EmitAgentEvent(trail.EventAgentStart, "started", t0, log.SeverityInfo, func(a *shipper.AttrList) {
		a.Float(trail.KeyHeartbeat, 10)
	})
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	post := func() {
		for sp.Stats().Records > 0 {
			batch, err := sp.Next(context.Background(), 1000, 0)
			if err != nil {
				b.Fatal(err)
			}
			for _, p := range batch.Records {
				m, err := shipper.StoredFields(p)
				if err != nil {
					b.Fatal(err)
				}
				if m[string(trail.KeySeq)] == fmt.Sprint(drop) {
					continue
				}
				if err := enc.Encode(m); err != nil {
					b.Fatal(err)
				}
			}
			if err := sp.Ack(batch); err != nil {
				b.Fatal(err)
			}
		}
		q := url.Values{"_time_field": {"_time"}, "_msg_field": {"_msg"}, "_stream_fields": {"service.name,k8s.node.name"}}
		resp, err := http.Post(vl.URL()+"/insert/jsonline?"+q.Encode(), "application/stream+json", &body)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("jsonline ingest: %s", resp.Status)
		}
		body.Reset()
	}
	var e shipper.Encoder
	for i := range n - 2 {
		ts := t0.Add(time.Duration(i+1) * 10 * time.Millisecond)
		e.Reset(trail.EventConnect, ts, ts, log.SeverityInfo, []byte("curl -> 198.51.100.7:443 established"), res)
		e.String(trail.KeyPeerAddress, "198.51.100.7")
		e.Int(trail.KeyPeerPort, 443)
		e.Int(trail.KeyProcessPID, int64(4000+i%5000))
		e.String(trail.KeyProcessExecName, "curl")
		e.String(trail.KeyOutcome, "established")
		e.Float(trail.KeyConnectDuration, float64(i%1000+1)*0.000013)
		l.Emit(e.Finish())
		if i%20_000 == 0 {
			post()
		}
	}
	l.EmitAgentEvent(trail.EventAgentStop, "stopped", t0.Add(time.Duration(n)*10*time.Millisecond), log.SeverityInfo, nil)
	post()
}
