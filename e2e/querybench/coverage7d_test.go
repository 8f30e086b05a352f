package querybench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connaudit/connaudit/backend/victorialogs"
	"github.com/connaudit/connaudit/internal/teststack"
	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/trail/coverage"
)

// BenchmarkCoverage7Days measures coverage (and so hole finding, which
// every query runs) over a 7-day window of one node whose agent wrote 1,000
// connects/s (issue 17: ≤ 2 s, bounded memory): about 605 million records.
// It reports the time, peak-heap-MB and fetched-KB/op as BenchmarkTrail300k
// does, and VictoriaLogs' own resident size (vl-rss-MB before the first
// coverage, vl-hwm-MB its peak after the last; VictoriaLogs is restarted
// after loading, so the peak is of the queries, not of the load). The peak
// counts the pages of its data files it has read, which the kernel can
// reclaim (3 GB of 3.5 GB for 7 days); vl-anon-MB, its anonymous memory
// (heap, stacks) after the last coverage, is what its queries hold.
//
// The trail is generated, as the agent's ledger numbers it: instance-a
// starts (not resumed), writes a connect every millisecond, a
// connaudit.checkpoint every 1,000 seqs (CONNAUDIT_CHECKPOINT_RECORDS) and
// every 10 s (the heartbeat), and stops half way; instance-b starts at once,
// resuming the pinned capture, and does the same to the window's end; one
// connect record of instance-b, half way through it, is not stored (a
// hole). The benchmark fails unless coverage reports exactly these two
// instances, their distinct records and seq ranges, and that one hole.
//
// Each record carries what coverage reads, as the agent and the shipped
// gateway store it: the stream fields of k8s/deploy's VL-Stream-Fields that
// the record has (service.name and k8s.node.name; a connect also its pod's
// k8s.namespace.name, k8s.pod.name and k8s.container.name, one of four
// pods), service.instance.id, event_name, connaudit.seq and _time; a start
// record connaudit.capture.resumed and connaudit.heartbeat.interval; a
// checkpoint its seq range and count; a stop record connaudit.seq.final.
// Left out are the fields coverage never reads (peers, process, chain
// value, checkpoint head and signature, and the rest of the resource):
// coverage's filters and stats name none of them, and VictoriaLogs keeps
// each field in its own column, so they change neither which rows match
// nor the values read. What they do change is how many rows fill a block
// (VictoriaLogs cuts a stream's block at about 2 MB uncompressed): these
// rows are about 230 bytes, and a block holds about 8,900 of them (9,681
// blocks for the 1-day trail); a real connect record, with its chain value,
// process, peer and pod fields, is several times larger (roughly 1 KB), so
// real blocks hold several times fewer rows, and work done once per block
// (reading its headers) would be that many times more. Work done once per
// row is the same. The _msg is a short word, not the real body. The trail
// has no connaudit.loss record (no loss explains the hole), so coverage's
// loss query matches no row.
//
// Loading takes long (hundreds of millions of rows through /insert/jsonline),
// so the data is kept: CONNAUDIT_BENCH_7D_DIR (without it the benchmark is
// skipped) names a directory that holds one VictoriaLogs data directory per
// size, loaded once and reused (loading resumes where it stopped, an hour of
// trail at a time).
// CONNAUDIT_BENCH_7D_DAYS sets the window (default 7; 1 to learn the
// scaling), CONNAUDIT_BENCH_7D_LOAD_FOR bounds the loading of one run (the
// benchmark is then skipped until a later run completes it), and
// CONNAUDIT_BENCH_7D_TRACE=1 logs each query coverage makes, with its time.
//
//	CONNAUDIT_BENCH_7D_DIR=/var/tmp/cov7d CONNAUDIT_BENCH_7D_DAYS=1 go test -run '^$' -bench Coverage7Days -benchtime 3x -timeout 0 ./e2e/querybench/
func BenchmarkCoverage7Days(b *testing.B) {
	days := 7.0
	if s := os.Getenv("CONNAUDIT_BENCH_7D_DAYS"); s != "" {
		var err error
		if days, err = strconv.ParseFloat(s, 64); err != nil || days <= 0 {
			b.Fatalf("CONNAUDIT_BENCH_7D_DAYS=%q: want a positive number of days", s)
		}
	}
	var loadFor time.Duration
	if s := os.Getenv("CONNAUDIT_BENCH_7D_LOAD_FOR"); s != "" {
		var err error
		if loadFor, err = time.ParseDuration(s); err != nil {
			b.Fatalf("CONNAUDIT_BENCH_7D_LOAD_FOR=%q: %v", s, err)
		}
	}
	root := os.Getenv("CONNAUDIT_BENCH_7D_DIR")
	if root == "" {
		b.Skip("CONNAUDIT_BENCH_7D_DIR is not set: loading the trail takes about 20 minutes and 4 GB, so it is kept there (make bench-query does not run this)")
	}
	tr := newWeekTrail(days)
	dir := filepath.Join(root, strconv.FormatFloat(days, 'f', -1, 64)+"d")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	vl := teststack.StartVictoriaLogsOn(b, filepath.Join(dir, "victoria-logs-data"))
	if !tr.load(b, vl, dir, loadFor) {
		b.Skipf("loading %s is not complete; run again to go on", dir)
	}
	// A fresh VictoriaLogs, with what loading left (in-memory parts, caches)
	// gone, and its merges done.
	vl.Stop()
	vl.Start()
	waitMerges(b, vl)

	fetched := &countingTransport{}
	client := &http.Client{Transport: fetched}
	if os.Getenv("CONNAUDIT_BENCH_7D_TRACE") == "1" {
		client.Transport = &tracingTransport{next: fetched}
	}
	be, err := victorialogs.New(victorialogs.Config{URL: vl.URL(), Client: client})
	if err != nil {
		b.Fatal(err)
	}
	from, to := tr.t0, tr.end.Add(time.Minute)
	tr.wanted = tr.want()
	rssBefore := procStatusMB(b, vl.PID(), "VmRSS")
	run := 0
	measure(b, fetched, func() {
		start := time.Now()
		c, err := be.Coverage(context.Background(), from, to, []string{weekNode})
		if err != nil {
			b.Fatal(err)
		}
		// Each run's time, to stderr: the first after the restart reads
		// block headers VictoriaLogs has not cached yet.
		run++
		fmt.Fprintf(os.Stderr, "coverage run %d: %v\n", run, time.Since(start).Round(time.Millisecond))
		tr.check(b, c)
	})
	b.ReportMetric(rssBefore, "vl-rss-MB")
	b.ReportMetric(procStatusMB(b, vl.PID(), "VmHWM"), "vl-hwm-MB")
	b.ReportMetric(procStatusMB(b, vl.PID(), "RssAnon"), "vl-anon-MB")
}

