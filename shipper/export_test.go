package shipper

import (
	"context"
	"errors"
	"fmt"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/proto"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/connaudit/connaudit/shipper/otlp"
	"github.com/connaudit/connaudit/shipper/spool"
	"github.com/connaudit/connaudit/trail"
)

// sizeLimitedExporter refuses any request of more than max records, as a
// collector refuses a message above its size limit.
type sizeLimitedExporter struct {
	mu     sync.Mutex
	max    int
	seqs   []int64
	losses []string // connaudit.lost.reason of each loss record
}

func (e *sizeLimitedExporter) Send(_ context.Context, req []byte) error {
	records := requestRecords(req)
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(records) > e.max {
		return errors.New("rpc error: code = ResourceExhausted desc = grpc: received message larger than max")
	}
	for _, r := range records {
		for _, kv := range r.GetAttributes() {
			switch kv.GetKey() {
			case "connaudit.seq":
				e.seqs = append(e.seqs, kv.GetValue().GetIntValue())
			case "connaudit.lost.reason":
				e.losses = append(e.losses, kv.GetValue().GetStringValue())
			}
		}
	}
	return nil
}
func (e *sizeLimitedExporter) Shutdown(context.Context) error { return nil }

// requestRecords are the log records of an encoded ExportLogsServiceRequest.
func requestRecords(req []byte) []*logspb.LogRecord {
	var m collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(req, &m); err != nil {
		panic(fmt.Sprintf("the exporter framed a request protobuf cannot read: %v", err))
	}
	var out []*logspb.LogRecord
	for _, rl := range m.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			out = append(out, sl.GetLogRecords()...)
		}
	}
	return out
}

func (e *sizeLimitedExporter) exported() []int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]int64(nil), e.seqs...)
}