const (
	weekNode = "node-7d"
	// weekPeriod is the time between two connects: 1,000 a second.
	weekPeriod = time.Millisecond
	// weekCheckpointRecords and weekHeartbeat are the agent's defaults.
	weekCheckpointRecords = 1000
	weekHeartbeat         = 10 * time.Second
	// weekChunk is how much trail one loading step posts.
	weekChunk = time.Hour
	// weekPost is the most rows one POST carries.
	weekPost = 100_000
)

// weekTrail is the generated trail of BenchmarkCoverage7Days: two instances,
// a restart half way.
type weekTrail struct {
	t0, end   time.Time
	instances []weekInstance
	wanted    []coverage.Instance // want's answer, once asked
}

type weekInstance struct {
	id         string
	resumed    bool
	start, end time.Time // its start and stop records
	drop       int64     // which connect, counted from 1, is not stored (0: none)
}

func newWeekTrail(days float64) *weekTrail {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	end := t0.Add(time.Duration(days * float64(24*time.Hour)))
	mid := t0.Add(end.Sub(t0) / 2).Truncate(time.Second)
	half := int64(end.Sub(mid) / weekPeriod / 2)
	return &weekTrail{t0: t0, end: end, instances: []weekInstance{
		{id: "instance-a", start: t0, end: mid},
		{id: "instance-b", resumed: true, start: mid.Add(weekPeriod / 2), end: end, drop: half},
	}}
}

// weekRecord is one record of the trail.
type weekRecord struct {
	t       int64 // Unix nanoseconds
	event   trail.Event
	seq     int64
	connect int64 // which connect of its instance, from 1
	// a checkpoint's range and count
	first, last, count int64
}

// weekWalker yields one instance's records in seq order, numbered as
// shipper.Ledger numbers them: the start record is seq 1; a checkpoint
// follows every weekCheckpointRecords seqs since the previous one (itself
// not among them), and one is written every weekHeartbeat and before the
// stop record.
type weekWalker struct {
	in                 *weekInstance
	seq, first, count  int64
	connects           int64
	nextBeat           int64
	started, done      bool
	pending            []weekRecord
	head               int
	lastConnect, after int64 // Unix ns of the last connect, and of the one before the dropped one
}

func (w *weekWalker) next() (weekRecord, bool) {
	for w.head == len(w.pending) {
		w.pending, w.head = w.pending[:0], 0
		if !w.step() {
			return weekRecord{}, false
		}
	}
	w.head++
	return w.pending[w.head-1], true
}

func (w *weekWalker) step() bool {
	switch {
	case w.done:
		return false
	case !w.started:
		w.started, w.first = true, 1
		t := w.in.start.UnixNano()
		w.nextBeat = t + int64(weekHeartbeat)
		w.add(weekRecord{t: t, event: trail.EventAgentStart})
		return true
	}
	t := w.in.start.UnixNano() + (w.connects+1)*int64(weekPeriod)
	if t >= w.in.end.UnixNano() {
		end := w.in.end.UnixNano()
		w.checkpoint(end)
		w.add(weekRecord{t: end, event: trail.EventAgentStop})
		w.done = true
		return true
	}
	for t >= w.nextBeat {
		w.checkpoint(w.nextBeat)
		w.nextBeat += int64(weekHeartbeat)
	}
	w.connects++
	w.add(weekRecord{t: t, event: trail.EventConnect, connect: w.connects})
	return true
}

// add numbers r and counts it as spooled, then writes a checkpoint when one
// is due.
func (w *weekWalker) add(r weekRecord) {
	w.seq++
	r.seq = w.seq
	w.pending = append(w.pending, r)
	w.count++
	if w.seq+1-w.first >= weekCheckpointRecords {
		w.checkpoint(r.t)
	}
}

func (w *weekWalker) checkpoint(t int64) {
	w.seq++
	w.pending = append(w.pending, weekRecord{t: t, event: trail.EventCheckpoint, seq: w.seq, first: w.first, last: w.seq - 1, count: w.count})
	w.first, w.count = w.seq+1, 0
}

// each calls fn with every record of the trail in time order, the one not
// stored included.
func (tr *weekTrail) each(fn func(in *weekInstance, r weekRecord) bool) {
	for i := range tr.instances {
		w := &weekWalker{in: &tr.instances[i]}
		for r, ok := w.next(); ok; r, ok = w.next() {
			if !fn(w.in, r) {
				return
			}
		}
	}
}

// weekManifest is what a loaded data directory holds, in manifest.json.
type weekManifest struct {
	Days   float64 `json:"days"`
	Chunks int     `json:"chunks_loaded"` // hours of trail posted, from t0
	Done   bool    `json:"done"`
}