// spooledShipper is a Shipper on a real spool holding n tcp.connect records.
func spooledShipper(t *testing.T, n int) (*spool.Spool, *Ledger) {
	t.Helper()
	sp, _, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	sh := NewLedger(sp, nil, NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	ev := testEvent()
	var b ConnectBuilder
	for i := 0; i < n; i++ {
		sh.Emit(b.Build(&ev, time.Now(), time.Now(), time.Now(), &Source{}))
	}
	return sp, sh
}

// exportUntil runs an Exporter into exp until it has exported want records,
// for at most 30 seconds.
func exportUntil(t *testing.T, sp *spool.Spool, sh *Ledger, exp *sizeLimitedExporter, want int) {
	t.Helper()
	x := NewExporter(ExportConfig{BatchRecords: 64, MaxBackoff: time.Millisecond}, sp, exp, sh, sh.metrics, sh.log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { x.Run(ctx); done <- nil }()
	for deadline := time.Now().Add(30 * time.Second); len(exp.exported()) < want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // room for an extra record to show
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A batch the collector keeps refusing is split until it passes; every
// record is delivered, in order, once.
func TestExportShrinksARefusedBatch(t *testing.T) {
	const n = 100
	sp, sh := spooledShipper(t, n)
	exp := &sizeLimitedExporter{max: 7}
	exportUntil(t, sp, sh, exp, n)
	got := exp.exported()
	if len(got) != n {
		t.Fatalf("%d of %d records exported", len(got), n)
	}
	for i, seq := range got {
		if seq != int64(i+1) {
			t.Fatalf("record %d has seq %d: want every record once, in order", i, seq)
		}
	}
}

// A spooled record this version cannot read is skipped and reported once,
// however often its batch is retried.
func TestUndecodableRecordIsReportedOnce(t *testing.T) {
	sp, sh := spooledShipper(t, 9)
	future := append([]byte{recordVersion + 1}, make([]byte, headerSize)...)
	if err := sp.Append(future); err != nil {
		t.Fatal(err)
	}
	exp := &sizeLimitedExporter{max: 4} // the first batches are refused and split
	exportUntil(t, sp, sh, exp, 10)     // 9 records and the loss record
	exp.mu.Lock()
	defer exp.mu.Unlock()
	if len(exp.seqs) != 10 || len(exp.losses) != 1 || exp.losses[0] != string(trail.LossUndecodable) {
		t.Fatalf("exported seqs %v, loss reasons %v: want 10 records and one undecodable loss", exp.seqs, exp.losses)
	}
}

// A full disk under the spool makes every Ack fail to persist the read
// cursor (CONNAUDIT_SPOOL_FSYNC_INTERVAL=0). The acknowledgement itself took
// effect, so export must go on: every record is delivered once, the failures
// are counted, and the loop never stops running.
func TestExportGoesOnWhenAcksCannotBePersisted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs (the test needs root): %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	sp, _, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{FsyncInterval: 0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	sh := NewLedger(sp, nil, NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	ev := testEvent()
	var b ConnectBuilder
	const n = 300
	for i := 0; i < n; i++ {
		sh.Emit(b.Build(&ev, time.Now(), time.Now(), time.Now(), &Source{}))
	}
	fillDisk(t, filepath.Join(dir, "filler"))

	exp := &sizeLimitedExporter{max: 1 << 20}
	runExporter(t, sp, sh, exp, ExportConfig{BatchRecords: 64}, func() bool { return len(exp.exported()) >= n })
	if got := len(exp.exported()); got != n {
		t.Fatalf("%d of %d records exported with the disk full", got, n)
	}
	if errs := testutil.ToFloat64(sh.metrics.AckErrors); errs == 0 {
		t.Error("no Ack error counted, yet the disk was full: the test did not inject the fault")
	}
	if testutil.ToFloat64(sh.metrics.ExportRestarts) != 0 {
		t.Error("the export loop restarted for an Ack whose acknowledgement took effect")
	}
}

// fillDisk writes path until the filesystem refuses with ENOSPC.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for i := 0; i < 1<<20; i++ {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
	t.Fatal("the filesystem never filled up")
}

// A spool that cannot be read (a segment file removed under it) makes the
// export loop fail: it is restarted with backoff and counted, and Running
// tells readiness that nobody exports meanwhile.
func TestExportLoopIsRestartedAfterAReadError(t *testing.T) {
	dir := t.TempDir()
	sp, _, err := spool.Open(dir, spool.Options{SegmentBytes: 1024, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	sh := NewLedger(sp, nil, NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	ev := testEvent()
	var b ConnectBuilder
	for i := 0; i < 100; i++ {
		sh.Emit(b.Build(&ev, time.Now(), time.Now(), time.Now(), &Source{}))
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) < 3 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	if err := os.Remove(segs[1]); err != nil {
		t.Fatal(err)
	}
	exp := &sizeLimitedExporter{max: 1 << 20}
	x := NewExporter(ExportConfig{BatchRecords: 5, MaxBackoff: 200 * time.Millisecond}, sp, exp, sh, sh.metrics, sh.log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { x.Run(ctx); close(done) }()
	sawStopped := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		sawStopped = sawStopped || !x.Running()
		if testutil.ToFloat64(sh.metrics.ExportRestarts) >= 2 && sawStopped {
			break
		}
	}
	cancel()
	<-done
	if n := testutil.ToFloat64(sh.metrics.ExportRestarts); n < 2 || !sawStopped {
		t.Fatalf("restarts %v, seen not running %v: want the failing loop restarted and reported", n, sawStopped)
	}
}

// throttlingExporter answers its first busyCalls requests as a collector
// that is throttling, then accepts.
type throttlingExporter struct {
	sizeLimitedExporter
	busyCalls int
	wait      time.Duration
	calls     []time.Time
	sizes     []int // records per request
}

func (e *throttlingExporter) Send(ctx context.Context, req []byte) error {
	e.mu.Lock()
	e.calls = append(e.calls, time.Now())
	e.sizes = append(e.sizes, len(requestRecords(req)))
	busy := len(e.calls) <= e.busyCalls
	e.mu.Unlock()
	if busy {
		return &otlp.ThrottleError{Err: &otlp.StatusError{Code: 429, Status: "429 Too Many Requests", RetryAfter: e.wait}, Delay: e.wait}
	}
	return e.sizeLimitedExporter.Send(ctx, req)
}

// A collector's Retry-After is honoured even when the backoff is shorter.
func TestExportWaitsAsTheCollectorAsks(t *testing.T) {
	sp, sh := spooledShipper(t, 3)
	exp := &throttlingExporter{sizeLimitedExporter: sizeLimitedExporter{max: 64}, busyCalls: 1, wait: 300 * time.Millisecond}
	x := NewExporter(ExportConfig{BatchRecords: 64, MaxBackoff: time.Millisecond}, sp, exp, sh, sh.metrics, sh.log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { x.Run(ctx); close(done) }()
	for deadline := time.Now().Add(30 * time.Second); len(exp.exported()) < 3 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	exp.mu.Lock()
	defer exp.mu.Unlock()
	if len(exp.seqs) != 3 || len(exp.calls) < 2 {
		t.Fatalf("%d records in %d requests", len(exp.seqs), len(exp.calls))
	}
	if gap := exp.calls[1].Sub(exp.calls[0]); gap < exp.wait {
		t.Fatalf("retried %s after a Retry-After of %s", gap, exp.wait)
	}
}

// A throttling collector does not make the batch smaller: it would not help.
func TestExportKeepsItsBatchWhenTheCollectorIsBusy(t *testing.T) {
	const n = 40
	sp, sh := spooledShipper(t, n)
	exp := &throttlingExporter{sizeLimitedExporter: sizeLimitedExporter{max: 64}, busyCalls: failedTriesBeforeShrink + 2}
	x := NewExporter(ExportConfig{BatchRecords: 64, MaxBackoff: time.Millisecond}, sp, exp, sh, sh.metrics, sh.log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { x.Run(ctx); close(done) }()
	for deadline := time.Now().Add(30 * time.Second); len(exp.exported()) < n && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	exp.mu.Lock()
	defer exp.mu.Unlock()
	if len(exp.seqs) != n || len(exp.sizes) != exp.busyCalls+1 {
		t.Fatalf("%d records in requests of %v", len(exp.seqs), exp.sizes)
	}
	for _, size := range exp.sizes {
		if size != n {
			t.Fatalf("requests of %v records: want every one the whole batch of %d", exp.sizes, n)
		}
	}
}