// load posts the trail's records to vl, from where an earlier run stopped
// (manifest.json in dir), for at most loadFor (0: no bound); it reports
// whether the whole trail is loaded.
func (tr *weekTrail) load(b *testing.B, vl *teststack.VictoriaLogs, dir string, loadFor time.Duration) bool {
	b.Helper()
	manifestPath := filepath.Join(dir, "manifest.json")
	var m weekManifest
	if data, err := os.ReadFile(manifestPath); err == nil {
		if err := json.Unmarshal(data, &m); err != nil {
			b.Fatalf("%s: %v", manifestPath, err)
		}
	}
	if m.Done {
		return true
	}
	m.Days = (tr.end.Sub(tr.t0).Hours()) / 24
	chunks := int((tr.end.Sub(tr.t0) + weekChunk - 1) / weekChunk)
	started := time.Now()
	b.Logf("loading %s: %d of %d hours of trail already loaded", dir, m.Chunks, chunks)

	bodies := make(chan []byte)
	var wg sync.WaitGroup
	var postErr error
	var mu sync.Mutex
	free := make(chan []byte, 4) // buffers the posters are done with
	newBuf := func() []byte {
		select {
		case buf := <-free:
			return buf[:0]
		default:
			return make([]byte, 0, weekPost*220)
		}
	}
	q := url.Values{"_time_field": {"_time"}, "_msg_field": {"_msg"},
		"_stream_fields": {"service.name,k8s.cluster.name,k8s.node.name,k8s.namespace.name,k8s.pod.name,k8s.container.name"}}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range bodies {
				err := postJSONLines(vl.URL()+"/insert/jsonline?"+q.Encode(), body)
				select {
				case free <- body:
				default:
				}
				if err != nil {
					mu.Lock()
					postErr = err
					mu.Unlock()
				}
			}
		}()
	}
	chunkEnd := func(c int) int64 { return tr.t0.Add(time.Duration(c) * weekChunk).UnixNano() }
	skipBefore := chunkEnd(m.Chunks)
	chunk := m.Chunks
	buf := newBuf()
	rows := 0
	stop := false
	flush := func() {
		if rows > 0 {
			bodies <- buf
			buf, rows = newBuf(), 0
		}
	}
	// finish waits for the posts of the chunks up to c and records them.
	finish := func(c int) {
		close(bodies)
		wg.Wait()
		if postErr != nil {
			b.Fatal(postErr)
		}
		m.Chunks = c
		m.Done = c >= chunks
		data, _ := json.Marshal(m)
		if err := os.WriteFile(manifestPath, data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	tr.each(func(in *weekInstance, r weekRecord) bool {
		if r.t < skipBefore {
			return true
		}
		for r.t >= chunkEnd(chunk+1) && chunk < chunks {
			chunk++
			if loadFor > 0 && time.Since(started) > loadFor {
				stop = true
				return false
			}
			if chunk%6 == 0 {
				b.Logf("loaded %d of %d hours of trail in %v", chunk, chunks, time.Since(started).Round(time.Second))
			}
		}
		if r.event == trail.EventConnect && r.connect == in.drop {
			return true
		}
		buf = appendWeekRow(buf, in, r)
		if rows++; rows == weekPost {
			flush()
		}
		return true
	})
	flush()
	if stop {
		finish(chunk)
		b.Logf("loaded %d of %d hours of trail; stopped after %v (CONNAUDIT_BENCH_7D_LOAD_FOR)", chunk, chunks, loadFor)
		return false
	}
	finish(chunks)
	resp, err := http.Get(vl.URL() + "/internal/force_flush")
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	b.Logf("loaded %s in %v", dir, time.Since(started).Round(time.Second))
	return true
}

func postJSONLines(u string, body []byte) error {
	resp, err := http.Post(u, "application/stream+json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jsonline ingest: %s", resp.Status)
	}
	return nil
}

var weekPods = []string{"web-0", "web-1", "api-0", "api-1"}

// appendWeekRow appends r as a JSON line, as VictoriaLogs stores what the
// agent wrote (see BenchmarkCoverage7Days for the fields left out).
func appendWeekRow(buf []byte, in *weekInstance, r weekRecord) []byte {
	buf = append(buf, `{"_time":"`...)
	buf = strconv.AppendInt(buf, r.t, 10)
	buf = append(buf, `","_msg":"`...)
	buf = append(buf, r.event[strings.LastIndexByte(string(r.event), '.')+1:]...)
	buf = append(buf, `","service.name":"connaudit","k8s.node.name":"`+weekNode+`","service.instance.id":"`...)
	buf = append(buf, in.id...)
	buf = append(buf, `","event_name":"`...)
	buf = append(buf, r.event...)
	buf = append(buf, `","connaudit.seq":"`...)
	buf = strconv.AppendInt(buf, r.seq, 10)
	buf = append(buf, '"')
	field := func(k trail.Key, v int64) {
		buf = append(buf, `,"`...)
		buf = append(buf, k...)
		buf = append(buf, `":"`...)
		buf = strconv.AppendInt(buf, v, 10)
		buf = append(buf, '"')
	}
	switch r.event {
	case trail.EventConnect:
		buf = append(buf, `,"k8s.namespace.name":"shop","k8s.pod.name":"`...)
		buf = append(buf, weekPods[r.connect%int64(len(weekPods))]...)
		buf = append(buf, `","k8s.container.name":"main"`...)
	case trail.EventAgentStart:
		buf = append(buf, `,"`+string(trail.KeyCaptureResumed)+`":"`...)
		buf = strconv.AppendBool(buf, in.resumed)
		buf = append(buf, '"')
		field(trail.KeyHeartbeat, int64(weekHeartbeat/time.Second))
	case trail.EventCheckpoint:
		field(trail.KeyCheckpointSeqFirst, r.first)
		field(trail.KeyCheckpointSeqLast, r.last)
		field(trail.KeyCheckpointCount, r.count)
	case trail.EventAgentStop:
		field(trail.KeySeqFinal, r.seq)
	}
	return append(buf, "}\n"...)
}

// want is the coverage of one instance that the trail holds: its distinct
// records, seq range, and the hole with the times of its neighbours.
func (tr *weekTrail) want() []coverage.Instance {
	var out []coverage.Instance
	var cur *coverage.Instance
	var prev int64         // time of the last stored record
	var holeAt = int64(-1) // seq of the hole, once passed
	tr.each(func(in *weekInstance, r weekRecord) bool {
		if cur == nil || cur.ID != in.id {
			out = append(out, coverage.Instance{Node: weekNode, ID: in.id, Started: in.start, Resumed: in.resumed,
				Stopped: in.end, Heartbeat: weekHeartbeat, FirstSeen: in.start, MinSeq: 1})
			cur = &out[len(out)-1]
		}
		if r.event == trail.EventConnect && r.connect == in.drop {
			holeAt = r.seq
			cur.Missing = append(cur.Missing, coverage.Hole{Seqs: coverage.SeqRange{First: r.seq, Last: r.seq}, After: time.Unix(0, prev).UTC()})
			return true
		}
		if holeAt >= 0 && r.seq == holeAt+1 {
			cur.Missing[len(cur.Missing)-1].Before = time.Unix(0, r.t).UTC()
		}
		cur.Records++
		cur.MaxSeq = r.seq
		cur.LastSeen = time.Unix(0, r.t).UTC()
		prev = r.t
		return true
	})
	return out
}

// check fails b unless c is the trail's coverage, with one seq hole as its
// only gap in the trail.
func (tr *weekTrail) check(b *testing.B, c *coverage.Coverage) {
	b.Helper()
	got := c.Instances
	if len(got) != len(tr.wanted) {
		b.Fatalf("coverage: %d instances, want %d: %+v", len(got), len(tr.wanted), got)
	}
	for i, w := range tr.wanted {
		g := got[i]
		if g.ID != w.ID || g.Records != w.Records || g.MinSeq != w.MinSeq || g.MaxSeq != w.MaxSeq || g.Resumed != w.Resumed ||
			!g.Started.Equal(w.Started) || !g.Stopped.Equal(w.Stopped) || !g.FirstSeen.Equal(w.FirstSeen) || !g.LastSeen.Equal(w.LastSeen) ||
			!slices.EqualFunc(g.Missing, w.Missing, func(a, b coverage.Hole) bool {
				return a.Seqs == b.Seqs && a.After.Equal(b.After) && a.Before.Equal(b.Before)
			}) {
			b.Fatalf("coverage of %s:\n got %+v\nwant %+v", w.ID, g, w)
		}
	}
	// The window ends a minute after the last stop record.
	gaps := coverage.Gaps(c)
	if len(gaps) != 2 || gaps[0].Kind != coverage.GapSeqHole || gaps[1].Kind != coverage.GapUncovered || !gaps[1].From.Equal(tr.end) {
		b.Fatalf("gaps %+v, want the one seq hole, and the minute after the stop", gaps)
	}
}

// waitMerges waits until VictoriaLogs merges no parts, so that a
// measurement neither shares the CPU with merging nor reads parts that
// are about to be merged.
func waitMerges(b *testing.B, vl *teststack.VictoriaLogs) {
	b.Helper()
	start := time.Now()
	for {
		resp, err := http.Get(vl.URL() + "/metrics")
		if err != nil {
			b.Fatal(err)
		}
		active := 0.0
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "vl_active_merges{") {
				n, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
				active += n
			}
		}
		resp.Body.Close()
		if active == 0 {
			if d := time.Since(start); d > time.Second {
				b.Logf("waited %v for VictoriaLogs' merges", d.Round(time.Second))
			}
			return
		}
		time.Sleep(time.Second)
	}
}

// procStatusMB is a VmRSS-like line of /proc/PID/status, in MB.
func procStatusMB(b *testing.B, pid int, field string) float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatalf("/proc/%d/status: %q", pid, line)
			}
			return kb / 1024
		}
	}
	b.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// tracingTransport logs each query, its time and the bytes of its answer.
type tracingTransport struct{ next http.RoundTripper }

func (t *tracingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return resp, err
	}
	body, err := readAll(resp)
	// To stderr: a benchmark's log is cut short.
	fmt.Fprintf(os.Stderr, "%v %d B  %s\n", time.Since(start).Round(time.Millisecond), len(body), r.URL.Query().Get("query"))
	resp.Body = readCloser{bytes.NewReader(body)}
	return resp, err
}

func readAll(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err := buf.ReadFrom(resp.Body)
	return buf.Bytes(), err
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }
